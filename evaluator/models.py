"""Model sources (local folder, hub id, built-in name) and loading them the ordinary transformers way.

Secure defaults: `trust_remote_code` only when asked, safetensors only unless pickle is explicitly allowed.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from evaluator.errors import UserError

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass(frozen=True)
class ModelSource:
    spec: str  # what the user wrote
    kind: Literal["local", "hub", "builtin"]
    ref: str  # folder path, hub id or built-in name

    @property
    def slug(self) -> str:
        """A filesystem-safe short name for run/adapters paths."""
        base = self.ref if self.kind != "local" else Path(self.ref).name
        return re.sub(r"[^A-Za-z0-9_.-]+", "-", base.replace("/", "--")).strip("-.")[:60] or "model"


def resolve_source(spec: str, base_dir: Path | None = None) -> ModelSource:
    """Classify a model reference without loading it; a local path must exist and hold a config.json."""
    from evaluator import zoo

    if zoo.is_builtin(spec):
        return ModelSource(spec, "builtin", spec)
    p = Path(spec).expanduser()
    looks_local = spec.startswith((".", "/", "~")) or p.exists() or (base_dir is not None and (base_dir / p).exists())
    if looks_local:
        for cand in ([p] if p.is_absolute() else [Path.cwd() / p, *([base_dir / p] if base_dir else [])]):
            if cand.is_dir():
                if not (cand / "config.json").is_file():
                    raise UserError(f"model folder {cand} has no config.json — it is not a transformers model folder")
                return ModelSource(spec, "local", str(cand.resolve()))
        raise UserError(f"model path {spec} does not exist — check the path, or use a hub id or a built-in name ({', '.join(zoo.BUILTIN)})")
    if HUB_ID.match(spec):
        return ModelSource(spec, "hub", spec)
    raise UserError(f"model {spec!r} is not a local folder, a hub id (org/name) or a built-in name ({', '.join(zoo.BUILTIN)})")


def materialise(source: ModelSource, cache_dir: Path | None = None) -> str:
    """Where transformers should load from: the folder, the hub id, or the built-in's cached conversion."""
    if source.kind == "builtin":
        from evaluator import zoo

        try:
            return str(zoo.ensure_model(source.ref, cache_dir=cache_dir))
        except zoo.ZooError as exc:
            raise UserError(str(exc)) from None
    return source.ref


PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")


def check_weights_format(source: ModelSource, allow_pickle: bool = False) -> None:
    """A local folder whose weights exist only as pickle files is refused (unpickling can run code) unless allowed."""
    if source.kind != "local" or allow_pickle:
        return
    folder = Path(source.ref)
    if any(folder.glob("*.safetensors")):
        return
    pickles = sorted(p.name for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES)
    if not pickles:
        raise UserError(f"model folder {folder} has no weight files (*.safetensors) — save the model there with save_pretrained")
    raise UserError(
        f"model {source.spec} has only pickle weights ({pickles[0]}); loading them can run code — convert them to "
        f"safetensors, or set allow_pickle: true if you trust the files"
    )


def check_loadable(source: ModelSource, trust_remote_code: bool = False, allow_pickle: bool = False) -> None:
    """Fail early (before any compute) when a model is unreachable, is not a causal LM, or has only pickle weights."""
    if source.kind == "builtin":
        return
    check_weights_format(source, allow_pickle)
    from transformers import AutoConfig

    try:
        cfg = AutoConfig.from_pretrained(source.ref, trust_remote_code=trust_remote_code)
    except ValueError as exc:
        if "trust_remote_code" in str(exc):
            raise UserError(f"model {source.spec} needs custom code: pass trust_remote_code: true only if you trust it") from None
        raise UserError(f"model {source.spec}: {str(exc).splitlines()[0]}") from None
    except OSError as exc:
        where = "is not reachable on the hub (offline?)" if source.kind == "hub" else "cannot be read"
        raise UserError(f"model {source.spec} {where}: {str(exc).splitlines()[0]}") from None
    archs = getattr(cfg, "architectures", None) or []
    if archs and not any(a.endswith(("ForCausalLM", "LMHeadModel", "ForConditionalGeneration")) for a in archs):
        raise UserError(f"model {source.spec} is a {archs[0]}, not a causal language model — use a decoder (causal LM) model")
    if not trust_remote_code:
        from transformers import MODEL_FOR_CAUSAL_LM_MAPPING

        if type(cfg) not in MODEL_FOR_CAUSAL_LM_MAPPING:
            raise UserError(f"model {source.spec} ({cfg.model_type}) has no causal language-model class in transformers — use a decoder (causal LM) model")


def pick_device(device: str) -> str:
    import torch

    if device != "auto":
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise UserError(f"device {device!r} requested but CUDA is not available — use device: auto or cpu")
        return device
    if torch.cuda.is_available():
        return "cuda"
    return "cpu"


def pick_dtype(dtype: str, device: str):
    import torch

    if dtype != "auto":
        return getattr(torch, dtype)
    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


@dataclass
class LoadedModel:
    source: ModelSource
    path: str
    model: object
    tokenizer: object
    device: str
    load_seconds: float

    @property
    def context_window(self) -> int:
        cfg = self.model.config
        n = getattr(cfg, "max_position_embeddings", None) or getattr(cfg, "n_positions", None) or 2048
        tmax = getattr(self.tokenizer, "model_max_length", None)
        if isinstance(tmax, int) and 0 < tmax < 10**7:
            n = min(n, tmax)
        return int(n)

    @property
    def fingerprint(self) -> dict:
        """Identity of the base weights for adapter metadata: id, revision/commit where known."""
        cfg = self.model.config
        return {
            "source": self.source.spec,
            "path": self.path,
            "name_or_path": getattr(cfg, "_name_or_path", ""),
            "model_type": getattr(cfg, "model_type", ""),
            "revision": getattr(cfg, "_commit_hash", None),
            "num_parameters": sum(p.numel() for p in self.model.parameters()),
        }


def load_model(
    source: ModelSource,
    *,
    device: str = "auto",
    dtype: str = "auto",
    trust_remote_code: bool = False,
    allow_pickle: bool = False,
    cache_dir: Path | None = None,
) -> LoadedModel:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    t0 = time.perf_counter()
    path = materialise(source, cache_dir)
    dev = pick_device(device)
    try:
        tok = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
        model = AutoModelForCausalLM.from_pretrained(
            path,
            dtype=pick_dtype(dtype, dev),
            trust_remote_code=trust_remote_code,
            use_safetensors=None if allow_pickle else True,
            attn_implementation="sdpa",
        )
    except (OSError, ValueError) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if "safetensors" in msg.lower() and not allow_pickle:
            raise UserError(f"model {source.spec} has no safetensors weights; pickle files are refused — convert them, or set allow_pickle: true if you trust them") from None
        raise UserError(f"model {source.spec} could not be loaded: {msg}") from None
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token or tok.unk_token
    model.to(dev)
    model.eval()
    return LoadedModel(source, path, model, tok, dev, time.perf_counter() - t0)
