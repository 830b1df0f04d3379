"""The verdict on hand-built per-item vectors: every outcome, ties, a missing cost, no discordance, alpha, the
selection split — and a seeded simulation of the false "justified" rate when all arms are equal in truth."""

from __future__ import annotations

import numpy as np
import pytest

from evaluator.analysis.baselines import baselines
from evaluator.analysis.labels import unit_label
from evaluator.analysis.selection import best, choose, split_items
from evaluator.analysis.verdict import decide
from evaluator.costs.from_run import cost_options

SETTINGS = {"margin": 0.02, "alpha": 0.05, "selection": "split", "selection_fraction": 0.3, "selection_seed": 0,
            "bootstrap_reps": 1000}


def unit(arm: str, scores: list[float], *, k: int = 0, n: int | None = None, model: str = "base",
         tokens: float | None = None) -> tuple[dict, list[float]]:
    pt = {"shots": k, "shots_requested": k, "train_size": n}
    uid = f"t__{arm}__{model}" + (f"__n{n}" if arm == "B" else "") + f"__k{k}"
    u = {"unit": uid, "task": "t", "arm": arm, "model": model, "model_slug": model, "point": pt,
         "value": float(np.mean(scores)), "n_items": len(scores), "ci_low": 0.0, "ci_high": 1.0,
         "tokens": {"prompt_tokens_per_request": tokens if tokens is not None else 50.0 + 30 * k}}
    return u, scores


def build(*specs: tuple[dict, list[float]]) -> tuple[list[dict], dict[str, dict[str, float]]]:
    units = [u for u, _ in specs]
    scores = {u["unit"]: {f"i{i:04d}": float(s) for i, s in enumerate(sc)} for u, sc in specs}
    return units, scores


def pairs(both: int, b_only: int, a_only: int, neither: int) -> tuple[list[float], list[float]]:
    """(a, b) score vectors with the given 2x2 table, items interleaved so a seeded split sees every cell."""
    cells = [(1, 1)] * both + [(0, 1)] * b_only + [(1, 0)] * a_only + [(0, 0)] * neither
    order = np.random.default_rng(7).permutation(len(cells))
    a = [float(cells[i][0]) for i in order]
    b = [float(cells[i][1]) for i in order]
    return a, b


def verdict(units, scores, settings=None, cost=None, bl=None):
    st = dict(SETTINGS, **(settings or {}))
    ch = choose(units, scores, st)
    return decide(units, scores, ch, unit_label, cost_monthly=cost, baselines=bl, margin=st["margin"],
                  alpha=st["alpha"], reps=st["bootstrap_reps"], seed=st["selection_seed"])


def test_not_needed_requires_the_upper_end_at_or_below_the_margin():
    a, b = pairs(560, 3, 3, 434)  # 1000 items, no difference, 6 discordant: upper end ~ +0.006
    units, scores = build(unit("A", a, k=32), unit("B", b, n=100))
    v = verdict(units, scores)
    assert v["outcome"] == "not_needed", v["reason"]
    assert v["paired"][0]["ci_high"] <= 0.02 and v["selection"]["method"] == "none"
    assert "upper end" in v["reason"] and "items_needed" not in v


def test_a_point_estimate_inside_the_margin_is_not_enough():
    """The old asymmetry: 'not needed' on diff <= margin however wide the interval. Now inconclusive, leaning."""
    a, b = pairs(30, 5, 6, 19)  # 60 items, B − A = −0.017, interval about ±0.1
    units, scores = build(unit("A", a, k=128), unit("B", b, n=100))
    v = verdict(units, scores)
    assert v["outcome"] == "inconclusive" and v["lean"] == "not_needed"
    need = v["items_needed"]
    assert need["criterion"] == "upper_at_or_below" and need["n"] > 60
    assert f"about {need['n']:,} paired test items" in v["reason"]


def test_five_agreeing_items_are_inconclusive_not_confirmed():
    a, b = pairs(5, 0, 0, 0)
    units, scores = build(unit("A", a), unit("B", b, n=16))
    v = verdict(units, scores)
    assert v["outcome"] == "inconclusive"
    assert v["paired"][0]["ci_low"] < -0.3 and v["paired"][0]["ci_high"] > 0.3


