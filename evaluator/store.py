"""The run directory: config, environment, per-item results (appended as produced), per-unit records.

runs/<run-id>/
  job.yaml, config.json    the job as written and as resolved
  env.json                 package versions, device, host
  results/<unit>.jsonl     one line per test item, appended (fsync'd) as items finish
  units/<unit>.json        metrics + measurements of a finished unit, written atomically; its presence = done
  prefixes/<unit>.txt      the shared demonstration prefix text (for API token counts in the cost model)
  report.md, report.json   derived from the above only

Resuming: a unit with units/<unit>.json is skipped; a unit with a partial JSONL continues after its last item.
"""

from __future__ import annotations

import json
import os
import platform
import re
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable

from evaluator.errors import UserError
from evaluator.faults import checkpoint

SAFE = re.compile(r"[^A-Za-z0-9_.=-]+")
RUN_MARKER = "config.json"
TMP_SUFFIX = ".tmp"


def safe_name(text: str, max_len: int = 120) -> str:
    """File-name-safe (no separators, no '..' traversal)."""
    s = SAFE.sub("-", text).strip("-.")
    return (s or "x")[:max_len]


def atomic_write_text(path: Path, text: str, *, event: str | None = None) -> None:
    """Write to a temporary file in the same folder, fsync, then rename over `path`: readers see old or new, never half.

    `event` names a fault-injection point between the fsync and the rename (see faults.py): a kill there leaves the
    old file and a stale `.<name>.*.tmp`, which `RunStore.create_or_resume` removes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TMP_SUFFIX)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        if event:
            checkpoint(event)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, data: Any, *, event: str | None = None) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False, ensure_ascii=False) + "\n", event=event)


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{path} is unreadable or corrupted ({type(exc).__name__}) — delete it to recompute") from None


def environment() -> dict[str, Any]:
    import torch

    pkgs = {}
    for name in ("tunecheck", "torch", "transformers", "peft", "datasets", "lm-eval", "accelerate", "tiktoken", "genai-prices"):
        try:
            pkgs[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pkgs[name] = None
    dev: dict[str, Any] = {"cuda": torch.cuda.is_available(), "cpu_count": os.cpu_count()}
    if torch.cuda.is_available():
        dev["gpu"] = torch.cuda.get_device_name(0)
        dev["gpu_count"] = torch.cuda.device_count()
    return {"python": platform.python_version(), "platform": platform.platform(), "packages": pkgs, "device": dev}


class RunStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    # -- creation / opening ---------------------------------------------------------------------------------
    @classmethod
    def create_or_resume(cls, root: Path, job_text: str, config: dict[str, Any]) -> "RunStore":
        store = cls(root)
        try:
            root.mkdir(parents=True, exist_ok=True)
            probe = root / ".write-test"
            probe.write_text("ok")
            probe.unlink()
        except OSError as exc:
            raise UserError(f"output dir {root} is not writable ({exc.strerror}) — set output_dir to a writable folder") from None
        cfg_path = root / RUN_MARKER
        if cfg_path.exists():
            old = read_json(cfg_path)
            if old.get("fingerprint") != config.get("fingerprint"):
                raise UserError(f"{root} holds a different job (fingerprint {old.get('fingerprint')}) — use another run id")
            store.units()  # a damaged unit record is reported now, before any compute (read_json names the file)
        else:
            atomic_write_text(root / "job.yaml", job_text)
            atomic_write_json(cfg_path, config)
        store.remove_stale_temp_files()
        atomic_write_json(root / "env.json", environment())
        return store

    def remove_stale_temp_files(self) -> list[Path]:
        """Temporary files of atomic writes a killed process never renamed; the real files are untouched."""
        stale = [p for p in self.root.rglob(f".*{TMP_SUFFIX}") if p.is_file()]
        for p in stale:
            p.unlink(missing_ok=True)
        return stale

    @classmethod
    def open(cls, root: Path) -> "RunStore":
        if not (root / RUN_MARKER).is_file():
            raise UserError(f"{root} is not a tunecheck run directory (no {RUN_MARKER}) — pass a folder under runs/")
        return cls(root)

    @property
    def config(self) -> dict[str, Any]:
        return read_json(self.root / RUN_MARKER)

    # -- units ------------------------------------------------------------------------------------------------
    def results_path(self, unit: str) -> Path:
        return self.root / "results" / f"{safe_name(unit)}.jsonl"

    def unit_path(self, unit: str) -> Path:
        return self.root / "units" / f"{safe_name(unit)}.json"

    def is_done(self, unit: str) -> bool:
        return self.unit_path(unit).is_file()

    def finished_items(self, unit: str) -> dict[str, dict[str, Any]]:
        """Per-item results already on disk; a torn last line (killed mid-write) is dropped and rewritten."""
        path = self.results_path(unit)
        if not path.exists():
            return {}
        rows: dict[str, dict[str, Any]] = {}
        good: list[str] = []
        torn = False
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                torn = True
                continue
            rows[row["item_id"]] = row
            good.append(line)
        if torn:
            atomic_write_text(path, "".join(g + "\n" for g in good))
        return rows

    def append_items(self, unit: str, rows: Iterable[dict[str, Any]]) -> None:
        path = self.results_path(unit)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as fh:
            for r in rows:
                fh.write(json.dumps(r, ensure_ascii=False) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        checkpoint("append_items")

    def finish_unit(self, unit: str, record: dict[str, Any]) -> None:
        atomic_write_json(self.unit_path(unit), record)
        checkpoint("finish_unit")

    def write_prefix(self, unit: str, text: str) -> None:
        atomic_write_text(self.root / "prefixes" / f"{safe_name(unit)}.txt", text)

    def units(self) -> list[dict[str, Any]]:
        return [read_json(p) for p in sorted((self.root / "units").glob("*.json"))]

    def items(self, unit: str) -> list[dict[str, Any]]:
        return list(self.finished_items(unit).values())
