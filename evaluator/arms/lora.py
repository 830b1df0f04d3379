"""Adapters as assets: a standard peft folder plus `tunecheck-adapter.json`, reused by key, checked against its base.

    adapters/<task>/<base>/n<n>-r<r>-<key>/
        adapter_config.json, adapter_model.safetensors   standard peft format (PeftModel.from_pretrained loads it)
        tunecheck-adapter.json                            base identity (id, revision, config hash, weight probe),
                                                          task, data hash, hyper-parameters, metrics, timings

The key hashes what changes the adapter (base id/revision/size, task, data, hyper-parameters, seed, prompt format):
the same key is reused, never retrained. An adapter is only loaded onto the base it was trained on: architecture,
parameter count and a small probe of the weights must match, so a different base — even one of the same shape and
size — is refused with one line naming both (UserError → exit 2). Used by the runner (arm B) and by
`tunecheck train` / `tunecheck eval`; DDP-aware (under `accelerate launch` only the main process writes files).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
import warnings
from pathlib import Path
from typing import Any, Callable

from evaluator.arms.adapters import (
    ADAPTER_META,
    FORMAT,
    adapter_dir,
    adapter_key,
    base_identity,
    check_base,
    hp_dict,
    prompt_signature,
    read_meta,
)
from evaluator.config.arms import LoraArm
from evaluator.errors import UserError
from evaluator.faults import checkpoint
from evaluator.prompts.tokenized import TokenizedPrompts
from evaluator.store.files import atomic_write_json
from evaluator.tasks.layout import PromptBuilder
from evaluator.tasks.spec import Item, Task
from evaluator.training.adapter import lora_target_problem
from evaluator.training.data import Example
from evaluator.training.distributed import barrier, is_main_process
from evaluator.training.loop import train_lora
from evaluator.training.sweep import SweepRun, SweepUnsupported, sweep_problem, train_lora_sweep
from evaluator.version import __version__

# --------------------------------------------------------------------------------------------------------------------
# Processes (accelerate launch sets WORLD_SIZE / RANK / LOCAL_RANK)
# --------------------------------------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------------------------------------
# Base identity
# --------------------------------------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------------------------------------
# Metadata
# --------------------------------------------------------------------------------------------------------------------


def _peft_load(model, folder: Path, offload_folder: str | None = None):
    """PeftModel.from_pretrained, with a damaged adapter (corrupt weights, wrong shapes) as one line."""
    from peft import PeftModel

    try:
        with warnings.catch_warnings():  # re-dispatching an offloaded base, peft first copies into its meta tensors
            warnings.filterwarnings("ignore", message=".*copying from a non-meta parameter in the checkpoint to a meta")
            return PeftModel.from_pretrained(model, str(folder), **_same_placement(model, offload_folder))
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        why = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"adapter {folder} could not be loaded ({why}) — delete it and train it again") from None
    except Exception as exc:  # safetensors.SafetensorError is neither OSError nor ValueError
        if type(exc).__name__ != "SafetensorError":
            raise
        why = str(exc).strip().splitlines()[0]
        raise UserError(f"{Path(folder) / 'adapter_model.safetensors'} is truncated or corrupt ({why}) — delete {folder} and train the adapter again") from None


def _same_placement(model, offload_folder: str | None) -> dict:
    """For a base dispatched with cpu / disk offload (device_map), peft takes the hooks off, loads the adapter and
    dispatches the model again — by default onto a fresh `auto` map, without an offload folder; this keeps the
    base's own map (named from the peft wrapper) and folder. Nothing for a model on GPUs alone or on one device."""
    dmap = getattr(model, "hf_device_map", None) or {}
    if not {"cpu", "disk"} & set(map(str, dmap.values())):
        return {}
    return {"device_map": {f"base_model.model.{k}" if k else "base_model.model": v for k, v in dmap.items()},
            "offload_folder": offload_folder}


