"""Paired statistics over per-item results: every arm scored the *same* test items, so arms are compared item by item.

Pure numpy/scipy on ``{item_id: score}`` dicts; no model code.

- :func:`paired_diff` — difference of mean scores (b minus a) with a percentile-bootstrap 95% CI over items, and
  McNemar's exact test when both score vectors are 0/1 (accuracy, exact match).
- :func:`items_needed` — test items (pairs) needed to detect a difference with McNemar's test (Connor 1987).
- :func:`crossover` — the training-set size n where LoRA's learning curve reaches the best prompting point.

Why paired: two accuracies of 0.60 and 0.65 on 100 items each have overlapping Wilson intervals, but when both
arms get the same 55 items right and differ only on 10, the paired difference is far better determined. The
bootstrap resamples *items* (both arms' scores of an item travel together), so it keeps that correlation.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Mapping, Sequence

import numpy as np
from scipy import stats as _st

__all__ = ["PairedDiff", "paired_diff", "mcnemar_exact", "items_needed", "crossover"]

#: Above this many distinct per-item differences the bootstrap resamples indices (chunked); at or below it, it
#: draws multinomial counts of the distinct values — the same distribution, in O(reps × distinct) instead of
#: O(reps × n). 0/1 scores have 3 distinct differences (-1, 0, +1).
_MULTINOMIAL_MAX_DISTINCT = 64
_CHUNK_ELEMENTS = 1 << 22


@dataclass(frozen=True)
class PairedDiff:
    """``b`` minus ``a`` on the same items.

    ``diff = mean_b - mean_a``; ``[ci_low, ci_high]`` is the percentile-bootstrap 95% CI of that difference
    (items resampled with replacement, ``reps`` times, fixed ``seed``). ``mcnemar_p`` is McNemar's exact two-sided
    p-value (binomial test on the discordant pairs) for 0/1 scores, ``None`` otherwise. ``b_only`` / ``a_only``
    count discordant items: b right and a wrong / a right and b wrong (for non-binary scores: items where b / a
    scored strictly higher).
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

    @property
    def discordant_rate(self) -> float:
        return (self.b_only + self.a_only) / self.n if self.n else float("nan")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        p = f", McNemar p={self.mcnemar_p:.3g}" if self.mcnemar_p is not None else ""
        return (
            f"{self.b} − {self.a} = {self.diff:+.3f} (95% CI {self.ci_low:+.3f} to {self.ci_high:+.3f}, "
            f"n={self.n}{p})"
        )


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


def _is_binary(x: np.ndarray) -> bool:
    return bool(np.all((x == 0.0) | (x == 1.0)))


