"""Confidence intervals and sample sizes for paired comparisons of two arms scored on the same items.

Pure numpy/scipy; no model code. The verdict uses these to make *interval-based* decisions:

- "fine-tuning not needed" is a non-inferiority claim: the upper bound of the interval of ``p_b - p_a`` (b = LoRA,
  a = best prompting) must lie **at or below** the margin (criterion ``"upper_at_or_below"``);
- "fine-tuning justified" needs the lower bound **above** the margin (criterion ``"lower_above"``).

Contents:

- :class:`PairedCounts` — the paired 2x2 table of 0/1 scores (``both``, ``b_only``, ``a_only``, ``neither``).
- :func:`wilson_interval` — Wilson score interval for one proportion.
- :func:`newcombe_paired_interval` — Newcombe (1998) method 10 for ``p_b - p_a`` (the decision interval).
- :func:`tango_paired_interval` — Tango (1998) asymptotic score interval (a cross-check; also for users).
- :func:`bootstrap_mean_interval` — percentile bootstrap of a mean, for *non-binary* per-item differences only.
- :func:`meets` — the decision comparison against a margin, with the stated tolerance :data:`TOL`.
- :func:`items_needed` — paired items needed for the decision *actually used* (the Newcombe criterion) to reach
  a target power, by seeded simulation.

Why not a bootstrap for 0/1 scores: when the arms never disagree, every resample has difference 0 and the
percentile interval collapses to [0, 0], which would "prove" equivalence from 5 items. Newcombe's and Tango's
intervals stay wide at small n whatever the discordance.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Literal, Sequence

import numpy as np
from scipy import optimize as _opt
from scipy import stats as _st

__all__ = [
    "TOL",
    "Criterion",
    "PairedCounts",
    "wilson_interval",
    "newcombe_paired_interval",
    "tango_paired_interval",
    "bootstrap_mean_interval",
    "meets",
]

#: Tolerance of :func:`meets` (absolute, on the difference scale). The quantities compared are differences of
#: accuracies, i.e. multiples of 1/n, so two distinct values are at least 1/n >= 1e-6 apart for any n <= 10^6,
#: while float rounding of such a subtraction is ~1e-16 (0.54 - 0.52 = 0.020000000000000018). A bound within TOL
#: of the margin is therefore *at* the margin: it satisfies "at or below" and fails "above".
TOL = 1e-9

Criterion = Literal["upper_at_or_below", "lower_above"]
_CRITERIA = ("upper_at_or_below", "lower_above")

#: Above this many distinct per-item differences the bootstrap resamples indices (chunked); at or below it, it
#: draws multinomial counts of the distinct values (same distribution, O(reps x distinct) instead of O(reps x n)).
_MULTINOMIAL_MAX_DISTINCT = 64
_CHUNK_ELEMENTS = 1 << 22

#: A discordant cell observed as 0 is planned with this many counts (so a plan never assumes the arms cannot
#: disagree, which would make any n look sufficient).
_ZERO_DISCORDANT_COUNT = 0.5

_CELLS = ("both", "b_only", "a_only", "neither")


def _check_alpha(alpha: float) -> float:
    a = float(alpha)
    if not (math.isfinite(a) and 0.0 < a < 1.0):
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    return a


def _z(alpha: float) -> float:
    return float(_st.norm.ppf(1.0 - _check_alpha(alpha) / 2.0))


def _check_criterion(criterion: str) -> None:
    if criterion not in _CRITERIA:
        raise ValueError(f"criterion must be one of {_CRITERIA}, got {criterion!r}")


def _as_count(name: str, v: object) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
        if isinstance(v, (float, np.floating)) and float(v).is_integer():
            v = int(v)
        else:
            raise ValueError(f"{name} must be a non-negative integer count, got {v!r}")
    v = int(v)
    if v < 0:
        raise ValueError(f"{name} must be a non-negative integer count, got {v!r}")
    return v


# -- the paired table -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PairedCounts:
    """Paired 2x2 table of 0/1 scores: arms ``a`` and ``b`` scored on the same ``n`` items.

    ``both``: a right and b right; ``b_only``: b right, a wrong; ``a_only``: a right, b wrong; ``neither``.
    In Newcombe's (1998) notation (e, f, g, h) = (both, b_only, a_only, neither) with arm b as the first
    classification, so his theta = (f - g)/n is :attr:`diff` = p_b - p_a.
    """

    both: int
    b_only: int
    a_only: int
    neither: int

    def __post_init__(self) -> None:
        for name in _CELLS:
            object.__setattr__(self, name, _as_count(name, getattr(self, name)))
        if self.n == 0:
            raise ValueError("a paired table needs at least one item")

    @property
    def n(self) -> int:
        return self.both + self.b_only + self.a_only + self.neither

    @property
    def diff(self) -> float:
        """``p_b - p_a = (b_only - a_only) / n``."""
        return (self.b_only - self.a_only) / self.n

    @property
    def p_a(self) -> float:
        return (self.both + self.a_only) / self.n

    @property
    def p_b(self) -> float:
        return (self.both + self.b_only) / self.n

    @classmethod
    def from_scores(cls, a: Sequence[float], b: Sequence[float]) -> "PairedCounts":
        """Tabulate two equally long 0/1 score sequences (item i of ``a`` pairs with item i of ``b``)."""
        x = np.asarray(a, dtype=float).ravel()
        y = np.asarray(b, dtype=float).ravel()
        if x.size != y.size:
            raise ValueError(f"paired scores need the same length, got {x.size} and {y.size}")
        if x.size == 0:
            raise ValueError("no scored items to tabulate")
        for name, v in (("a", x), ("b", y)):
            if not np.all((v == 0.0) | (v == 1.0)):
                raise ValueError(f"{name}: scores must be 0/1 for a paired table (use bootstrap_mean_interval)")
        xa, yb = x == 1.0, y == 1.0
        return cls(
            both=int(np.sum(xa & yb)), b_only=int(np.sum(~xa & yb)),
            a_only=int(np.sum(xa & ~yb)), neither=int(np.sum(~xa & ~yb)),
        )


# -- intervals --------------------------------------------------------------------------------------------------


def _wilson_arrays(k: np.ndarray, n: np.ndarray, z: float) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised Wilson bounds; exactly 0 at k = 0 and exactly 1 at k = n."""
    k = np.asarray(k, dtype=float)
    n = np.asarray(n, dtype=float)
    z2 = z * z
    p = k / n
    denom = n + z2
    centre = (k + z2 / 2.0) / denom
    half = z * np.sqrt(np.maximum(k * (1.0 - p), 0.0) + z2 / 4.0) / denom
    lo = np.where(k <= 0, 0.0, np.clip(centre - half, 0.0, 1.0))
    hi = np.where(k >= n, 1.0, np.clip(centre + half, 0.0, 1.0))
    return lo, hi


