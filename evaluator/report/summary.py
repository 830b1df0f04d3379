"""The few lines `run` and `demo` end with: per task the verdict and the operating point of each arm with its
quality interval and $/month, then where the full reports are. Read from the report dict, so it says exactly what
report.md says; the whole Markdown stays in the file instead of scrolling the verdict off the screen."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from evaluator.analysis.intervals import wilson_interval
from evaluator.fmt import usd_whole

ARM_NAMES = {"A": "prompting", "B": "LoRA", "C": "newer base"}


def _quality(section: dict[str, Any], arm: str, label: str, alpha: float, info: dict[str, Any] | None = None) -> str:
    """The chosen point's quality on the items it is tested on, with its interval (as the report's table has it)."""
    sel = section.get("selection") or {}
    info = info if info is not None else (sel.get("arms") or {}).get(arm) or {}
    unit = next((u for u in section.get("units", []) if u.get("label") == label), None)
    value, n = info.get("test_value"), info.get("test_items")
    if isinstance(value, (int, float)) and isinstance(n, int) and n > 0 and (unit or {}).get("ci_method") in (None, "wilson"):
        lo, hi = wilson_interval(round(value * n), n, alpha)
        return f"{value:.3f} [{lo:.3f}, {hi:.3f}] on {n} test items"
    if unit is not None:
        return f"{unit['value']:.3f} [{unit['ci_low']:.3f}, {unit['ci_high']:.3f}] on {unit['n_items']} items"
    return "—"


def _monthly(section: dict[str, Any], label: str) -> str:
    """The option's monthly cost as it is served: self-hosted (with the API alternative sent the same prompts), or an
    API option's measured usage ("not priced" without prices)."""
    arm = next((a for a in (section.get("costs") or {}).get("arms", []) if a.get("name") == label), None)
    if arm is None:
        return ""
    if arm.get("served_by") == "API":
        m = arm.get("monthly_usd")
        return "API, measured usage: " + ("not priced" if m is None else f"{usd_whole(m)}/month")
    api = arm.get("monthly_api")
    api_what = "API, same prompts, no adapter" if arm.get("arm") == "B" else "API, same prompts"
    return (f"self-host {usd_whole(arm.get('monthly_selfhost_cached'))}/month"
            + (f" ({api_what}: {usd_whole(api)}/month)" if api is not None else ""))


def summary_lines(report: dict[str, Any], run_dir: Path) -> list[str]:
    """Plain lines: per task the verdict title and reason, each arm's operating point, quality and cost; the paths."""
    lines: list[str] = []
    if not report.get("complete", True):
        lines.append("run incomplete: the verdict below covers only the units finished so far")
    for task, section in (report.get("tasks") or {}).items():
        v = section.get("verdict") or {}
        reason = str(v.get("reason", "")).split("; ")[0]
        lines.append(f"{task}: {v.get('title', '?')} — {reason}" if reason else f"{task}: {v.get('title', '?')}")
        chosen = ((section.get("selection") or {}).get("chosen")) or {}
        alpha = float(v.get("alpha", 0.05))
        width = max((len(lbl) for lbl in chosen.values()), default=0)
        # every newer base (API models included) with its own operating point, not only the best of them
        others = [(m, i) for m, i in ((section.get("selection") or {}).get("models") or {}).items()
                  if i.get("chosen") and i["chosen"] != chosen.get("C")]
        width = max([width, *(len(i["chosen"]) for _, i in others)])
        for arm, label in sorted(chosen.items()):
            cost = _monthly(section, label)
            lines.append(f"  {ARM_NAMES.get(arm, arm):<10} {label:<{width}}  {_quality(section, arm, label, alpha)}"
                         + (f"; {cost}" if cost else ""))
            if arm == "C":
                for _, info in others:
                    cost = _monthly(section, info["chosen"])
                    lines.append(f"  {'':<10} {info['chosen']:<{width}}  "
                                 f"{_quality(section, arm, info['chosen'], alpha, info)}" + (f"; {cost}" if cost else ""))
    lines.append(f"report: {run_dir / 'report.html'} (open in a browser)")
    lines.append(f"        {run_dir / 'report.md'} · {run_dir / 'report.json'}")
    return lines
