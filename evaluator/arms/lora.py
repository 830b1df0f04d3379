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

import contextlib
import hashlib
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any, Callable

from evaluator import __version__
from evaluator.arms.evaluate import adapter_dir, adapter_key
from evaluator.config.job import LoraArm
from evaluator.errors import UserError
from evaluator.models.load import PICKLE_SUFFIXES, check_device_and_dtype, check_safetensors_file
from evaluator.faults import checkpoint
from evaluator.prompts.builder import PromptBuilder, TokenizedPrompts
from evaluator.store.run_store import atomic_write_json, read_json
from evaluator.tasks.load import Item, Task
from evaluator.training.loop import Example, lora_target_problem, train_lora

ADAPTER_META = "tunecheck-adapter.json"
FORMAT = "tunecheck-adapter/1"
HP_EXCLUDE = {"enabled", "train_sizes", "eval_shots"}  # arm settings that do not change an adapter


# --------------------------------------------------------------------------------------------------------------------
# Processes (accelerate launch sets WORLD_SIZE / RANK / LOCAL_RANK)
# --------------------------------------------------------------------------------------------------------------------


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def barrier() -> None:
    if world_size() > 1:
        from accelerate.state import PartialState

        PartialState().wait_for_everyone()


def process_device(device: str) -> str:
    """Under a multi-process launch each process loads the model onto its own GPU (not all onto cuda:0)."""
    if world_size() <= 1 or device not in ("auto", "cuda"):
        return device
    import torch

    if os.environ.get("ACCELERATE_USE_CPU", "").lower() in {"1", "true", "yes"} or not torch.cuda.is_available():
        return "cpu"
    local = int(os.environ.get("LOCAL_RANK", "0"))
    torch.cuda.set_device(local)
    return f"cuda:{local}"


# --------------------------------------------------------------------------------------------------------------------
# Base identity
# --------------------------------------------------------------------------------------------------------------------


