"""Learning-curve crossover (point estimate) and its paired item bootstrap (evaluator.analysis.crossover)."""

from __future__ import annotations

import time

import numpy as np
import pytest

from evaluator.analysis.crossover import _crossover_n_batch, crossover, crossover_with_uncertainty

# -- point estimate (same cases as tests/test_paired.py) ------------------------------------------------------------


def test_crossover_interpolates_in_log_n():
    prompt = [(0, 0.20), (8, 0.40), (64, 0.50), (128, 0.48)]
    lora = [(16, 0.30), (100, 0.45), (400, 0.60), (1600, 0.70)]
    cx = crossover(prompt, lora)
    assert cx["crosses"] and not cx["at_or_below"]
    assert cx["best_prompting"] == {"k": 64, "quality": 0.50}
    assert cx["lora_reaches"] == {"n": 400, "quality": 0.60}
    assert cx["lora_range"] == [16, 1600]
    # (0.50 - 0.45) / (0.60 - 0.45) = 1/3 of the way from log 100 to log 400: 100 · 4^(1/3)
    assert cx["n"] == pytest.approx(100 * 4 ** (1 / 3))
    assert "n ≈ 159" in cx["statement"]


def test_crossover_linear_when_a_size_is_zero():
    cx = crossover([(0, 0.5)], [(0, 0.4), (100, 0.6)])
    assert cx["n"] == pytest.approx(50.0)


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


def test_crossover_ignores_non_finite_points():
    cx = crossover([(0, 0.5), (8, float("nan"))], [(10, 0.4), (100, None), (1000, 0.6)])
    assert cx["crosses"] and cx["lora_reaches"]["n"] == 1000


# -- bootstrap --------------------------------------------------------------------------------------------------------


def _binary_points(accs: dict[int, float], n_items: int, rng: np.random.Generator) -> dict[int, dict[str, float]]:
    """Each point gets exactly round(acc·n) correct items, placed at random (independently per point)."""
    out = {}
    for size, acc in accs.items():
        v = np.zeros(n_items)
        v[rng.choice(n_items, int(round(acc * n_items)), replace=False)] = 1.0
        out[size] = {f"item{j:04d}": float(x) for j, x in enumerate(v)}
    return out


def _clear_case():
    rng = np.random.default_rng(1)
    prompt = _binary_points({0: 0.30, 8: 0.50, 64: 0.60, 128: 0.58}, 500, rng)
    lora = _binary_points({16: 0.40, 64: 0.52, 256: 0.75, 1024: 0.85}, 500, rng)
    return prompt, lora


def _chance_case(seed: int = 0):
    rng = np.random.default_rng(seed)
    prompt = _binary_points({0: 0.48, 8: 0.50, 64: 0.47}, 100, rng)
    lora = _binary_points({16: 0.46, 40: 0.49, 100: 0.54}, 100, rng)
    return prompt, lora


def _means(curve):
    return [(k, float(np.mean(list(v.values())))) for k, v in curve.items()]


def test_point_estimate_equals_crossover_of_means():
    prompt, lora = _clear_case()
    cu = crossover_with_uncertainty(prompt, lora, reps=200)
    cx = crossover(_means(prompt), _means(lora))
    for key in ("n", "crosses", "at_or_below", "best_prompting", "lora_reaches", "lora_range", "reason"):
        assert cu[key] == cx[key]


def test_clear_crossover_is_distinguishable_with_tight_interval():
    prompt, lora = _clear_case()
    cu = crossover_with_uncertainty(prompt, lora)
    assert cu["crosses"] and cu["distinguishable"]
    assert cu["share_crossing"] == 1.0
    lo, hi = cu["interval"]
    assert 64 < lo < cu["n"] < hi < 256
    assert hi / lo < 2.5
    assert not cu["interval_high_beyond"] and not cu["interval_low_at_or_below"]
    assert cu["bootstrap"] == {"reps": 1000, "seed": 0, "alpha": 0.05, "n_items": 500}
    s = cu["statement"]
    assert s.startswith("LoRA overtakes the best prompting point (k=64, 0.600) at n ≈ ")
    assert "95% bootstrap interval" in s and "crosses in 100%" in s


