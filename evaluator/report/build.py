"""Reports: report.json (versioned schema), report.md and a self-contained report.html, from the run dir only.

The report never reaches into model code: it reads units/*.json and results/*.jsonl, runs the paired statistics,
the cost model and the verdict on them, and renders. `tunecheck report` / `tunecheck cost` rebuild it in a second.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from evaluator.analysis.selection import verdict_settings
from evaluator.analysis.taskset import TaskOutcome, summarise_task_set
from evaluator.costs.from_run import task_shares
from evaluator.errors import UserError
from evaluator.report.markdown import render_markdown
from evaluator.store.files import atomic_write_json, atomic_write_text, read_json
from evaluator.store.run_store import RunStore
from evaluator.version import __version__

SCHEMA_VERSION = "3.0"


def _baselines(task_cfg: dict, rows: dict[str, list[dict]]):
    """Chance and the training split's majority class, from config.json (older runs: chance from stored choices)."""
    from evaluator.analysis.baselines import baselines

    n_choices = task_cfg.get("n_choices")
    counts = task_cfg.get("train_label_counts") or {}
    if n_choices is None:
        lens = {len(r["choices"]) for rs in rows.values() for r in rs if r.get("choices")}
        if len(lens) != 1:
            return None
        n_choices = lens.pop()
    targets = [t for t, c in sorted(counts.items()) for _ in range(int(c))]
    return baselines(int(n_choices), targets)


def _crossover(units: list[dict], scores: dict[str, dict[str, float]], alpha: float, seed: int) -> dict | None:
    from evaluator.analysis.crossover import crossover_with_uncertainty

    prompt = {u["point"]["shots"]: scores[u["unit"]] for u in units if u["arm"] == "A"}
    lora = {u["point"]["train_size"]: scores[u["unit"]] for u in units if u["arm"] == "B" and u["point"]["shots"] == 0}
    if not prompt or not lora:
        return None
    return crossover_with_uncertainty(prompt, lora, alpha=alpha, reps=1000, seed=seed)


SERVED_WORDS = {"self-host": "self-host (estimate from the measured throughput)",
                "API": "API (usage measured in this run)"}


def _cost_arm(arm, a: dict[str, Any]) -> dict[str, Any]:
    """One option of the cost table: the keys older readers index (null where they do not apply: an API-served
    option has no self-host figures), how it is served and its one monthly figure as served."""
    sh, tp, us = a["selfhost"] or {}, a["throughput"] or {}, a["usage"]
    per_1k = sh.get("usd_per_1k_requests_cached") if us is None else us["usd_per_1k_requests"]
    return {k: a[k] for k in ("name", "arm", "device", "on_cpu", "monthly_selfhost_cached", "monthly_selfhost_uncached",
                              "monthly_api", "annual_api")} | {
        "served_by": arm.served_by,
        "served_by_words": SERVED_WORDS.get(arm.served_by, arm.served_by),
        "monthly_usd": arm.monthly_usd,
        "annual_usd": None if arm.monthly_usd is None else 12 * arm.monthly_usd,
        "usd_per_1k_requests": per_1k,
        "priced": arm.monthly_usd is not None,
        "usd_per_1k_requests_cached": sh.get("usd_per_1k_requests_cached"),
        "requests_per_second": tp.get("cached_rps"),
        "requests_per_second_uncached": tp.get("uncached_rps"),
        "prefix_usd_per_month": sh.get("prefix_usd_per_month"),
        "training_usd_per_month": sh.get("training_usd_per_month"),
        "api_usage": None if us is None else {
            k: us[k] for k in ("model", "input_tokens", "cached_tokens", "output_tokens", "usd_per_request",
                               "usd_per_1k_requests", "latency_p50_s", "latency_p95_s", "prices", "note")},
        "note": (us or {}).get("note") or "",
        "how": a["how"],
    }


def _costs_section(cost_report) -> dict[str, Any]:
    from evaluator.costs.compute import to_jsonable

    c = to_jsonable(cost_report)
    return {
        "inputs": c["inputs"],
        "prices": c["prices"],
        "requests_per_day": c["requests_per_day"],
        "zero_shot_request": (c["request"] or {}) | (
            {"tokens": cost_report.request.tokens, "statement": cost_report.request.describe()}
            if cost_report.request else {}),
        "arms": [_cost_arm(arm, a) for arm, a in zip(cost_report.arms, c["arms"])],
        "break_evens": c["break_evens"],
        "threshold": c["threshold"],
        "assumptions": c["assumptions"],
        "lines": [to_jsonable(line) | {"label": line.label} for line in cost_report.lines()],
    }


