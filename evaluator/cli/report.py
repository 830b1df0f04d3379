"""`tunecheck report RUN`: rewrite report.md, report.json and report.html from the stored results; no model loads."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from evaluator.cli.base import app, friendly


@app.command()
@friendly
def report(
    run_dir: Path = typer.Argument(..., help="A run folder (runs/<run-id>)."),
    reference_curves: str | None = typer.Option(
        None, "--reference-curves", metavar="NAMES",
        help="Overlay published learning curves on the learning-curve figures: banking77, clinic150, trec "
             "(comma-separated), all, or none; default: the job's reference_curves."),
) -> None:
    """(Re)write report.html, report.md and report.json from a run folder's stored results; no model is loaded."""
    from evaluator.analysis.references import references
    from evaluator.report.build import write_reports
    from evaluator.report.markdown import render_markdown
    from evaluator.store.run_store import RunStore

    names = None
    if reference_curves is not None:
        names = [] if reference_curves.strip().lower() == "none" else [r.name for r in references(reference_curves)]
    rep = write_reports(RunStore.open(run_dir), reference_curves=names)
    sys.stdout.write(render_markdown(rep))