def check_target_modules(model, hp: LoraArm) -> None:
    """Refuse LoRA target modules the model does not have (or that LoRA cannot adapt), before any arm runs.

    `model` is the loaded base: a LoadedModel or its torch model (lm.model). `hp.target_modules` None means the
    architecture's default set. Raises UserError naming the missing modules and some linear layers that exist."""
    torch_model = getattr(model, "model", model) if hasattr(model, "tokenizer") else model
    why = lora_target_problem(torch_model, hp.target_modules)
    if why:
        raise UserError(why)


def build_examples(task: Task, tp: TokenizedPrompts, items: list[Item], tokenizer) -> list[Example]:
    """Zero-shot prompt (the scorer's exact token ids) as context, target continuation (+ EOS for free-form) as answer;
    a chat task trains on its chat prompt and the assistant's reply, as it is scored.

    Format tokens of the answer are marked, so validation metrics read the answer's own tokens only: the EOS, and
    the continuation's leading ids that equal the target delimiter's own ids (those hold delimiter text only; a
    delimiter merged into the answer's first token, as " " usually is, leaves none)."""
    prefix0 = tp.prefix_ids(0)
    eos = [tokenizer.eos_token_id] if task.spec.kind == "generate" and tokenizer.eos_token_id is not None else []
    delim = tp.builder.scored_delimiter  # chat: the generation prompt's trailing whitespace, scored with the answer
    delim_ids = list(tokenizer(delim, add_special_tokens=False)["input_ids"]) if delim else []

    def example(it: Item) -> Example:
        cont = tp.continuation_ids(it.target, it, 0)
        head = 0
        while head < min(len(delim_ids), len(cont) - 1) and cont[head] == delim_ids[head]:
            head += 1
        return Example(prefix0 + tp.item_ids(it, 0), cont + eos, format_head=head, format_tail=len(eos))

    return [example(it) for it in items]


def resolve_root(path: str | Path) -> Path:
    root = Path(path).expanduser()
    return root if root.is_absolute() else Path.cwd() / root


def train_or_reuse(
    lm,
    task: Task,
    n: int,
    hp: LoraArm,
    seed: int,
    root: Path,
    *,
    log: Callable[[str], None] = print,
    on_step: Callable[[Any], Any] | None = None,
):
    """The adapter for (base, task, first n train items, hp, seed): reused if stored, else trained and stored.

    Returns (peft_model, meta, folder). The adapter is written to `<folder>.partial` and renamed when complete, so an
    interrupted training never leaves a folder that looks finished."""
    train_items = list(task.train[:n])
    tp = TokenizedPrompts(PromptBuilder(task, seed), lm.tokenizer)
    hpd = hp_dict(hp)
    key = adapter_key(lm.fingerprint, task, train_items, hpd, seed, prompt_signature(tp))
    out = adapter_dir(root, task.name, lm.source.slug, n, hp.r, key)
    identity = base_identity(lm)
    if (out / ADAPTER_META).is_file():
        meta = read_meta(out)
        check_base(meta, identity, out)
        log(f"reusing adapter {out} (trained {meta['training']['train_seconds']:.1f}s)")
        return _peft_load(lm.model, out, lm.offload_folder), meta, out
    examples = build_examples(task, tp, train_items, lm.tokenizer)
    tmp = out.with_name(out.name + ".partial")
    peft_model, res = train_lora(
        lm.model, examples, hp, tmp, seed=seed, pad_id=lm.tokenizer.pad_token_id, device=lm.device, log=log,
        on_step=on_step,
    )
    meta = _store_adapter(task, n, train_items, hpd, seed, identity, key, res, tmp, out, log)
    return peft_model, meta, out


