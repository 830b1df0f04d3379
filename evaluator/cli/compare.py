"""`tunecheck compare RUN_A RUN_B`: the same options across two runs on the same items, paired."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from evaluator.cli.base import app, check_folder, err, friendly, out


@app.command()
@friendly
def compare(
    run_a: Path = typer.Argument(..., help="The earlier run, e.g. last quarter's adapter run."),
    run_b: Path = typer.Argument(..., help="The later run, e.g. a new base release, on the same task and items."),
    out_dir: Optional[Path] = typer.Option(None, "--out", help="Folder for compare-<A>-vs-<B>.md and .json (default: the current directory)."),
    allow_incomplete: bool = typer.Option(False, "--allow-incomplete", help="Compare a run whose planned units did not all finish (e.g. a killed run): its finished units only, flagged in the output."),
) -> None:
    """Paired comparison of two runs on the same items: after (RUN_B) minus before (RUN_A); refuses different item
    sets and, unless allowed, a run with unfinished units."""
    from evaluator.report.compare import compare_runs, format_compare, write_compare

    target = Path.cwd() if out_dir is None else out_dir
    check_folder(target, "--out", "pass a folder")  # before any work, so a bad path never costs the comparison
    r = compare_runs(run_a, run_b, allow_incomplete=allow_incomplete)
    sys.stdout.write(format_compare(r))
    for line in r.get("incomplete") or []:
        from rich.markup import escape

        err.print(f"[bold yellow]warning:[/] {escape(line)} — compared its finished units only (--allow-incomplete)",
                  highlight=False, soft_wrap=True)
    md, _ = write_compare(r, target)
    out.print(f"written: {md}", highlight=False, soft_wrap=True)
