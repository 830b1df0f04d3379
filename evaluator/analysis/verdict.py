"""The verdict: is fine-tuning needed here? Decided from intervals, on items the choice of points never saw.

Outcomes (PRODUCT.md "Verdict", "Evidence standards"):
- no_option_works: no option's interval clears the task's baseline (chance or the majority class) — nothing here
  does the task, so "not needed" would be meaningless;
- not_needed: the paired 1 − alpha interval of (LoRA − best prompting of the base) lies at or below the margin
  (non-inferiority of prompting);
- not_needed_newer_base: the same holds for the newer base prompted, not for the old base;
- justified: the interval's lower end lies above the margin against every prompting option, AND the cost case
  holds on real numbers (self-hosting the adapter costs no more than the prompting rival at the stated volume);
- inconclusive: anything else — with the side it leans to and the items needed for that very criterion.

The operating point of each arm is chosen by :mod:`evaluator.analysis.selection` on a selection split and tested on the
other items; when the run is too small to split, the whole select-then-compare procedure is bootstrapped. The
optimistic figure (chosen and tested on all items) is reported beside the honest one.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import numpy as np

from evaluator.analysis.baselines import Baselines, at_chance
from evaluator.analysis.intervals import wilson_interval
from evaluator.analysis.paired import PairedDiff, judge, paired_diff
from evaluator.analysis.selection import Choice, tie_key
from evaluator.fmt import ci_pct, ci_text

TITLES = {
    "no_option_works": "No option works on this task",
    "not_needed": "Fine-tuning not needed",
    "not_needed_newer_base": "Fine-tuning not needed — the newer base catches up",
    "justified": "Fine-tuning justified",
    "inconclusive": "Inconclusive",
}

FRAMEWORK = (
    "Framework (the article's, stated as assumptions you can change): renting an API is the default; self-hosting "
    "pays only above the annual API-spend threshold, or for compliance (HIPAA, SOC 2), latency, or behaviour "
    "prompting cannot reach; base models improve every 4–6 months, so an adapter is retrained each refresh."
)

Label = Callable[[Mapping], str]


def procedure_bootstrap(cands: Mapping[str, Sequence[Mapping]], scores: Mapping[str, Mapping[str, float]],
                        items: Sequence[str], rivals: Sequence[str], *, alpha: float, reps: int, seed: int
                        ) -> dict[str, tuple[float, float]]:
    """Percentile interval of (best B − best rival) when *both choices are redone in every resample* of the items.

    This is the interval of the whole select-then-compare procedure (each arm picks its best point on the resample),
    so the selection's optimism is inside it rather than hidden. Returns ``{rival arm: (low, high)}``.
    """
    ids = sorted(items)
    mats = {arm: np.array([[float(scores[u["unit"]][i]) for i in ids] for u in sorted(us, key=tie_key)])
            for arm, us in cands.items() if us}
    rng = np.random.default_rng(seed)
    n = len(ids)
    diffs: dict[str, list[np.ndarray]] = {r: [] for r in rivals}
    per = max(1, (1 << 22) // max(1, n * max(len(m) for m in mats.values())))
    for start in range(0, reps, per):
        m = min(per, reps - start)
        idx = rng.integers(0, n, size=(m, n))
        best = {arm: mat[:, idx].mean(axis=2).max(axis=0) for arm, mat in mats.items()}
        for r in rivals:
            diffs[r].append(best["B"] - best[r])
    out = {}
    for r in rivals:
        d = np.concatenate(diffs[r])
        lo, hi = np.quantile(d, [alpha / 2, 1 - alpha / 2])
        out[r] = (float(lo), float(hi))
    return out


def option_flags(units: Sequence[Mapping], scores: Mapping[str, Mapping[str, float]], b: Baselines | None,
                 alpha: float) -> dict[str, dict[str, Any]]:
    """Per unit: its 1 − alpha Wilson interval on all items and whether it clears the task's baseline."""
    out = {}
    for u in units:
        s = scores[u["unit"]]
        vals = list(s.values())
        binary = all(v in (0.0, 1.0) for v in vals)
        lo, hi = wilson_interval(int(sum(vals)), len(vals), alpha) if binary and vals else (u["ci_low"], u["ci_high"])
        out[u["unit"]] = {"ci_low": lo, "ci_high": hi, "at_chance": bool(b is not None and at_chance(lo, b))}
    return out


def _cost_case(cost_monthly: Mapping[str, float | None] | None, lora: str, rival: str) -> dict[str, Any]:
    """Does self-hosting the adapter cost no more than the prompting rival? Unknown when either figure is missing."""
    lm = (cost_monthly or {}).get(lora)
    rm = (cost_monthly or {}).get(rival)
    if lm is None or rm is None:
        missing = ", ".join(x for x, v in ((lora, lm), (rival, rm)) if v is None)
        return {"status": "unknown", "holds": None, "lora_monthly_usd": lm, "best_prompting_monthly_usd": rm,
                "statement": f"cost unknown: no monthly cost for {missing} (run `tunecheck cost` with prices or "
                             "fix the cost error) — a missing cost never counts as holding"}
    holds = lm <= rm
    return {"status": "holds" if holds else "fails", "holds": holds, "lora_monthly_usd": lm,
            "best_prompting_monthly_usd": rm,
            "statement": f"self-hosting {lora} costs ${lm:,.0f}/month vs ${rm:,.0f}/month for {rival} at the stated "
                         "volume (training amortised)"}


