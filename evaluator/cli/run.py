"""`tunecheck run JOB`: run (or resume) a job's three arms on the same test items."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from evaluator.cli.base import app, check_folder, check_output_file, friendly, out
from evaluator.errors import UserError


@app.command()
@friendly
def run(
    job_file: Path = typer.Argument(..., help="Job YAML: tasks, base model, newer base(s), arm sweeps, seed, costs."),
    run_id: Optional[str] = typer.Option(None, help="Run folder name under output_dir (default: <job name>-<config hash>)."),
    limit: Optional[int] = typer.Option(None, min=1, help="Override the job's cap on test items."),
    engine: Optional[str] = typer.Option(None, help="Scoring engine: auto (shared-prefix cache), plain (full re-encoding) or lm-eval (reference: simple_evaluate)."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bars (they are off anyway when stderr is not a terminal); the one-line records still print."),
    json_progress: Optional[Path] = typer.Option(None, "--json-progress", help="Append progress events (unit start/done, items, training steps, ETA) to this file as JSON lines, for schedulers."),
    recompute: bool = typer.Option(False, "--recompute", help="Recompute units whose inputs (task data, template, demonstrations, model weights, engine) changed since they were recorded, instead of refusing."),
) -> None:
    """Run a job's three arms on the same test items; resumes where an earlier run of the same job stopped."""
    from evaluator.config.job import load_job
    from evaluator.runner import run_job

    job = load_job(job_file)
    if json_progress is not None:
        check_output_file(json_progress, "--json-progress")
    if job.arms.lora.enabled:
        from evaluator.arms.lora import resolve_root

        check_folder(resolve_root(job.adapters_dir), f"adapters_dir in {job_file}", "set adapters_dir to a folder")
    if engine is not None:
        if engine not in {"auto", "packed", "plain", "lm-eval"}:
            raise UserError(f"unknown engine {engine!r} — use auto, packed, plain or lm-eval")
        job = job.model_copy(update={"engine": engine})
    if limit is not None:
        job = job.model_copy(update={"limit": limit})
    run_dir = run_job(job, job_file.resolve().parent, job_file.read_text(encoding="utf-8"), run_id, recompute=recompute, quiet=quiet,
                      json_progress=json_progress)
    from evaluator.training.distributed import is_main_process

    if not is_main_process():  # under `accelerate launch`: the main process reports
        return
    import json

    from evaluator.report.summary import summary_lines

    report = json.loads((run_dir / "report.json").read_text(encoding="utf-8"))
    out.print("\n".join(summary_lines(report, run_dir)), highlight=False, soft_wrap=True)
    out.print(f"run_dir={run_dir}")
