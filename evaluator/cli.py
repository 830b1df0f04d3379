"""`tunecheck` command line: each command does one thing; errors the user can fix exit 2 with one line."""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Callable, Optional

import typer
from rich.console import Console
from rich.table import Table

from evaluator.errors import UserError

app = typer.Typer(
    help="tunecheck — does this task need fine-tuning? Runs many-shot prompting, LoRA and a newer base on the same "
    "test items and reports quality, cost and a verdict.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console()
err = Console(stderr=True)


def friendly(fn: Callable) -> Callable:
    """Turn UserError into `error: ...` + exit 2, Ctrl-C into a resume hint + exit 130."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except UserError as exc:
            err.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            err.print("interrupted — finished work is saved; run the same command again to resume")
            raise typer.Exit(130) from None

    return wrapper


@app.command()
@friendly
def run(
    job_file: Path = typer.Argument(..., help="Job YAML: tasks, base model, newer base(s), arm sweeps, seed, costs."),
    run_id: Optional[str] = typer.Option(None, help="Run folder name under output_dir (default: <job name>-<config hash>)."),
    limit: Optional[int] = typer.Option(None, min=1, help="Override the job's cap on test items."),
) -> None:
    """Run a job's three arms on the same test items; resumes where an earlier run of the same job stopped."""
    from evaluator.config import load_job
    from evaluator.runner import run_job

    job = load_job(job_file)
    if limit is not None:
        job = job.model_copy(update={"limit": limit})
    run_dir = run_job(job, job_file.resolve().parent, job_file.read_text(encoding="utf-8"), run_id)
    out.print(f"report: {run_dir / 'report.md'}")
    out.print(f"run_dir={run_dir}")


@app.command()
@friendly
def demo(
    limit: Optional[int] = typer.Option(None, min=1, help="Test items per arm point (default 60)."),
    base: Optional[str] = typer.Option(None, help="Base model: built-in name, hub id or folder (default smollm2-135m)."),
    newer: Optional[list[str]] = typer.Option(None, help="Newer base model(s) (default gemma3-270m); repeat to add more."),
    model_cache: Optional[Path] = typer.Option(None, help="Where built-in models are converted to (default ~/.cache/tunecheck/models, or $TUNECHECK_CACHE/models)."),
    output_dir: Optional[Path] = typer.Option(None, help="Parent of the run folder (default ./runs)."),
    run_id: Optional[str] = typer.Option(None, help="Run folder name (default: demo-snips-<config hash>; the same id resumes)."),
) -> None:
    """The offline demo: SNIPS intents with SmolLM2-135M (base, LoRA) vs Gemma 3 270M (newer base), on CPU.

    Models come from PyPI (GGUF wheels) and are converted once; no hub access is needed.
    """
    import time as _time

    from evaluator.demo import demo_job, prepare_models
    from evaluator.runner import run_job

    t0 = _time.perf_counter()
    job, text = demo_job(
        base=base, newer=newer, limit=limit, output_dir=str(output_dir) if output_dir else None,
        model_cache=str(model_cache) if model_cache else None,
    )
    err.print("[bold]tunecheck demo[/]: is fine-tuning needed for SNIPS intents, or do many-shot prompting / a newer base do?")
    fetch = prepare_models(job, lambda m: err.print(m, highlight=False, soft_wrap=True))
    run_dir = run_job(job, Path.cwd(), text, run_id)
    total = _time.perf_counter() - t0
    md = (run_dir / "report.md").read_text(encoding="utf-8")
    out.print(md, markup=False, highlight=False)
    from evaluator.store import RunStore

    units = RunStore.open(run_dir).units()
    out.print(f"models ready in {sum(fetch.values()):.1f}s; total {total:.1f}s; report: {run_dir / 'report.md'}")
    arms = len({u["arm"] for u in units})
    items = max((u["n_items"] for u in units), default=0)
    out.print(f"demo run_dir={run_dir} total_s={total:.1f} arms={arms} items={items}", highlight=False, soft_wrap=True)


@app.command()
@friendly
def report(run_dir: Path = typer.Argument(..., help="A run folder (runs/<run-id>).")) -> None:
    """(Re)write report.md and report.json from a run folder's stored results — no model is loaded."""
    from evaluator.report import render_markdown, write_reports
    from evaluator.store import RunStore

    rep = write_reports(RunStore.open(run_dir))
    out.print(render_markdown(rep), markup=False, highlight=False)


@app.command()
@friendly
def tasks(directory: Optional[Path] = typer.Option(None, "--dir", help="Look for task YAMLs here instead.")) -> None:
    """List the available tasks with their item counts."""
    from evaluator.tasks import list_tasks, load_task

    table = Table("task", "kind", "train", "test", "file", "description")
    found = list_tasks([directory] if directory else None)
    if not found:
        raise UserError("no task files found — add one under tasks/ (see README)")
    for path, spec, problem in found:
        if spec is None:
            table.add_row(path.stem, "-", "-", "-", str(path), f"[red]{problem}[/]")
            continue
        try:
            t = load_task(str(path))
            table.add_row(spec.name, spec.kind, str(len(t.train)), str(len(t.test)), str(path), spec.description)
        except UserError as exc:
            table.add_row(spec.name, spec.kind, "-", "-", str(path), f"[red]{exc}[/]")
    out.print(table)


def main() -> None:  # pragma: no cover - entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