def test_not_needed_newer_base():
    n = 800
    a, b = pairs(300, 250, 10, n - 560)  # B far above A
    c = list(b)
    for i in range(0, n, 200):  # the newer base: the adapter's answers but for a handful of items
        c[i] = 1.0 - c[i]
    units2, scores2 = build(unit("A", a, k=8), unit("B", b, n=64), unit("C", c, k=8, model="newer"))
    v = verdict(units2, scores2)
    assert v["outcome"] == "not_needed_newer_base", v["reason"]
    assert v["obsolescence"]["outcome"] == "within" and v["obsolescence"]["newer_matches_or_beats_adapter"]


def test_justified_needs_the_lower_end_above_the_margin_and_a_cost_that_holds():
    a, b = pairs(100, 60, 5, 35)  # +0.275 on 200 items
    units, scores = build(unit("A", a, k=8), unit("B", b, n=64))
    v = verdict(units, scores, cost={"B n=64": 900.0, "A k=8": 1000.0})
    assert v["outcome"] == "justified" and v["cost_case"]["status"] == "holds"
    v = verdict(units, scores, cost={"B n=64": 99_999.0, "A k=8": 1000.0})
    assert v["outcome"] == "inconclusive" and v["cost_case"]["status"] == "fails" and "costs more" in v["reason"]


def test_a_missing_cost_is_unknown_never_holding():
    a, b = pairs(100, 60, 5, 35)
    units, scores = build(unit("A", a, k=8), unit("B", b, n=64))
    for cost in (None, {"A k=8": 1000.0}, {"B n=64": 10.0}):
        v = verdict(units, scores, cost=cost)
        assert v["outcome"] == "inconclusive" and v["lean"] == "justified"
        assert v["cost_case"]["status"] == "unknown" and v["cost_case"]["holds"] is None
        assert "never counts as holding" in v["reason"]


def test_ties_go_to_the_cheaper_point_and_the_cost_table_names_the_same_one():
    """Two A points with the same accuracy (and a B with two tied sizes): verdict and cost table pick the same
    option — fewer prompt tokens for A, the smaller n for B — whatever the file order (n100 sorts before n16)."""
    a, b = pairs(20, 8, 8, 24)
    specs = [unit("B", b, n=100), unit("B", b, n=16), unit("A", a, k=32), unit("A", a, k=5)]
    units, scores = build(*specs)
    ch = choose(units, scores, dict(SETTINGS, selection="bootstrap"))
    assert unit_label(ch.points["A"]) == "A k=5" and unit_label(ch.points["B"]) == "B n=16"
    assert {unit_label(u) for u in cost_options(units, scores, {"verdict": {"selection": "bootstrap"}})} == {
        "A k=5", "B n=16"}
    v = verdict(units, scores, settings={"selection": "bootstrap"}, cost={"B n=16": 99_999.0, "A k=5": 1000.0})
    assert v["selection"]["chosen"] == {"A": "A k=5", "B": "B n=16"}
    assert v["outcome"] == "inconclusive"  # never "justified" on a tie, and never with "no cost report"
    # exact comparison: accuracies equal as fractions are ties even when their floats differ in the last bit
    u1, _ = unit("A", [1.0] * 54 + [0.0] * 46, k=1)
    u2, _ = unit("A", [1.0] * 54 + [0.0] * 46, k=2)
    u2["value"] = 0.54 + 1e-16
    assert best([u2, u1]) is u1


def test_alpha_sets_the_interval_and_can_change_the_outcome():
    cost = {"B n=64": 1.0, "A k=8": 2.0}
    for b_only in range(10, 60):  # find a table justified at alpha 0.10 but not at 0.05 (exists at n=200)
        a, b = pairs(100, b_only, 4, 96 - b_only)
        units, scores = build(unit("A", a, k=8), unit("B", b, n=64))
        v05 = verdict(units, scores, cost=cost)
        v10 = verdict(units, scores, settings={"alpha": 0.10}, cost=cost)
        if v10["outcome"] == "justified" and v05["outcome"] != "justified":
            break
    else:
        pytest.fail("no table separates alpha 0.10 from 0.05")
    assert v05["outcome"] == "inconclusive" and v05["lean"] == "justified"
    p05, p10 = v05["paired"][0], v10["paired"][0]
    assert p05["ci_low"] < p10["ci_low"] and p10["ci_high"] < p05["ci_high"]
    assert "90% CI" in v10["numbers"][0] and "95% CI" in v05["numbers"][0]


