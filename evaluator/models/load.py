"""Model sources (local folder, hub id, built-in name) and loading them the ordinary transformers way.

Secure defaults: `trust_remote_code` only when asked, safetensors only unless pickle is explicitly allowed.
"""

from __future__ import annotations

import contextlib
import logging
import re
import shutil
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from evaluator.errors import UserError
from evaluator.models.tokens import tokenizer_max_id

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass(frozen=True)
class ModelSource:
    spec: str  # what the user wrote
    kind: Literal["local", "hub", "builtin", "api"]
    ref: str  # folder path, hub id, built-in name or the `api:` reference

    @property
    def slug(self) -> str:
        """A filesystem-safe short name for run/adapters paths."""
        if self.kind == "api":
            from evaluator.api.spec import parse_api_spec

            return parse_api_spec(self.ref).slug
        base = self.ref if self.kind != "local" else Path(self.ref).name
        return re.sub(r"[^A-Za-z0-9_.-]+", "-", base.replace("/", "--")).strip("-.")[:60] or "model"


def resolve_source(spec: str, base_dir: Path | None = None) -> ModelSource:
    """Classify a model reference without loading it; a local path must exist and hold a config.json."""
    from evaluator.api.spec import ApiSpecError, is_api, parse_api_spec
    from evaluator.models import zoo

    if is_api(spec):
        try:
            parse_api_spec(spec)
        except ApiSpecError as exc:
            raise UserError(str(exc)) from None
        return ModelSource(spec, "api", spec.strip())
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
        from evaluator.models import zoo

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
    if source.kind in ("builtin", "api"):  # an API model is checked against its endpoint before any work
        return
    check_weights_format(source, allow_pickle)
    if source.kind == "local":
        check_weight_files(Path(source.ref))
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


DEVICES = "auto, cpu, cuda, cuda:N or mps"
DTYPES = ("auto", "float32", "bfloat16", "float16")


def device_name_problem(device: str) -> str | None:
    """Why `device` is not a device name (the job file's validator says the same), or None."""
    ok = device in {"auto", "cpu", "cuda", "mps"} or (device.startswith("cuda:") and device[5:].isdigit())
    return None if ok else f"unknown device {device!r}; use {DEVICES}"


def device_absent_problem(device: str, option: str = "device:") -> str | None:
    """Why a well-formed device cannot be used on this machine (no CUDA, no such GPU index, no MPS), or None."""
    import torch

    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            return f"device {device!r} requested but CUDA is not available on this machine — use {option} auto or cpu"
        if ":" in device:
            n = torch.cuda.device_count()
            if int(device.split(":", 1)[1]) >= n:
                return f"device {device!r} requested but this machine has {n} CUDA device(s) (cuda:0 to cuda:{n - 1}) — use {option} cuda, auto or a lower index"
    if device == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            return f"device 'mps' requested but MPS (Apple GPU) is not available on this machine — use {option} auto or cpu"
    return None


def check_device_and_dtype(device: str, dtype: str, option: str = "--device") -> None:
    """For `tunecheck train` / `eval`: the same checks a job file's device and dtype get, before anything loads."""
    why = device_name_problem(device)
    if why:
        raise UserError(f"{option}: {why}")
    if dtype not in DTYPES:
        raise UserError(f"--dtype {dtype!r}: use auto, float32, bfloat16 or float16")
    why = device_absent_problem(device, option)
    if why:
        raise UserError(why)


def pick_device(device: str) -> str:
    import torch

    if device != "auto":
        why = device_name_problem(device) or device_absent_problem(device)
        if why:
            raise UserError(why)
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
    device: str  # where inputs go: the device of the input embeddings (a dispatched model spans several)
    load_seconds: float
    offload_folder: str | None = None  # device_map: where accelerate keeps weights offloaded to disk

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


def check_weight_files(folder: Path) -> None:
    """Every safetensors file transformers would read from a folder has a readable header that covers the file: a
    truncated, empty or garbage file is one line naming it (safetensors itself raises SafetensorError)."""
    folder = Path(folder)
    index = folder / "model.safetensors.index.json"
    files: list[Path] = []
    if index.is_file():
        import json

        try:
            data = json.loads(index.read_text(encoding="utf-8"))
            names = sorted(set((data.get("weight_map") or {}).values())) if isinstance(data, dict) else None
        except (OSError, UnicodeDecodeError, ValueError):
            names = None
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise UserError(f"{index} is truncated or corrupt (not a safetensors index) — re-download or re-convert the model")
        files = [folder / n for n in names]
    elif (folder / "model.safetensors").is_file():
        files = [folder / "model.safetensors"]
    for f in files:
        check_safetensors_file(f, "re-download or re-convert it")


