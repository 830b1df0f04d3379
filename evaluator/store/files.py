"""Atomic writes (temporary file + fsync + rename, the umask's mode), JSON reading with one-line errors, and safe
file names."""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

from evaluator.errors import UserError
from evaluator.faults import checkpoint

SAFE = re.compile(r"[^A-Za-z0-9_.=-]+")


RUN_MARKER = "config.json"


TMP_SUFFIX = ".tmp"


def _read_umask() -> int:
    """The process umask, read once at import: /proc (no side effect), else the set-and-restore swap."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    old = os.umask(0o022)
    os.umask(old)
    return old


UMASK = _read_umask()


FILE_MODE = 0o666 & ~UMASK  # what open(path, "w") gives a new file; every atomic write gets it


def _is_tmp_of(name: Any, path: Path) -> bool:
    n = os.path.basename(str(name))
    return n.startswith(f".{path.name}.") and n.endswith(TMP_SUFFIX)


def _name_path(exc: OSError, path: Path) -> OSError:
    """The same OSError, naming `path` when it named nothing (a failed write/fsync) or only our temporary file."""
    if exc.filename is None or _is_tmp_of(exc.filename, path):
        new = OSError(exc.errno, exc.strerror or os.strerror(exc.errno or 0), str(path))
        new.__cause__ = exc
        return new
    return exc


def safe_name(text: str, max_len: int = 120) -> str:
    """File-name-safe (no separators, no '..' traversal)."""
    s = SAFE.sub("-", text).strip("-.")
    return (s or "x")[:max_len]


def atomic_write_text(path: Path, text: str, *, event: str | None = None) -> None:
    """Write to a temporary file in the same folder, fsync, then rename over `path`: readers see old or new, never half.

    `event` names a fault-injection point between the fsync and the rename (see faults.py): a kill there leaves the
    old file and a stale `.<name>.*.tmp`, which `RunStore.create_or_resume` removes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp: str | None = None
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TMP_SUFFIX)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            os.fchmod(fh.fileno(), FILE_MODE)  # mkstemp makes 0600; a shared runs folder needs what open() gives
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        if event:
            checkpoint(event)
        os.replace(tmp, path)
    except OSError as exc:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        raise _name_path(exc, path) from None
    except BaseException:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, data: Any, *, event: str | None = None) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False, ensure_ascii=False) + "\n", event=event)


def read_json(path: Path) -> Any:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{path} is unreadable or corrupted ({type(exc).__name__}) — delete it to recompute") from None
    if path.name == "env.json" and not isinstance(data, dict):  # readers do env.get("device")
        raise UserError(f"{path} is damaged (it holds {_kind(data)}, not an object) — delete it; the next run rewrites it")
    return data


# -- shapes of the run files: what their readers index --------------------------------------------------------------
def _kind(v: Any) -> str:
    """What a JSON value is, with its article: 'an array', 'a string', 'null'."""
    if isinstance(v, bool):
        return "a boolean"
    return {dict: "an object", list: "an array", str: "a string", int: "a number", float: "a number",
            type(None): "null"}.get(type(v), type(v).__name__)
