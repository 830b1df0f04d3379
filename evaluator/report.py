"""Reports: report.json (versioned schema), report.md and a self-contained report.html, from the run dir only.

The report never reaches into model code: it reads units/*.json and results/*.jsonl, runs the paired statistics,
the cost model and the verdict on them, and renders. `tunecheck report` / `tunecheck cost` rebuild it in a second.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from evaluator import __version__
from evaluator.errors import UserError
from evaluator.store import RunStore, atomic_write_json, atomic_write_text, read_json

SCHEMA_VERSION = "2.0"


def _scores(store: RunStore, units: list[dict]) -> dict[str, dict[str, float]]:
    return {u["unit"]: {r["item_id"]: float(r["score"]) for r in store.items(u["unit"])} for u in units}


def _curves(units: list[dict]) -> tuple[list[tuple[int, float]], list[tuple[int, float]]]:
    prompt = sorted((u["point"]["shots"], u["value"]) for u in units if u["arm"] == "A")
    lora = sorted((u["point"]["train_size"], u["value"]) for u in units if u["arm"] == "B" and u["point"]["shots"] == 0)
    return prompt, lora


def _task_section(store: RunStore, task: str, units: list[dict], cost_report, job: dict) -> dict[str, Any]:
    from evaluator.costs import to_jsonable
    from evaluator.paired import crossover
    from evaluator.run_costs import unit_label
    from evaluator.verdict import decide

    scores = _scores(store, units)
    vcfg = job.get("verdict", {})
    verdict = decide(units, scores, cost_report, unit_label, margin=vcfg.get("margin", 0.02), alpha=vcfg.get("alpha", 0.05))
    prompt_curve, lora_curve = _curves(units)
    section: dict[str, Any] = {
        "units": [u | {"label": unit_label(u)} for u in units],
        "verdict": verdict,
        "paired": verdict.get("paired", []),
        "crossover": crossover(prompt_curve, lora_curve) if prompt_curve and lora_curve else None,
        "obsolescence": verdict.get("obsolescence"),
    }
    if cost_report is not None:
        c = to_jsonable(cost_report)
        section["costs"] = {
            "inputs": c["inputs"],
            "prices": c["prices"],
            "requests_per_day": c["requests_per_day"],
            "arms": [
                {k: a[k] for k in ("name", "arm", "device", "monthly_selfhost_cached", "monthly_selfhost_uncached", "monthly_api", "annual_api")}
                | {"usd_per_1k_requests_cached": a["selfhost"]["usd_per_1k_requests_cached"], "requests_per_second": a["throughput"]["cached_rps"], "how": a["how"]}
                for a in c["arms"]
            ],
            "break_evens": c["break_evens"],
            "threshold": c["threshold"],
            "assumptions": c["assumptions"],
            "lines": [to_jsonable(line) | {"label": line.label} for line in cost_report.lines()],
        }
    return section


def build_report(store: RunStore, cost_overrides: dict | None = None) -> dict:
    from evaluator.run_costs import run_costs

    cfg = store.config
    units = store.units()
    order = {u: i for i, u in enumerate(cfg.get("units", []))}
    units.sort(key=lambda u: order.get(u["unit"], 10**6))
    by_task: dict[str, list[dict]] = {}
    for u in units:
        by_task.setdefault(u["task"], []).append(u)
    costs_error = None
    try:
        cost_reports = run_costs(store, cost_overrides) if units else {}
    except UserError as exc:  # e.g. an API model with no price: the report still shows quality
        cost_reports, costs_error = {}, str(exc)
    env = read_json(store.root / "env.json") if (store.root / "env.json").exists() else {}
    rep = {
        "schema_version": SCHEMA_VERSION,
        "tunecheck_version": __version__,
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "run_id": cfg.get("run_id"),
        "job": cfg.get("job", {}),
        "environment": env,
        "complete": len(units) == len(cfg.get("units", [])),
        "units_planned": len(cfg.get("units", [])),
        "tasks": {t: _task_section(store, t, us, cost_reports.get(t), cfg.get("job", {})) for t, us in by_task.items()},
    }
    if costs_error:
        rep["costs_error"] = costs_error
    return rep


def _point(u: dict) -> str:
    pt = u["point"]
    if u["arm"] == "B":
        return f"n={pt['train_size']}, k={pt['shots']}"
    return f"k={pt['shots']}" + (" (max)" if pt["shots_requested"] == "max" else "")


def _money(x: Any) -> str:
    return "—" if x is None else ("∞" if x == "inf" else f"${x:,.0f}")


def render_markdown(rep: dict) -> str:
    job = rep["job"]
    dev = rep.get("environment", {}).get("device", {})
    pk = rep.get("environment", {}).get("packages", {})
    lines = [
        f"# tunecheck report — {job.get('name', rep['run_id'])}",
        "",
        f"Run `{rep['run_id']}` · base `{job.get('base')}` · newer {', '.join(f'`{n}`' for n in job.get('newer', [])) or '—'} "
        f"· seed {job.get('seed')} · tunecheck {rep['tunecheck_version']}  ",
        f"Device: {dev.get('gpu', 'CPU')} ({dev.get('cpu_count')} CPU cores) · torch {pk.get('torch')} · "
        f"transformers {pk.get('transformers')} · peft {pk.get('peft')}",
    ]
    if not rep["complete"]:
        done = sum(len(t["units"]) for t in rep["tasks"].values())
        lines += ["", f"**Incomplete run**: {done} of {rep['units_planned']} units finished."]
    if rep.get("costs_error"):
        lines += ["", f"Costs not computed: {rep['costs_error']}"]
    for task, t in rep["tasks"].items():
        v = t["verdict"]
        lines += ["", f"## Task `{task}`", "", f"**Verdict: {v['title']}** — {v['reason']}."]
        if t.get("obsolescence"):
            lines += ["", f"**Obsolescence:** {t['obsolescence']['statement']}"]
        if t.get("crossover"):
            lines += ["", f"**Crossover:** {t['crossover'].get('statement', t['crossover'])}"]
        lines += [
            "",
            "A = prompting the base with k shared demonstrations; B = LoRA on the first n training items; C = prompting "
            "the newer base. Quality with a 95% CI (Wilson).",
            "",
            "| arm | model | point | quality | 95% CI | items | prompt tok/req | shared prefix tok | eval s | train s |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for u in t["units"]:
            train = u.get("training", {}).get("train_seconds")
            lines.append(
                f"| {u['arm']} | {u['model']} | {_point(u)} | {u['value']:.3f} | [{u['ci_low']:.3f}, {u['ci_high']:.3f}] "
                f"| {u['n_items']} | {u['tokens']['prompt_tokens_per_request']:.0f} | {u['tokens']['shared_prefix_tokens']} "
                f"| {u['timings']['eval_seconds']:.1f} | {'' if train is None else f'{train:.1f}'} |"
            )
        for u in t["units"]:
            if u["point"]["shots_requested"] == "max":
                lines.append(f"\n`max` for {u['model']}: k={u['point']['shots']} — {u['point']['shots_how']}.")
        if t["paired"]:
            lines += ["", "### Paired comparisons (same items)", "", "| comparison | difference | 95% CI | McNemar p | n |", "|---|---|---|---|---|"]
            for d in t["paired"]:
                p = "—" if d.get("mcnemar_p") is None else f"{d['mcnemar_p']:.3g}"
                lines.append(f"| {d['b']} − {d['a']} | {d['diff']:+.3f} | [{d['ci_low']:+.3f}, {d['ci_high']:+.3f}] | {p} | {d['n']} |")
        c = t.get("costs")
        if c:
            vol = c["inputs"]["volume_tokens_per_day"]
            lines += [
                "",
                f"### Costs at {vol / 1e6:g}M tokens/day ({c['requests_per_day']:,.0f} requests/day), best point of each arm",
                "",
                "| option | req/s measured | $/1k req (self-host) | self-host $/month | API $/month (same prompts) |",
                "|---|---|---|---|---|",
            ]
            for a in c["arms"]:
                lines.append(
                    f"| {a['name']} | {a['requests_per_second']:.3g} | ${a['usd_per_1k_requests_cached']:.4g} "
                    f"| {_money(a['monthly_selfhost_cached'])} | {_money(a['monthly_api'])} |"
                )
            lines += ["", "Break-even volumes:"]
            for b in c["break_evens"]:
                lines.append(f"- {b['how']}")
            if c.get("threshold"):
                lines += ["", f"Article threshold: {c['threshold']['sentence']}"]
            lines += ["", "Assumptions:"] + [f"- {a}" for a in c["assumptions"]]
        lines += ["", f"_{v.get('framework', '')}_"]
    return "\n".join(lines) + "\n"


def figures_for(rep: dict) -> dict[str, bytes]:
    """PNG figures per task: learning curves, quality vs monthly cost, cost vs volume."""
    from evaluator import plots

    figs: dict[str, bytes] = {}
    for task, t in rep["tasks"].items():
        figs[f"{task}/learning_curves"] = plots.learning_curves_png(t["units"])
        c = t.get("costs")
        if c:
            by_name = {a["name"]: a for a in c["arms"]}
            pts = [
                {"label": u["label"], "arm": u["arm"], "quality": u["value"], "ci_low": u["ci_low"], "ci_high": u["ci_high"],
                 "monthly_usd": by_name[u["label"]]["monthly_selfhost_cached"]}
                for u in t["units"] if u["label"] in by_name
            ]
            figs[f"{task}/quality_vs_cost"] = plots.quality_vs_cost_png(pts)
            figs[f"{task}/cost_vs_volume"] = plots.cost_vs_volume_png(
                c["lines"], c["break_evens"], days_per_month=c["inputs"]["days_per_month"], current_requests_per_day=c["requests_per_day"]
            )
    return figs


def write_reports(store: RunStore, cost_overrides: dict | None = None, write: bool = True) -> dict:
    rep = build_report(store, cost_overrides)
    if write:
        from evaluator.html_report import render_html

        atomic_write_json(store.root / "report.json", rep, event="report_write")
        atomic_write_text(store.root / "report.md", render_markdown(rep), event="report_write")
        atomic_write_text(store.root / "report.html", render_html(rep, figures_for(rep)), event="report_write")
    return rep


def report_paths(run_dir: Path) -> tuple[Path, Path]:
    return run_dir / "report.md", run_dir / "report.json"
