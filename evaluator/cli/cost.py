"""`tunecheck cost RUN` (or `--scenario article`): costs recomputed from stored measurements with overrides."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from evaluator.cli.base import app, friendly
from evaluator.errors import UserError


def _default(field: str) -> str:
    """What an unset option means: the value the run's job recorded, else the cost model's default (shown)."""
    from dataclasses import fields

    from evaluator.costs.inputs import CostInputs

    value = next(f.default for f in fields(CostInputs) if f.name == field)
    shown = "the price table's" if value is None and field.startswith("api_") else (
        "derived from the volume" if value is None else f"{value:,g}" if isinstance(value, float) and value < 1e4
        else f"{value:,.0f}" if isinstance(value, float) else value)
    return f"(default: the run's recorded value, else {shown})."


@app.command()
@friendly
def cost(
    run_dir: Optional[Path] = typer.Argument(None, help="A run folder; its stored measurements are re-costed (no model is loaded)."),
    scenario: Optional[str] = typer.Option(None, help="'article': the article's worked example (50M tokens/day, API vs 4 GPUs, $500K/year rule)."),
    volume: Optional[float] = typer.Option(None, help="Traffic in zero-shot-request tokens/day " + _default("volume_tokens_per_day")),
    requests_per_day: Optional[float] = typer.Option(None, help="Traffic in requests/day (overrides --volume) " + _default("requests_per_day")),
    gpu_hourly: Optional[float] = typer.Option(None, help="GPU rental, $/GPU-hour " + _default("gpu_hourly_usd")),
    gpus: Optional[int] = typer.Option(None, min=1, help="GPUs the throughput was measured on " + _default("gpus")),
    utilisation: Optional[float] = typer.Option(None, help="Average GPU utilisation in (0, 1] " + _default("utilisation")),
    refresh_months: Optional[float] = typer.Option(None, help="Base-model refresh period: LoRA is retrained this often " + _default("refresh_months")),
    api_model: Optional[str] = typer.Option(None, help="API model to compare with (genai-prices name, e.g. gpt-4o-mini) " + _default("api_model")),
    api_provider: Optional[str] = typer.Option(None, help="API provider id (e.g. openai) " + _default("api_provider")),
    api_input_price: Optional[float] = typer.Option(None, help="Negotiated input price, $/M tokens " + _default("api_input_usd_per_m")),
    api_cached_input_price: Optional[float] = typer.Option(None, help="Negotiated cached-input price, $/M tokens " + _default("api_cached_input_usd_per_m")),
    api_output_price: Optional[float] = typer.Option(None, help="Negotiated output price, $/M tokens " + _default("api_output_usd_per_m")),
    engineering_hours: Optional[float] = typer.Option(None, help="Engineering hours per (re)training " + _default("engineering_hours_per_training")),
    engineering_rate: Optional[float] = typer.Option(None, help="Engineering $/hour " + _default("engineering_usd_per_hour")),
    ops_hours: Optional[float] = typer.Option(None, help="Self-hosting operations hours per month " + _default("selfhost_ops_hours_per_month")),
    all_points: bool = typer.Option(False, "--all", help="Cost every arm point, not only the operating point of each arm."),
    throughput: Optional[list[str]] = typer.Option(None, "--throughput", help="State a serving throughput for an option, 'LABEL=REQ_PER_S' (e.g. \"B n=100=850\"); repeatable. Replaces the measured figure (e.g. a CPU run costed for a GPU node)."),
    throughput_from: Optional[Path] = typer.Option(None, "--throughput-from", help="Take every option's throughput from another run of the same job measured on the target GPU."),
    prefix_cache_hours: Optional[float] = typer.Option(None, help="How long a replica keeps the shared prefix cached before encoding it again " + _default("prefix_cache_hours")),
) -> None:
    """Monthly cost per arm, break-even volumes and the verdict, recomputed from a run's stored measurements."""
    from evaluator.costs.inputs import DEFAULT_VOLUME_TOKENS_PER_DAY
    from evaluator.costs.scenario import article_scenario
    from evaluator.costs.text import format_cost_report, format_scenario

    if scenario is not None:
        if scenario != "article":
            raise UserError(f"unknown scenario {scenario!r} — the only built-in one is 'article'")
        sys.stdout.write("\n".join(format_scenario(article_scenario(volume or DEFAULT_VOLUME_TOKENS_PER_DAY))) + "\n")
        return
    if run_dir is None:
        raise UserError("give a run folder (runs/<run-id>) or --scenario article")
    from evaluator.costs.from_run import run_costs
    from evaluator.report.build import write_reports
    from evaluator.store.run_store import RunStore

    overrides = {
        "volume_tokens_per_day": volume, "requests_per_day": requests_per_day, "gpu_hourly_usd": gpu_hourly,
        "gpus": gpus, "utilisation": utilisation, "refresh_months": refresh_months, "api_model": api_model,
        "api_provider": api_provider, "api_input_usd_per_m": api_input_price,
        "api_cached_input_usd_per_m": api_cached_input_price, "api_output_usd_per_m": api_output_price,
        "engineering_hours_per_training": engineering_hours, "engineering_usd_per_hour": engineering_rate,
        "selfhost_ops_hours_per_month": ops_hours, "prefix_cache_hours": prefix_cache_hours,
    }
    from evaluator.costs.from_run import parse_throughput, throughput_from_run

    named = parse_throughput(throughput)
    stated = throughput_from_run(throughput_from) if throughput_from is not None else {}
    stated.update(named)
    store = RunStore.open(run_dir)
    reports = run_costs(store, overrides, only_key=not all_points, throughput=stated, must_use=set(named))
    rep = write_reports(store, cost_overrides=overrides, write=False, throughput=stated)
    from evaluator.costs.from_run import task_shares

    shares = task_shares(store.config, list(reports))
    for task, cr in reports.items():
        share = "" if len(shares) < 2 else f" ({shares[task]:.0%} of the job's traffic)"
        sys.stdout.write(f"== {task}{share} ==\n" + "\n".join(format_cost_report(cr)) + "\n\n")
        v = rep["tasks"][task]["verdict"]
        sys.stdout.write(f"Verdict: {v['title']} — {v['reason']}\n")
