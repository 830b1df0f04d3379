"""`tunecheck eval --adapter DIR`: evaluate one stored adapter on a task's test items."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Optional

import typer

from evaluator.arms.adapters import read_meta, recorded_base_spec
from evaluator.arms.lora import (
    evaluate,
    load_adapter,
    record_evaluation,
)
from evaluator.cli.base import app, check_output_file, friendly, out
from evaluator.cli.train import DEVICE_MAP_HELP, _load, _quiet_loading, check_device_map_option
from evaluator.models.load import check_device_and_dtype


@app.command("eval")
@friendly
def eval_adapter(
    adapter: Path = typer.Option(..., help="A stored adapter folder (adapters/<task>/<base>/n<n>-r<r>-<key>)."),
    task: Optional[str] = typer.Option(None, help="Task to evaluate on (default: the adapter's task)."),
    model: Optional[str] = typer.Option(None, help="Base model to load it onto (default: the adapter's recorded base); must be that base."),
    shots: int = typer.Option(0, min=0, help="Demonstrations in the prompt (default 0: zero-shot, as trained)."),
    limit: Optional[int] = typer.Option(None, min=1, help="Only the first N test items."),
    device: str = typer.Option("auto", help="auto | cpu | cuda | cuda:N."),
    dtype: str = typer.Option("auto", help="auto | float32 | bfloat16 | float16."),
    model_cache: Optional[Path] = typer.Option(None, help="Where built-in models are converted to."),
    device_map: Optional[str] = typer.Option(None, help=DEVICE_MAP_HELP),
    output: Optional[Path] = typer.Option(None, help="Also write the summary and per-item results to this JSON file."),
) -> None:
    """Evaluate a stored adapter on a task; refuses an adapter whose base does not match the model (exit 2)."""
    from evaluator.store.files import atomic_write_json

    if output is not None:  # checked before the evaluation, so a bad path never costs its result
        check_output_file(output, "--output")
    summary, rows = eval_command(adapter=adapter, task=task, model=model, shots=shots, limit=limit, device=device,
                                 dtype=dtype, model_cache=model_cache, device_map=device_map)
    out.print(
        f"eval task={summary['task']} {summary['metric']}={summary['value']:.4f} "
        f"ci=[{summary['ci_low']:.4f},{summary['ci_high']:.4f}] n={summary['n_items']} shots={summary['shots']} "
        f"model={summary['model']} adapter={summary['adapter']}",
        highlight=False, soft_wrap=True,
    )
    if output is not None:
        atomic_write_json(output, {"summary": summary, "items": rows})


def eval_command(*, adapter: Path, task: str | None = None, model: str | None = None, shots: int = 0,
                 limit: int | None = None, device: str = "auto", dtype: str = "auto", model_cache: Path | None = None,
                 engine: str = "auto", record: bool = True, device_map: str | None = None) -> tuple[dict[str, Any], list[dict]]:
    """Evaluate a stored adapter on a task's test items (its own task by default), on its own base by default."""
    from evaluator.tasks.load import load_task, task_search_dirs

    check_device_and_dtype(device, dtype)  # before anything loads
    check_device_map_option(device_map, device)
    _quiet_loading()
    adapter = Path(adapter).expanduser().resolve()
    meta = read_meta(adapter)
    t = load_task(task or meta["task"], task_search_dirs(Path.cwd()))
    spec = model or recorded_base_spec(meta)
    lm = _load(spec, device, dtype, model_cache, device_map)
    peft_model = load_adapter(lm, adapter, meta)
    items = list(t.test[:limit] if limit else t.test)
    summary, rows = evaluate(peft_model, lm.tokenizer, t, items, seed=int(meta.get("seed", 1234)), shots=shots,
                             context=lm.context_window, engine=engine)
    summary = {"adapter": str(adapter), "key": meta.get("key"), "model": spec, **summary,
               "evaluated_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    if record:
        summary["recorded"] = record_evaluation(adapter, meta, {k: v for k, v in summary.items() if k != "adapter"})
    return summary, rows
