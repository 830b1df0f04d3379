"""The verdict: is fine-tuning needed here? From paired per-item statistics and the cost model.

Outcomes (PRODUCT.md):
- not_needed: the best prompting point of the base is within `margin` of the best LoRA point, or better;
- not_needed_newer_base: the base needs LoRA to get there, but the newer base, prompted, is within the margin;
- justified: LoRA is better than every prompting option with the paired 95% CI of the difference above the margin,
  and the cost case holds (self-hosting the adapter costs no more than self-hosting the best prompting option at
  the stated volume);
- inconclusive: anything else — with the number of test items that would settle it.
"""

from __future__ import annotations

from typing import Any

from evaluator.paired import PairedDiff, items_needed, paired_diff

TITLES = {
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


def best(units: list[dict], arm: str) -> dict | None:
    cands = [u for u in units if u["arm"] == arm]
    return max(cands, key=lambda u: (u["value"], -u["tokens"]["prompt_tokens_per_request"])) if cands else None


def _pd(a: dict, b: dict, scores: dict[str, dict[str, float]], label) -> PairedDiff:
    return paired_diff(scores[a["unit"]], scores[b["unit"]], label(a), label(b))


def _fmt(d: PairedDiff) -> str:
    p = f", McNemar p={d.mcnemar_p:.3g}" if d.mcnemar_p is not None else ""
    return f"{d.b} − {d.a} = {d.diff:+.3f} (95% CI {d.ci_low:+.3f} to {d.ci_high:+.3f}, n={d.n}{p})"


def _monthly(cost_report, label: str) -> float | None:
    if cost_report is None:
        return None
    for a in cost_report.arms:
        if a.name == label:
            return a.monthly_selfhost_cached
    return None


def decide(
    units: list[dict],
    scores: dict[str, dict[str, float]],
    cost_report: Any | None,
    label,
    *,
    margin: float = 0.02,
    alpha: float = 0.05,
) -> dict:
    """Verdict as data: outcome, title, reason, the paired numbers behind it, obsolescence, cost case, assumptions."""
    a, b, c = best(units, "A"), best(units, "B"), best(units, "C")
    out: dict[str, Any] = {"margin": margin, "alpha": alpha, "framework": FRAMEWORK, "paired": [], "numbers": []}
    if b is None or (a is None and c is None):
        out.update(outcome="inconclusive", reason="the run needs a LoRA arm and a prompting arm to compare")
        out["title"] = TITLES["inconclusive"]
        return out
    d_a = _pd(a, b, scores, label) if a else None
    d_c = _pd(c, b, scores, label) if c else None
    for d in (d_a, d_c):
        if d is not None:
            out["paired"].append(d.__dict__ | {"summary": _fmt(d)})
            out["numbers"].append(_fmt(d))
    if c is not None and d_c is not None:
        matches = d_c.diff <= margin
        out["obsolescence"] = {
            "newer": label(c),
            "adapter": label(b),
            "newer_matches_or_beats_adapter": matches,
            "statement": (
                f"The newer base at its best prompting point ({label(c)}) "
                + ("matches or beats" if matches else "does not match")
                + f" the adapter on the old base ({label(b)}): adapter − newer = {d_c.diff:+.3f} "
                f"(95% CI {d_c.ci_low:+.3f} to {d_c.ci_high:+.3f})."
            ),
        }
    lora_m = _monthly(cost_report, label(b))
    if d_a is not None and d_a.diff <= margin:
        outcome, reason = "not_needed", (
            f"prompting the base ({label(a)}) is within {margin:.2f} of LoRA ({label(b)}) or better: {_fmt(d_a)}"
        )
    elif d_c is not None and d_c.diff <= margin:
        outcome, reason = "not_needed_newer_base", (
            f"the newer base prompted ({label(c)}) is within {margin:.2f} of LoRA ({label(b)}) or better: {_fmt(d_c)}"
        )
    elif all(d is None or d.ci_low > margin for d in (d_a, d_c)):
        rival = max([x for x in (a, c) if x], key=lambda u: u["value"])
        rival_m = _monthly(cost_report, label(rival))
        cost_ok = lora_m is None or rival_m is None or lora_m <= rival_m
        out["cost_case"] = {
            "holds": cost_ok,
            "lora_monthly_usd": lora_m,
            "best_prompting_monthly_usd": rival_m,
            "statement": (
                "no cost report" if lora_m is None or rival_m is None else
                f"self-hosting {label(b)} costs ${lora_m:,.0f}/month vs ${rival_m:,.0f}/month for {label(rival)} "
                f"at the stated volume (training amortised)"
            ),
        }
        if cost_ok:
            outcome, reason = "justified", (
                f"LoRA beats every prompting option beyond the {margin:.2f} margin on paired 95% CIs, and "
                + out["cost_case"]["statement"]
            )
        else:
            outcome, reason = "inconclusive", (
                f"LoRA is significantly better but costs more: {out['cost_case']['statement']} — decide whether the "
                "quality gain is worth the difference (see break-even volumes)"
            )
    else:
        d = d_a if d_a is not None and (d_c is None or d_a.ci_low <= d_c.ci_low) else d_c
        disc = (d.a_only + d.b_only) / d.n if d.n else None
        target = max(abs(d.diff), margin) if d.diff else max(margin, 0.05)
        need = items_needed(d.mean_a, min(1.0, d.mean_a + target), disc if disc else None, alpha=alpha, d=target)
        out["items_needed"] = {"n": need, "detect_difference": target, "have": d.n}
        outcome, reason = "inconclusive", (
            f"LoRA looks better but the paired 95% CI includes the margin ({_fmt(d)}); about {need} test items would "
            f"detect a difference of {target:.3f} at alpha={alpha} with 80% power (have {d.n})"
        )
    if outcome.startswith("not_needed"):
        d = d_a if outcome == "not_needed" else d_c
        out["confirmed"] = d.ci_high <= margin
        if not out["confirmed"]:  # the point estimate says "no gain", the interval still allows one
            need = _items_to_settle(d, margin, alpha)
            out["items_needed"] = {"n": need, "detect_difference": margin, "have": d.n}
            reason += (
                f"; not yet confirmed: the CI's upper end ({d.ci_high:+.3f}) still allows a LoRA gain above the margin — "
                f"about {need} test items would settle it"
            )
    out.update(outcome=outcome, title=TITLES[outcome], reason=reason)
    return out


def _items_to_settle(d: PairedDiff, margin: float, alpha: float) -> int:
    """Paired items needed to detect a difference of max(margin, 0.05) with 80% power, at the observed discordance."""
    disc = (d.a_only + d.b_only) / d.n if d.n else None
    target = max(margin, 0.05)
    return items_needed(d.mean_a, min(1.0, d.mean_a + target), disc or None, alpha=alpha, d=target)
