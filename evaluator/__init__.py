"""tunecheck: does this task need fine-tuning, or will long-context prompting (or a newer base) do?

The public surface, for a notebook or a script (the `tunecheck` command is built on the same calls)::

    import evaluator as tc

    job = tc.load_job("examples/demo.yaml")          # validated job (one-line UserError if it is not)
    run_dir = tc.run("examples/demo.yaml")           # run (or resume) it; returns the run folder
    store = tc.open_run(run_dir)                     # the stored run: config, unit records, per-item results
    report = tc.build_report(run_dir)                # the report dict (what report.json holds), nothing written
    verdicts = tc.decide(run_dir)                    # {task: verdict}: is fine-tuning needed here?
    costs = tc.compute_costs(run_dir, gpu_hourly_usd=3.0)  # {task: CostReport} with overridden cost inputs

Everything else is internal: packages in pipeline order (config, tasks, prompts, models, engine, training, arms,
store, analysis, costs, report, cli; see docs/ARCHITECTURE.md). Importing this module loads no torch: each call
imports what it needs.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from evaluator.version import __version__

if TYPE_CHECKING:  # pragma: no cover - names for type checkers only
    from evaluator.config.job import Job
    from evaluator.costs.compute import CostReport
    from evaluator.store.run_store import RunStore

__all__ = ["__version__", "build_report", "compute_costs", "decide", "load_job", "open_run", "run"]

# The names are verbs: `evaluator.report` and `evaluator.costs` are packages, so a function of that name here would
# be replaced by the package the first time it is imported.


def load_job(path: str | Path) -> Job:
    """Read and validate a job file; a bad field raises `UserError` with one line naming it and the fix."""
    from evaluator.config.job import load_job as _load_job

    return _load_job(path)


def run(job_file: str | Path, run_id: str | None = None, *, recompute: bool = False, limit: int | None = None) -> Path:
    """Run a job file's arms on the same test items (resuming a run of the same inputs) and write its reports.

    The same as `tunecheck run JOB`: the job is validated before any model loads; `recompute` sets aside and
    recomputes units whose inputs changed instead of refusing. Returns the run folder."""
    from evaluator.runner import run_job

    job_file = Path(job_file)
    job = load_job(job_file)
    if limit is not None:
        job = job.model_copy(update={"limit": limit})
    return run_job(job, job_file.resolve().parent, job_file.read_text(encoding="utf-8"), run_id, recompute=recompute)


def open_run(run_dir: str | Path) -> RunStore:
    """A stored run, validated as it is read (refused in one line if it is not a tunecheck run folder)."""
    from evaluator.store.run_store import RunStore

    return RunStore.open(Path(run_dir))


def build_report(run_dir: str | Path, **cost_overrides: Any) -> dict[str, Any]:
    """The report dict of a run (the content of report.json), computed from its stored results; nothing written.

    Keyword arguments override cost inputs (e.g. ``gpu_hourly_usd=3.0``), as `tunecheck cost` options do."""
    from evaluator.report.build import build_report as _build

    return _build(open_run(run_dir), cost_overrides or None)


def decide(run_dir: str | Path) -> dict[str, dict[str, Any]]:
    """{task: verdict} of a run: the outcome (e.g. 'needed', 'not needed', 'inconclusive'), the paired interval it
    rests on and the operating points compared — the report's verdict section, per task."""
    return {name: section["verdict"] for name, section in build_report(run_dir)["tasks"].items()}


def compute_costs(run_dir: str | Path, **overrides: Any) -> dict[str, CostReport]:
    """{task: CostReport} for the operating point of each arm, with cost inputs overridden by keyword."""
    from evaluator.costs.from_run import run_costs

    return run_costs(open_run(run_dir), overrides or None)
