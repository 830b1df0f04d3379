"""Plain-text renderings of a cost report and of the article scenario (`tunecheck cost`)."""

from __future__ import annotations

import math

from evaluator.costs.compute import ArmCost, CostReport
from evaluator.costs.scenario import ScenarioReport
from evaluator.fmt import qty, usd, usd_per_m

#: widths of the cells after an option's name and how it is served (as the header's columns)
_WIDTHS = (8, 16, 15, 12, 16, 16, 10, 11, 16)


def _cells(a: ArmCost) -> tuple[str, ...]:
    """An option's cells after its name and how it is served: self-host figures ("—" for an option an API serves),
    the job's API model with the same prompts, and the monthly cost as it is served ("not priced" when unknown)."""
    served = "not priced" if a.monthly_usd is None else usd(a.monthly_usd)
    if a.selfhost is None or a.throughput is None:
        return ("—",) * 8 + (served,)
    return (f"{a.throughput.cached_rps:.4g}", usd(a.selfhost.usd_per_1k_requests_cached),
            usd(a.selfhost.usd_per_1k_requests_uncached), usd(a.selfhost.training_usd_per_month),
            usd(a.monthly_selfhost_cached), usd(a.monthly_selfhost_uncached),
            usd(a.api.usd_per_1k_requests if a.api else None), usd(a.monthly_api), served)


def format_cost_report(report: CostReport) -> list[str]:
    """Printable lines: assumptions, a per-arm table, break-even volumes, the threshold, then every 'how'."""
    i = report.inputs
    lines = [f"Costs at {qty(i.volume_tokens_per_day)} tokens/day = {qty(report.requests_per_day)} requests/day"
             if i.requests_per_day is None else f"Costs at {qty(report.requests_per_day)} requests/day"]
    if report.request is not None:
        lines.append(f"  {report.request.describe()} → {qty(report.requests_per_day)} requests/day")
    lines.append("Assumptions:")
    lines.extend(f"  - {a}" for a in report.assumptions)
    lines.append("")
    w = max([22, *(len(a.name) for a in report.arms)])
    hdr = (f"{'arm':<{w}} {'served by':>9} {'req/s':>8} {'$/1k req cached':>16} {'$/1k uncached*':>15} "
           f"{'train/month':>12} {'self-host/month':>16} {'uncached/month*':>16} {'API $/1k':>10} {'API/month':>11} "
           f"{'as served/month':>16}")
    lines.append(hdr)
    for a in report.arms:
        lines.append(f"{a.name:<{w}} {a.served_by:>9} " + " ".join(f"{c:>{n}}" for c, n in zip(_cells(a), _WIDTHS)))
    lines.append("  * uncached = every request encodes the shared prefix again (from its measured encoding time; a "
                 "FLOP-proportional estimate where none was recorded); API = the API model with the same prompts "
                 "(no adapter); as served = self-hosted (prefix cached) for a self-hosted option, the usage measured "
                 "in this run × its own prices for an option served by an API (— = does not apply).")
    lines.append("Throughput measured with:")
    for a in report.arms:
        if a.usage is not None:
            lat = (f"; latency p50 {a.usage.latency_p50_s:.3g} s, p95 {a.usage.latency_p95_s:.3g} s"
                   if a.usage.latency_p50_s is not None and a.usage.latency_p95_s is not None else "")
            lines.append(f"  {a.name}: served by the API — {a.device}{lat}")
        else:
            lines.append(f"  {a.name}: {a.device}" + ("  [CPU: not a GPU serving figure]" if a.on_cpu else ""))
    notes = [a.usage.note for a in report.arms if a.usage is not None and a.usage.note]
    lines.extend(f"  NOT PRICED: {n}" for n in notes)
    if report.break_evens:
        lines.append("")
        lines.append("Break-even volumes:")
        for b in report.break_evens:
            if b.requests_per_day is None or math.isinf(b.requests_per_day) or b.requests_per_day <= 0:
                v = b.summary or f"never cross: {b.cheaper_below or b.cheaper_above} cheaper at every volume"
            else:
                v = f"{qty(b.tokens_per_day)} tokens/day ({qty(b.requests_per_day)} req/day)"
                if b.cheaper_above:
                    v += f"; above it {b.cheaper_above} is cheaper"
            lines.append(f"  {b.a} vs {b.b}: {v}")
    if report.threshold is not None:
        lines.append("")
        lines.append("Article threshold: " + report.threshold.sentence)
    lines.append("")
    lines.append("How:")
    lines.extend(f"  {h}" for h in report.how)
    for a in report.arms:
        lines.append(f"  [{a.name}]")
        lines.extend(f"    {h}" for h in a.how)
    for b in report.break_evens:
        lines.append(f"  break-even: {b.how}")
    return lines