def wilson_interval(successes: int, n: int, alpha: float = 0.05) -> tuple[float, float]:
    """Two-sided ``1 - alpha`` Wilson score interval for ``successes / n`` (Wilson 1927).

    ``(k + z²/2 ± z·sqrt(k(n-k)/n + z²/4)) / (n + z²)``; the bounds are exactly 0.0 at k = 0 and 1.0 at k = n.
    """
    n = _as_count("n", n)
    k = _as_count("successes", successes)
    if n == 0:
        raise ValueError("n must be >= 1")
    if k > n:
        raise ValueError(f"successes ({k}) exceed n ({n})")
    lo, hi = _wilson_arrays(np.array(k), np.array(n), _z(alpha))
    return float(lo), float(hi)


def _newcombe_arrays(
    e: np.ndarray, f: np.ndarray, g: np.ndarray, h: np.ndarray, z: float
) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised Newcombe (1998) method 10 for theta = (f - g)/n, cells (e, f, g, h) as in :class:`PairedCounts`."""
    e, f, g, h = (np.asarray(v, dtype=float) for v in (e, f, g, h))
    n = e + f + g + h
    r1, r2 = e + f, e + g  # successes of the first (b) and second (a) classification
    p1, p2 = r1 / n, r2 / n
    l1, u1 = _wilson_arrays(r1, n, z)
    l2, u2 = _wilson_arrays(r2, n, z)
    # phi: Newcombe's continuity-corrected correlation of the two classifications. Numerator A = eh - fg, replaced
    # by A - n/2 when A > n/2, by 0 when 0 <= A <= n/2, and kept when A < 0; phi = 0 when a marginal total is 0.
    # The correction is what keeps the interval from collapsing to [0, 0] when there are no discordant pairs
    # (with the plain phi, (27, 0, 0, 27) would give phi = 1 and a zero-width interval).
    prod = (e + f) * (g + h) * (e + g) * (f + h)
    a = e * h - f * g
    a_corr = np.where(a > n / 2.0, a - n / 2.0, np.where(a >= 0.0, 0.0, a))
    with np.errstate(divide="ignore", invalid="ignore"):
        phi = np.where(prod > 0, a_corr / np.sqrt(np.where(prod > 0, prod, 1.0)), 0.0)
    theta = p1 - p2
    dl1, du2 = p1 - l1, u2 - p2
    du1, dl2 = u1 - p1, p2 - l2
    lower = theta - np.sqrt(np.maximum(dl1 * dl1 - 2.0 * phi * dl1 * du2 + du2 * du2, 0.0))
    upper = theta + np.sqrt(np.maximum(du1 * du1 - 2.0 * phi * du1 * dl2 + dl2 * dl2, 0.0))
    return np.clip(lower, -1.0, 1.0), np.clip(upper, -1.0, 1.0)


def newcombe_paired_interval(c: PairedCounts, alpha: float = 0.05) -> tuple[float, float]:
    """Newcombe (1998, Stat Med 17:2635-2650) method 10 interval for ``p_b - p_a`` at level ``1 - alpha``.

    Square-and-add of the two marginal Wilson intervals ``(l_b, u_b)``, ``(l_a, u_a)`` with the phi correlation::

        L = theta - sqrt((p_b - l_b)² - 2 phi (p_b - l_b)(u_a - p_a) + (u_a - p_a)²)
        U = theta + sqrt((u_b - p_b)² - 2 phi (u_b - p_b)(p_a - l_a) + (p_a - l_a)²)

    with Newcombe's continuity-corrected phi (see ``_newcombe_arrays``; 0 when a marginal total is 0). Never a
    point while n is finite, even with no discordant pairs: 5 agreeing items give about [-0.43, +0.43]. Bounds are
    clipped to [-1, 1].
    """
    lo, hi = _newcombe_arrays(
        np.array(c.both), np.array(c.b_only), np.array(c.a_only), np.array(c.neither), _z(alpha)
    )
    return float(lo), float(hi)


def _tango_statistic(delta: float, n12: int, n21: int, n: int) -> float:
    """Tango's score statistic at ``p_b - p_a = delta`` (n12 = b_only, n21 = a_only), with the restricted MLE of
    the a_only cell probability: the root of ``2n q² + (-(n12 + n21) + (2n - n12 + n21) delta) q
    - n21 delta (1 - delta) = 0``.
    """
    num = n12 - n21 - n * delta
    if num == 0.0:
        return 0.0
    qa = 2.0 * n
    qb = -(n12 + n21) + (2.0 * n - n12 + n21) * delta
    qc = -n21 * delta * (1.0 - delta)
    disc = math.sqrt(max(qb * qb - 4.0 * qa * qc, 0.0))
    # stable root of the quadratic (avoid cancellation when qb > 0)
    q = (disc - qb) / (2.0 * qa) if qb <= 0 else (-2.0 * qc) / (qb + disc)
    var = n * (2.0 * q + delta * (1.0 - delta))
    if var <= 0.0:
        return math.copysign(math.inf, num)
    return num / math.sqrt(var)


def tango_paired_interval(c: PairedCounts, alpha: float = 0.05) -> tuple[float, float]:
    """Tango (1998, Stat Med 17:891-908) asymptotic score interval for ``p_b - p_a`` at level ``1 - alpha``.

    The limits are the two roots of ``T(delta) = ±z`` with ``T(delta) = (b_only - a_only - n·delta) /
    sqrt(n (2 q~ + delta (1 - delta)))`` and ``q~`` the restricted MLE of the a_only cell probability, found with
    :func:`scipy.optimize.brentq`. At delta = 0, T is the uncorrected McNemar statistic, so the interval excludes
    0 exactly when McNemar's asymptotic test rejects. With no discordant pairs the limits are ±z²/(n + z²).
    """
    z = _z(alpha)
    n12, n21, n = c.b_only, c.a_only, c.n
    est = c.diff
    eps = 1e-12

    def f_lower(d: float) -> float:
        return _tango_statistic(d, n12, n21, n) - z

    def f_upper(d: float) -> float:
        return _tango_statistic(d, n12, n21, n) + z

    if n21 == n:  # estimate -1
        lower = -1.0
    else:
        lo_end = -1.0 + eps
        lower = lo_end if f_lower(lo_end) <= 0 else _opt.brentq(f_lower, lo_end, est, xtol=1e-13, maxiter=500)
    if n12 == n:  # estimate +1
        upper = 1.0
    else:
        hi_end = 1.0 - eps
        upper = hi_end if f_upper(hi_end) >= 0 else _opt.brentq(f_upper, est, hi_end, xtol=1e-13, maxiter=500)
    return max(-1.0, float(lower)), min(1.0, float(upper))


def bootstrap_mean_interval(
    d: Sequence[float], alpha: float = 0.05, seed: int = 0, reps: int = 5000
) -> tuple[float, float]:
    """Percentile bootstrap ``1 - alpha`` interval of ``mean(d)`` (items resampled with replacement).

    For NON-binary per-item differences (e.g. a graded score). For 0/1 scores use
    :func:`newcombe_paired_interval`: this interval collapses to [0, 0] when the arms never disagree. With at most
    64 distinct values it draws multinomial counts of the distinct values (the same distribution, much faster);
    deterministic for a seed. The interval is widened, if need be, to contain the sample mean.
    """
    x = np.asarray(d, dtype=float).ravel()
    if x.size == 0:
        raise ValueError("no per-item differences")
    if not np.all(np.isfinite(x)):
        raise ValueError("per-item differences must be finite numbers")
    a = _check_alpha(alpha)
    reps = int(reps)
    if reps < 1:
        raise ValueError("reps must be >= 1")
    n = x.size
    rng = np.random.default_rng(seed)
    values, counts = np.unique(x, return_counts=True)
    if values.size == 1:
        v = float(values[0])
        return v, v
    if values.size <= _MULTINOMIAL_MAX_DISTINCT:
        draws = rng.multinomial(n, counts / n, size=reps)
        means = draws @ values / n
    else:
        per = max(1, _CHUNK_ELEMENTS // n)
        parts = []
        for start in range(0, reps, per):
            m = min(per, reps - start)
            parts.append(x[rng.integers(0, n, size=(m, n))].mean(axis=1))
        means = np.concatenate(parts)
    lo, hi = np.percentile(means, [100.0 * a / 2.0, 100.0 * (1.0 - a / 2.0)])
    mean = float(x.mean())
    return min(float(lo), mean), max(float(hi), mean)


# -- decisions --------------------------------------------------------------------------------------------------


def _snap(v: float, n: int | None) -> float:
    """``v`` replaced by the nearest multiple of 1/n when within TOL of it (for exact accuracy differences)."""
    if n is None:
        return v
    k = round(v * n)
    exact = Fraction(int(k), n)
    return float(exact) if abs(v - float(exact)) <= TOL else v


def meets(interval: tuple[float, float], criterion: Criterion, margin: float, *, n: int | None = None) -> bool:
    """Whether ``interval = (lower, upper)`` meets the decision ``criterion`` against ``margin``.

    - ``"upper_at_or_below"``: ``upper <= margin``, decided as ``upper <= margin + TOL`` (non-inferiority: b is not
      better than a by more than the margin);
    - ``"lower_above"``: ``lower > margin``, decided as ``lower > margin + TOL`` (superiority beyond the margin).

    A bound within :data:`TOL` of the margin is *at* the margin (``0.54 - 0.52`` is at 0.02): it meets "at or
    below" and does not meet "above". With ``n`` (the number of items), a bound or margin within TOL of a
    multiple of 1/n is first taken to be exactly that multiple.
    """
    _check_criterion(criterion)
    lower, upper = (float(v) for v in interval)
    m = float(margin)
    if not all(math.isfinite(v) for v in (lower, upper, m)):
        raise ValueError(f"interval and margin must be finite, got {interval!r}, {margin!r}")
    if lower > upper + TOL:
        raise ValueError(f"interval lower bound {lower} exceeds upper bound {upper}")
    if n is not None:
        n = _as_count("n", n)
        if n == 0:
            raise ValueError("n must be >= 1")
        lower, upper, m = _snap(lower, n), _snap(upper, n), _snap(m, n)
    if criterion == "upper_at_or_below":
        return upper <= m + TOL
    return lower > m + TOL


def _meets_arrays(lower: np.ndarray, upper: np.ndarray, criterion: str, margin: float) -> np.ndarray:
    if criterion == "upper_at_or_below":
        return upper <= margin + TOL
    return lower > margin + TOL


# -- planning ---------------------------------------------------------------------------------------------------


