"""A task set's one answer: per task the verdict and its option, and for the whole set — under a traffic mix — what
each strategy (prompt the base everywhere, one adapter per task, a newer base) costs and on how many tasks it loses.

Pure (numpy/scipy through :mod:`evaluator.analysis.paired`); reads each task's operating points, per-item scores,
test items (the selection split's test share, so choosing a point and testing it stay apart), monthly costs (each
task's costs are computed at its own share of the job's traffic) and verdict.

How a strategy *loses* on a task: another strategy's option at its operating point beats it on that task's test items
— McNemar's exact test for 0/1 scores, a paired sign-flip permutation test of the mean difference otherwise — with
the p-values of all of one strategy's comparisons (tasks × rival strategies) adjusted together by Holm's step-down
method, so "loses on 2 of 5 tasks" holds with family-wise error ≤ alpha however many tasks the set has. Every
comparison is pairwise (no "best rival" picked on the items that then test it).

Per-task verdicts are each decided at alpha; with m tasks the chance that at least one of them is wrong grows to up
to 1 − (1 − alpha)^m. The set's answer therefore also states each verdict decided at alpha / m (Bonferroni: the m
verdicts then hold simultaneously) — Holm has no interval counterpart, and the verdicts are interval decisions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from evaluator.analysis.estimates import Estimate
from evaluator.analysis.intervals import bootstrap_mean_interval, wilson_interval
from evaluator.analysis.paired import paired_diff, paired_permutation_p

__all__ = ["TaskOutcome", "holm", "traffic_shares", "summarise_task_set", "RECOMMENDS"]

# Which strategy each verdict recommends ("—" outcomes recommend none).
RECOMMENDS = {"not_needed": "A", "not_needed_newer_base": "C", "justified": "B"}
LEAN_RECOMMENDS = {"not_needed": "A", "not_needed_newer_base": "C", "justified": "B"}


@dataclass(frozen=True)
class TaskOutcome:
    """One task of the set, as the report's task section decided it.

    ``points``: strategy key → (option label, unit id) — "A", "B", and "C:<model>" per newer base; ``scores``: unit id
    → {item id: score}; ``test_items``: the items the verdict's paired tests use; ``monthly``: option label → $/month
    at this task's traffic share (None: not priced); ``verdict``: the verdict dict (outcome, title, lean, selection);
    ``simultaneous``: the verdict decided at alpha / m (None when there is one task)."""

    name: str
    share: float
    points: Mapping[str, tuple[str, str]]
    scores: Mapping[str, Mapping[str, float]]
    test_items: Sequence[str]
    monthly: Mapping[str, float | None]
    verdict: Mapping[str, Any]
    simultaneous: Mapping[str, Any] | None = None
    notes: list[str] = field(default_factory=list)


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (in the input order): sort ascending, p_(i) × (m − i + 1), running maximum,
    capped at 1. E.g. [0.01, 0.04, 0.03] → [0.03, 0.06, 0.06]."""
    m = len(pvalues)
    order = sorted(range(m), key=lambda i: (pvalues[i], i))
    out = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * float(pvalues[i])))
        out[i] = running
    return out


def traffic_shares(tasks: Sequence[str], mix: Mapping[str, float] | None) -> dict[str, float]:
    """Each task's share of the job's traffic: the job's ``traffic_mix`` (validated to sum to 1 when the job loads),
    else equal shares."""
    if not tasks:
        return {}
    if not mix:
        return {t: 1.0 / len(tasks) for t in tasks}
    return {t: float(mix[t]) for t in tasks}


def _estimate(scores: Mapping[str, float], items: Sequence[str], alpha: float, seed: int) -> Estimate:
    """Quality on the test items with its 1 − alpha interval: Wilson for 0/1 scores, a percentile bootstrap else."""
    vals = [float(scores[i]) for i in items]
    if all(v in (0.0, 1.0) for v in vals):
        lo, hi = wilson_interval(int(sum(vals)), len(vals), alpha)
        return Estimate(float(np.mean(vals)), lo, hi, len(vals), "wilson")
    lo, hi = bootstrap_mean_interval(vals, alpha=alpha, seed=seed)
    return Estimate(float(np.mean(vals)), lo, hi, len(vals), "bootstrap")