def format_scenario(s: ScenarioReport) -> list[str]:
    """Printable lines for ``tunecheck cost --scenario article``."""
    be = s.break_even_tokens_per_day
    lines = [
        f"Scenario — {s.name}",
        f"  volume                      {qty(s.volume_tokens_per_day)} tokens/day "
        f"({qty(s.requests_per_day)} requests/day)",
        f"  hosted API                  {usd(s.api_monthly_usd)}/month  (${s.api_blended_usd_per_m:.2f}/M blended)",
        f"  {f'self-hosted, {s.selfhost_gpus_needed:.3g} GPUs':<28}{usd(s.selfhost_monthly_usd)}/month  "
        f"= {usd(s.selfhost_gpu_monthly_usd)} GPU rental + {usd(s.selfhost_engineering_monthly_usd)} engineering",
        f"  GPT-4o-mini at list prices  {usd(s.api_list_price_monthly_usd)}/month"
        + (f" at {s.price_cases[1].label.split(', ', 1)[-1]}; {usd(s.api_list_price_range_monthly_usd[0])}–"
           f"{usd(s.api_list_price_range_monthly_usd[1])}/month from all input to all output"
           if len(s.price_cases) > 1 else ""),
        "  break-even (self-host=API)  "
        + (f"{qty(be)} tokens/day" if be is not None and not math.isinf(be) else "never"),
        f"  annual API spend            {usd(s.annual_api_usd)} vs {usd(s.threshold_usd_per_year)}/year threshold "
        f"→ {'self-hosting worth examining' if s.over_threshold else 'API stays the default'}"
        + (f" (threshold reached at ≈{qty(s.threshold_tokens_per_day)} tokens/day)"
           if s.threshold_tokens_per_day is not None and not s.over_threshold else ""),
    ]
    if s.price_cases:
        lines.append(
            f"Break-even and the {usd(s.threshold_usd_per_year)}/year rule at each API price "
            f"(self-hosting: {usd(s.selfhost_fixed_usd_per_month)}/month + "
            f"{usd_per_m(s.selfhost_usd_per_m)}/M tokens):"
        )
        for c in s.price_cases:
            be_s = (
                f"break-even never: the API is cheaper at every volume ({c.never_reason})"
                if c.never_reason is not None
                else f"break-even: self-hosting pays above ≈{qty(c.break_even_tokens_per_day)} tokens/day "
                f"(≈{usd(c.break_even_annual_api_usd)}/year of API spend)"
            )
            thr_s = (
                f"; {usd(s.threshold_usd_per_year)}/year of API spend at "
                f"≈{qty(c.threshold_tokens_per_day)} tokens/day"
                if c.threshold_tokens_per_day is not None else ""
            )
            lines.append(
                f"  {c.label + ', ' + usd_per_m(c.api_usd_per_m) + '/M':<44}API {usd(c.api_monthly_usd)}/month vs "
                f"self-host {usd(c.selfhost_monthly_usd)}/month"
            )
            lines.append(f"  {'':<44}{be_s}{thr_s}")
    if s.reconciliation:
        lines.append("Reconciliation: " + s.reconciliation)
    lines.append("Assumptions:")
    lines.extend(f"  - {a}" for a in s.assumptions)
    lines.append("How:")
    lines.extend(f"  {h}" for h in s.how)
    return lines