def _store_adapter(task: Task, n: int, train_items: list[Item], hpd: dict, seed: int, identity: dict, key: str, res,
                   tmp: Path, out: Path, log: Callable[[str], None]) -> dict:
    """Write a trained adapter's metadata into its `.partial` folder and rename that to `out` (main process; every
    process waits), then log one line; returns the metadata. Shared by `train_or_reuse` and `train_sweep`."""
    meta = {
        "format": FORMAT,
        "tunecheck_version": __version__,
        "base": identity,
        "task": task.name,
        "train_size": n,
        "data_hash": task.data_hash(train_items),
        "train_item_ids": [it.id for it in train_items],
        "hyperparameters": hpd,
        "seed": seed,
        "prompt_format": {"instruction": task.spec.instruction, "template": task.spec.prompt},
        "metrics": {
            "train_loss": res.final_loss,
            "best_val_loss": res.best_val_loss,
            "best_val_accuracy": res.best_val_accuracy,
            "val_curve": res.val_curve,
            "val_accuracy_curve": res.val_accuracy_curve,
            "val_metrics_on": "answer tokens only (format tokens — a lone target delimiter, EOS — excluded)",
            "stopped_early": res.stopped_early,
        },
        "training": res.as_dict() | {"adapter_dir": str(out)},
        "evaluations": [],
        "key": key,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    if is_main_process():
        atomic_write_json(tmp / ADAPTER_META, meta)
        if out.exists():  # a stale incomplete folder (no metadata) from an interrupted run
            shutil.rmtree(out)
        tmp.rename(out)
        checkpoint("adapter_saved")
    barrier()
    held = f" ({res.train_items} trained, {res.val_items} held out)" if res.val_items else ""
    val = ""
    if res.best_val_loss is not None:
        val = (f", best val loss {res.best_val_loss:.3f} / accuracy {res.best_val_accuracy:.3f} on answer tokens "
               f"at step {res.best_step}")
    log(
        f"trained adapter n={n}{held} in {res.train_seconds:.1f}s ({res.steps} steps, {res.tokens_per_second:.0f} "
        f"tok/s, loss {res.final_loss:.3f}{val}) → {out}"
    )
    return meta


def train_sweep(
    lm,
    task: Task,
    sizes: list[int],
    hp: LoraArm,
    seed: int,
    root: Path,
    *,
    log: Callable[[str], None] = print,
    on_step: Callable[[int, Any], Any] | None = None,
) -> dict[int, Path]:
    """Train the learning-curve sweep's missing adapters — (base, task, first n train items, hp, seed) for each n of
    `sizes` not stored yet — together, in one `train_lora_sweep` job, and store each exactly as `train_or_reuse`
    does (the same key and folder, metadata written into `<folder>.partial`, then renamed), so that
    `train_or_reuse(lm, task, n, hp, seed, root)` afterwards reuses it. Stored adapters are left as they are.

    Returns {n: folder} of the adapters trained here. Trains nothing (returns {}) when fewer than two are missing
    or the sweep cannot run here (`sweep_problem`: a distributed launch, float16 weights, layers the sweep does not
    adapt; said through `log`): `train_or_reuse` then trains each adapter on its own, as before.
    `on_step(n, StepInfo)` after each optimiser step of adapter n. `lm.model` is left without adapters."""
    tp = TokenizedPrompts(PromptBuilder(task, seed), lm.tokenizer)
    hpd = hp_dict(hp)
    missing = []
    for n in dict.fromkeys(int(n) for n in sizes):
        train_items = list(task.train[:n])
        key = adapter_key(lm.fingerprint, task, train_items, hpd, seed, prompt_signature(tp))
        out = adapter_dir(root, task.name, lm.source.slug, n, hp.r, key)
        if not (out / ADAPTER_META).is_file():
            missing.append((n, train_items, key, out))
    if len(missing) < 2:
        return {}
    why = sweep_problem(lm.model, hp)
    if why:
        log(f"training the {len(missing)} adapters of {task.name} one at a time: the sweep cannot run with {why}")
        return {}
    identity = base_identity(lm)
    runs = [SweepRun(build_examples(task, tp, items, lm.tokenizer), seed, out.with_name(out.name + ".partial"))
            for _, items, _, out in missing]
    sizes_of = [n for n, _, _, _ in missing]
    log(f"training {len(runs)} LoRA adapters of {task.name} together (n = {', '.join(map(str, sizes_of))})")
    try:
        results = train_lora_sweep(
            lm.model, runs, hp, pad_id=lm.tokenizer.pad_token_id, device=lm.device, log=log,
            on_step=None if on_step is None else (lambda i, info: on_step(sizes_of[i], info)),
        )
    except SweepUnsupported as exc:
        log(f"training the {len(missing)} adapters of {task.name} one at a time: {exc}")
        return {}
    for (n, train_items, key, out), run, (_, res) in zip(missing, runs, results):
        _store_adapter(task, n, train_items, hpd, seed, identity, key, res, run.out_dir, out, log)
    return {n: out for n, _, _, out in missing}


def load_adapter(lm, folder: Path, meta: dict[str, Any]):
    """PeftModel on lm.model after the base check (raises UserError on a mismatch)."""
    check_base(meta, base_identity(lm), Path(folder))
    return _peft_load(lm.model, Path(folder), lm.offload_folder)


# --------------------------------------------------------------------------------------------------------------------
# Evaluation of one model (base or adapter) on a task
# --------------------------------------------------------------------------------------------------------------------


def evaluate(model, tokenizer, task: Task, items: list[Item], *, seed: int, shots: int, context: int,
             engine: str = "auto", batch_tokens: int = 4096, shots_cap: int = 256) -> tuple[dict[str, Any], list[dict]]:
    """Score items (the same prompts and scorer as the runner's units). Returns (summary, per-item rows)."""
    from evaluator.analysis.estimates import estimate
    from evaluator.arms.evaluate import CHUNK_ITEMS, resolve_shots
    from evaluator.arms.rows import choice_rows, generate_rows
    from evaluator.engine.scorer import PrefixScorer

    tp = TokenizedPrompts(PromptBuilder(task, seed), tokenizer)
    k, how = resolve_shots(shots, tp, items, context, shots_cap)
    t0 = time.perf_counter()
    scorer = PrefixScorer(model, tp.prefix_ids(k), mode=engine, max_batch_tokens=batch_tokens)
    rows: list[dict] = []
    for s in range(0, len(items), CHUNK_ITEMS):
        chunk = items[s : s + CHUNK_ITEMS]
        rows += choice_rows(task, tp, scorer, chunk, k) if task.spec.kind == "choice" else generate_rows(task, tp, scorer, chunk, tokenizer, k)
    est = estimate([float(r["score"]) for r in rows])
    summary = {
        "task": task.name,
        "metric": task.spec.metric,
        **est.as_dict(),
        "shots": k,
        "shots_how": how,
        "n_items": len(rows),
        "item_ids_hash": hashlib.sha256(json.dumps([r["item_id"] for r in rows]).encode()).hexdigest()[:16],
        "engine": scorer.mode,
        "eval_seconds": time.perf_counter() - t0,
    }
    return summary, rows


def record_evaluation(folder: Path, meta: dict[str, Any], entry: dict[str, Any]) -> bool:
    """Keep the latest result per (task, shots, items, model) in the adapter's metadata. False if not writable."""
    keep = [
        e for e in meta.get("evaluations", [])
        if (e.get("task"), e.get("shots"), e.get("item_ids_hash"), e.get("model"))
        != (entry.get("task"), entry.get("shots"), entry.get("item_ids_hash"), entry.get("model"))
    ]
    meta = dict(meta, evaluations=keep + [entry])
    try:
        atomic_write_json(Path(folder) / ADAPTER_META, meta)
    except OSError:
        return False
    return True


# --------------------------------------------------------------------------------------------------------------------
# `tunecheck train` / `tunecheck eval`
# --------------------------------------------------------------------------------------------------------------------


def lora_hp(base: LoraArm, overrides: dict[str, Any]) -> LoraArm:
    """base hyper-parameters with the options given on the command line (None = not given), validated."""
    from pydantic import ValidationError

    from evaluator.config.validation import format_validation_error

    data = base.model_dump() | {k: v for k, v in overrides.items() if v is not None}
    try:
        return LoraArm.model_validate(data)
    except ValidationError as err:
        raise UserError(format_validation_error(err, "training options")) from None