def _quality_vs_cost(units: list[dict], costs: dict[str, Any]) -> list[dict[str, Any]]:
    """Each costed option's quality (with its interval) beside its monthly cost as served — self-hosted, or an API
    option at its measured usage — and whether it is on the Pareto frontier (nothing cheaper is better). The table
    and the plot read this one list."""
    from evaluator.report.pareto import pareto_frontier

    by_name = {a["name"]: a for a in costs["arms"]}
    pts = [{"label": u["label"], "arm": u["arm"], "served_by": by_name[u["label"]]["served_by"],
            "quality": u["value"], "ci_low": u["ci_low"], "ci_high": u["ci_high"],
            "monthly_usd": by_name[u["label"]]["monthly_usd"]}
           for u in units if u["label"] in by_name]
    front = set(pareto_frontier(pts))
    return [p | {"pareto": i in front} for i, p in enumerate(pts)]


def _api_options(units: list[dict], costs: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The units served by a hosted API, as the report's "API options" table shows them: endpoint, scoring method,
    requests, usage per item, latency, retries, errors and answers from the cache (from each unit's `api` record)."""
    by_name = {a["name"]: a for a in (costs or {}).get("arms", [])}
    out = []
    for u in units:
        api = u.get("api")
        if u.get("engine") != "api" or not isinstance(api, dict):
            continue
        usage = api.get("usage") if isinstance(api.get("usage"), dict) else {}
        cost = by_name.get(u["label"]) or {}
        out.append({
            "option": u["label"], "spec": api.get("spec") or u.get("model"), "model": api.get("model"),
            "base_url": api.get("base_url"), "provider": api.get("provider"), "endpoint": api.get("endpoint"),
            "scoring_method": api.get("scoring_method"), "requests": api.get("requests"),
            "from_cache": api.get("from_cache"), "retries": api.get("retries"), "errors": api.get("errors") or {},
            "latency_s": api.get("latency_s") or {}, "concurrency": api.get("concurrency"),
            "usage": {k: usage.get(k) for k in ("input_tokens_per_item", "cached_input_tokens_per_item",
                                                 "output_tokens_per_item", "items", "missing", "source")},
            "price": api.get("price"), "costed": bool(cost), "monthly_usd": cost.get("monthly_usd"),
            "note": cost.get("note") or "",
        })
    return out


def _task_section(store: RunStore, task: str, units: list[dict], cost_report, job: dict, task_cfg: dict,
                  n_tasks: int = 1, share: float = 1.0):
    """(the task's report section, its :class:`TaskOutcome` for the task-set summary)."""
    from evaluator.analysis.baselines import answer_spread
    from evaluator.analysis.labels import unit_label
    from evaluator.analysis.selection import choose
    from evaluator.analysis.verdict import decide, option_flags

    rows = {u["unit"]: store.items(u["unit"]) for u in units}
    scores = {uid: {r["item_id"]: float(r["score"]) for r in rs} for uid, rs in rows.items()}
    st = verdict_settings(job)
    choice = choose(units, scores, st)
    bl = _baselines(task_cfg, rows)
    monthly = {a.name: a.monthly_usd for a in cost_report.arms} if cost_report is not None else None
    verdict = decide(units, scores, choice, unit_label, cost_monthly=monthly, baselines=bl, margin=st["margin"],
                     alpha=st["alpha"], reps=st["bootstrap_reps"], seed=st["selection_seed"])
    simultaneous = None
    if n_tasks > 1:  # the same verdict at alpha / m, so that the set's m verdicts hold together (Bonferroni)
        simultaneous = decide(units, scores, choice, unit_label, cost_monthly=monthly, baselines=bl,
                              margin=st["margin"], alpha=st["alpha"] / n_tasks, reps=st["bootstrap_reps"],
                              seed=st["selection_seed"])
    flags = option_flags(units, scores, bl, st["alpha"])
    chosen = {u["unit"]: k for k, u in choice.points.items() if ":" not in k}
    out_units = []
    for u in units:
        spread = answer_spread([str(r.get("prediction", "")) for r in rows[u["unit"]]])
        out_units.append(u | {
            "label": unit_label(u), "ci_low": flags[u["unit"]]["ci_low"], "ci_high": flags[u["unit"]]["ci_high"],
            "ci_level": 1 - st["alpha"], "at_chance": flags[u["unit"]]["at_chance"],
            "operating_point": u["unit"] in chosen,
            "answer_spread": {"top_answer": spread.top_answer, "top_share": spread.top_share,
                              "constant": spread.constant, "statement": spread.statement,
                              "counts": spread.counts},
        })
    section: dict[str, Any] = {
        "units": out_units,
        "verdict": verdict,
        "selection": verdict["selection"],
        "baselines": verdict.get("baselines"),
        "paired": verdict.get("paired", []),
        "paired_optimistic": verdict.get("optimistic", []),
        "crossover": _crossover(units, scores, st["alpha"], st["selection_seed"]),
        "obsolescence": verdict.get("obsolescence"),
    }
    spec = task_cfg.get("spec") or {}
    if spec:
        order = spec.get("demonstrations", "seeded")
        section["demonstrations"] = {"order": order, "note": spec.get("demonstrations_note") or {
            "seeded": f"one fixed permutation of the training split (seed {job.get('seed')}); k shots take its first k",
            "first_n": "the training split in file order; k shots take its first k"}.get(order, "")}
    if cost_report is not None:
        section["costs"] = _costs_section(cost_report)
        section["costs"]["quality_vs_cost"] = _quality_vs_cost(out_units, section["costs"])
        section["costs"]["traffic_share"] = share
    api_opts = _api_options(out_units, section.get("costs"))
    if api_opts:
        section["api_options"] = api_opts
    if simultaneous is not None:
        section["verdict_simultaneous"] = {k: simultaneous.get(k) for k in ("outcome", "title", "reason", "alpha")}
    outcome = TaskOutcome(
        name=task, share=share,
        points={k: (unit_label(u), u["unit"]) for k, u in choice.points.items() if k in ("A", "B") or k.startswith("C:")},
        scores=scores, test_items=list(choice.split.test), monthly=monthly or {}, verdict=verdict,
        simultaneous=simultaneous)
    return section, outcome


def _reference_layer(names: list[str]) -> list[dict[str, Any]]:
    """The published reference curves the learning-curve figures overlay (job `reference_curves`), as data."""
    from evaluator.analysis.references import references

    return [{"name": r.name, "label": r.label, "dataset": r.dataset, "model": r.model, "citation": r.citation,
             "icl": [list(p) for p in r.icl], "best_icl": r.best_icl, "ft": [list(p) for p in r.ft], "note": r.note}
            for r in references(names)]


def build_report(store: RunStore, cost_overrides: dict | None = None, throughput: dict | None = None,
                 reference_curves: list[str] | None = None) -> dict:
    """The report as data. ``reference_curves`` overrides the job's (an empty list: none)."""
    from evaluator.costs.from_run import run_costs

    cfg = store.config
    units = store.units()
    order = {u: i for i, u in enumerate(cfg.get("units", []))}
    units.sort(key=lambda u: order.get(u["unit"], 10**6))
    by_task: dict[str, list[dict]] = {}
    for u in units:
        by_task.setdefault(u["task"], []).append(u)
    costs_error = None
    try:
        cost_reports = run_costs(store, cost_overrides, throughput=throughput) if units else {}
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
        "tasks": {},
    }
    shares = task_shares(cfg, list(by_task))
    outcomes = []
    for t, us in by_task.items():
        rep["tasks"][t], outcome = _task_section(store, t, us, cost_reports.get(t), cfg.get("job", {}),
                                                 (cfg.get("tasks") or {}).get(t, {}), len(by_task), shares[t])
        outcomes.append(outcome)
    if len(outcomes) > 1:
        st = verdict_settings(cfg.get("job", {}))
        rep["task_set"] = summarise_task_set(outcomes, alpha=st["alpha"], margin=st["margin"],
                                             seed=st["selection_seed"])
        rep["task_set"]["planned_tasks"] = len(cfg.get("tasks") or by_task)
    if costs_error:
        rep["costs_error"] = costs_error
    names = (cfg.get("job") or {}).get("reference_curves") or [] if reference_curves is None else reference_curves
    if names:
        rep["reference_curves"] = _reference_layer(list(names))
    return rep


def figures_for(rep: dict) -> dict[str, bytes]:
    """PNG figures per task: learning curves, quality vs monthly cost, cost vs volume."""
    from evaluator.report import plots

    figs: dict[str, bytes] = {}
    refs = [r["name"] for r in rep.get("reference_curves") or []]
    for task, t in rep["tasks"].items():
        figs[f"{task}/learning_curves"] = plots.learning_curves_png(t["units"], crossover=t.get("crossover"),
                                                                    references=refs)
        c = t.get("costs")
        if c:
            pts = c.get("quality_vs_cost") or []
            figs[f"{task}/quality_vs_cost"] = plots.quality_vs_cost_png(pts)
            figs[f"{task}/cost_vs_volume"] = plots.cost_vs_volume_png(
                c["lines"], c["break_evens"], days_per_month=c["inputs"]["days_per_month"], current_requests_per_day=c["requests_per_day"]
            )
    return figs


def write_reports(store: RunStore, cost_overrides: dict | None = None, write: bool = True,
                  throughput: dict | None = None, reference_curves: list[str] | None = None) -> dict:
    rep = build_report(store, cost_overrides, throughput, reference_curves)
    if write:
        from evaluator.report.html import render_html

        atomic_write_json(store.root / "report.json", rep, event="report_write")
        atomic_write_text(store.root / "report.md", render_markdown(rep), event="report_write")
        atomic_write_text(store.root / "report.html", render_html(rep, figures_for(rep)), event="report_write")
    return rep


def report_paths(run_dir: Path) -> tuple[Path, Path]:
    return run_dir / "report.md", run_dir / "report.json"
