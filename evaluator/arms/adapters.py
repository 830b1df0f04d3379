"""Adapter identity: the key (base fingerprint, task data, hyper-parameters, seed, prompt signature), the folder
scheme, the metadata file and its validation, and the check that a stored adapter fits the loaded base."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Callable

from evaluator.config.arms import LoraArm
from evaluator.errors import UserError
from evaluator.models.load import PICKLE_SUFFIXES, check_safetensors_file
from evaluator.prompts.tokenized import TokenizedPrompts
from evaluator.store.files import read_json
from evaluator.tasks.spec import Task


def adapter_key(base_fingerprint: dict, task: Task, train_items, hp: dict, seed: int, prompt_sig: str) -> str:
    payload = json.dumps(
        {
            "base": {k: base_fingerprint.get(k) for k in ("source", "model_type", "num_parameters", "revision")},
            "task": task.name,
            "data": task.data_hash(train_items),
            "hp": hp,
            "seed": seed,
            "prompt": prompt_sig,
        },
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:12]


def adapter_dir(root: Path, task: str, base_slug: str, n: int, r: int, key: str) -> Path:
    from evaluator.store.files import safe_name

    return root / safe_name(task) / safe_name(base_slug) / f"n{n}-r{r}-{key}"


ADAPTER_META = "tunecheck-adapter.json"


FORMAT = "tunecheck-adapter/1"


HP_EXCLUDE = {"enabled", "train_sizes", "eval_shots", "sweep"}  # arm settings that do not change an adapter


def weights_probe(model, per_tensor: int = 16, n_tensors: int = 4) -> list[float]:
    """A few weight values spread over the first and last matrices: tells apart bases of the same architecture and
    size (other seeds, fine-tunes, revisions), yet matches the same weights loaded in another dtype or device."""
    import torch

    from evaluator.models.load import parameter_values

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    mats = sorted(
        ((n.replace(".base_layer", ""), n, p) for n, p in base.named_parameters() if p.dim() == 2 and "lora_" not in n),
        key=lambda t: t[0],
    )
    chosen = mats[: n_tensors - 1] + mats[-1:] if len(mats) >= n_tensors else mats
    vals: list[float] = []
    with torch.no_grad():
        for _, name, p in chosen:
            flat = parameter_values(base, name, p).detach().reshape(-1)  # offloaded by a device_map: from its store
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


def hp_dict(hp: LoraArm) -> dict[str, Any]:
    return hp.model_dump(exclude=HP_EXCLUDE)


def prompt_signature(tp: TokenizedPrompts) -> str:
    return tp.builder.signature()


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
