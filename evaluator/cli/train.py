"""`tunecheck train`: train (or reuse by key) one LoRA adapter; works under `accelerate launch` (DDP)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional

import typer

from evaluator.arms.lora import (
    check_target_modules,
    resolve_root,
    train_or_reuse,
)
from evaluator.cli.base import app, check_folder, err, friendly, out
from evaluator.config.arms import LoraArm
from evaluator.errors import UserError
from evaluator.models.load import check_device_and_dtype
from evaluator.training.distributed import is_main_process, process_device

DEVICE_MAP_HELP = ("auto | balanced | balanced_low_0 | sequential: spread a base larger than one GPU over the "
                   "GPUs (then CPU, disk) from one process (not under accelerate launch); needs --device auto.")


@app.command()
@friendly
def train(
    model: str = typer.Option(..., help="Base model: built-in name, hub id or folder."),
    task: str = typer.Option(..., help="Task name (see `tunecheck tasks`) or task YAML path."),
    n: str = typer.Option("64", help="Train on the first n training items, or 'all'."),
    job: Optional[Path] = typer.Option(None, help="Take seed and LoRA hyper-parameters (arms.lora) from this job file; options below override them."),
    adapters_dir: Path = typer.Option(Path("adapters"), help="Where adapters are stored (same key = reused, not retrained)."),
    seed: Optional[int] = typer.Option(None, help="Seed (default: the job's, else 1234)."),
    device: str = typer.Option("auto", help="auto | cpu | cuda | cuda:N (under accelerate launch: each process's GPU)."),
    dtype: str = typer.Option("auto", help="auto (bf16/fp16 on GPU, fp32 on CPU) | float32 | bfloat16 | float16."),
    model_cache: Optional[Path] = typer.Option(None, help="Where built-in models are converted to."),
    device_map: Optional[str] = typer.Option(None, help=DEVICE_MAP_HELP),
    r: Optional[int] = typer.Option(None, help="LoRA rank (default 8)."),
    alpha: Optional[float] = typer.Option(None, help="LoRA alpha (default 16)."),
    dropout: Optional[float] = typer.Option(None, help="LoRA dropout (default 0.05)."),
    target_modules: Optional[str] = typer.Option(None, help="Comma-separated module names (default: all attention + MLP projections of the architecture)."),
    lr: Optional[float] = typer.Option(None, "--lr", help="Learning rate (default 1e-3)."),
    epochs: Optional[float] = typer.Option(None, help="Epochs (default 2)."),
    max_steps: Optional[int] = typer.Option(None, help="Optimizer steps (overrides epochs)."),
    batch_size: Optional[int] = typer.Option(None, help="Global batch size (default 8; split across processes)."),
    val_fraction: Optional[float] = typer.Option(None, help="Validation slice for early stopping (default 0.1; used when n >= 40; 0 = none)."),
    eval_every: Optional[int] = typer.Option(None, help="Validate every N steps (default: once per epoch)."),
    patience: Optional[int] = typer.Option(None, help="Stop after this many validations without improvement (default 2)."),
    gradient_checkpointing: Optional[bool] = typer.Option(None, "--gradient-checkpointing/--no-gradient-checkpointing", help="Recompute activations in backward (less memory)."),
    shared_prefix: Optional[bool] = typer.Option(None, "--shared-prefix/--no-shared-prefix", help="Run the prompt prefix every row of a batch shares once per batch (default on; same gradients)."),
    packing: Optional[bool] = typer.Option(None, "--packing/--no-packing", help="Padding-free packed batches (default off; pays where batches carry padding)."),
) -> None:
    """Train one LoRA adapter (peft format + tunecheck-adapter.json); runs unchanged under `accelerate launch`."""
    from evaluator.arms.lora import lora_hp, resolve_root
    from evaluator.config.arms import LoraArm
    from evaluator.config.job import load_job
    from evaluator.training.distributed import is_main_process

    check_folder(resolve_root(adapters_dir), "--adapters-dir", "pass a folder")
    base_hp, base_seed = LoraArm(), 1234
    if job is not None:
        j = load_job(job)
        base_hp, base_seed = j.arms.lora, j.seed
    hp = lora_hp(base_hp, {
        "r": r, "alpha": alpha, "dropout": dropout, "learning_rate": lr, "epochs": epochs, "max_steps": max_steps,
        "batch_size": batch_size, "val_fraction": val_fraction, "eval_every": eval_every, "patience": patience,
        "gradient_checkpointing": gradient_checkpointing, "shared_prefix": shared_prefix, "packing": packing,
        "target_modules": [m.strip() for m in target_modules.split(",") if m.strip()] if target_modules else None,
    })
    res = train_command(model=model, task=task, n=n, hp=hp, seed=base_seed if seed is None else seed,
                        adapters_dir=adapters_dir, device=device, dtype=dtype, model_cache=model_cache,
                        device_map=device_map, log=lambda m: err.print(m, highlight=False, soft_wrap=True))
    if is_main_process():
        out.print(
            f"train adapter_dir={res['adapter_dir']} key={res['key']} reused={str(res['reused']).lower()} "
            f"n={res['n']} steps={res['steps']} train_s={res['train_seconds']:.2f} tokens={res['tokens_seen']} "
            f"peak_mem_mb={res['peak_mem_mb']:.0f} adapter_bytes={res['adapter_bytes']} world_size={res['world_size']}",
            highlight=False, soft_wrap=True,
        )


def _quiet_loading() -> None:
    """No download/loading progress bars or info logs on stderr: these commands print their own lines."""
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def check_device_map_option(device_map: str | None, device: str) -> None:
    """--device-map: one of the words a job's device_map takes (an explicit map needs a job file), with --device auto."""
    from evaluator.config.placement import DEVICE_MAP_WORDS
    from evaluator.training.distributed import refuse_device_map_launch

    if device_map is None:
        return
    if device_map not in DEVICE_MAP_WORDS:
        raise UserError(f"--device-map {device_map!r}: use {', '.join(DEVICE_MAP_WORDS)} (an explicit module map "
                        "goes in a job file's device_map)")
    if device != "auto":
        raise UserError(f"--device {device} with --device-map: the device map places the model — leave --device auto")
    refuse_device_map_launch(device_map)


