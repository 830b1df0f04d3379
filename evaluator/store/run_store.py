"""The run directory: config, environment, per-item results (appended as produced), per-unit records.

runs/<run-id>/
  job.yaml, config.json    the job as written and as resolved
  env.json                 package versions, device, host
  results/<unit>.jsonl     one line per test item, appended (fsync'd) as items finish
  units/<unit>.json        metrics + measurements of a finished unit, written atomically; its presence = done
  prefixes/<unit>.txt      the shared demonstration prefix text (for API token counts in the cost model)
  report.md, report.json   derived from the above only

Resuming: a unit with units/<unit>.json is skipped; a unit with a partial JSONL continues after its last item.

Reading: every file is checked for the shape its readers index (config.json, units/*.json, each results line); a
damaged one is a UserError naming the file (and line) and how to recompute it, never a KeyError deep in a reader. A
torn *last* results line is what a kill mid-append leaves: it is dropped (and rewritten away by the runner), not an
error. Files are written with the mode a plain ``open()`` gives a new file (0666 less the umask, read once at import),
so a shared runs folder stays readable to the team (mkstemp alone would leave reports and unit records 0600).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable

from evaluator.errors import UserError
from evaluator.faults import checkpoint
from evaluator.store.files import (
    RUN_MARKER,
    TMP_SUFFIX,
    _name_path,
    atomic_write_json,
    atomic_write_text,
    read_json,
    safe_name,
)
from evaluator.store.records import config_problem, read_results, unit_problem


class RunStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    # -- creation / opening ---------------------------------------------------------------------------------
    @classmethod
    def create_or_resume(cls, root: Path, job_text: str, config: dict[str, Any],
                         env: dict[str, Any] | None = None) -> "RunStore":
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
            old = store.config
            if old.get("fingerprint") != config.get("fingerprint"):
                raise UserError(f"{root} holds a different job (fingerprint {old.get('fingerprint')}) — use another run id")
            store.units()  # a damaged unit record is reported now, before any compute (read_json names the file)
            for path in sorted((root / "results").glob("*.jsonl")):  # and a damaged results line (read only)
                read_results(path, store.results_fix(path.stem))
        else:
            atomic_write_text(root / "job.yaml", job_text)
            atomic_write_json(cfg_path, config)
        store.remove_stale_temp_files()
        if env is not None:  # the machine and library versions of this (re)start, collected by the runner
            atomic_write_json(root / "env.json", env)
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
        path = self.root / RUN_MARKER
        cfg = read_json(path)
        if (p := config_problem(cfg)):
            raise UserError(f"{path} is damaged ({p}) — it records the run's job: delete the run folder {self.root} "
                            "and run the job again to recompute it")
        return cfg

    # -- units ------------------------------------------------------------------------------------------------
    def results_path(self, unit: str) -> Path:
        return self.root / "results" / f"{safe_name(unit)}.jsonl"

    def unit_path(self, unit: str) -> Path:
        return self.root / "units" / f"{safe_name(unit)}.json"

    def is_done(self, unit: str) -> bool:
        return self.unit_path(unit).is_file()

    def results_fix(self, unit: str) -> str:
        if self.is_done(unit):
            return f"delete it and {self.unit_path(unit)} to recompute that unit"
        return "delete it to recompute that unit"

    def read_items(self, unit: str) -> dict[str, dict[str, Any]]:
        """Per-item results on disk, by item id, without writing anything (a torn last line is skipped)."""
        path = self.results_path(unit)
        return read_results(path, self.results_fix(unit))[0]

    def finished_items(self, unit: str) -> dict[str, dict[str, Any]]:
        """Per-item results already on disk; a torn last line (killed mid-write) is dropped and rewritten."""
        path = self.results_path(unit)
        rows, good, torn = read_results(path, self.results_fix(unit))
        if torn:
            atomic_write_text(path, "".join(g + "\n" for g in good))
        return rows

    def append_items(self, unit: str, rows: Iterable[dict[str, Any]]) -> None:
        path = self.results_path(unit)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with open(path, "a", encoding="utf-8") as fh:
                for r in rows:
                    fh.write(json.dumps(r, ensure_ascii=False) + "\n")
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as exc:
            raise _name_path(exc, path) from None
        checkpoint("append_items")

    def finish_unit(self, unit: str, record: dict[str, Any]) -> None:
        atomic_write_json(self.unit_path(unit), record)
        checkpoint("finish_unit")

    def prefix_path(self, unit: str) -> Path:
        return self.root / "prefixes" / f"{safe_name(unit)}.txt"

    def write_prefix(self, unit: str, text: str) -> None:
        atomic_write_text(self.prefix_path(unit), text)

    def read_prefix(self, unit: str) -> str | None:
        """The unit's shared demonstration prefix (None when not stored); a damaged file is a UserError naming it."""
        path = self.prefix_path(unit)
        try:
            return path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            raise UserError(f"{path} is unreadable or corrupted ({type(exc).__name__}) — delete it and "
                            f"{self.unit_path(unit)} to recompute that unit") from None

    def read_unit(self, path: Path, *, measurements: bool = True) -> dict[str, Any]:
        """One units/<unit>.json record, checked for the fields its readers index (tokens and timings too unless
        `measurements` is False: for readers that use neither, e.g. the samples export)."""
        rec = read_json(path)
        if (p := unit_problem(rec, path.stem, measurements=measurements)):
            raise UserError(f"{path} is damaged ({p}) — delete it to recompute that unit")
        return rec

    def units(self, *, measurements: bool = True) -> list[dict[str, Any]]:
        return [self.read_unit(p, measurements=measurements) for p in sorted((self.root / "units").glob("*.json"))]

    def items(self, unit: str) -> list[dict[str, Any]]:
        """A unit's per-item results for the readers (report, cost, compare): read-only, never rewrites the file."""
        return list(self.read_items(unit).values())
