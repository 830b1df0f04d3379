"""Paired statistics: McNemar exact p-values, bootstrap CIs of paired differences, sample sizes, crossover."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from evaluator.paired import PairedDiff, crossover, items_needed, mcnemar_exact, paired_diff


def _pairs(both_right: int, b_only: int, a_only: int, both_wrong: int) -> tuple[dict, dict]:
    a, b = {}, {}
    i = 0
    for n, (sa, sb) in ((both_right, (1, 1)), (b_only, (0, 1)), (a_only, (1, 0)), (both_wrong, (0, 0))):
        for _ in range(n):
            a[f"q{i}"], b[f"q{i}"] = float(sa), float(sb)
            i += 1
    return a, b


# -- McNemar ------------------------------------------------------------------------------------------------------


def test_mcnemar_hand_computed():
    # 2 · P(X <= 2 | Bin(10, 1/2)) = 2 · (1 + 10 + 45) / 1024 = 112 / 1024
    assert mcnemar_exact(8, 2) == pytest.approx(0.109375, abs=1e-12)
    assert mcnemar_exact(2, 8) == pytest.approx(0.109375, abs=1e-12)  # symmetric
    assert mcnemar_exact(5, 0) == pytest.approx(2 / 32)  # 2 · (1/2)^5
    assert mcnemar_exact(0, 0) == 1.0  # no discordant items: no evidence
    assert mcnemar_exact(3, 3) == 1.0  # capped at 1
    assert mcnemar_exact(8, 2) == pytest.approx(stats.binomtest(8, 10, 0.5).pvalue)
    with pytest.raises(ValueError):
        mcnemar_exact(-1, 2)


def test_paired_diff_binary():
    a, b = _pairs(both_right=20, b_only=8, a_only=2, both_wrong=10)
    d = paired_diff(a, b, "prompting", "lora")
    assert isinstance(d, PairedDiff)
    assert (d.a, d.b, d.n, d.b_only, d.a_only) == ("prompting", "lora", 40, 8, 2)
    assert d.mean_a == pytest.approx(22 / 40) and d.mean_b == pytest.approx(28 / 40)
    assert d.diff == pytest.approx(6 / 40)
    assert d.mcnemar_p == pytest.approx(0.109375, abs=1e-12)
    assert d.discordant_rate == pytest.approx(10 / 40)
    # the CI contains the difference and is roughly symmetric around it (nearly normal at these counts)
    assert d.ci_low <= d.diff <= d.ci_high
    assert abs((d.ci_high - d.diff) - (d.diff - d.ci_low)) < 0.04
    # and close to the normal-approximation interval of a paired mean: 1.96 · sd(d) / √n
    diffs = np.array([b[k] - a[k] for k in sorted(a)])
    half = 1.96 * diffs.std(ddof=0) / math.sqrt(diffs.size)
    assert (d.ci_high - d.ci_low) / 2 == pytest.approx(half, rel=0.2)
    assert "McNemar p=0.109" in d.summary()
    assert d.as_dict()["mcnemar_p"] == d.mcnemar_p


def test_paired_diff_is_deterministic_and_seeded():
    rng = np.random.default_rng(3)
    a = {f"i{i}": float(rng.random() < 0.6) for i in range(300)}
    b = {f"i{i}": float(rng.random() < 0.7) for i in range(300)}
    assert paired_diff(a, b, "a", "b") == paired_diff(a, b, "a", "b")
    d1, d2 = paired_diff(a, b, "a", "b", seed=1), paired_diff(a, b, "a", "b", seed=2)
    assert d1.diff == d2.diff and abs(d1.ci_low - d2.ci_low) < 0.03


def test_paired_diff_order_of_items_does_not_matter():
    a, b = _pairs(15, 6, 3, 6)
    a_rev = dict(reversed(list(a.items())))
    assert paired_diff(a, b, "a", "b") == paired_diff(a_rev, b, "a", "b")


def test_identical_arms():
    a, _ = _pairs(10, 0, 0, 5)
    d = paired_diff(a, dict(a), "x", "y")
    assert d.diff == 0 and d.ci_low == 0 and d.ci_high == 0 and d.mcnemar_p == 1.0


def test_non_binary_scores_have_no_mcnemar():
    rng = np.random.default_rng(0)
    a = {f"i{i}": float(rng.random()) for i in range(200)}  # e.g. token F1
    b = {k: min(1.0, v + 0.1 * rng.random()) for k, v in a.items()}
    d = paired_diff(a, b, "a", "b", reps=2000)
    assert d.mcnemar_p is None
    assert d.ci_low <= d.diff <= d.ci_high
    assert d.ci_low > 0  # b is never worse, and better on most items
    assert d.b_only + d.a_only <= d.n


def test_item_id_mismatch_raises():
    a = {"x": 1.0, "y": 0.0, "z": 1.0}
    b = {"x": 1.0, "y": 1.0, "w": 0.0}
    with pytest.raises(ValueError, match=r"different items .*3 vs 3 items, 2 in common"):
        paired_diff(a, b, "A k=32", "B n=100")
    with pytest.raises(ValueError, match="no scored items"):
        paired_diff({}, {}, "a", "b")
    with pytest.raises(ValueError, match="finite"):
        paired_diff({"x": float("nan")}, {"x": 1.0}, "a", "b")


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 1), st.integers(0, 1)), min_size=1, max_size=80))
def test_paired_diff_properties(pairs):
    a = {f"i{i}": float(x) for i, (x, _) in enumerate(pairs)}
    b = {f"i{i}": float(y) for i, (_, y) in enumerate(pairs)}
    d = paired_diff(a, b, "a", "b", reps=400)
    assert -1.0 <= d.ci_low <= d.diff <= d.ci_high <= 1.0
    assert d.diff * d.n == pytest.approx(d.b_only - d.a_only)
    assert 0.0 <= d.mcnemar_p <= 1.0
    # the bootstrap never leaves the range spanned by the per-item differences
    if d.b_only == 0:
        assert d.ci_high <= 0
    if d.a_only == 0:
        assert d.ci_low >= 0


# -- sample size --------------------------------------------------------------------------------------------------


def test_items_needed_connor_hand_computed():
    # ψ = 0.2, δ = 0.1: (1.959964·√0.2 + 0.841621·√0.19)² / 0.01 = (0.876523 + 0.366855)² / 0.01 = 154.60 → 155
    assert items_needed(0.5, 0.6, 0.2) == 155
    # without a discordant rate: independent arms, ψ = .5·.4 + .6·.5 = .5:
    # (1.959964·√.5 + 0.841621·√.49)² / .01 = (1.385904 + 0.589135)² / .01 = 390.08 → 391
    assert items_needed(0.5, 0.6) == 391
    # d overrides |p_b - p_a|; the discordant rate is never taken below δ (a difference of δ needs ψ >= δ):
    # ψ = 0.05 → 0.1: (1.959964·√0.1 + 0.841621·√0.09)² / 0.01 = (0.619795 + 0.252486)² / 0.01 = 76.09 → 77
    assert items_needed(0.5, 0.5, 0.2, d=0.1) == 155
    assert items_needed(0.5, 0.6, 0.05) == items_needed(0.5, 0.6, 0.1) == 77
    # more items for smaller differences, more for more disagreement, more for more power
    assert items_needed(0.5, 0.55, 0.2) > items_needed(0.5, 0.6, 0.2)
    assert items_needed(0.5, 0.6, 0.4) > items_needed(0.5, 0.6, 0.2)
    assert items_needed(0.5, 0.6, 0.2, power=0.9) > 155
    with pytest.raises(ValueError):
        items_needed(0.5, 0.5)  # nothing to detect
    with pytest.raises(ValueError):
        items_needed(1.5, 0.5)


def test_items_needed_gives_about_the_promised_power():
    """Simulate McNemar's exact test at the computed n: power ≈ 0.8 (the exact test is a little conservative)."""
    n = items_needed(0.5, 0.6, 0.2)
    rng = np.random.default_rng(0)
    psi, d = 0.2, 0.1
    counts = rng.multinomial(n, [(psi + d) / 2, (psi - d) / 2, 1 - psi], size=4000)
    b, c = counts[:, 0], counts[:, 1]
    p = np.minimum(1.0, 2 * stats.binom.cdf(np.minimum(b, c), b + c, 0.5))
    power = float((p < 0.05).mean())
    assert 0.70 <= power <= 0.87


