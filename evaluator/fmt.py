"""Numbers as text, one way each: money, quantities, percentages and intervals, for every report and cost text.

Two families, kept apart because their outputs differ on purpose:

- cost derivations (``tunecheck cost``, the "how" lines): :func:`usd`, :func:`qty`, :func:`price`,
  :func:`usd_per_m`, :func:`pct` — "n/a" for a missing value;
- report tables (report.md, report.html, compare): :func:`num` reads a report value; :func:`num_text`,
  :func:`usd_short`, :func:`usd_whole` and :func:`qty_short` show it — "—" when missing, "∞" or "never" when
  infinite.

Intervals and levels: :func:`level_pct`, :func:`ci_pct`, :func:`ci_text`. Plot ticks: :func:`axis_short`.
Pure, standard library only.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["num", "num_text", "price", "usd_per_m", "usd", "usd_short", "usd_whole", "qty", "qty_short", "pct",
           "level_pct", "ci_pct", "ci_text", "axis_short"]


def num(x: Any) -> float | None:
    """A report value as a float: a JSON number or the cost model's "inf"/"-inf"; None, booleans, NaN, else → None."""
    if x is None or isinstance(x, bool):
        return None
    if isinstance(x, str):
        return float(x) if x in ("inf", "-inf") else None
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(v) else v


def _edge(v: float | None, missing: str, inf: str, nan: str | None = None) -> str | None:
    """The text for a missing or infinite value (and NaN when ``nan`` is given); None for any other number."""
    if v is None:
        return missing
    if math.isinf(v):
        return inf
    if nan is not None and math.isnan(v):
        return nan
    return None


def _scaled(v: float, digits: int) -> str:
    """``digits`` significant digits with B/M suffixes, thousands in full: 1.5B, 50M, 48,020, 0.25."""
    a = abs(v)
    if a >= 1e9:
        return f"{v / 1e9:.{digits}g}B"
    if a >= 1e6:
        return f"{v / 1e6:.{digits}g}M"
    if a >= 1000:
        return f"{v:,.0f}"
    return f"{v:.{digits}g}"


def num_text(x: Any, spec: str = ".3f") -> str:
    """A report value by a format spec (".3f", "+.3f", ".0%"); "—" when missing, "∞" when infinite."""
    v = num(x)
    return _edge(v, "—", "∞") or format(v, spec)


def price(x: float | None) -> str:
    """A price per M tokens with as few digits as needed (0.15, 2.5); "-" when missing."""
    return "-" if x is None else f"{x:.6g}"


def usd_per_m(x: float) -> str:
    """A $/M-tokens price: $1.50, $0.60, $0.2625."""
    return f"${x:.2f}" if abs(round(x, 2) - x) < 1e-12 else f"${x:.4g}"


def usd(x: float | None) -> str:
    """Dollars in a cost derivation: $12,345, $123.45, $1.23, $0.01235 (4 significant digits, never an exponent)."""
    edge = _edge(x, "n/a", "$inf", nan="$n/a")
    if edge is not None:
        return edge
    a = abs(x)  # type: ignore[arg-type]
    if a >= 100:
        return f"${x:,.0f}" if a >= 10_000 else f"${x:,.2f}"
    if a >= 1:
        return f"${x:,.2f}"
    if a == 0:
        return "$0"
    digits = max(2, -math.floor(math.log10(a)) + 3)  # 4 significant digits, never exponent notation
    text = f"{x:.{digits}f}".rstrip("0")
    if len(text.split(".")[1]) < 2:
        text = f"{x:.2f}"
    return f"${text}"


def usd_short(x: Any) -> str:
    """Dollars in report.html: whole from $100 ($1,234), else 4 significant digits ($12.35); "—" / "∞"."""
    v = num(x)
    return _edge(v, "—", "∞") or (f"${v:,.0f}" if abs(v) >= 100 else f"${v:,.4g}")  # type: ignore[arg-type]


def usd_whole(x: Any) -> str:
    """Whole dollars in a Markdown table ($4,200); "∞" for the cost model's "inf", "—" for anything not a number."""
    if isinstance(x, str) and x == "inf":
        return "∞"
    return f"${x:,.0f}" if isinstance(x, (int, float)) else "—"


def qty(x: float | None) -> str:
    """A quantity in a cost derivation (tokens, requests), 4 significant digits: 1.5B, 50M, 48,020, 0.25."""
    return _edge(x, "n/a", "inf") or _scaled(x, 4)  # type: ignore[arg-type]


def qty_short(x: Any) -> str:
    """A quantity in report.html, 3 significant digits: 1.5B, 50M, 48,020; "—" when missing, "never" when infinite."""
    v = num(x)
    return _edge(v, "—", "never") or _scaled(v, 3)  # type: ignore[arg-type]


def pct(x: float) -> str:
    """A share as a percentage, 3 significant digits: 0.5 → "50%"."""
    return f"{x * 100:.3g}%"


def level_pct(level: float) -> str:
    """A confidence level as a percentage, 4 significant digits: 0.95 → "95%"."""
    return f"{level * 100:.4g}%"


def ci_pct(alpha: float) -> str:
    """The confidence level of an interval at ``alpha``: 0.05 → "95%", 0.10 → "90%"."""
    return level_pct(1 - alpha)


def ci_text(alpha: float, low: float, high: float, n: int | None = None, mcnemar_p: float | None = None) -> str:
    """An interval with its level, "95% CI -0.045 to +0.187", then ", n=56" and ", McNemar p=0.344" when given."""
    return (f"{ci_pct(alpha)} CI {low:+.3f} to {high:+.3f}" + ("" if n is None else f", n={n}")
            + ("" if mcnemar_p is None else f", McNemar p={mcnemar_p:.3g}"))


def axis_short(x: Any, prefix: str = "") -> str:
    """A plot tick label, compact so neighbours never run together: $80k, $1.2M, 2.5B, $500, $0.05; "" when missing."""
    v = num(x)
    if v is None or math.isinf(v):
        return ""
    a, sign = abs(v), "-" if v < 0 else ""
    for div, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if a >= div * 0.9995:  # 999.6 → 1k, not 1e+03
            t = a / div
            return f"{sign}{prefix}{t:,.0f}{suffix}" if t >= 999.5 else f"{sign}{prefix}{t:.3g}{suffix}"
    return f"{sign}{prefix}{a:.3g}"