def weights_probe(model, per_tensor: int = 16, n_tensors: int = 4) -> list[float]:
    """A few weight values spread over the first and last matrices: tells apart bases of the same architecture and
    size (other seeds, fine-tunes, revisions), yet matches the same weights loaded in another dtype or device."""
    import torch

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    mats = sorted(
        ((n.replace(".base_layer", ""), p) for n, p in base.named_parameters() if p.dim() == 2 and "lora_" not in n),
        key=lambda t: t[0],
    )
    chosen = mats[: n_tensors - 1] + mats[-1:] if len(mats) >= n_tensors else mats
    vals: list[float] = []
    with torch.no_grad():
        for _, p in chosen:
            flat = p.detach().reshape(-1)
            # integer spacing: a float32 linspace rounds past the last index on large matrices (e.g. embeddings)
            idx = (torch.arange(per_tensor, dtype=torch.long) * (flat.numel() - 1) // max(1, per_tensor - 1)).to(flat.device)
            vals += [round(float(v), 6) for v in flat.index_select(0, idx).float().cpu()]
    return vals


def base_identity(lm) -> dict[str, Any]:
    """lm.fingerprint (source, path, model_type, revision, parameter count) + config hash + weight probe."""
    ident = dict(lm.fingerprint)
    cfg = Path(lm.path) / "config.json"
    ident["config_sha256"] = hashlib.sha256(cfg.read_bytes()).hexdigest()[:16] if cfg.is_file() else None
    ident["weights_probe"] = weights_probe(lm.model)
    return ident


def describe_base(b: dict[str, Any]) -> str:
    n = b.get("num_parameters")
    size = f"{n:,} parameters" if isinstance(n, int) else "unknown size"
    return f"'{b.get('source') or b.get('name_or_path') or '?'}' ({b.get('model_type') or '?'}, {size})"


def base_mismatch(recorded: dict[str, Any], current: dict[str, Any]) -> str | None:
    """Why an adapter trained on `recorded` cannot be loaded onto `current` (None: it can)."""
    if recorded.get("model_type") and recorded.get("model_type") != current.get("model_type"):
        return "different architecture"
    if recorded.get("num_parameters") and recorded.get("num_parameters") != current.get("num_parameters"):
        return "different size"
    a, b = recorded.get("weights_probe"), current.get("weights_probe")
    if a and b:
        if len(a) != len(b) or any(abs(x - y) > 1e-3 + 1e-2 * abs(y) for x, y in zip(a, b)):
            return "same architecture and size, different weights"
    return None


def check_base(meta: dict[str, Any], current: dict[str, Any], where: Path) -> None:
    rec = meta.get("base") or {}
    why = base_mismatch(rec, current)
    if why:
        raise UserError(
            f"adapter {where} was trained on base {describe_base(rec)} but the model given is {describe_base(current)} "
            f"({why}) — an adapter only works on its own base: evaluate it with --model {rec.get('source')} or "
            f"train one for this base with `tunecheck train`"
        )


# --------------------------------------------------------------------------------------------------------------------
# Metadata
# --------------------------------------------------------------------------------------------------------------------


def read_meta(folder: Path) -> dict[str, Any]:
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"adapter folder {folder} does not exist — check the path")
    if not (folder / "adapter_config.json").is_file():
        raise UserError(f"{folder} is not a peft adapter folder (no adapter_config.json)")
    if not (folder / "adapter_model.safetensors").is_file():
        pickled = [p.name for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES]
        what = f"only pickle weights ({pickled[0]}), which are refused" if pickled else "no adapter_model.safetensors"
        raise UserError(f"adapter folder {folder} has {what} — retrain it (tunecheck saves safetensors)")
    path = folder / ADAPTER_META
    if not path.is_file():
        raise UserError(f"{folder} has no {ADAPTER_META}: it was not trained by tunecheck (or did not finish) — retrain it")
    meta = read_json(path)
    if not isinstance(meta, dict):
        raise UserError(f"{path} is not tunecheck adapter metadata (a JSON {_json_kind(meta)}, not an object) — retrain the adapter")
    if not str(meta.get("format", "")).startswith("tunecheck-adapter/"):
        raise UserError(f"{path} is not tunecheck adapter metadata (no 'format': 'tunecheck-adapter/…') — retrain the adapter")
    why = meta_problem(meta)
    if why:
        raise UserError(f"{path} is damaged tunecheck adapter metadata: {why} — retrain the adapter (delete {folder} first)")
    check_safetensors_file(folder / "adapter_model.safetensors", f"delete {folder} and train the adapter again")
    return meta


def _json_kind(v: Any) -> str:
    return {list: "list", str: "string", bool: "boolean", int: "number", float: "number", type(None): "null"}.get(type(v), type(v).__name__)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


