"""The Markdown of `tunecheck compare` (:func:`evaluator.report.compare.compare_runs` stores it as ``markdown``)."""

from __future__ import annotations

from typing import Any

from evaluator.fmt import ci_pct, usd_whole

__all__ = ["compare_markdown", "KIND_TITLES"]

KIND_TITLES = {
    "adapter_vs_prompting": "adapter (before) vs prompting (after)",
    "best_vs_best": "best vs best",
    "adapter_vs_adapter": "adapter vs adapter",
    "prompting_vs_prompting": "best prompting vs best prompting",
    "headline": "headline",
    "same_point": "same point",
}


def _rows(pairs: list[dict[str, Any]], with_kind: bool) -> list[str]:
    costs = any(p.get("monthly_usd_a") is not None or p.get("monthly_usd_b") is not None for p in pairs)
    level = ci_pct(pairs[0].get("alpha", 0.05)) if pairs else "95%"
    head = ("| comparison | " if with_kind else "| ") + (
        f"before option | after option | before | after | after − before | {level} CI | McNemar p "
        "| right only after / only before |" + (" before $/month | after $/month |" if costs else ""))
    sep = "|" + "---|" * (head.count("|") - 1)
    lines = [head, sep]
    for p in pairs:
        mp = "—" if p.get("mcnemar_p") is None else f"{p['mcnemar_p']:.3g}"
        lines.append(
            ("| " + KIND_TITLES.get(p["kind"], p["kind"]) + " " if with_kind else "")
            + f"| {p['label_a']} | {p['label_b']} | {p['mean_a']:.3f} | {p['mean_b']:.3f} | {p['diff']:+.3f} "
            f"| [{p['ci_low']:+.3f}, {p['ci_high']:+.3f}] | {mp} | {p['b_only']} / {p['a_only']} |"
            + (f" {usd_whole(p.get('monthly_usd_a'))} | {usd_whole(p.get('monthly_usd_b'))} |" if costs else "")
        )
    return lines


def compare_markdown(r: dict[str, Any]) -> list[str]:
    """The comparison as Markdown lines: both runs, then per task the headline, the pairs and the same points."""
    a, b = r["run_a"], r["run_b"]

    def desc(x: dict) -> str:
        newer = ", ".join(f"`{n}`" for n in x["newer"]) or "—"
        units = (f"{x['units']} units, **{len(x['unfinished_units'])} of {x['planned_units']} planned units "
                 "unfinished**") if x.get("unfinished_units") else f"{x['units']} units"
        return f"`{x['run_id']}` (base `{x['base']}`, newer {newer}; {units}; `{x['dir']}`)"

    lines = [f"# tunecheck compare — {a['name']} vs {b['name']}", ""]
    if r.get("note"):
        lines += [f"> **Note:** {r['note'][0].upper() + r['note'][1:]}.", ""]
    for line in r.get("incomplete") or []:
        lines += [f"> **WARNING — INCOMPLETE RUN:** {line}. Compared with --allow-incomplete: each arm's best point "
                  "is chosen among the finished units only, so these figures can change when the run finishes.", ""]
    lines += [
        f"- **before** (the first run given): {desc(a)}",
        f"- **after** (the second run given): {desc(b)}",
        "",
        f"Differences are after − before on the same test items (paired by item id): {ci_pct(r['alpha'])} CI by "
        f"Newcombe's method 10 for accuracy (bootstrap over items otherwise), McNemar's exact test. Margin "
        f"{r['margin']:.2f}. Table rows compare best points on all items (descriptive); the headline chooses and "
        "tests as the verdict does.",
    ]
    for task, t in r["tasks"].items():
        lines += ["", f"## Task `{task}` ({t['n_items']} items)"]
        if t.get("headline"):
            lines += ["", f"**Headline:** {t['headline']['statement']}"]
        if t["pairs"]:
            lines += [""] + _rows(t["pairs"], with_kind=True)
        if t["same_point"]:
            lines += ["", "### Same points in both runs", ""] + _rows(t["same_point"], with_kind=False)
    if r["tasks_only_in_a"] or r["tasks_only_in_b"]:
        lines += ["", "Not compared (in one run only): "
                  + ", ".join([f"`{t}` (before only)" for t in r["tasks_only_in_a"]]
                              + [f"`{t}` (after only)" for t in r["tasks_only_in_b"]])]
    return lines