def test_selection_split_chooses_on_disjoint_items_and_reports_both_figures():
    rng = np.random.default_rng(3)
    n = 300
    base = rng.random(n)
    specs = [unit("A", list((base < q).astype(float)), k=k) for k, q in ((0, 0.3), (5, 0.45), (32, 0.5), (128, 0.52))]
    specs += [unit("B", list((rng.random(n) < 0.55).astype(float)), n=m) for m in (16, 64, 256)]
    units, scores = build(*specs)
    v = verdict(units, scores)
    sel = v["selection"]
    assert sel["method"] == "split" and sel["selection_items"] == 90 and sel["test_items"] == 210
    split = split_items(scores[units[0]["unit"]], 0.3, 0)
    assert not set(split.selection) & set(split.test) and len(split.test) == 210
    assert v["paired"][0]["n"] == 210 and v["paired"][0]["interval_of"] == "split"
    assert v["optimistic"] and v["optimistic"][0]["n"] == 300 and not v["optimistic"][0]["decides"]
    assert set(sel["arms"]) == {"A", "B"} and sel["arms"]["A"]["test_items"] == 210
    assert v["decided_by"] == "honest: selection split"
    assert v["items_needed"]["total_items"] > v["items_needed"]["n"]  # the selection share comes on top
    # too few items to split: the whole procedure is bootstrapped instead, and said so
    small = {u: dict(list(s.items())[:25]) for u, s in scores.items()}
    v = verdict(units, small)
    assert v["selection"]["method"] == "bootstrap" and "too few to split" in v["selection"]["reason"]
    assert v["paired"][0]["interval_of"] == "bootstrap" and v["paired"][0]["n"] == 25


def test_no_option_works_when_nothing_clears_the_baseline():
    rng = np.random.default_rng(5)
    n = 100
    specs = [unit("A", list((rng.random(n) < 0.5).astype(float)), k=k) for k in (0, 8)]
    specs += [unit("B", list((rng.random(n) < 0.54).astype(float)), n=m) for m in (16, 64)]
    specs += [unit("C", list((rng.random(n) < 0.5).astype(float)), k=8, model="newer")]
    units, scores = build(*specs)
    bl = baselines(2, ["yes"] * 52 + ["no"] * 48)  # chance 0.5, majority 'yes' 52%
    v = verdict(units, scores, bl=bl)
    assert v["outcome"] == "no_option_works" and v["title"] == "No option works on this task"
    assert len(v["baselines"]["at_chance"]) == 5 and "chance 1/2" in v["reason"]


def test_false_justified_rate_stays_near_alpha_when_all_arms_are_equal():
    """All arms equal in truth (correlated items), B has five points to choose from, margin 0: the honest procedure
    (choose on the selection split, test on the rest) says 'justified' at about alpha/2 or less; choosing and
    testing on the same items says it more often (the winner's curse)."""
    rng = np.random.default_rng(20261201)
    reps, n = 300, 200
    honest = optimistic = 0
    cost = {f"B n={m}": 1.0 for m in (8, 16, 32, 64, 128)} | {"A k=32": 2.0}
    st = {"margin": 0.0}
    for _ in range(reps):
        p_item = rng.beta(2, 2, size=n)  # item difficulty shared by every arm: correlated, equal in truth
        draw = lambda: list((rng.random(n) < p_item).astype(float))  # noqa: E731
        specs = [unit("A", draw(), k=32)] + [unit("B", draw(), n=m) for m in (8, 16, 32, 64, 128)]
        units, scores = build(*specs)
        v = verdict(units, scores, settings=st, cost=cost)
        honest += v["outcome"] == "justified"
        optimistic += v["optimistic"][0]["ci_low"] > 0
    rate, naive = honest / reps, optimistic / reps
    print(f"false 'justified' rate: honest {rate:.3f}, optimistic {naive:.3f} (seed 20261201, {reps} repetitions)")
    assert rate <= 0.05
    assert naive > rate


def test_a_difference_exactly_at_the_margin_is_at_it_not_beyond():
    """0.54 − 0.52 = 0.020000000000000018 in floats: the verdict reads it as *at* the 0.02 margin (leaning 'not
    needed', since 'justified' needs the difference beyond the margin), never as a LoRA gain above it."""
    a, b = pairs(51, 3, 1, 45)  # 100 items: A right 52, B right 54
    assert abs((sum(b) - sum(a)) / 100 - 0.02) < 1e-12 and 0.54 - 0.52 > 0.02
    units, scores = build(unit("A", a, k=8), unit("B", b, n=64))
    v = verdict(units, scores, cost={"B n=64": 1.0, "A k=8": 2.0})
    assert v["outcome"] == "inconclusive" and v["lean"] == "not_needed"
    assert v["items_needed"]["n"] is None  # on the margin: no sample size shows "within" with 80% power
