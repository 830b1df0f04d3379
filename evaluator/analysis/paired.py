"""Paired statistics over per-item results: every arm scored the *same* test items, so arms are compared item by item.

Pure numpy/scipy on ``{item_id: score}`` dicts; no model code.

- :func:`paired_diff` — difference of mean scores (b minus a) with its 1 − alpha interval: Newcombe's method 10 for
  0/1 scores (informative even with few or no discordant pairs, where a percentile bootstrap collapses to [0, 0]),
  a percentile bootstrap over items for non-binary scores; McNemar's exact test for 0/1 scores.
- :func:`judge` — the symmetric, interval-based reading of one difference against a margin (within / beyond /
  undetermined), with the items needed for the criterion it leans to (power of the interval criterion itself, by
  simulation: :func:`evaluator.analysis.power.items_needed`). The verdict and ``compare`` both use it.

Why paired: two accuracies of 0.60 and 0.65 on 100 items each have overlapping Wilson intervals, but when both
arms get the same 55 items right and differ only on 10, the paired difference is far better determined.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Iterable, Mapping

import numpy as np
from scipy import stats as _st

from evaluator.analysis import intervals
from evaluator.analysis.power import items_needed
from evaluator.fmt import ci_text

__all__ = ["PairedDiff", "paired_diff", "mcnemar_exact", "paired_permutation_p", "judge"]


@dataclass(frozen=True)
class PairedDiff:
    """``b`` minus ``a`` on the same items.

    ``diff = mean_b - mean_a``; ``[ci_low, ci_high]`` its 1 − ``alpha`` interval by ``ci_method`` ("newcombe" for
    0/1 scores, "bootstrap" otherwise). ``mcnemar_p`` is McNemar's exact two-sided p-value for 0/1 scores, ``None``
    otherwise. ``b_only`` / ``a_only`` count discordant items (b right and a wrong / a right and b wrong; for
    non-binary scores: items where b / a scored strictly higher); ``both`` / ``neither`` the concordant ones (0/1).
    """

    a: str
    b: str
    n: int
    mean_a: float
    mean_b: float
    diff: float
    ci_low: float
    ci_high: float
    mcnemar_p: float | None
    b_only: int
    a_only: int
    both: int = 0
    neither: int = 0
    alpha: float = 0.05
    ci_method: str = "newcombe"

    @property
    def discordant_rate(self) -> float:
        return (self.b_only + self.a_only) / self.n if self.n else float("nan")

    @property
    def binary(self) -> bool:
        return self.mcnemar_p is not None

    def counts(self) -> intervals.PairedCounts:
        return intervals.PairedCounts(both=self.both, b_only=self.b_only, a_only=self.a_only, neither=self.neither)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self, low: float | None = None, high: float | None = None, note: str = "") -> str:
        """The one "b − a = diff (interval)" sentence: "B n=64 − A k=8 = +0.041 (95% CI -0.020 to +0.103, n=56,
        McNemar p=0.21)"; ``low``/``high`` replace the interval (e.g. widened by a procedure bootstrap), ``note`` is
        added inside the brackets after a semicolon."""
        ci = ci_text(self.alpha, self.ci_low if low is None else low, self.ci_high if high is None else high, self.n,
                     self.mcnemar_p)
        return f"{self.b} − {self.a} = {self.diff:+.3f} ({ci}" + (f"; {note}" if note else "") + ")"


def mcnemar_exact(b_only: int, a_only: int) -> float:
    """Exact two-sided McNemar p-value: ``min(1, 2 · P(X <= min(b, c)))`` with ``X ~ Binomial(b + c, 1/2)``.

    Under the null hypothesis (both arms equally accurate) each discordant item is equally likely to favour either
    arm. No discordant items → p = 1. E.g. b=8, c=2: 2 · P(X <= 2 | Bin(10, .5)) = 2 · 56/1024 = 0.109375.
    """
    if b_only < 0 or a_only < 0:
        raise ValueError("discordant counts must be >= 0")
    m = b_only + a_only
    if m == 0:
        return 1.0
    return float(min(1.0, 2.0 * _st.binom.cdf(min(b_only, a_only), m, 0.5)))


def paired_permutation_p(d: np.ndarray | list[float], *, reps: int = 10_000, seed: int = 0) -> float:
    """Two-sided p-value of a paired sign-flip permutation test of mean(d) = 0 (non-binary scores, where McNemar does
    not apply): each item's difference keeps its size and gets a random sign; p = (1 + #|mean*| >= |mean|) / (1 +
    reps), so it is never 0. Exact enumeration when 2^n <= reps. All-zero differences → 1."""
    x = np.asarray(d, dtype=float)
    x = x[x != 0]
    if x.size == 0:
        return 1.0
    obs = abs(x.mean()) - 1e-12
    n = x.size
    if 2 ** n <= reps:
        signs = ((np.arange(2 ** n)[:, None] >> np.arange(n)) & 1) * 2 - 1
        return float(np.mean(np.abs((signs * x).mean(axis=1)) >= obs))
    rng = np.random.default_rng(seed)
    hits = 0
    for start in range(0, reps, 2000):
        k = min(2000, reps - start)
        signs = rng.integers(0, 2, size=(k, n)) * 2 - 1
        hits += int(np.sum(np.abs((signs * x).mean(axis=1)) >= obs))
    return float((1 + hits) / (1 + reps))


def _is_binary(x: np.ndarray) -> bool:
    return bool(np.all((x == 0.0) | (x == 1.0)))


def paired_diff(
    a_scores: Mapping[str, float],
    b_scores: Mapping[str, float],
    a_name: str,
    b_name: str,
    *,
    alpha: float = 0.05,
    items: Iterable[str] | None = None,
    seed: int = 0,
    reps: int = 5000,
) -> PairedDiff:
    """Paired comparison of two arms on the same items (b minus a), on `items` when given (e.g. the test share of a
    selection split), else on all items.

    Raises ``ValueError`` when the two item-id sets differ (naming the counts) or are empty, or a score is not a
    finite number; the caller turns it into a ``UserError``.
    """
    ka, kb = set(a_scores), set(b_scores)
    if ka != kb:
        common = len(ka & kb)
        raise ValueError(
            f"{a_name} and {b_name} were scored on different items ({len(ka)} vs {len(kb)} items, {common} in "
            f"common; {len(ka - kb)} only in {a_name}, {len(kb - ka)} only in {b_name}) — a paired comparison needs "
            "the same test items"
        )
    ids = sorted(ka) if items is None else sorted(set(items))
    missing = [i for i in ids if i not in ka]
    if missing:
        raise ValueError(f"{a_name} / {b_name}: {len(missing)} requested items were not scored (e.g. {missing[0]})")
    if not ids:
        raise ValueError(f"{a_name} and {b_name} have no scored items to compare")
    if reps < 1:
        raise ValueError("reps must be >= 1")
    x = np.array([float(a_scores[i]) for i in ids])
    y = np.array([float(b_scores[i]) for i in ids])
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise ValueError(f"{a_name} / {b_name}: scores must be finite numbers")
    b_only = int(np.sum(y > x))
    a_only = int(np.sum(x > y))
    diff = float(y.mean() - x.mean())
    if _is_binary(x) and _is_binary(y):
        c = intervals.PairedCounts(both=int(np.sum((x == 1) & (y == 1))), b_only=b_only, a_only=a_only,
                                   neither=int(np.sum((x == 0) & (y == 0))))
        lo, hi = intervals.newcombe_paired_interval(c, alpha)
        diff = float(c.diff)
        return PairedDiff(a=a_name, b=b_name, n=c.n, mean_a=float(x.mean()), mean_b=float(y.mean()), diff=diff,
                          ci_low=lo, ci_high=hi, mcnemar_p=mcnemar_exact(b_only, a_only), b_only=b_only,
                          a_only=a_only, both=c.both, neither=c.neither, alpha=alpha, ci_method="newcombe")
    lo, hi = intervals.bootstrap_mean_interval(y - x, alpha=alpha, seed=seed, reps=reps)
    lo, hi = min(lo, diff), max(hi, diff)
    return PairedDiff(a=a_name, b=b_name, n=int(x.size), mean_a=float(x.mean()), mean_b=float(y.mean()), diff=diff,
                      ci_low=lo, ci_high=hi, mcnemar_p=None, b_only=b_only, a_only=a_only, alpha=alpha,
                      ci_method="bootstrap")


def judge(d: PairedDiff, margin: float, *, low: float | None = None, high: float | None = None,
          counts: intervals.PairedCounts | None = None, selection_share: float = 0.0) -> dict[str, Any]:
    """Read ``d`` (b minus a) against ``margin`` with symmetric interval rules:

    - ``"within"``: the upper bound is at or below the margin (b is not better than a by more than the margin —
      non-inferiority of a);
    - ``"beyond"``: the lower bound is above the margin (b better than a by more than the margin);
    - ``"undetermined"``: anything else, leaning to the side of the point estimate, with the paired test items needed
      for *that* criterion (power of the interval criterion itself, at the observed cell frequencies).

    ``low``/``high`` replace d's interval (e.g. a bootstrap of the whole select-then-compare procedure); ``counts``
    the table used for planning (default d's own). ``selection_share`` > 0 adds the total items incl. that share.
    """
    lo = d.ci_low if low is None else low
    hi = d.ci_high if high is None else high
    out: dict[str, Any] = {"margin": margin, "ci_low": lo, "ci_high": hi, "diff": d.diff}
    if intervals.meets((lo, hi), "upper_at_or_below", margin, n=d.n):
        return out | {"outcome": "within", "lean": "within", "items_needed": None}
    if intervals.meets((lo, hi), "lower_above", margin, n=d.n):
        return out | {"outcome": "beyond", "lean": "beyond", "items_needed": None}
    lean_within = intervals.meets((d.diff, d.diff), "upper_at_or_below", margin, n=d.n)
    criterion = "upper_at_or_below" if lean_within else "lower_above"
    out |= {"outcome": "undetermined", "lean": "within" if lean_within else "beyond"}
    if not d.binary:
        out["items_needed"] = {"n": None, "criterion": criterion, "reason": "non-binary scores: not computed"}
        return out
    need = items_needed(counts or d.counts(), criterion, margin, alpha=d.alpha)
    rec = asdict(need)
    if need.n is not None and selection_share > 0:
        rec["total_items"] = int(np.ceil(need.n / (1 - selection_share)))
    out["items_needed"] = rec
    return out
