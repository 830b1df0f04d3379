"""The offline demo: SNIPS intents, SmolLM2-135M-Instruct as the base, Gemma 3 270M as the newer base, on CPU.

The demo is an ordinary job (the same as examples/demo.yaml, a test keeps them equal); its models are built-in names
resolved by the zoo like any other model source. Sweeps are sized for a 2-core laptop: about 5 minutes end to end.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Optional

import typer
import yaml
from pydantic import ValidationError

from evaluator.cli.base import app, check_folder, check_output_file, err, friendly, out
from evaluator.config.job import Job
from evaluator.config.validation import format_validation_error
from evaluator.errors import UserError

DEMO_JOB: dict = {
    "name": "demo-snips",
    "description": (
        "Illustrative, not a decision: 60 of SNIPS's 200 test items, of which 30% choose each arm's operating point "
        "and the other 42 test it. At differences this small a 0.02 margin needs several hundred paired test items "
        "(the verdict says how many), more than this task's test split holds, so expect an inconclusive verdict that "
        "names the side it leans to. The demo shows the method end to end on real models in a few minutes on 2 cores."
    ),
    "tasks": ["snips_intents"],
    "base": "smollm2-135m",
    "newer": ["gemma3-270m"],
    "seed": 1234,
    "limit": 60,
    "arms": {
        "prompting": {"shots": [0, 5, 32, "max"], "max_shots": 128},
        "lora": {"train_sizes": [16, 40, 100], "r": 8, "alpha": 16, "learning_rate": 0.001, "epochs": 2, "batch_size": 8},
        "newer": {"shots": [0, 5, 32]},
    },
}


def demo_job(
    *,
    base: str | None = None,
    newer: list[str] | None = None,
    limit: int | None = None,
    output_dir: str | None = None,
    model_cache: str | None = None,
    adapters_dir: str | None = None,
    api: list[str] | None = None,
    api_price_as: str | None = None,
) -> tuple[Job, str]:
    """The demo job with the user's overrides, and its YAML text (saved in the run dir as job.yaml). `api` adds API
    models (URL#MODEL or provider/model, `api:` optional) to the newer bases; `api_price_as` prices an endpoint the
    price table does not know (job `api.price_as`)."""
    data = yaml.safe_load(yaml.safe_dump(DEMO_JOB))
    for key, val in (("base", base), ("newer", newer), ("limit", limit), ("output_dir", output_dir),
                     ("model_cache", model_cache), ("adapters_dir", adapters_dir)):
        if val:
            data[key] = val
    if api:
        data["newer"] = [*data["newer"], *(a if a.startswith("api:") else f"api:{a}" for a in api)]
    if api_price_as:
        data["api"] = {"price_as": api_price_as}
    if limit and limit != DEMO_JOB["limit"]:
        data["description"] = (
            f"Illustrative, not a decision: {limit} of SNIPS's 200 test items (the Selection line says how they "
            "were used). Far more paired test items are needed to settle a 0.02 margin (the verdict says how many), "
            "so expect an inconclusive verdict that names the side it leans to."
        )
    try:
        job = Job.model_validate(data)
    except ValidationError as exc:  # a bad --api / --newer value: one line naming it, exit 2
        raise UserError(format_validation_error(exc, "tunecheck demo's options")) from None
    return job, yaml.safe_dump(data, sort_keys=False)


def prepare_models(job: Job, say) -> dict[str, float]:
    """Fetch + convert the built-in models the job names (once), timing each; other sources are left to the runner."""
    from evaluator.models import zoo

    cache = Path(job.model_cache).expanduser() if job.model_cache else None
    seconds: dict[str, float] = {}
    for name in [job.base, *job.newer]:
        if not zoo.is_builtin(name):
            continue
        say(zoo.licence_notice(name))
        t0 = time.perf_counter()
        cached = zoo.cached_path(name, cache) is not None
        path = zoo.ensure_model(name, cache_dir=cache)
        seconds[name] = time.perf_counter() - t0
        say(f"{name}: {'cached' if cached else 'fetched and converted'} at {path} ({seconds[name]:.1f}s)")
    return seconds


@app.command()
@friendly
def demo(
    limit: Optional[int] = typer.Option(None, min=1, help="Test items per arm point (default 60)."),
    base: Optional[str] = typer.Option(None, help="Base model: built-in name, hub id or folder (default smollm2-135m)."),
    newer: Optional[list[str]] = typer.Option(None, help="Newer base model(s) (default gemma3-270m); repeat to add more."),
    api: Optional[list[str]] = typer.Option(None, "--api", metavar="URL#MODEL", help="Add an API model as one more newer base: an OpenAI-compatible endpoint's /v1 URL and model name (e.g. http://127.0.0.1:8000/v1#my-model, from transformers serve or vLLM), or provider/model (e.g. openai/gpt-4o-mini, key in $OPENAI_API_KEY); repeat to add more."),
    api_price_as: Optional[str] = typer.Option(None, "--api-price-as", metavar="PROVIDER/MODEL", help="Price an endpoint the price table does not know as this model (e.g. openai/gpt-4o-mini); without it such an option is shown unpriced."),
    model_cache: Optional[Path] = typer.Option(None, help="Where built-in models are converted to (default ~/.cache/tunecheck/models, or $TUNECHECK_CACHE/models)."),
    output_dir: Optional[Path] = typer.Option(None, help="Parent of the run folder (default ./runs)."),
    run_id: Optional[str] = typer.Option(None, help="Run folder name (default: demo-snips-<config hash>; the same id resumes)."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bars (they are off anyway when stderr is not a terminal); the one-line records still print."),
    json_progress: Optional[Path] = typer.Option(None, "--json-progress", help="Append progress events (unit start/done, items, training steps, ETA) to this file as JSON lines, for schedulers."),
) -> None:
    """The offline demo: SNIPS intents with SmolLM2-135M (base, LoRA) vs Gemma 3 270M (newer base), on CPU.

    Models come from PyPI (GGUF wheels) and are converted once; no hub access is needed.
    """
    import time as _time

    from evaluator.runner import run_job

    t0 = _time.perf_counter()
    if json_progress is not None:
        check_output_file(json_progress, "--json-progress")
    job, text = demo_job(
        base=base, newer=newer, limit=limit, output_dir=str(output_dir) if output_dir else None,
        model_cache=str(model_cache) if model_cache else None, api=api, api_price_as=api_price_as,
    )
    if job.arms.lora.enabled:
        from evaluator.arms.lora import resolve_root

        check_folder(resolve_root(job.adapters_dir), "the demo's adapters folder", "run it from a folder where "
                     f"{job.adapters_dir} can be created")
    err.print("[bold]tunecheck demo[/]: is fine-tuning needed for SNIPS intents, or do many-shot prompting / a newer base do?")
    fetch = prepare_models(job, lambda m: err.print(m, highlight=False, soft_wrap=True))
    run_dir = run_job(job, Path.cwd(), text, run_id, quiet=quiet, json_progress=json_progress)
    total = _time.perf_counter() - t0
    import json

    from evaluator.report.summary import summary_lines

    report = json.loads((run_dir / "report.json").read_text(encoding="utf-8"))
    sys.stdout.write("\n".join(summary_lines(report, run_dir)) + "\n")
    from evaluator.store.run_store import RunStore

    units = RunStore.open(run_dir).units()
    out.print(f"models ready in {sum(fetch.values()):.1f}s; total {total:.1f}s", highlight=False)
    arms = len({u["arm"] for u in units})
    items = max((u["n_items"] for u in units), default=0)
    out.print(f"demo run_dir={run_dir} total_s={total:.1f} arms={arms} items={items}", highlight=False, soft_wrap=True)
