"""`tunecheck samples RUN`: export per-item results as lm-eval samples JSONL, one file per finished unit."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from evaluator.cli.base import app, err, friendly


@app.command()
@friendly
def samples(
    run_dir: Path = typer.Argument(..., help="A run folder (runs/<run-id>)."),
    out_dir: Optional[Path] = typer.Option(None, "--out", help="Where to write the files (default: RUN_DIR/samples)."),
    unit: Optional[list[str]] = typer.Option(None, "--unit", help="Export only this unit id (repeat for more; default: every finished unit)."),
) -> None:
    """Export per-item results as lm-eval samples JSONL (samples_<unit>.jsonl per finished unit); no model is loaded."""
    from evaluator.report.samples import export_samples

    res = export_samples(run_dir, out_dir, unit or None, log=lambda m: err.print(m, markup=False, highlight=False))
    for path in res.written:
        sys.stdout.write(f"{path}\n")
    if not res.written:
        err.print("no finished units — nothing written", markup=False, highlight=False)
