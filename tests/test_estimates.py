"""Confidence intervals of one arm point."""

from __future__ import annotations

import pytest

from evaluator.analysis.estimates import estimate, wilson


def test_wilson_bounds_contain_the_estimate_exactly_at_0_and_1():
    for n in range(1, 200):
        for k in (0, n // 2, n):
            e = wilson(k, n)
            assert 0.0 <= e.low <= e.value <= e.high <= 1.0, (k, n)
        assert wilson(0, n).low == 0.0 and wilson(n, n).high == 1.0, n


def test_wilson_hand_computed():
    e = wilson(7, 10)  # Wilson 95%: [0.3968, 0.8922]
    assert e.value == 0.7 and e.low == pytest.approx(0.39678, abs=1e-4) and e.high == pytest.approx(0.89221, abs=1e-4)
    assert estimate([1.0] * 7 + [0.0] * 3).as_dict()["ci_method"] == "wilson"