def check_safetensors_file(path: Path, fix: str) -> None:
    """One line naming `path` when it is missing, truncated or not a safetensors file (header read only: cheap)."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path} is missing — {fix}")
    try:
        with safe_open(str(path), framework="pt") as fh:
            fh.keys()
    except Exception as exc:  # noqa: BLE001 - safetensors.SafetensorError (not an OSError), or OSError
        why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserError(f"{path} is truncated or corrupt ({why}) — {fix}") from None


def _keys_preview(keys, n: int = 3) -> str:
    keys = sorted(keys)
    more = f" and {len(keys) - n} more" if len(keys) > n else ""
    return ", ".join(keys[:n]) + more


def check_loading_info(info: dict, where: str) -> None:
    """transformers' loading report as one UserError: a model is only scored with the weights it was saved with.

    `info` is what `from_pretrained(..., output_loading_info=True)` returns (missing_keys, unexpected_keys,
    mismatched_keys, error_msgs). Tied weights (lm_head with tie_word_embeddings) and keys the architecture declares
    ignorable are already left out by transformers."""
    missing = set(info.get("missing_keys") or ())
    unexpected = set(info.get("unexpected_keys") or ())
    mismatched = list(info.get("mismatched_keys") or ())
    errors = list(info.get("error_msgs") or ())
    fix = "its weight files do not match its config.json (incomplete, or from another model): re-download or re-convert it"
    if mismatched:
        mismatched.sort(key=lambda t: str(t[0]))
        shown = "; ".join(f"{k} (file {tuple(a)}, config {tuple(b)})" for k, a, b in mismatched[:3])
        more = f" and {len(mismatched) - 3} more" if len(mismatched) > 3 else ""
        raise UserError(f"model {where}: {len(mismatched)} tensor(s) have another shape than its config.json: {shown}{more} — {fix}")
    if missing:
        raise UserError(f"model {where}: {len(missing)} tensor(s) missing from the weight files: {_keys_preview(missing)} — {fix}")
    if unexpected:
        raise UserError(f"model {where}: {len(unexpected)} unexpected tensor(s) in the weight files that its config.json does not use: {_keys_preview(unexpected)} — {fix}")
    if errors:
        raise UserError(f"model {where} could not be loaded: {str(errors[0]).splitlines()[0]} — {fix}")


def check_vocab(tokenizer, model, where: str) -> None:
    """Every token id the tokenizer can produce must have a row in the model's input embeddings (else IndexError)."""
    emb = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    rows = getattr(emb, "num_embeddings", None)
    if not isinstance(rows, int):
        return
    top = tokenizer_max_id(tokenizer)
    if top >= rows:
        raise UserError(
            f"model {where}: its tokenizer produces token ids up to {top} but the model has only {rows} embedding rows "
            f"(vocab_size) — the tokenizer belongs to another model, or tokens were added without resizing the embeddings: "
            f"use the tokenizer the model was trained with"
        )


@contextlib.contextmanager
def _no_load_report():
    """transformers logs a multi-line LOAD REPORT (missing/unexpected/mismatched keys) as a warning; we turn the same
    information into one error line instead, so the warning is held back while loading."""
    log = logging.getLogger("transformers.modeling_utils")
    old = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(old)