def _pvalue(a: Mapping[str, float], b: Mapping[str, float], items: Sequence[str], alpha: float, seed: int
            ) -> tuple[float, float, str]:
    """(mean of b − mean of a on items, two-sided p, test name)."""
    d = paired_diff(a, b, "a", "b", alpha=alpha, items=items)
    if d.mcnemar_p is not None:
        return d.diff, d.mcnemar_p, "McNemar exact"
    x = np.array([float(a[i]) for i in sorted(items)])
    y = np.array([float(b[i]) for i in sorted(items)])
    return d.diff, paired_permutation_p(y - x, seed=seed), "sign-flip permutation"


def _strategy_names(tasks: Sequence[TaskOutcome]) -> list[tuple[str, str]]:
    """(key, words) of every strategy some task ran: A, B, then each newer base."""
    keys = {k for t in tasks for k in t.points}
    out = [(k, w) for k, w in (("A", "prompting the base everywhere"), ("B", "one LoRA adapter per task")) if k in keys]
    out += [(k, f"the newer base {k[2:]} everywhere") for k in sorted(keys) if k.startswith("C:")]
    return out


def _recommended(t: TaskOutcome) -> tuple[str | None, str]:
    """(strategy key or None, how) of the option the task's verdict recommends; an inconclusive verdict names the
    side it leans to, marked as unconfirmed."""
    v = t.verdict
    outcome = v.get("outcome")
    key = RECOMMENDS.get(outcome)
    how = "verdict"
    if key is None and outcome == "inconclusive" and v.get("lean") in LEAN_RECOMMENDS:
        key, how = LEAN_RECOMMENDS[v["lean"]], "leans to (unconfirmed)"
    if key == "C":  # the verdict's newer base is its overall best C point
        chosen = (v.get("selection") or {}).get("chosen", {}).get("C")
        key = next((k for k, (lab, _) in t.points.items() if k.startswith("C:") and lab == chosen), None)
    if key is not None and key not in t.points:
        key = None
    return key, how