def test_chance_level_toy_is_not_distinguishable():
    prompt, lora = _chance_case()
    cu = crossover_with_uncertainty(prompt, lora)
    # The point estimate does cross (0.50 -> 0.54 between n=40 and n=100) ...
    assert cu["crosses"] and cu["best_prompting"] == {"k": 8, "quality": 0.50}
    assert cu["lora_reaches"] == {"n": 100, "quality": 0.54}
    # ... but far from every item resample does.
    assert not cu["distinguishable"]
    assert 0.2 < cu["share_crossing"] < 0.95
    assert cu["interval"][1] is None and cu["interval_high_beyond"]
    s = cu["statement"]
    assert s.startswith("Not distinguishable: the point estimate crosses at n ≈ ")
    assert "(0.500 → 0.540)" in s and "within n=16–100" in s and "beyond 100" in s


def test_no_crossover_statement_and_interval():
    rng = np.random.default_rng(3)
    prompt = _binary_points({0: 0.3, 32: 0.75}, 300, rng)
    lora = _binary_points({16: 0.33, 40: 0.5, 100: 0.6}, 300, rng)
    cu = crossover_with_uncertainty(prompt, lora)
    assert cu["n"] is None and not cu["crosses"] and not cu["distinguishable"]
    assert cu["share_crossing"] == 0.0
    assert cu["interval"] == [None, None] and cu["interval_low_beyond"] and cu["interval_high_beyond"]
    assert cu["statement"].startswith("No crossover: LoRA's best point")
    assert "0% of item resamples cross within n=16–100" in cu["statement"]


def test_at_or_below_smallest_n():
    rng = np.random.default_rng(4)
    prompt = _binary_points({0: 0.3, 5: 0.4}, 400, rng)
    lora = _binary_points({10: 0.7, 100: 0.8}, 400, rng)
    cu = crossover_with_uncertainty(prompt, lora)
    assert cu["at_or_below"] and cu["distinguishable"]
    assert cu["interval"] == [10.0, 10.0] and cu["interval_low_at_or_below"]
    assert "at or below n=10" in cu["statement"] and "interval at or below 10 to at or below 10" in cu["statement"]


def test_deterministic_for_a_seed():
    prompt, lora = _chance_case(seed=5)
    a = crossover_with_uncertainty(prompt, lora, seed=7)
    b = crossover_with_uncertainty(prompt, lora, seed=7)
    assert a == b
    c = crossover_with_uncertainty(prompt, lora, seed=8)
    assert c["n"] == a["n"]  # the point estimate does not depend on the seed


def test_different_item_sets_raise():
    prompt, lora = _chance_case()
    lora[40] = dict(lora[40])
    del lora[40]["item0003"]
    lora[40]["extra_item"] = 1.0
    with pytest.raises(ValueError, match=r"n=40 .*item0003.*extra_item"):
        crossover_with_uncertainty(prompt, lora)


def test_degenerate_inputs():
    prompt, lora = _chance_case()
    cu = crossover_with_uncertainty(prompt, {})
    assert cu["n"] is None and "no LoRA points" in cu["reason"]
    assert cu["share_crossing"] is None and not cu["distinguishable"] and cu["interval"] == [None, None]
    assert crossover_with_uncertainty({}, {})["statement"].startswith("No crossover")
    with pytest.raises(ValueError, match="no items"):
        crossover_with_uncertainty({0: {}}, {10: {}})
    with pytest.raises(ValueError, match="non-finite"):
        crossover_with_uncertainty({0: {"a": 1.0}}, {10: {"a": float("nan")}})
    with pytest.raises(ValueError, match="alpha"):
        crossover_with_uncertainty(prompt, lora, alpha=0)


def test_batch_matches_scalar_crossover():
    rng = np.random.default_rng(11)
    ks = [0, 4, 32]
    ns = np.array([0.0, 16.0, 64.0, 256.0])
    P = rng.choice([0.4, 0.5, 0.6], size=(300, 3))  # coarse values: ties and exact hits happen
    L = rng.choice([0.3, 0.4, 0.5, 0.6, 0.7], size=(300, 4))
    got = _crossover_n_batch(P, ns, L)
    for r in range(300):
        cx = crossover(list(zip(ks, P[r])), list(zip(ns.astype(int), L[r])))
        if cx["n"] is None:
            assert np.isinf(got[r])
        else:
            assert got[r] == pytest.approx(cx["n"])


def test_fast_enough():
    rng = np.random.default_rng(2)
    prompt = _binary_points({0: 0.3, 4: 0.4, 16: 0.5, 64: 0.55}, 500, rng)
    lora = _binary_points({16: 0.4, 64: 0.5, 256: 0.6, 1024: 0.7}, 500, rng)
    t = time.perf_counter()
    crossover_with_uncertainty(prompt, lora, reps=1000)
    assert time.perf_counter() - t < 2.0  # target 0.5 s; slack for a loaded 2-core machine
