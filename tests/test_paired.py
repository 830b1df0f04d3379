"""Paired statistics: McNemar exact p-values, Newcombe / bootstrap intervals of paired differences, the symmetric
reading against a margin (judge). Crossover: tests/test_crossover.py; interval formulas: tests/test_intervals.py."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from evaluator.analysis import intervals
from evaluator.analysis.paired import PairedDiff, judge, mcnemar_exact, paired_diff


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
    # the interval is Newcombe's method 10 at alpha 0.05
    c = intervals.PairedCounts(both=20, b_only=8, a_only=2, neither=10)
    assert (d.ci_low, d.ci_high) == intervals.newcombe_paired_interval(c, 0.05)
    assert d.ci_method == "newcombe" and d.alpha == 0.05 and (d.both, d.neither) == (20, 10)
    assert d.ci_low <= d.diff <= d.ci_high
    # close to the normal-approximation interval of a paired mean: 1.96 · sd(d) / √n
    diffs = np.array([b[k] - a[k] for k in sorted(a)])
    half = 1.96 * diffs.std(ddof=0) / math.sqrt(diffs.size)
    assert (d.ci_high - d.ci_low) / 2 == pytest.approx(half, rel=0.25)
    assert "McNemar p=0.109" in d.summary()
    assert d.as_dict()["mcnemar_p"] == d.mcnemar_p


def test_paired_diff_is_deterministic_and_alpha_sets_the_level():
    rng = np.random.default_rng(3)
    a = {f"i{i}": float(rng.random() < 0.6) for i in range(300)}
    b = {f"i{i}": float(rng.random() < 0.7) for i in range(300)}
    assert paired_diff(a, b, "a", "b") == paired_diff(a, b, "a", "b")
    d05, d10 = paired_diff(a, b, "a", "b"), paired_diff(a, b, "a", "b", alpha=0.10)
    assert d05.diff == d10.diff
    assert d05.ci_low < d10.ci_low < d10.diff < d10.ci_high < d05.ci_high
    assert "90% CI" in d10.summary() and "95% CI" in d05.summary()


def test_paired_diff_on_a_subset_of_items():
    a, b = _pairs(15, 6, 3, 6)
    sub = sorted(a)[:10]
    d = paired_diff(a, b, "a", "b", items=sub)
    assert d.n == 10 and d == paired_diff({k: a[k] for k in sub}, {k: b[k] for k in sub}, "a", "b")
    with pytest.raises(ValueError, match="not scored"):
        paired_diff(a, b, "a", "b", items=["nope"])


def test_paired_diff_order_of_items_does_not_matter():
    a, b = _pairs(15, 6, 3, 6)
    a_rev = dict(reversed(list(a.items())))
    assert paired_diff(a, b, "a", "b") == paired_diff(a_rev, b, "a", "b")


def test_identical_arms_do_not_collapse_to_a_point():
    """The percentile bootstrap gave [0, 0] when the arms never disagree; Newcombe's interval stays informative."""
    a, _ = _pairs(10, 0, 0, 5)
    d = paired_diff(a, dict(a), "x", "y")
    assert d.diff == 0 and d.mcnemar_p == 1.0
    assert d.ci_low < -0.05 and d.ci_high > 0.05
    five, _ = _pairs(5, 0, 0, 0)
    d5 = paired_diff(five, dict(five), "x", "y")
    assert d5.ci_high > 0.3  # five agreeing items say almost nothing


def test_one_discordant_item_in_twenty_allows_a_loss():
    a, b = _pairs(10, 1, 0, 9)
    d = paired_diff(a, b, "a", "b")
    assert d.diff == pytest.approx(0.05) and d.ci_low < 0 < d.ci_high


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


# -- judge: symmetric decisions against a margin ---------------------------------------------------------------------


def test_judge_within_beyond_undetermined():
    a, b = _pairs(400, 5, 5, 90)  # 500 items, no difference, few discordant: upper end below +0.02
    j = judge(paired_diff(a, b, "A", "B"), 0.02)
    assert j["outcome"] == "within" and j["items_needed"] is None
    a, b = _pairs(200, 80, 5, 15)  # +0.25 on 300 items
    j = judge(paired_diff(a, b, "A", "B"), 0.02)
    assert j["outcome"] == "beyond"
    a, b = _pairs(20, 4, 3, 13)  # +0.025 on 40 items: wide
    j = judge(paired_diff(a, b, "A", "B"), 0.02)
    assert j["outcome"] == "undetermined" and j["lean"] == "beyond"
    assert j["items_needed"]["criterion"] == "lower_above"


def test_judge_difference_exactly_at_the_margin_is_not_beyond_it():
    """0.54 − 0.52 = 0.020000000000000018 in floats; it must read as *at* the margin: it leans 'within'."""
    a, b = _pairs(50, 3, 1, 46)  # mean_a 0.51, mean_b 0.53 on 100 items: diff 0.02
    d = paired_diff(a, b, "A", "B")
    assert abs(d.diff - 0.02) < 1e-12
    j = judge(d, 0.02)
    assert j["outcome"] == "undetermined" and j["lean"] == "within"
    assert j["items_needed"]["n"] is None  # at the margin no test size shows "at or below" with 80% power