def _load(spec: str, device: str, dtype: str, model_cache: Path | None, device_map: str | None = None):
    from evaluator.models.load import check_loadable, load_model, resolve_source

    check_device_and_dtype(device, dtype)
    check_device_map_option(device_map, device)
    src = resolve_source(spec, Path.cwd())
    check_loadable(src)
    return load_model(src, device=device, dtype=dtype, cache_dir=model_cache, device_map=device_map)


def train_command(*, model: str, task: str, n: str, hp: LoraArm, seed: int, adapters_dir: Path, device: str = "auto",
                  dtype: str = "auto", model_cache: Path | None = None, device_map: str | None = None,
                  log: Callable[[str], None] = print) -> dict[str, Any]:
    """Train (or reuse) one adapter; works unchanged under `accelerate launch` (DDP), or on one base spread over the
    GPUs by `device_map` (one process)."""
    from evaluator.tasks.load import load_task, task_search_dirs

    check_device_map_option(device_map, device)  # before process_device: device_map and a launch are refused together
    device = process_device(device)  # under `accelerate launch`: this process's GPU (or cpu)
    check_device_and_dtype(device, dtype)  # before anything loads (a job file's device gets the same check)
    _quiet_loading()
    t = load_task(task, task_search_dirs(Path.cwd()))
    if n == "all":
        n_eff = len(t.train)
    elif n.isdigit() and int(n) >= 1:
        n_eff = min(int(n), len(t.train))
    else:
        raise UserError(f"--n {n!r}: use a positive number of training items or 'all'")
    lm = _load(model, device, dtype, model_cache, device_map)
    check_target_modules(lm, hp)
    reused = False

    def _log(msg: str) -> None:
        nonlocal reused
        reused = reused or msg.startswith("reusing adapter")
        if is_main_process():
            log(msg)

    _, meta, out = train_or_reuse(lm, t, n_eff, hp, seed, resolve_root(adapters_dir), log=_log)
    tr = meta["training"]
    return {"adapter_dir": str(out), "key": meta["key"], "reused": reused, "task": t.name, "n": n_eff,
            "train_seconds": tr["train_seconds"], "steps": tr["steps"], "tokens_seen": tr["tokens_seen"],
            "tokens_per_second": tr.get("tokens_per_second"), "peak_mem_mb": tr["peak_mem_mb"],
            "adapter_bytes": tr["adapter_bytes"], "world_size": tr.get("world_size", 1)}