# field -> (check, what it must be); optional fields are checked only when present
_META_REQUIRED: dict[str, tuple[Callable[[Any], bool], str]] = {
    "task": (lambda v: isinstance(v, str) and bool(v.strip()), "a task name"),
    "base": (lambda v: isinstance(v, dict), "an object describing the base model"),
    "key": (lambda v: isinstance(v, str) and bool(v), "the adapter key (a string)"),
    "training": (lambda v: isinstance(v, dict), "an object of training measurements"),
}
_META_OPTIONAL: dict[str, tuple[Callable[[Any], bool], str]] = {
    "seed": (lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer"),
    "evaluations": (lambda v: isinstance(v, list) and all(isinstance(e, dict) for e in v), "a list of objects"),
    "hyperparameters": (lambda v: isinstance(v, dict), "an object"),
    "train_size": (lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer"),
}
_TRAINING_NUMBERS = ("train_seconds", "steps", "tokens_seen", "peak_mem_mb", "adapter_bytes")


def meta_problem(meta: dict[str, Any]) -> str | None:
    """What is wrong with the shape of adapter metadata (valid JSON, but not what tunecheck wrote), or None."""
    for name, (ok, what) in _META_REQUIRED.items():
        if name not in meta:
            return f"field '{name}' is missing"
        if not ok(meta[name]):
            return f"field '{name}' must be {what}, got {_json_kind(meta[name])}"
    for name, (ok, what) in _META_OPTIONAL.items():
        if name in meta and not ok(meta[name]):
            return f"field '{name}' must be {what}, got {_json_kind(meta[name])}"
    for name in _TRAINING_NUMBERS:
        v = meta["training"].get(name)
        if not _is_num(v):
            return f"field 'training.{name}' must be a number, got {'nothing' if name not in meta['training'] else _json_kind(v)}"
    for name in ("source", "path"):
        v = meta["base"].get(name)
        if v is not None and not isinstance(v, str):
            return f"field 'base.{name}' must be a string, got {_json_kind(v)}"
    return None


def _peft_load(model, folder: Path):
    """PeftModel.from_pretrained, with a damaged adapter (corrupt weights, wrong shapes) as one line."""
    from peft import PeftModel

    try:
        return PeftModel.from_pretrained(model, str(folder))
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        why = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"adapter {folder} could not be loaded ({why}) — delete it and train it again") from None
    except Exception as exc:  # safetensors.SafetensorError is neither OSError nor ValueError
        if type(exc).__name__ != "SafetensorError":
            raise
        why = str(exc).strip().splitlines()[0]
        raise UserError(f"{Path(folder) / 'adapter_model.safetensors'} is truncated or corrupt ({why}) — delete {folder} and train the adapter again") from None


def check_target_modules(model, hp: LoraArm) -> None:
    """Refuse LoRA target modules the model does not have (or that LoRA cannot adapt), before any arm runs.

    `model` is the loaded base: a LoadedModel or its torch model (lm.model). `hp.target_modules` None means the
    architecture's default set. Raises UserError naming the missing modules and some linear layers that exist."""
    torch_model = getattr(model, "model", model) if hasattr(model, "tokenizer") else model
    why = lora_target_problem(torch_model, hp.target_modules)
    if why:
        raise UserError(why)


def hp_dict(hp: LoraArm) -> dict[str, Any]:
    return hp.model_dump(exclude=HP_EXCLUDE)


def prompt_signature(tp: TokenizedPrompts) -> str:
    return tp.builder.signature()


def build_examples(task: Task, tp: TokenizedPrompts, items: list[Item], tokenizer) -> list[Example]:
    """Zero-shot prompt (the scorer's exact token ids) as context, target continuation (+ EOS for free-form) as answer.

    Format tokens of the answer are marked, so validation metrics read the answer's own tokens only: the EOS, and
    the continuation's leading ids that equal the target delimiter's own ids (those hold delimiter text only; a
    delimiter merged into the answer's first token, as " " usually is, leaves none)."""
    prefix0 = tp.prefix_ids(0)
    eos = [tokenizer.eos_token_id] if task.spec.kind == "generate" and tokenizer.eos_token_id is not None else []
    delim = task.spec.target_delimiter
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
    status: Callable[[str], Any] | None = None,
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
        return _peft_load(lm.model, out), meta, out
    examples = build_examples(task, tp, train_items, lm.tokenizer)
    tmp = out.with_name(out.name + ".partial")
    ctx = status(f"training LoRA n={n} on {lm.source.spec}") if status else contextlib.nullcontext()
    with ctx:
        peft_model, res = train_lora(
            lm.model, examples, hp, tmp, seed=seed, pad_id=lm.tokenizer.pad_token_id, device=lm.device, log=log
        )
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
    return peft_model, meta, out


def load_adapter(lm, folder: Path, meta: dict[str, Any]):
    """PeftModel on lm.model after the base check (raises UserError on a mismatch)."""
    check_base(meta, base_identity(lm), Path(folder))
    return _peft_load(lm.model, Path(folder))


def recorded_base_spec(meta: dict[str, Any]) -> str:
    """The model to load for an adapter: its recorded id (built-in name, hub id, absolute folder), else its folder."""
    b = meta.get("base") or {}
    src, path = b.get("source"), b.get("path")
    if src:
        p = Path(src).expanduser()
        if (not src.startswith((".", "/", "~")) and not p.exists()) or (p.is_absolute() and p.is_dir()):
            return src
    if path and Path(path).is_dir():
        return path
    if src:
        return src
    raise UserError("the adapter's metadata names no base model — pass --model")


# --------------------------------------------------------------------------------------------------------------------
# Evaluation of one model (base or adapter) on a task
# --------------------------------------------------------------------------------------------------------------------


def evaluate(model, tokenizer, task: Task, items: list[Item], *, seed: int, shots: int, context: int,
             engine: str = "auto", batch_tokens: int = 4096, shots_cap: int = 256) -> tuple[dict[str, Any], list[dict]]:
    """Score items (the same prompts and scorer as the runner's units). Returns (summary, per-item rows)."""
    from evaluator.arms.evaluate import CHUNK_ITEMS, _choice_rows, _generate_rows, resolve_shots
    from evaluator.engine.scorer import PrefixScorer
    from evaluator.analysis.estimates import estimate

    tp = TokenizedPrompts(PromptBuilder(task, seed), tokenizer)
    k, how = resolve_shots(shots, tp, items, context, shots_cap)
    t0 = time.perf_counter()
    scorer = PrefixScorer(model, tp.prefix_ids(k), mode=engine, max_batch_tokens=batch_tokens)
    rows: list[dict] = []
    for s in range(0, len(items), CHUNK_ITEMS):
        chunk = items[s : s + CHUNK_ITEMS]
        rows += _choice_rows(task, tp, scorer, chunk, k) if task.spec.kind == "choice" else _generate_rows(task, tp, scorer, chunk, tokenizer, k)
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

    from evaluator.config.job import format_validation_error

    data = base.model_dump() | {k: v for k, v in overrides.items() if v is not None}
    try:
        return LoraArm.model_validate(data)
    except ValidationError as err:
        raise UserError(format_validation_error(err, "training options")) from None


def _quiet_loading() -> None:
    """No download/loading progress bars or info logs on stderr: these commands print their own lines."""
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def _load(spec: str, device: str, dtype: str, model_cache: Path | None):
    from evaluator.models.load import check_loadable, load_model, resolve_source

    check_device_and_dtype(device, dtype)
    src = resolve_source(spec, Path.cwd())
    check_loadable(src)
    return load_model(src, device=device, dtype=dtype, cache_dir=model_cache)


def train_command(*, model: str, task: str, n: str, hp: LoraArm, seed: int, adapters_dir: Path, device: str = "auto",
                  dtype: str = "auto", model_cache: Path | None = None, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Train (or reuse) one adapter; works unchanged under `accelerate launch` (DDP)."""
    from evaluator.tasks.load import load_task, task_search_dirs

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
    lm = _load(model, device, dtype, model_cache)
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


def eval_command(*, adapter: Path, task: str | None = None, model: str | None = None, shots: int = 0,
                 limit: int | None = None, device: str = "auto", dtype: str = "auto", model_cache: Path | None = None,
                 engine: str = "auto", record: bool = True) -> tuple[dict[str, Any], list[dict]]:
    """Evaluate a stored adapter on a task's test items (its own task by default), on its own base by default."""
    from evaluator.tasks.load import load_task, task_search_dirs

    check_device_and_dtype(device, dtype)  # before anything loads
    _quiet_loading()
    adapter = Path(adapter).expanduser().resolve()
    meta = read_meta(adapter)
    t = load_task(task or meta["task"], task_search_dirs(Path.cwd()))
    spec = model or recorded_base_spec(meta)
    lm = _load(spec, device, dtype, model_cache)
    peft_model = load_adapter(lm, adapter, meta)
    items = list(t.test[:limit] if limit else t.test)
    summary, rows = evaluate(peft_model, lm.tokenizer, t, items, seed=int(meta.get("seed", 1234)), shots=shots,
                             context=lm.context_window, engine=engine)
    summary = {"adapter": str(adapter), "key": meta.get("key"), "model": spec, **summary,
               "evaluated_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    if record:
        summary["recorded"] = record_evaluation(adapter, meta, {k: v for k, v in summary.items() if k != "adapter"})
    return summary, rows
