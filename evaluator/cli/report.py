"""`tunecheck report RUN`: rewrite report.md, report.json and report.html from the stored results; no model loads."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from evaluator.cli.base import app, friendly


@app.command()
@friendly
def report(run_dir: Path = typer.Argument(..., help="A run folder (runs/<run-id>).")) -> None:
    """(Re)write report.html, report.md and report.json from a run folder's stored results; no model is loaded."""
    from evaluator.report.build import write_reports
    from evaluator.report.markdown import render_markdown
    from evaluator.store.run_store import RunStore

    rep = write_reports(RunStore.open(run_dir))
    sys.stdout.write(render_markdown(rep))