def load_model(
    source: ModelSource,
    *,
    device: str = "auto",
    dtype: str = "auto",
    trust_remote_code: bool = False,
    allow_pickle: bool = False,
    cache_dir: Path | None = None,
    device_map: str | dict | None = None,
    max_memory: dict | None = None,
) -> LoadedModel:
    """Tokenizer + causal LM, loaded strictly: missing, unexpected or shape-mismatched tensors, unreadable weight
    files and a tokenizer larger than the embeddings are each one UserError (never a model with random weights).

    With `device_map` (the job's; `max_memory` sizes as written there) transformers' big-model loading places the
    layers across devices and accelerate's hooks move activations between them; nothing moves the model afterwards,
    and `device` is then where its inputs go (the input embeddings' device)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    t0 = time.perf_counter()
    path = materialise(source, cache_dir)
    dev = pick_device(device)
    placement: dict = {}
    if device_map is not None:
        from evaluator.config.placement import memory_for_loading

        placement = {"device_map": device_map, "max_memory": memory_for_loading(max_memory),
                     "offload_folder": _offload_folder(source, cache_dir)}
    if Path(path).is_dir():
        check_weight_files(Path(path))
    where = f"{source.spec}" + (f" ({path})" if path != source.spec else "")
    try:
        tok = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
        with _no_load_report():
            model, info = AutoModelForCausalLM.from_pretrained(
                path,
                dtype=pick_dtype(dtype, dev),
                trust_remote_code=trust_remote_code,
                use_safetensors=None if allow_pickle else True,
                attn_implementation="sdpa",
                ignore_mismatched_sizes=True,  # reported below as one line instead of a RuntimeError after a table
                output_loading_info=True,
                **placement,
            )
    except (OSError, ValueError) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if "safetensors" in msg.lower() and not allow_pickle:
            raise UserError(f"model {source.spec} has no safetensors weights; pickle files are refused — convert them, or set allow_pickle: true if you trust them") from None
        raise UserError(f"model {source.spec} could not be loaded: {msg}") from None
    except Exception as exc:  # safetensors.SafetensorError (corrupt file), RuntimeError (state-dict errors, OOM)
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if type(exc).__name__ == "SafetensorError":
            raise UserError(f"the weights of model {where} are truncated or corrupt ({msg}) — re-download or re-convert it") from None
        if "out of memory" in msg.lower() and placement:
            raise UserError(f"model {source.spec} does not fit the devices of device_map {device_map!r} ({msg}) — lower "
                            "max_memory so accelerate offloads more to cpu / disk, or use a smaller dtype") from None
        if "out of memory" in msg.lower():
            raise UserError(f"model {source.spec} does not fit in memory on {dev} ({msg}) — use a smaller dtype (e.g. dtype: bfloat16), another device or a smaller model") from None
        if isinstance(exc, RuntimeError):
            raise UserError(f"model {source.spec} could not be loaded: {msg}") from None
        raise
    check_loading_info(info, where)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token or tok.unk_token
    check_vocab(tok, model, where)
    if placement:  # placed by accelerate: moving it would undo the map (or fail on offloaded weights)
        dev = str(input_device(model))
        weakref.finalize(model, shutil.rmtree, placement["offload_folder"], True)
    else:
        model.to(dev)
    model.eval()
    return LoadedModel(source, path, model, tok, dev, time.perf_counter() - t0, placement.get("offload_folder"))


def _offload_folder(source: ModelSource, cache_dir: Path | None) -> str:
    """A fresh folder for the weights accelerate offloads to disk, under the model cache (big, unlike /tmp often is),
    one per load so that two runs never share one; removed when the model is freed."""
    import tempfile

    from evaluator.models import zoo

    root = Path(cache_dir or zoo.default_cache_dir()) / "offload"
    root.mkdir(parents=True, exist_ok=True)
    return tempfile.mkdtemp(prefix=f"{source.slug}-", dir=root)


def execution_device(module):
    """The device accelerate runs `module` on (its hook's execution device), or None for a module without a hook."""
    import torch

    hook = getattr(module, "_hf_hook", None)
    for h in getattr(hook, "hooks", None) or ([hook] if hook is not None else []):  # a SequentialHook holds several
        dev = getattr(h, "execution_device", None)
        if dev is not None:
            return torch.device(f"cuda:{dev}" if isinstance(dev, int) else dev)
    return None


def input_device(model):
    """Where a model's input ids go: the device of its input embeddings. A model dispatched by a device_map has
    parameters on several devices, or on `meta` where accelerate offloads them, so neither `model.device` nor the
    first parameter says it; the hook on the embeddings does. On one device: that device."""
    import torch

    base = model.get_base_model() if hasattr(model, "get_base_model") else model  # peft
    emb = base.get_input_embeddings() if hasattr(base, "get_input_embeddings") else None
    if emb is not None:
        dev = execution_device(emb)
        if dev is not None:
            return dev
        w = getattr(emb, "weight", None)
        if isinstance(w, torch.Tensor) and w.device.type != "meta":
            return w.device
    dev = getattr(model, "device", None)
    return dev if isinstance(dev, torch.device) else next(model.parameters()).device


def parameter_values(model, name: str, p):
    """The values of parameter `name` of `model` (`p`): an offloaded one sits on `meta` while accelerate's hook on its
    module keeps the weights (in cpu memory or on disk) — read from there."""
    if p.device.type != "meta":
        return p
    owner, _, leaf = name.rpartition(".")
    hook = getattr(model.get_submodule(owner), "_hf_hook", None)
    for h in getattr(hook, "hooks", None) or ([hook] if hook is not None else []):
        weights = getattr(h, "weights_map", None)
        if weights is not None and leaf in weights:
            return weights[leaf]
    raise RuntimeError(f"parameter {name} is on the meta device and no offload hook holds its values")


def _decoder_layers(model) -> list[str]:
    """Names of the model's decoder layers: the children of its longest ModuleList (`model.layers.0`, …)."""
    import torch

    lists = [(n, m) for n, m in model.named_modules() if isinstance(m, torch.nn.ModuleList)]
    if not lists:
        return []
    name, layers = max(lists, key=lambda t: len(t[1]))
    return [f"{name}.{i}" if name else str(i) for i in range(len(layers))]


def device_map_summary(model) -> dict | None:
    """Where a dispatched model sits — each device used with its count of decoder layers, and the inputs' device —
    for the load line and a unit's `measured_with`; None for a model loaded without a device_map."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    dmap = getattr(base, "hf_device_map", None)
    if not dmap:
        return None
    label = lambda d: f"cuda:{d}" if isinstance(d, int) else str(d)  # noqa: E731
    layers = {label(d): 0 for d in dmap.values()}
    for layer in _decoder_layers(base):
        owner = max((k for k in dmap if k == "" or layer == k or layer.startswith(k + ".")), key=len, default=None)
        if owner is not None:
            layers[label(dmap[owner])] += 1
    text = ", ".join(f"{d}: {n} layer{'s' if n != 1 else ''}" for d, n in layers.items())
    return {"devices": list(layers), "layers": layers, "input_device": str(input_device(base)), "text": text}