# -- crossover ----------------------------------------------------------------------------------------------------


def test_crossover_interpolates_in_log_n():
    prompt = [(0, 0.20), (8, 0.40), (64, 0.50), (128, 0.48)]
    lora = [(16, 0.30), (100, 0.45), (400, 0.60), (1600, 0.70)]
    cx = crossover(prompt, lora)
    assert cx["crosses"] and not cx["at_or_below"]
    assert cx["best_prompting"] == {"k": 64, "quality": 0.50}
    assert cx["lora_reaches"] == {"n": 400, "quality": 0.60}
    # (0.50 - 0.45) / (0.60 - 0.45) = 1/3 of the way from log 100 to log 400: 100 · 4^(1/3)
    assert cx["n"] == pytest.approx(100 * 4 ** (1 / 3))
    assert "n ≈ 159" in cx["statement"]


def test_crossover_never():
    cx = crossover([(0, 0.3), (32, 0.733)], [(16, 0.33), (40, 0.52), (100, 0.65)])
    assert cx["n"] is None and not cx["crosses"]
    assert "0.083 below" in cx["reason"] and "n=16–100" in cx["reason"]
    assert cx["statement"].startswith("No crossover")


def test_crossover_at_smallest_n_and_ties():
    cx = crossover([(0, 0.5), (5, 0.6), (50, 0.6)], [(10, 0.6), (100, 0.7)])
    assert cx["best_prompting"]["k"] == 5  # ties: the cheaper prompt
    assert cx["n"] == 10 and cx["at_or_below"]
    assert "at or below n=10" in cx["statement"]


def test_crossover_missing_curves():
    assert crossover([], [(10, 0.5)])["n"] is None
    assert "no LoRA points" in crossover([(0, 0.5)], [])["reason"]
