"""The Pareto frontier of quality vs monthly cost: pure (no matplotlib), so report.json's quality-vs-cost table and
the plot mark the same options."""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

from evaluator.fmt import num

__all__ = ["pareto_frontier"]


def pareto_frontier(points: Sequence[Mapping[str, Any]]) -> list[int]:
    """Indices of the options no other option beats on both counts (cheaper-or-equal *and* better-or-equal, one
    strictly), in increasing cost. Points without a finite cost or quality are left out."""
    ok = [
        (i, num(p.get("monthly_usd")), num(p.get("quality")))
        for i, p in enumerate(points)
    ]
    ok = [(i, c, q) for i, c, q in ok if c is not None and q is not None and math.isfinite(c) and math.isfinite(q)]
    ok.sort(key=lambda t: (t[1], -t[2]))
    front: list[int] = []
    best_q = -math.inf
    for i, c, q in ok:
        if q > best_q:
            front.append(i)
            best_q = q
    return front
