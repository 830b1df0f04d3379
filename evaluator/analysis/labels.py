"""How a unit (one arm at one point) is named in text: the option label and the point column of the report tables.

Pure: reads a unit record's ``arm``, ``model_slug``, ``point`` and ``training``; used by the costs, the verdict,
the report and compare alike, so an option has the same name everywhere.
"""

from __future__ import annotations

from typing import Any, Mapping

__all__ = ["unit_label", "point_label", "trained_note"]


def unit_label(u: Mapping) -> str:
    """Short, unique within a task: 'A k=32', 'B n=100', 'B n=100 k=5', 'C gemma3-270m k=32'."""
    pt = u["point"]
    if u["arm"] == "B":
        return f"B n={pt['train_size']}" + (f" k={pt['shots']}" if pt["shots"] else "")
    return ("A" if u["arm"] == "A" else f"C {u['model_slug']}") + f" k={pt['shots']}"


def trained_note(u: Mapping[str, Any]) -> str:
    """" (230 trained, 26 held out)" when a LoRA point trained on fewer items than its n (a validation slice was held
    out), from the unit's `training` record (`train_items` / `val_items`, or the older `n_train` / `n_val`); else ""."""
    tr = u.get("training") if isinstance(u.get("training"), dict) else {}
    trained, held = tr.get("train_items", tr.get("n_train")), tr.get("val_items", tr.get("n_val"))
    n = (u.get("point") or {}).get("train_size")
    if isinstance(trained, int) and isinstance(held, int) and held > 0 and trained != n:
        return f" ({trained} trained, {held} held out)"
    return ""


def point_label(u: Mapping[str, Any]) -> str:
    """The point column of report.md and report.html: 'k=8', 'k=64 (max)', 'n=256 (230 trained, 26 held out), k=0'."""
    pt = u.get("point") or {}
    if u.get("arm") == "B":
        return f"n={pt.get('train_size')}{trained_note(u)}, k={pt.get('shots')}"
    return f"k={pt.get('shots')}" + (" (max)" if pt.get("shots_requested") == "max" else "")