def _need_text(j: Mapping[str, Any], what: str) -> str:
    need = j.get("items_needed") or {}
    if need.get("n") is None:
        return f"no practical test size settles whether {what} ({need.get('reason') or 'not computed'})"
    total = f" ({need['total_items']:,} with the selection share)" if need.get("total_items") else ""
    return (f"about {need['n']:,} paired test items{total} would show {what} with {need['power']:.0%} power, if the "
            "observed frequencies hold")


def decide(
    units: Sequence[Mapping],
    scores: Mapping[str, Mapping[str, float]],
    choice: Choice,
    label: Label,
    *,
    cost_monthly: Mapping[str, float | None] | None = None,
    baselines: Baselines | None = None,
    margin: float = 0.02,
    alpha: float = 0.05,
    reps: int = 2000,
    seed: int = 0,
) -> dict[str, Any]:
    """Verdict as data: outcome, title, reason, the selection, honest and optimistic paired numbers, baselines,
    obsolescence, cost case, items needed. ``cost_monthly`` maps an option label to its self-hosted $/month."""
    ci = ci_pct(alpha)
    split = choice.split
    out: dict[str, Any] = {
        "margin": margin, "alpha": alpha, "framework": FRAMEWORK, "paired": [], "optimistic": [], "numbers": [],
        "selection": split.as_dict() | {
            "chosen": {k: label(u) for k, u in choice.points.items() if ":" not in k},
            "optimistic_chosen": {k: label(u) for k, u in choice.optimistic.items() if ":" not in k},
        },
    }
    arms_summary = {}
    for arm in ("A", "B", "C"):
        if arm in choice.points:
            u, uo = choice.points[arm], choice.optimistic[arm]
            tv = float(np.mean([scores[u["unit"]][i] for i in split.test])) if split.test else None
            arms_summary[arm] = {"chosen": label(u), "test_value": tv, "test_items": len(split.test),
                                 "optimistic_point": label(uo),
                                 "optimistic_value": float(np.mean(list(scores[uo["unit"]].values())))}
    out["selection"]["arms"] = arms_summary
    models_summary = {}  # each newer base's (API model's) own operating point, chosen by the same rule
    for key, u in choice.points.items():
        if key.startswith("C:"):
            tv = float(np.mean([scores[u["unit"]][i] for i in split.test])) if split.test else None
            models_summary[key[2:]] = {"chosen": label(u), "test_value": tv, "test_items": len(split.test)}
    out["selection"]["models"] = models_summary
    flags = option_flags(units, scores, baselines, alpha)
    if baselines is not None:
        out["baselines"] = {"chance": baselines.chance, "majority_label": baselines.majority_label,
                            "majority_rate": baselines.majority_rate, "bar": baselines.bar, "how": baselines.how,
                            "at_chance": [label(u) for u in units if flags[u["unit"]]["at_chance"]]}

    def finish(outcome: str, reason: str) -> dict[str, Any]:
        return out | {"outcome": outcome, "title": TITLES[outcome], "reason": reason}

    if baselines is not None and units and all(f["at_chance"] for f in flags.values()):
        best_u = max(units, key=lambda u: flags[u["unit"]]["ci_low"])
        return finish("no_option_works", (
            f"no option's {ci} interval clears the task's baseline ({baselines.how}; bar {baselines.bar:.3f}): the "
            f"highest lower bound is {flags[best_u['unit']]['ci_low']:.3f} ({label(best_u)}) — prompting, LoRA and "
            "the newer base all perform at chance here, so no arm can be recommended over another"))
    p, o = choice.points, choice.optimistic
    b = p.get("B")
    rivals = [r for r in ("A", "C") if r in p]
    if b is None or not rivals:
        return finish("inconclusive", "the run needs a LoRA arm and a prompting arm to compare")
    test_items = split.test
    honest: dict[str, PairedDiff] = {}
    for r in rivals:
        honest[r] = paired_diff(scores[p[r]["unit"]], scores[b["unit"]], label(p[r]), label(b), alpha=alpha,
                                items=test_items)
    boot: dict[str, tuple[float, float]] = {}
    if split.method == "bootstrap":
        cands = {arm: [u for u in units if u["arm"] == arm] for arm in ["B", *rivals]}
        boot = procedure_bootstrap(cands, scores, test_items, rivals, alpha=alpha, reps=reps, seed=seed)
    share = split.fraction if split.method == "split" else 0.0
    judged: dict[str, dict[str, Any]] = {}
    for r in rivals:
        d = honest[r]
        lo, hi = d.ci_low, d.ci_high
        if r in boot:  # never narrower than the chosen pair's own Newcombe interval (a bootstrap collapses to [0, 0]
            lo, hi = min(lo, boot[r][0]), max(hi, boot[r][1])  # when the arms never disagree)
        judged[r] = judge(d, margin, low=lo, high=hi, selection_share=share)
        how = {"split": f"chosen on {len(split.selection)} selection items, tested on {d.n} other items",
               "bootstrap": (f"{ci} interval of the whole select-then-compare procedure ({reps} item resamples), "
                             "widened to the chosen pair's Newcombe interval where that is wider"),
               "none": "single points, no selection: tested on all items"}[split.method]
        text = d.summary(low=lo, high=hi, note=how)
        out["paired"].append(d.as_dict() | {"ci_low": lo, "ci_high": hi, "rival": r, "decides": True,
                                            "interval_of": split.method, "summary": text})
        out["numbers"].append(text)
        if o.get(r) is not None and o.get("B") is not None:
            od = paired_diff(scores[o[r]["unit"]], scores[o["B"]["unit"]], label(o[r]), label(o["B"]), alpha=alpha)
            out["optimistic"].append(od.as_dict() | {"rival": r, "decides": False, "summary": (
                od.summary() + "; optimistic: chosen and tested on the same items")})
    out["decided_by"] = {"split": "honest: selection split", "bootstrap": "honest: bootstrap of the procedure",
                         "none": "no selection needed"}[split.method]
    ja, jc = judged.get("A"), judged.get("C")
    if "C" in p:
        jo = judged["C"]
        state = {"within": "matches or beats", "beyond": "does not match", "undetermined": "cannot yet be told from"}
        out["obsolescence"] = {
            "newer": label(p["C"]), "adapter": label(b), "outcome": jo["outcome"],
            "newer_matches_or_beats_adapter": jo["outcome"] == "within",
            "statement": (f"The newer base at its operating point ({label(p['C'])}) {state[jo['outcome']]} the adapter "
                          f"on the old base ({label(b)}) within the {margin:.2f} margin: adapter − newer = "
                          f"{jo['diff']:+.3f} ({ci_text(alpha, jo['ci_low'], jo['ci_high'])})."),
        }
    if ja is not None and ja["outcome"] == "within":
        return finish("not_needed", (
            f"prompting the base ({label(p['A'])}) is no worse than LoRA ({label(b)}) by more than the {margin:.2f} "
            f"margin: the {ci} interval's upper end {ja['ci_high']:+.3f} is at or below +{margin:.2f}"))
    if jc is not None and jc["outcome"] == "within":
        return finish("not_needed_newer_base", (
            f"the newer base prompted ({label(p['C'])}) is no worse than LoRA ({label(b)}) by more than the "
            f"{margin:.2f} margin: the {ci} interval's upper end {jc['ci_high']:+.3f} is at or below +{margin:.2f}"))
    if all(j["outcome"] == "beyond" for j in judged.values()):
        rival = max((p[r] for r in rivals), key=lambda u: float(np.mean([scores[u["unit"]][i] for i in test_items])))
        cc = _cost_case(cost_monthly, label(b), label(rival))
        out["cost_case"] = cc
        gain = (f"LoRA ({label(b)}) beats every prompting option by more than the {margin:.2f} margin (lower ends "
                + ", ".join(f"{judged[r]['ci_low']:+.3f} vs {label(p[r])}" for r in rivals) + ")")
        if cc["status"] == "holds":
            return finish("justified", f"{gain}, and {cc['statement']}")
        out["lean"] = "justified"
        if cc["status"] == "fails":
            return finish("inconclusive", f"{gain} but costs more: {cc['statement']} — decide whether the quality "
                                          "gain is worth the difference (see break-even volumes)")
        return finish("inconclusive", f"{gain}, but the {cc['statement']}")
    # undetermined: lean to the side of the point estimates, and size the test for that criterion
    if any(j["lean"] == "within" for j in judged.values()):
        r = min((r for r in rivals if judged[r]["lean"] == "within"), key=lambda r: judged[r]["ci_high"])
        j = judged[r]
        out["lean"] = "not_needed" if r == "A" else "not_needed_newer_base"
        out["items_needed"] = j["items_needed"] | {"comparison": out["paired"][rivals.index(r)]["summary"]}
        what = f"LoRA's gain over {label(p[r])} stays within the {margin:.2f} margin"
        reason = (f"leans to not needed, unconfirmed: {label(b)} − {label(p[r])} = {j['diff']:+.3f}, but the {ci} "
                  f"interval's upper end {j['ci_high']:+.3f} still allows a LoRA gain above the {margin:.2f} margin; "
                  + _need_text(j, what))
    else:
        r = min(rivals, key=lambda r: judged[r]["ci_low"])  # the binding comparison for "justified"
        j = judged[r]
        out["lean"] = "justified"
        out["items_needed"] = j["items_needed"] | {"comparison": out["paired"][rivals.index(r)]["summary"]}
        what = f"LoRA beats {label(p[r])} by more than the {margin:.2f} margin"
        reason = (f"leans to justified, unconfirmed: {label(b)} − {label(p[r])} = {j['diff']:+.3f}, but the {ci} "
                  f"interval's lower end {j['ci_low']:+.3f} does not clear the {margin:.2f} margin; "
                  + _need_text(j, what))
    return finish("inconclusive", reason)
