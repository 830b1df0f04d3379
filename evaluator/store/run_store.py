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


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _need(obj: dict, key: str, ok, what: str, where: str = "") -> str | None:
    """None when obj[key] is present and ok(value), else the problem in words."""
    name = f"{where}{key}"
    if key not in obj:
        return f"no '{name}'"
    if not ok(obj[key]):
        return f"'{name}' is {_kind(obj[key])}, not {what}"
    return None


def config_problem(cfg: Any) -> str | None:
    """Why a config.json cannot be read by the report/cost/compare/samples readers (None = fine)."""
    if not isinstance(cfg, dict):
        return f"it holds {_kind(cfg)}, not an object"
    for key, ok, what in (("fingerprint", lambda v: isinstance(v, str), "a string"),
                          ("job", lambda v: isinstance(v, dict), "an object"),
                          ("units", lambda v: isinstance(v, list) and all(isinstance(u, str) for u in v),
                           "a list of unit ids")):
        if (p := _need(cfg, key, ok, what)):
            return p
    for key in ("tasks", "models"):
        if key in cfg and not isinstance(cfg[key], dict):
            return f"'{key}' is {_kind(cfg[key])}, not an object"
    for name, t in (cfg.get("tasks") or {}).items():
        if not isinstance(t, dict):
            return f"'tasks.{name}' is {_kind(t)}, not an object"
        if "spec" in t and not isinstance(t["spec"], dict):
            return f"'tasks.{name}.spec' is {_kind(t['spec'])}, not an object"
    job = cfg["job"]
    for key in ("costs", "verdict", "arms"):
        if key in job and job[key] is not None and not isinstance(job[key], dict):
            return f"'job.{key}' is {_kind(job[key])}, not an object"
    if "newer" in job and not isinstance(job["newer"], list):
        return f"'job.newer' is {_kind(job['newer'])}, not a list"
    for key in ("margin", "alpha", "selection_fraction"):
        v = (job.get("verdict") or {}).get(key)
        if v is not None and not _is_num(v):
            return f"'job.verdict.{key}' is {_kind(v)}, not a number"
    return None


def unit_problem(rec: Any, stem: str | None = None, *, measurements: bool = True) -> str | None:
    """Why a units/<unit>.json record cannot be read (None = fine). Only what readers index is required, so records
    of older runs (without request_seconds, measured_with, zero_shot_request, ...) still read; `measurements`
    (tokens, timings: what the report's table and the cost model index) only for the readers that use them."""
    if not isinstance(rec, dict):
        return f"it holds {_kind(rec)}, not an object"
    text = (lambda v: isinstance(v, str) and v != "", "a non-empty string")
    for key, (ok, what) in (("unit", text), ("task", text), ("model", text),
                            ("arm", (lambda v: v in ("A", "B", "C"), "A, B or C")),
                            ("point", (lambda v: isinstance(v, dict), "an object")),
                            ("value", (_is_num, "a number")),
                            ("n_items", (lambda v: _is_int(v) and v >= 0, "a count"))):
        if (p := _need(rec, key, ok, what)):
            return p
    if stem is not None and safe_name(rec["unit"]) != stem:
        return f"it records unit {rec['unit']!r}, not the {stem!r} its file name says"
    pt = rec["point"]
    if (p := _need(pt, "shots", _is_int, "a number of shots", "point.")):
        return p
    if rec["arm"] == "B":
        if (p := _need(pt, "train_size", _is_int, "a number of training items", "point.")):
            return p
    else:
        if (p := _need(pt, "shots_requested", lambda v: _is_int(v) or isinstance(v, str), "a number or 'max'", "point.")):
            return p
    if rec["arm"] == "C" and (p := _need(rec, "model_slug", *text, "")):
        return p
    for key in ("tokens", "timings", "training", "measured_with", "zero_shot_request"):
        if key in rec and rec[key] is not None and not isinstance(rec[key], dict):
            return f"'{key}' is {_kind(rec[key])}, not an object"
    if not measurements:
        return None
    for key in ("tokens", "timings"):
        if (p := _need(rec, key, lambda v: isinstance(v, dict), "an object")):
            return p
    for key in ("prompt_tokens_per_request", "shared_prefix_tokens", "output_tokens_per_request"):
        if (p := _need(rec["tokens"], key, _is_num, "a number", "tokens.")):
            return p
    t = rec["timings"]
    for key in ("requests", "eval_seconds"):
        if (p := _need(t, key, _is_num, "a number", "timings.")):
            return p
    for key in ("request_seconds", "prefix_encode_seconds"):  # newer records; older ones lack them
        if key in t and not _is_num(t[key]):
            return f"'timings.{key}' is {_kind(t[key])}, not a number"
    return None


def row_problem(row: Any) -> str | None:
    """Why one results line cannot be read (None = fine): an object with an item_id and a numeric score."""
    if not isinstance(row, dict):
        return f"it holds {_kind(row)}, not an object"
    if (p := _need(row, "item_id", lambda v: isinstance(v, str) or _is_int(v), "an item id")):
        return p
    return _need(row, "score", _is_num, "a number")


def read_results(path: Path, fix: str) -> tuple[dict[str, dict[str, Any]], list[str], bool]:
    """(rows by item id, the good lines, whether a torn last line was dropped) of a results JSONL; read-only.

    A last line that is not JSON is what a kill mid-append leaves: dropped, not an error. Any other line that is not
    JSON, or is JSON of the wrong shape, is a UserError naming the file, the line and `fix`."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}, [], False
    except UnicodeDecodeError:
        raise UserError(f"{path} is corrupted (not UTF-8) — {fix}") from None
    except OSError as exc:
        raise UserError(f"{path} is unreadable ({exc.strerror or type(exc).__name__}) — {fix}") from None
    lines = text.splitlines()
    last = max((i for i, line in enumerate(lines) if line.strip()), default=-1)
    rows: dict[str, dict[str, Any]] = {}
    good: list[str] = []
    torn = False
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except (json.JSONDecodeError, RecursionError):
            if i == last:
                torn = True
                continue
            raise UserError(f"{path} line {i + 1} is not valid JSON — {fix}") from None
        if (p := row_problem(row)):
            raise UserError(f"{path} line {i + 1} is damaged ({p}) — {fix}")
        rows[str(row["item_id"])] = row
        good.append(line)
    return rows, good, torn


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
