"""Power and sample size of the test the verdict uses: simulated power of the paired procedure and the items
needed to resolve a margin."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from evaluator.analysis.intervals import (
    _CELLS,
    _ZERO_DISCORDANT_COUNT,
    TOL,
    Criterion,
    PairedCounts,
    _as_count,
    _check_alpha,
    _check_criterion,
    _meets_arrays,
    _newcombe_arrays,
    _z,
)


@dataclass(frozen=True)
class ItemsNeeded:
    """Paired items needed for the Newcombe interval to meet ``criterion`` against ``margin`` with ``power``.

    ``n`` is None when no n <= n_max reaches the target (``reason`` says why); ``power_at_n`` is the simulated
    power at ``n`` (at n_max when ``n`` is None).
    ``assumed`` holds the planning cell probabilities and the assumed difference.
    """

    n: int | None
    power_at_n: float | None
    criterion: Criterion
    margin: float
    alpha: float
    power: float
    assumed: dict
    method: str
    reason: str | None


def planning_probabilities(c: PairedCounts) -> dict:
    """Planning cell probabilities from an observed table: observed proportions, with a zero *discordant* cell
    replaced by 0.5 counts (total renormalised). Returns ``{"both", "b_only", "a_only", "neither", "diff",
    "replaced"}`` (``replaced``: the discordant cells that were 0)."""
    counts = {name: float(getattr(c, name)) for name in _CELLS}
    replaced = [name for name in ("b_only", "a_only") if counts[name] == 0.0]
    for name in replaced:
        counts[name] = _ZERO_DISCORDANT_COUNT
    total = sum(counts.values())
    probs = {name: counts[name] / total for name in _CELLS}
    return probs | {"diff": probs["b_only"] - probs["a_only"], "replaced": replaced}


def _prob_vector(probs: Mapping[str, float] | Sequence[float]) -> np.ndarray:
    if isinstance(probs, Mapping):
        p = np.array([float(probs[name]) for name in _CELLS])
    else:
        p = np.asarray(probs, dtype=float).ravel()
    if p.size != 4 or not np.all(np.isfinite(p)) or np.any(p < 0) or not math.isclose(p.sum(), 1.0, abs_tol=1e-9):
        raise ValueError(f"cell probabilities must be 4 non-negative numbers summing to 1, got {probs!r}")
    return p / p.sum()


def _power(p: np.ndarray, n: int, criterion: str, margin: float, z: float, reps: int, seed: int) -> float:
    rng = np.random.default_rng(seed)  # same seed at every n: common random numbers
    tables = rng.multinomial(n, p, size=reps)
    lo, hi = _newcombe_arrays(tables[:, 0], tables[:, 1], tables[:, 2], tables[:, 3], z)
    return float(np.mean(_meets_arrays(lo, hi, criterion, margin)))


def simulated_power(
    probs: Mapping[str, float] | Sequence[float],
    n: int,
    criterion: Criterion,
    margin: float,
    *,
    alpha: float = 0.05,
    reps: int = 2000,
    seed: int = 0,
) -> float:
    """Share of ``reps`` simulated paired tables of ``n`` items (multinomial with cell probabilities ``probs``,
    order both, b_only, a_only, neither) whose Newcombe ``1 - alpha`` interval meets ``criterion`` against
    ``margin``. Seeded with ``seed`` afresh for each call, so the same arguments give the same value."""
    _check_criterion(criterion)
    n = _as_count("n", n)
    if n == 0:
        raise ValueError("n must be >= 1")
    if int(reps) < 1:
        raise ValueError("reps must be >= 1")
    return _power(_prob_vector(probs), n, criterion, float(margin), _z(alpha), int(reps), seed)


def items_needed(
    c: PairedCounts,
    criterion: Criterion,
    margin: float,
    *,
    alpha: float = 0.05,
    power: float = 0.8,
    reps: int = 2000,
    seed: int = 0,
    n_max: int = 200_000,
) -> ItemsNeeded:
    """Smallest number of paired items for which the Newcombe method-10 ``1 - alpha`` interval meets
    ``criterion`` against ``margin`` with probability >= ``power`` — power of the test actually used.

    Planning assumption: the true cell probabilities are the observed ones (:func:`planning_probabilities`; a zero
    discordant cell is planned as 0.5 counts). Power at n is simulated from ``reps`` multinomial tables with the
    same ``seed`` at every n (common random numbers: deterministic and nearly monotone in n); the smallest n is
    found by exponential search (4, 8, 16, ..., n_max) then integer bisection. When the assumed difference is not
    strictly on the deciding side of the margin (beyond :data:`TOL`), no n can reach the target: ``n = None``
    with the reason, after a single simulation at n_max (no search).
    """
    _check_criterion(criterion)
    a = _check_alpha(alpha)
    target = float(power)
    if not (math.isfinite(target) and 0.0 < target < 1.0):
        raise ValueError(f"power must be in (0, 1), got {power!r}")
    m = float(margin)
    if not math.isfinite(m):
        raise ValueError(f"margin must be finite, got {margin!r}")
    reps = int(reps)
    if reps < 1:
        raise ValueError("reps must be >= 1")
    n_max = _as_count("n_max", n_max)
    if n_max < 1:
        raise ValueError("n_max must be >= 1")

    plan = planning_probabilities(c)
    diff = plan["diff"]
    assumed = {name: plan[name] for name in _CELLS} | {"diff": diff}
    if plan["replaced"]:
        assumed["replaced_zero_discordant"] = list(plan["replaced"])
    side = "at or below" if criterion == "upper_at_or_below" else "above"
    note = (
        f" (zero discordant cell(s) {', '.join(plan['replaced'])} planned as {_ZERO_DISCORDANT_COUNT} counts)"
        if plan["replaced"] else ""
    )
    method = (
        f"simulation of the Newcombe (1998, method 10) {100 * (1 - a):g}% interval criterion "
        f"({'upper bound' if criterion == 'upper_at_or_below' else 'lower bound'} {side} margin {m:+g}), "
        f"{reps} multinomial tables per n, seed {seed} at every n (common random numbers), from the observed cell "
        f"proportions of {c.n} items{note}; smallest n with power >= {target:g} by exponential search and "
        f"bisection, n <= {n_max}"
    )
    base = dict(criterion=criterion, margin=m, alpha=a, power=target, assumed=assumed, method=method)

    p = _prob_vector([plan[name] for name in _CELLS])
    z = _z(a)
    cache: dict[int, float] = {}

    reachable = diff < m - TOL if criterion == "upper_at_or_below" else diff > m + TOL
    if not reachable:
        # One simulation at n_max only, for the record (about alpha/2 at the margin, ~0 beyond it): as n grows
        # the bound converges to the assumed difference, so power tends to at most alpha/2 and never to the target.
        where = "at" if abs(diff - m) <= TOL else "on the wrong side of"
        reason = (
            f"the assumed difference {diff:+.4f} lies {where} the margin {m:+g} for the criterion "
            f"'{criterion}' (the bound must end up {side} the margin), so no number of items reaches power "
            f"{target:g}"
        )
        return ItemsNeeded(n=None, power_at_n=_power(p, n_max, criterion, m, z, reps, seed), reason=reason, **base)

    def pw(k: int) -> float:
        if k not in cache:
            cache[k] = _power(p, k, criterion, m, z, reps, seed)
        return cache[k]

    lo, hi = 0, None  # invariant: power(lo) < target (lo = 0: no items), power(hi) >= target
    k = min(4, n_max)
    while True:
        if pw(k) >= target:
            hi = k
            break
        lo = k
        if k >= n_max:
            break
        k = min(2 * k, n_max)
    if hi is None:
        reason = (
            f"simulated power at n_max = {n_max} is {pw(n_max):.3f} < {target:g}: the assumed difference "
            f"{diff:+.4f} is too close to the margin {m:+g} for at most {n_max} items"
        )
        return ItemsNeeded(n=None, power_at_n=pw(n_max), reason=reason, **base)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if pw(mid) >= target:
            hi = mid
        else:
            lo = mid
    return ItemsNeeded(n=hi, power_at_n=pw(hi), reason=None, **base)
