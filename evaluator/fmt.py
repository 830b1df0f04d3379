"""The one formatter of numbers in outputs: money, quantities, percentages — used by costs, report and compare."""

from __future__ import annotations

import math


def _p(x: float | None) -> str:
    """A price per M tokens: as few digits as needed."""
    if x is None:
        return "-"
    return f"{x:.6g}"


def _usd(x: float | None) -> str:
    if x is None:
        return "n/a"
    if math.isinf(x):
        return "$inf"
    if math.isnan(x):
        return "$n/a"
    a = abs(x)
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


def _q(x: float | None) -> str:
    """A quantity (tokens, requests): 1.5B, 50M, 48,020, 0.25."""
    if x is None:
        return "n/a"
    if math.isinf(x):
        return "inf"
    a = abs(x)
    if a >= 1e9:
        return f"{x / 1e9:.4g}B"
    if a >= 1e6:
        return f"{x / 1e6:.4g}M"
    if a >= 1000:
        return f"{x:,.0f}"
    return f"{x:.4g}"


def _pct(x: float) -> str:
    return f"{x * 100:.3g}%"
