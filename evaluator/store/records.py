"""The shapes of the run files (config, unit records, results rows), checked on read so a damaged or foreign file
is refused in one line naming it, and per-item results read back."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from evaluator.errors import UserError
from evaluator.store.files import _kind, safe_name


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