def _bootstrap_mean_ci(d: np.ndarray, seed: int, reps: int) -> tuple[float, float]:
    """Percentile bootstrap 95% CI of mean(d), resampling items with replacement."""
    n = d.size
    rng = np.random.default_rng(seed)
    values, counts = np.unique(d, return_counts=True)
    if values.size == 1:
        v = float(values[0])
        return v, v
    if values.size <= _MULTINOMIAL_MAX_DISTINCT:
        draws = rng.multinomial(n, counts / n, size=reps)  # (reps, distinct): how often each value is drawn
        means = draws @ values / n
    else:
        per = max(1, _CHUNK_ELEMENTS // n)
        parts = []
        for start in range(0, reps, per):
            m = min(per, reps - start)
            parts.append(d[rng.integers(0, n, size=(m, n))].mean(axis=1))
        means = np.concatenate(parts)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return float(lo), float(hi)


def paired_diff(
    a_scores: Mapping[str, float],
    b_scores: Mapping[str, float],
    a_name: str,
    b_name: str,
    *,
    seed: int = 0,
    reps: int = 5000,
) -> PairedDiff:
    """Paired comparison of two arms on the same items (b minus a).

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
    if not ka:
        raise ValueError(f"{a_name} and {b_name} have no scored items to compare")
    if reps < 1:
        raise ValueError("reps must be >= 1")
    ids = sorted(ka)
    x = np.array([float(a_scores[i]) for i in ids])
    y = np.array([float(b_scores[i]) for i in ids])
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise ValueError(f"{a_name} / {b_name}: scores must be finite numbers")
    d = y - x
    lo, hi = _bootstrap_mean_ci(d, seed, reps)
    b_only = int(np.sum(y > x))
    a_only = int(np.sum(x > y))
    p = mcnemar_exact(b_only, a_only) if _is_binary(x) and _is_binary(y) else None
    diff = float(y.mean() - x.mean())
    # the percentile interval of a bootstrap always brackets the sample mean except in degenerate float cases
    lo, hi = min(lo, diff), max(hi, diff)
    return PairedDiff(
        a=a_name, b=b_name, n=int(x.size), mean_a=float(x.mean()), mean_b=float(y.mean()), diff=diff,
        ci_low=lo, ci_high=hi, mcnemar_p=p, b_only=b_only, a_only=a_only,
    )


def items_needed(
    p_a: float,
    p_b: float,
    discordant_rate: float | None = None,
    *,
    alpha: float = 0.05,
    power: float = 0.8,
    d: float | None = None,
) -> int:
    """Test items (pairs) McNemar's test needs to detect a difference ``d`` in accuracy, two-sided.

    Connor (1987), "Sample size for testing differences in proportions for the paired-sample design",
    Biometrics 43:207–211 (the formula also given by Miettinen 1968)::

        n = ( z_{1-α/2} · √ψ  +  z_{power} · √(ψ − δ²) )²  /  δ²

    with δ the difference to detect (default ``|p_b − p_a|``) and ψ the discordant-pair rate (share of items on
    which the two arms disagree, ``(b_only + a_only) / n``). ψ is taken from the data when given — the usual case,
    as arms on the same items disagree far less than independent ones — else assumed from independent arms:
    ``ψ = p_a(1 − p_b) + p_b(1 − p_a)``. ψ can never be below δ (a difference of δ needs at least δ discordant),
    so ψ = max(ψ, δ). Rounded up.

    Example: ψ = 0.2, δ = 0.1, α = 0.05, power 0.8: (1.95996·0.44721 + 0.84162·0.43589)² / 0.01 = 154.6 → 155.
    """
    for name, v in (("p_a", p_a), ("p_b", p_b)):
        if not (isinstance(v, (int, float)) and math.isfinite(v) and 0.0 <= v <= 1.0):
            raise ValueError(f"{name} must be a proportion in [0, 1], got {v!r}")
    if not (0 < alpha < 1 and 0 < power < 1):
        raise ValueError("alpha and power must be in (0, 1)")
    delta = abs(p_b - p_a) if d is None else abs(float(d))
    if not math.isfinite(delta) or delta <= 0:
        raise ValueError("the difference to detect must be > 0")
    if delta > 1:
        raise ValueError("the difference to detect must be <= 1")
    if discordant_rate is None:
        psi = p_a * (1 - p_b) + p_b * (1 - p_a)
    else:
        if not (math.isfinite(discordant_rate) and 0 <= discordant_rate <= 1):
            raise ValueError(f"discordant_rate must be in [0, 1], got {discordant_rate!r}")
        psi = float(discordant_rate)
    psi = min(1.0, max(psi, delta))
    za = _st.norm.ppf(1 - alpha / 2)
    zb = _st.norm.ppf(power)
    n = (za * math.sqrt(psi) + zb * math.sqrt(max(psi - delta * delta, 0.0))) ** 2 / (delta * delta)
    return max(1, int(math.ceil(n - 1e-9)))


def _best(curve: Sequence[tuple[float, float]]) -> tuple[float, float]:
    """Highest quality; ties go to the cheaper (smaller) point."""
    return max(curve, key=lambda p: (p[1], -p[0]))


def crossover(prompt_curve: Sequence[tuple[int, float]], lora_curve: Sequence[tuple[int, float]]) -> dict[str, Any]:
    """Where LoRA's learning curve (quality vs n training examples) first reaches the *best* prompting point.

    The target is the best prompting quality over the k sweep (ties: smallest k). Going up the LoRA curve in n,
    the first measured point at or above the target is found; the crossover n is interpolated between it and the
    point before, linearly in log n (train-size sweeps are geometric) — or linearly in n if a size is 0. If the
    smallest measured n already reaches the target, the crossover is "at or below" that n. If no point reaches
    it, ``n`` is None and ``reason`` says how far short LoRA's best point stays. Point estimates only: the paired
    CIs in the report say whether the gaps are real.

    Returns ``{"n", "crosses", "at_or_below", "best_prompting": {"k", "quality"}, "lora_reaches": {"n", "quality"}
    | None, "lora_range": [n_min, n_max], "reason", "statement", "method"}``.
    """
    pc = [(float(k), float(q)) for k, q in prompt_curve if q is not None and math.isfinite(q)]
    lc = sorted((float(n), float(q)) for n, q in lora_curve if q is not None and math.isfinite(q))
    base: dict[str, Any] = {
        "n": None, "crosses": False, "at_or_below": False, "best_prompting": None, "lora_reaches": None,
        "lora_range": None, "method": "first LoRA point >= best prompting quality; interpolated in log n",
    }
    if not pc or not lc:
        missing = "prompting" if not pc else "LoRA"
        reason = f"no {missing} points to compare"
        return base | {"reason": reason, "statement": f"No crossover: {reason}."}
    k_best, q_best = _best(pc)
    base["best_prompting"] = {"k": int(k_best), "quality": q_best}
    base["lora_range"] = [int(lc[0][0]), int(lc[-1][0])]
    for i, (n, q) in enumerate(lc):
        if q < q_best:
            continue
        if i == 0:
            stmt = (
                f"LoRA already reaches the best prompting point (k={int(k_best)}, {q_best:.3f}) at the smallest "
                f"training size measured, n={int(n)} ({q:.3f}): the crossover is at or below n={int(n)}."
            )
            return base | {"n": n, "crosses": True, "at_or_below": True, "lora_reaches": {"n": int(n), "quality": q},
                           "reason": None, "statement": stmt}
        n0, q0 = lc[i - 1]
        t = (q_best - q0) / (q - q0) if q != q0 else 1.0
        if n0 > 0 and n > 0:
            nx = math.exp(math.log(n0) + t * (math.log(n) - math.log(n0)))
        else:
            nx = n0 + t * (n - n0)
        stmt = (
            f"LoRA overtakes the best prompting point (k={int(k_best)}, {q_best:.3f}) at n ≈ {nx:,.0f} training "
            f"examples (between n={int(n0)}: {q0:.3f} and n={int(n)}: {q:.3f})."
        )
        return base | {"n": nx, "crosses": True, "lora_reaches": {"n": int(n), "quality": q}, "reason": None,
                       "statement": stmt}
    n_top, q_top = _best([(n, q) for n, q in lc])
    reason = (
        f"LoRA's best point (n={int(n_top)}: {q_top:.3f}) stays {q_best - q_top:.3f} below the best prompting "
        f"point (k={int(k_best)}: {q_best:.3f}) over the measured range n={int(lc[0][0])}–{int(lc[-1][0])}"
    )
    return base | {"reason": reason, "statement": f"No crossover: {reason}."}
