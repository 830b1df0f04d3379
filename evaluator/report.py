"""Report v1: report.md + report.json, built from the run directory only (never from model code).

report.json is versioned (`schema_version`) so later statistics, cost and HTML layers can be added without
re-running models: everything they need is in units/*.json and results/*.jsonl.
"""

from __future__ import annotations

import time
from pathlib import Path

from evaluator import __version__
from evaluator.store import RunStore, atomic_write_json, atomic_write_text, read_json

SCHEMA_VERSION = "1.0"
MARGIN = 0.02  # quality difference (absolute) within which options count as "the same"


def _best(units: list[dict], arm: str) -> dict | None:
    cands = [u for u in units if u["arm"] == arm]
    return max(cands, key=lambda u: u["value"]) if cands else None


def plain_verdict(units: list[dict], margin: float = MARGIN) -> dict:
    """A first, unpaired verdict from the best point of each arm and their 95% CIs (paired tests come later)."""
    a, b, c = _best(units, "A"), _best(units, "B"), _best(units, "C")
    if b is None or (a is None and c is None):
        return {"outcome": "inconclusive", "reason": "needs both a LoRA arm and a prompting arm to compare"}
    best_prompt = max([x for x in (a, c) if x], key=lambda u: u["value"])
    gap = b["value"] - best_prompt["value"]
    nums = (
        f"best LoRA {b['value']:.3f} [{b['ci_low']:.3f}, {b['ci_high']:.3f}] ({b['unit']}) vs best prompting "
        f"{best_prompt['value']:.3f} [{best_prompt['ci_low']:.3f}, {best_prompt['ci_high']:.3f}] ({best_prompt['unit']})"
    )
    if gap <= margin:
        outcome = "not_needed_newer_base" if best_prompt["arm"] == "C" else "not_needed"
        why = "prompting is within the margin of LoRA, or better"
        if outcome == "not_needed_newer_base":
            why = "the newer base, prompted, is within the margin of the LoRA adapter, or better"
    elif b["ci_low"] > best_prompt["ci_high"]:
        outcome, why = "justified", "LoRA is better and the 95% intervals do not overlap (costs not yet weighed)"
    else:
        outcome, why = "inconclusive", "LoRA looks better but the 95% intervals overlap: more test items are needed"
    return {"outcome": outcome, "reason": why, "numbers": nums, "margin": margin, "gap": gap}


VERDICT_TEXT = {
    "not_needed": "Fine-tuning not needed",
    "not_needed_newer_base": "Fine-tuning not needed — the newer base catches up",
    "justified": "Fine-tuning justified",
    "inconclusive": "Inconclusive",
}


def build_report(store: RunStore) -> dict:
    cfg = store.config
    units = store.units()
    order = {u: i for i, u in enumerate(cfg.get("units", []))}
    units.sort(key=lambda u: order.get(u["unit"], 10**6))
    by_task: dict[str, list[dict]] = {}
    for u in units:
        by_task.setdefault(u["task"], []).append(u)
    env = read_json(store.root / "env.json") if (store.root / "env.json").exists() else {}
    return {
        "schema_version": SCHEMA_VERSION,
        "tunecheck_version": __version__,
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "run_id": cfg.get("run_id"),
        "job": cfg.get("job", {}),
        "environment": env,
        "complete": len(units) == len(cfg.get("units", [])),
        "units_planned": len(cfg.get("units", [])),
        "tasks": {
            t: {"units": us, "verdict": plain_verdict(us)} for t, us in by_task.items()
        },
    }


def _row(u: dict) -> str:
    pt = u["point"]
    point = f"n={pt['train_size']}, k={pt['shots']}" if u["arm"] == "B" else f"k={pt['shots']}" + (" (max)" if pt["shots_requested"] == "max" else "")
    train = u.get("training", {}).get("train_seconds")
    return (
        f"| {u['arm']} | {u['model']} | {point} | {u['value']:.3f} | [{u['ci_low']:.3f}, {u['ci_high']:.3f}] | {u['n_items']} "
        f"| {u['tokens']['prompt_tokens_per_request']:.0f} | {u['tokens']['shared_prefix_tokens']} "
        f"| {u['timings']['eval_seconds']:.1f} | {'' if train is None else f'{train:.1f}'} |"
    )


def render_markdown(rep: dict) -> str:
    job = rep["job"]
    lines = [
        f"# tunecheck report — {job.get('name', rep['run_id'])}",
        "",
        f"Run `{rep['run_id']}` · base `{job.get('base')}` · newer {', '.join(f'`{n}`' for n in job.get('newer', [])) or '—'} "
        f"· seed {job.get('seed')} · tunecheck {rep['tunecheck_version']}",
    ]
    dev = rep.get("environment", {}).get("device", {})
    pk = rep.get("environment", {}).get("packages", {})
    lines.append(
        f"Device: {dev.get('gpu', 'CPU')} ({dev.get('cpu_count')} CPU cores) · torch {pk.get('torch')} · transformers {pk.get('transformers')} · peft {pk.get('peft')}"
    )
    if not rep["complete"]:
        lines += ["", f"**Incomplete run**: {sum(len(t['units']) for t in rep['tasks'].values())} of {rep['units_planned']} units finished."]
    for task, t in rep["tasks"].items():
        v = t["verdict"]
        lines += [
            "",
            f"## Task `{task}`",
            "",
            f"**Verdict: {VERDICT_TEXT[v['outcome']]}** — {v['reason']}." + (f" {v['numbers']}." if v.get("numbers") else ""),
            "",
            "Arms: A = prompting the base with k shared demonstrations; B = LoRA on the first n training items; "
            "C = prompting the newer base. Quality with a 95% CI (Wilson for accuracy).",
            "",
            "| arm | model | point | quality | 95% CI | items | prompt tok/req | shared prefix tok | eval s | train s |",
            "|---|---|---|---|---|---|---|---|---|---|",
            *[_row(u) for u in t["units"]],
        ]
        maxed = [u for u in t["units"] if u["point"]["shots_requested"] == "max"]
        for u in maxed:
            lines.append(f"\n`max` for {u['model']}: k={u['point']['shots']} — {u['point']['shots_how']}.")
    return "\n".join(lines) + "\n"


def write_reports(store: RunStore) -> dict:
    rep = build_report(store)
    atomic_write_json(store.root / "report.json", rep)
    atomic_write_text(store.root / "report.md", render_markdown(rep))
    return rep


def report_paths(run_dir: Path) -> tuple[Path, Path]:
    return run_dir / "report.md", run_dir / "report.json"