def summarise_task_set(tasks: Sequence[TaskOutcome], *, alpha: float, margin: float, seed: int = 0) -> dict[str, Any]:
    """The task-set table and the overall answer (see the module docstring). Needs at least one task."""
    m = len(tasks)
    rows: list[dict[str, Any]] = []
    for i, t in enumerate(tasks):
        key, how = _recommended(t)
        row: dict[str, Any] = {"task": t.name, "traffic_share": t.share, "outcome": t.verdict.get("outcome"),
                               "verdict": t.verdict.get("title"), "lean": t.verdict.get("lean"),
                               "test_items": len(t.test_items), "option": None, "recommended_by": how}
        if key is not None:
            label, uid = t.points[key]
            est = _estimate(t.scores[uid], t.test_items, alpha, seed + i)
            row |= {"option": label, "strategy": key, "quality": est.value, "ci_low": est.low, "ci_high": est.high,
                    "ci_method": est.method, "monthly_usd": t.monthly.get(label)}
        if t.simultaneous is not None:
            row["simultaneous_outcome"] = t.simultaneous.get("outcome")
            row["simultaneous_verdict"] = t.simultaneous.get("title")
        rows.append(row)

    strategies: list[dict[str, Any]] = []
    for key, words in _strategy_names(tasks):
        comps: list[dict[str, Any]] = []
        total: float | None = 0.0
        unpriced, missing = [], []
        quality = 0.0
        for i, t in enumerate(tasks):
            if key not in t.points:
                missing.append(t.name)
                continue
            label, uid = t.points[key]
            cost = t.monthly.get(label)
            if cost is None:
                unpriced.append(f"{t.name} ({label})")
            elif total is not None:
                total += cost
            quality += t.share * float(np.mean([t.scores[uid][j] for j in t.test_items]))
            for rkey, (rlabel, ruid) in t.points.items():
                if rkey == key or (rkey.startswith("C:") and key.startswith("C:")):
                    continue  # two newer bases are alternatives of one strategy family, not rivals of each other
                diff, p, test = _pvalue(t.scores[uid], t.scores[ruid], t.test_items, alpha, seed + 7 * i)
                comps.append({"task": t.name, "option": label, "rival": rlabel, "rival_strategy": rkey,
                              "rival_minus_option": diff, "p": p, "test": test})
        adj = holm([c["p"] for c in comps])
        for c, a in zip(comps, adj):
            c["p_holm"] = a
            c["rival_better"] = bool(c["rival_minus_option"] > 0 and a < alpha)
        lost = sorted({c["task"] for c in comps if c["rival_better"]})
        lost_raw = sorted({c["task"] for c in comps if c["rival_minus_option"] > 0 and c["p"] < alpha})
        ran = m - len(missing)
        strategies.append({
            "strategy": key, "words": words, "tasks_run": ran, "not_run_on": missing,
            "monthly_usd": None if unpriced or missing else total, "not_priced": unpriced,
            "traffic_weighted_quality": quality if not missing else None,
            "loses_on": lost, "loses_on_unadjusted": lost_raw, "comparisons": comps,
        })

    priced = [s for s in strategies if s["monthly_usd"] is not None]
    unbeaten = [s for s in priced if not s["loses_on"]]
    at_chance = [t.name for t in tasks if t.verdict.get("outcome") == "no_option_works"]
    if len(at_chance) == m:
        answer, pick = (f"no option works on any of the {m} tasks: every option's interval stays at its task's "
                        "baseline, so no strategy can be recommended"), None
    elif unbeaten:
        best = min(unbeaten, key=lambda s: (s["monthly_usd"], -(s["traffic_weighted_quality"] or 0.0)))
        same = [s["words"] for s in unbeaten if s is not best and s["monthly_usd"] == best["monthly_usd"]]
        answer = (f"{best['words']} loses on none of the {m} tasks (Holm-adjusted, alpha {alpha:g}) and is the "
                  f"cheapest such strategy at ${best['monthly_usd']:,.0f}/month for the whole mix"
                  + (f" (as cheap: {', '.join(same)})" if same else "")
                  + " — losing on none means no rival was significantly better on these test items, not that it "
                  "matches them: read each task's verdict and interval")
        pick = best["strategy"]
    elif priced:
        best = min(priced, key=lambda s: (len(s["loses_on"]), s["monthly_usd"]))
        tied = [s for s in priced if s is not best and len(s["loses_on"]) == len(best["loses_on"])]
        same = [s["words"] for s in tied if s["monthly_usd"] == best["monthly_usd"]]
        dearer = [s["words"] for s in tied if s["monthly_usd"] != best["monthly_usd"]]
        answer = (f"no single strategy holds on every task: {best['words']} loses on the fewest "
                  f"({len(best['loses_on'])} of {m}: {', '.join(best['loses_on'])}) and costs "
                  f"${best['monthly_usd']:,.0f}/month"
                  + (f" (tied on losses and cost with {', '.join(same)})" if same else "")
                  + (f" (tied on losses with {', '.join(dearer)}, which cost more)" if dearer else "")
                  + " — mix strategies per task (the table's per-task options)")
        pick = best["strategy"]
    else:
        answer, pick = "no strategy is priced for every task — see the cost errors of the tasks", None
    if at_chance and pick is not None:
        answer += (f"; no option works on {', '.join(at_chance)} (every option at its baseline), so no strategy is "
                   "recommended there")
    mixed_cost: float | None = 0.0
    for r in rows:
        if r.get("monthly_usd") is None:
            mixed_cost = None
            break
        mixed_cost += r["monthly_usd"]
    fam = 1 - (1 - alpha) ** m
    return {
        "tasks": rows,
        "strategies": strategies,
        "answer": answer,
        "answer_strategy": pick,
        "per_task_mix_monthly_usd": mixed_cost,
        "alpha": alpha,
        "margin": margin,
        "multiple_comparisons": {
            "tasks": m,
            "family_error_bound": fam,
            "simultaneous_alpha": alpha / m,
            "statement": (
                f"{m} tasks, each verdict decided at alpha {alpha:g}: if every null held, up to {fam:.0%} chance that "
                f"at least one verdict is wrong. Strategy losses are Holm-adjusted over each strategy's "
                f"comparisons; the verdicts decided at alpha/{m} = {alpha / m:.3g} (Bonferroni, all {m} holding "
                "together) are shown beside each task's."),
        },
    }
