"""The task-set summary: per task its verdict and option, per strategy the whole mix's cost and the tasks it loses on
(Holm-adjusted), each task's costs at its traffic share, and the job's traffic_mix validated in one line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from evaluator.analysis.paired import mcnemar_exact, paired_permutation_p
from evaluator.analysis.taskset import TaskOutcome, holm, summarise_task_set, traffic_shares
from evaluator.config.job import load_job
from evaluator.errors import UserError
from evaluator.report.build import build_report, write_reports
from evaluator.store.run_store import RunStore
from tests.fake_runs import item_ids, make_run

# --- Holm and the permutation test ---------------------------------------------------------------------------------


def test_holm_by_hand():
    # sorted 0.01, 0.03, 0.04 → 3·0.01 = 0.03, 2·0.03 = 0.06, max(0.06, 1·0.04) = 0.06; back in input order
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5]) == [0.5]
    assert holm([]) == []
    assert holm([0.6, 0.6]) == [1.0, 1.0]  # capped at 1
    # ties keep one value each; a larger raw p never gets a smaller adjusted one
    adj = holm([0.02, 0.02, 0.001, 0.2])
    assert adj == pytest.approx([0.06, 0.06, 0.004, 0.2])


def test_permutation_p_exact_and_monte_carlo():
    assert paired_permutation_p([1.0, 1.0, 1.0]) == pytest.approx(2 / 8)  # all-plus and all-minus of 2^3 flips
    assert paired_permutation_p([0.0, 0.0]) == 1.0
    assert paired_permutation_p([]) == 1.0
    assert paired_permutation_p([0.2, -0.2] * 10) == 1.0
    p = paired_permutation_p([0.1] * 40, reps=2000, seed=3)  # 2^40 > reps: Monte Carlo, never 0
    assert 0 < p <= 1 / 2001 + 1e-12


def test_traffic_shares_default_equal():
    assert traffic_shares(["a", "b", "c"], None) == pytest.approx({"a": 1 / 3, "b": 1 / 3, "c": 1 / 3})
    assert traffic_shares(["a", "b"], {"a": 0.7, "b": 0.3}) == {"a": 0.7, "b": 0.3}


# --- the summary on hand-made scores -------------------------------------------------------------------------------


def _scores(n: int, right: int, offset: int = 0) -> dict[str, float]:
    """n items, the first `right` (after a rotation by `offset`) correct."""
    return {f"i{j:03d}": float((j + offset) % n < right) for j in range(n)}


def _task(name, share, a, b, c, costs, outcome="inconclusive", lean=None):
    units = {"uA": a, "uB": b, "uC": c}
    points = {"A": ("A k=8", "uA"), "B": ("B n=64", "uB"), "C:new": ("C new k=8", "uC")}
    verdict = {"outcome": outcome, "title": outcome, "lean": lean,
               "selection": {"chosen": {"A": "A k=8", "B": "B n=64", "C": "C new k=8"}}}
    return TaskOutcome(name=name, share=share, points=points, scores=units, test_items=sorted(a),
                       monthly=dict(zip(["A k=8", "B n=64", "C new k=8"], costs)), verdict=verdict)


def test_summary_costs_quality_and_losses_by_hand():
    n = 100
    # t1: all three alike (A 60, B 61, C 60: nobody loses); t2: LoRA far ahead (B 80 vs A 40, C 42)
    t1 = _task("t1", 0.5, _scores(n, 60), _scores(n, 61), _scores(n, 60), (100.0, 300.0, 120.0), "not_needed")
    t2 = _task("t2", 0.5, _scores(n, 40), _scores(n, 80), _scores(n, 42), (50.0, 200.0, 70.0), "justified")
    ts = summarise_task_set([t1, t2], alpha=0.05, margin=0.02)
    by = {s["strategy"]: s for s in ts["strategies"]}
    assert by["A"]["monthly_usd"] == pytest.approx(150.0)
    assert by["B"]["monthly_usd"] == pytest.approx(500.0)
    assert by["C:new"]["monthly_usd"] == pytest.approx(190.0)
    assert by["A"]["traffic_weighted_quality"] == pytest.approx(0.5 * 0.60 + 0.5 * 0.40)
    assert by["B"]["traffic_weighted_quality"] == pytest.approx(0.5 * 0.61 + 0.5 * 0.80)
    # A and C lose on t2 to B (40 discordant pairs, all for B: McNemar p ~ 2^-39, far below alpha after Holm)
    assert by["A"]["loses_on"] == ["t2"] and by["C:new"]["loses_on"] == ["t2"]
    assert by["B"]["loses_on"] == []
    comp = next(c for c in by["A"]["comparisons"] if c["task"] == "t2" and c["rival_strategy"] == "B")
    assert comp["rival_minus_option"] == pytest.approx(0.40)
    assert comp["p"] == pytest.approx(mcnemar_exact(40, 0))
    # B is the only strategy losing nowhere → the answer, at its total cost
    assert ts["answer_strategy"] == "B" and "$500/month" in ts["answer"]
    rows = {r["task"]: r for r in ts["tasks"]}
    assert rows["t1"]["option"] == "A k=8" and rows["t2"]["option"] == "B n=64"
    assert rows["t1"]["quality"] == pytest.approx(0.60) and rows["t1"]["ci_low"] < 0.60 < rows["t1"]["ci_high"]
    assert ts["per_task_mix_monthly_usd"] == pytest.approx(100.0 + 200.0)  # each task's recommended option
    assert ts["multiple_comparisons"]["family_error_bound"] == pytest.approx(1 - 0.95 ** 2)


def test_holm_turns_a_borderline_loss_into_no_loss():
    n = 200
    # B better than A by 14 discordant items of 18 → McNemar p = 0.031 alone; A has 2 comparisons per task × 3 tasks
    a = {f"i{j:03d}": float(j < 100) for j in range(n)}
    b = dict(a)
    for j in range(100, 114):
        b[f"i{j:03d}"] = 1.0
    for j in range(0, 4):
        b[f"i{j:03d}"] = 0.0
    assert mcnemar_exact(14, 4) < 0.05
    same = dict(a)
    tasks = [_task("t1", 0.4, a, b, same, (1.0, 2.0, 1.0))] + [
        _task(f"t{i}", 0.3, same, same, same, (1.0, 2.0, 1.0)) for i in (2, 3)]
    ts = summarise_task_set(tasks, alpha=0.05, margin=0.02)
    by = {s["strategy"]: s for s in ts["strategies"]}
    assert by["A"]["loses_on_unadjusted"] == ["t1"]
    assert by["A"]["loses_on"] == []  # 6 comparisons: Holm multiplies the smallest p by 6
    comp = next(c for c in by["A"]["comparisons"] if c["task"] == "t1" and c["rival_strategy"] == "B")
    assert comp["p_holm"] == pytest.approx(min(1.0, 6 * mcnemar_exact(14, 4)))


def test_non_binary_scores_use_the_permutation_test():
    rng = np.random.default_rng(0)
    a = {f"i{j}": float(rng.uniform(0.0, 0.5)) for j in range(60)}
    b = {k: v + 0.3 for k, v in a.items()}
    ts = summarise_task_set([_task("t1", 0.5, a, b, a, (1.0, 1.0, 1.0), "justified"),
                             _task("t2", 0.5, a, a, a, (1.0, 1.0, 1.0))],
                            alpha=0.05, margin=0.02)
    comp = next(c for s in ts["strategies"] if s["strategy"] == "A" for c in s["comparisons"]
                if c["task"] == "t1" and c["rival_strategy"] == "B")
    assert comp["test"] == "sign-flip permutation" and comp["p"] < 0.001
    assert next(r for r in ts["tasks"] if r["task"] == "t1")["ci_method"] == "bootstrap"


def test_unpriced_and_missing_strategies_are_named_not_zero():
    n = 50
    t1 = _task("t1", 0.5, _scores(n, 30), _scores(n, 30), _scores(n, 30), (10.0, None, 10.0))
    t2 = TaskOutcome(name="t2", share=0.5, points={"A": ("A k=8", "uA")}, scores={"uA": _scores(n, 30)},
                     test_items=sorted(_scores(n, 30)), monthly={"A k=8": 5.0},
                     verdict={"outcome": "inconclusive", "title": "Inconclusive"})
    ts = summarise_task_set([t1, t2], alpha=0.05, margin=0.02)
    by = {s["strategy"]: s for s in ts["strategies"]}
    assert by["A"]["monthly_usd"] == pytest.approx(15.0)
    assert by["B"]["monthly_usd"] is None and by["B"]["not_run_on"] == ["t2"] and by["B"]["not_priced"] == ["t1 (B n=64)"]
    assert by["B"]["traffic_weighted_quality"] is None
    assert ts["answer_strategy"] == "A"


# --- a three-task run: costs at each task's share, the report opens with the set ------------------------------------


SPECS = {
    "t_same": [("A", 0, None, .55), ("A", 8, None, .80), ("B", 0, 64, .81), ("C", 8, None, .80)],
    "t_lora": [("A", 0, None, .40), ("A", 8, None, .50), ("B", 0, 64, .85), ("C", 8, None, .52)],
    "t_newer": [("A", 0, None, .40), ("A", 8, None, .55), ("B", 0, 64, .60), ("C", 8, None, .85)],
}


def three_task_run(root: Path, mix: dict[str, float] | None = None) -> Path:
    items = item_ids(200)
    out = root / "set"
    cfg: dict = {}
    for i, (task, pts) in enumerate(SPECS.items()):
        points = [{"arm": a, "model": "newer-base" if a == "C" else "old-base", "shots": k, "train_size": n, "q": q}
                  for a, k, n, q in pts]
        r = make_run(root, task, items, points, task=task, newer=["newer-base"], seed=i + 1)
        if i == 0:
            shutil.copytree(r, out)
            cfg = json.loads((out / "config.json").read_text())
        else:
            for sub in ("units", "results", "prefixes"):
                for f in (r / sub).iterdir():
                    shutil.copy(f, out / sub / f.name)
            cfg["units"] += json.loads((r / "config.json").read_text())["units"]
    cfg["job"]["tasks"] = list(SPECS)
    cfg["tasks"] = {t: {"n_choices": 5} | ({"traffic_share": mix[t]} if mix else {}) for t in SPECS}
    (out / "config.json").write_text(json.dumps(cfg))
    return out


def test_three_task_report_opens_with_the_set(tmp_path):
    run = three_task_run(tmp_path)
    rep = write_reports(RunStore.open(run))
    ts = rep["task_set"]
    assert [r["task"] for r in ts["tasks"]] == list(SPECS)
    assert all(r["traffic_share"] == pytest.approx(1 / 3) for r in ts["tasks"])
    by = {s["strategy"]: s for s in ts["strategies"]}
    assert set(by) == {"A", "B", "C:newer-base"}
    assert "t_lora" in by["A"]["loses_on"] and "t_newer" in by["A"]["loses_on"]
    assert "t_lora" in by["C:newer-base"]["loses_on"] and "t_newer" in by["B"]["loses_on"]
    for key, s in by.items():  # a strategy's total is the sum of its options' costs at each task's share
        per = []
        for t in SPECS:
            arms = rep["tasks"][t]["costs"]["arms"]
            lab = next(c["option"] for c in s["comparisons"] if c["task"] == t)
            per.append(next(a["monthly_usd"] for a in arms if a["name"] == lab))
        assert s["monthly_usd"] == pytest.approx(sum(per))
    assert "simultaneous_outcome" in ts["tasks"][0]
    md = (run / "report.md").read_text()
    assert md.index("## Task set") < md.index("## Task `t_same`")
    assert "**Overall answer:**" in md and "Holm" in md and "alpha/3" in md
    assert "this task's 33% of the job's traffic" in md
    html = (run / "report.html").read_text()
    assert 'id="task-set"' in html and html.index('id="task-set"') < html.index('id="task-t_same"')


def test_costs_follow_the_traffic_mix(tmp_path):
    equal = build_report(RunStore.open(three_task_run(tmp_path / "eq")))
    mixed = build_report(RunStore.open(three_task_run(tmp_path / "mx", {"t_same": 0.6, "t_lora": 0.3, "t_newer": 0.1})))
    whole = 5e6  # fake_runs' job volume (tokens/day)
    for t, share in (("t_same", 0.6), ("t_lora", 0.3), ("t_newer", 0.1)):
        ce, cm = equal["tasks"][t]["costs"], mixed["tasks"][t]["costs"]
        assert ce["inputs"]["volume_tokens_per_day"] == pytest.approx(whole / 3)
        assert cm["inputs"]["volume_tokens_per_day"] == pytest.approx(whole * share)
        assert cm["requests_per_day"] == pytest.approx(ce["requests_per_day"] * share * 3)
        assert cm["traffic_share"] == pytest.approx(share)
    assert [r["traffic_share"] for r in mixed["task_set"]["tasks"]] == pytest.approx([0.6, 0.3, 0.1])


def test_one_task_has_no_set_and_the_whole_volume(tmp_path):
    run = make_run(tmp_path, "solo", item_ids(60), [{"arm": "A", "model": "old-base", "shots": 0, "q": .5},
                                                   {"arm": "B", "model": "old-base", "shots": 0, "train_size": 8, "q": .6}])
    rep = build_report(RunStore.open(run))
    assert "task_set" not in rep
    c = next(iter(rep["tasks"].values()))["costs"]
    assert c["inputs"]["volume_tokens_per_day"] == pytest.approx(5e6) and c["traffic_share"] == 1.0


# --- the job's traffic_mix -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("mix, words", [
    ("{a: 0.5, b: 0.4}", "the shares sum to 0.9, not 1"),
    ("{a: 0.5, b: 0.4, c: 0.1}", "'c' is not one of the job's tasks"),
    ("{a: 1.0}", "no share for task 'b'"),
    ("{a: 0, b: 1}", "traffic_mix.a"),
    ("{a: yes, b: 0.5}", "YAML boolean"),
])
def test_bad_traffic_mix_is_one_line(tmp_path, mix, words):
    p = tmp_path / "job.yaml"
    p.write_text(f"name: x\ntasks: [a, b]\nbase: m\ntraffic_mix: {mix}\n")
    with pytest.raises(UserError) as ei:
        load_job(p)
    msg = str(ei.value)
    assert words in msg and "traffic_mix" in msg and "\n" not in msg


def test_traffic_mix_is_not_in_the_run_id(tmp_path):
    p = tmp_path / "job.yaml"
    p.write_text("name: x\ntasks: [a, b]\nbase: m\n")
    plain = load_job(p).fingerprint()
    p.write_text("name: x\ntasks: [a, b]\nbase: m\ntraffic_mix: {a: 0.25, b: 0.75}\n")
    assert load_job(p).fingerprint() == plain


def test_edge_cases_tie_five_items_one_discordant_pair_all_at_chance():
    five = {f"i{j}": float(j < 3) for j in range(5)}
    one = dict(five, i4=1.0)  # B differs from A on one item only
    zero = {f"i{j}": 0.0 for j in range(5)}
    ts = summarise_task_set([_task("t1", 0.5, five, one, five, (1.0, 2.0, 1.0)),
                             _task("t2", 0.5, five, five, five, (1.0, 1.0, 1.0))], alpha=0.05, margin=0.02)
    by = {s["strategy"]: s for s in ts["strategies"]}
    comp = next(c for c in by["A"]["comparisons"] if c["task"] == "t1" and c["rival_strategy"] == "B")
    assert comp["p"] == pytest.approx(1.0)  # one discordant pair: 2 · P(X <= 0 | Bin(1, 1/2)) = 1
    assert all(not s["loses_on"] for s in ts["strategies"])
    # A and C tie at $2/month: the answer names the tie instead of hiding it
    assert ts["answer_strategy"] == "A" and "as cheap: the newer base new everywhere" in ts["answer"]
    # every option at chance on every task: no strategy is recommended
    ts = summarise_task_set([_task("t1", 0.5, zero, zero, zero, outcome="no_option_works", costs=(1.0, 1.0, 1.0)),
                             _task("t2", 0.5, zero, zero, zero, outcome="no_option_works", costs=(1.0, 1.0, 1.0))],
                            alpha=0.05, margin=0.02)
    assert ts["answer_strategy"] is None and ts["answer"].startswith("no option works on any of the 2 tasks")
    assert [r["option"] for r in ts["tasks"]] == [None, None] and ts["per_task_mix_monthly_usd"] is None
    # one task at chance: the answer still says so for that task
    ts = summarise_task_set([_task("t1", 0.5, zero, zero, zero, outcome="no_option_works", costs=(1.0, 1.0, 1.0)),
                             _task("t2", 0.5, five, five, five, costs=(1.0, 2.0, 3.0))], alpha=0.05, margin=0.02)
    assert ts["answer_strategy"] == "A" and "no option works on t1" in ts["answer"]
