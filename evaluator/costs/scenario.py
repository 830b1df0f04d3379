"""The article's worked example (50M tokens/day, $500K/year threshold) recomputed by the cost model, at list and
at the article's prices, with a reconciliation of where the two differ."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

from evaluator.costs.api import ApiPrices, api_cost
from evaluator.costs.breakeven import CostLine, break_even
from evaluator.costs.compute import CostReport, compute_costs
from evaluator.costs.inputs import ArmMeasurement, CostInputs
from evaluator.fmt import pct, qty, usd, usd_per_m


@dataclass(frozen=True)
class _Article:
    """Assumptions that reproduce the article's figures (the article states only the totals)."""

    volume_tokens_per_day: float = 50e6
    days_per_month: float = 30.0
    api_model: str = "gpt-4o-mini"
    api_monthly_usd: float = 2_250.0  # stated by the article
    selfhost_monthly_usd: float = 5_175.0  # stated by the article
    # API: $2,250 / (50M × 30 / 1M) = $1.50 per M tokens, blended (one price for input and output)
    api_blended_usd_per_m: float = 1.50
    # request shape (only the list-price check depends on it): 1,000 tokens = 750 prompt + 250 output (3:1)
    prompt_tokens: float = 750.0
    output_tokens: float = 250.0
    # self-host: four mid-tier 24 GB GPUs (NVIDIA L4 / A10G class) rented 24/7
    gpus: int = 4
    gpu_hourly_usd: float = 0.625  # → 4 × 0.625 × 24 × 30 = $1,800/month
    utilisation: float = 0.25  # "low GPU utilisation"
    ops_hours_per_month: float = 22.5  # → 22.5 h × $150 = $3,375/month engineering overhead
    engineering_usd_per_hour: float = 150.0
    threshold_usd_per_year: float = 500_000.0
    # GPT-4o-mini list prices in genai-prices' bundled data (checked by tests/test_api_pricing.py)
    list_input_usd_per_m: float = 0.15
    list_cached_input_usd_per_m: float = 0.075
    list_output_usd_per_m: float = 0.60


ARTICLE = _Article()


@dataclass(frozen=True)
class ScenarioPriceCase:
    """The article scenario's break-even and $500K/year threshold at one API price (self-hosting unchanged)."""

    label: str  # "the article's blended price", "list price, 3:1 input:output", ...
    input_share: float | None  # fraction of tokens billed as input (None: one blended price for both)
    api_usd_per_m: float  # effective API $ per M tokens at this mix
    api_monthly_usd: float  # at the scenario's volume
    selfhost_monthly_usd: float  # at the scenario's volume
    break_even_tokens_per_day: float | None  # self-host = API; None: never (API cheaper at every volume)
    break_even_annual_api_usd: float | None  # API spend per year at that volume
    threshold_tokens_per_day: float | None  # volume at which API spend reaches the threshold
    never_reason: str | None  # why the lines never cross (None when they do)
    how: tuple[str, ...]


@dataclass(frozen=True)
class ScenarioReport:
    name: str
    volume_tokens_per_day: float
    requests_per_day: float
    api_monthly_usd: float
    api_blended_usd_per_m: float
    api_list_price_monthly_usd: float  # GPT-4o-mini at its list prices, same volume
    selfhost_monthly_usd: float
    selfhost_gpu_monthly_usd: float
    selfhost_engineering_monthly_usd: float
    selfhost_gpus_needed: float
    break_even_tokens_per_day: float | None  # self-host = API
    annual_api_usd: float
    threshold_usd_per_year: float
    over_threshold: bool
    threshold_tokens_per_day: float | None  # volume at which the API bill reaches the threshold
    assumptions: tuple[str, ...]
    how: tuple[str, ...]
    report: CostReport
    # break-even and threshold at each API price: [0] the article's blended price, then GPT-4o-mini list prices
    # at the 3:1 mix, all input, all output (the range of any input:output mix)
    selfhost_fixed_usd_per_month: float = 0.0
    selfhost_usd_per_m: float = 0.0  # self-hosting's variable (GPU) cost per M tokens
    price_cases: tuple[ScenarioPriceCase, ...] = ()
    api_list_price_range_monthly_usd: tuple[float, float] = (0.0, 0.0)  # all-input .. all-output, same volume
    break_even_api_usd_per_m: float | None = None  # API price at which self-hosting breaks even at this volume
    reconciliation: str = ""  # the scenario's own break-even vs the article's $500K rule, and what to do


def _scenario_price_case(
    label: str, input_share: float | None, api_usd_per_m: float, selfhost: CostLine, tokens_per_req: float,
    volume_tokens_per_day: float, days_per_month: float, threshold_usd_per_year: float,
) -> ScenarioPriceCase:
    """Break-even (self-host vs API) and the threshold volume for one API price, in tokens/day."""
    d = days_per_month
    api = CostLine(label, "API", 0.0, api_usd_per_m * tokens_per_req / 1e6)
    be = break_even(selfhost, api, d, tokens_per_req)
    sh_per_m = selfhost.usd_per_request / tokens_per_req * 1e6
    fixed = selfhost.fixed_usd_per_month
    api_m = api.monthly_at_tokens(volume_tokens_per_day, tokens_per_req, d)
    sh_m = selfhost.monthly_at_tokens(volume_tokens_per_day, tokens_per_req, d)
    how = [
        f"[{label}] API = {qty(volume_tokens_per_day)} tokens/day × {d:.4g} d × {usd_per_m(api_usd_per_m)}/M = "
        f"{usd(api_m)}/month; self-host = {usd(fixed)} + {qty(volume_tokens_per_day)} × {d:.4g} d × "
        f"{usd_per_m(sh_per_m)}/M = {usd(sh_m)}/month"
    ]
    t = be.tokens_per_day
    never = None
    be_tok = be_annual = None
    if t is None or math.isinf(t):
        never = (
            f"API {usd_per_m(api_usd_per_m)}/M "
            + ("<" if api_usd_per_m < sh_per_m else "=")
            + f" self-hosting's {usd_per_m(sh_per_m)}/M for GPU time alone"
            + (f", before its {usd(fixed)}/month fixed overhead" if fixed > 0 else "")
        )
        how.append(f"[{label}] break-even: never — {never}")
    else:
        be_tok = t
        be_annual = 12 * api.monthly_at_tokens(t, tokens_per_req, d)
        how.append(
            f"[{label}] break-even = {usd(fixed)} / (({usd_per_m(api_usd_per_m)} - {usd_per_m(sh_per_m)})/M × "
            f"{d:.4g} d) = {qty(t)} tokens/day; API spend there = {qty(t)} × {d:.4g} d × 12 × "
            f"{usd_per_m(api_usd_per_m)}/M = {usd(be_annual)}/year"
        )
    thr_tok = None
    if api_usd_per_m > 0:
        thr_tok = threshold_usd_per_year / (12 * d * api_usd_per_m / 1e6)
        how.append(
            f"[{label}] {usd(threshold_usd_per_year)}/year of API spend reached at {usd(threshold_usd_per_year)} / "
            f"(12 × {d:.4g} d × {usd_per_m(api_usd_per_m)}/M) = {qty(thr_tok)} tokens/day"
        )
    return ScenarioPriceCase(
        label, input_share, api_usd_per_m, api_m, sh_m, be_tok, be_annual, thr_tok, never, tuple(how)
    )


def _scenario_reconciliation(
    volume_tokens_per_day: float, threshold_usd_per_year: float, cases: Sequence[ScenarioPriceCase],
    selfhost_usd_per_m: float, selfhost_fixed_usd_per_month: float, break_even_api_usd_per_m: float | None,
) -> str:
    """One sentence: the worked example's own break-even vs the $500K rule, at list prices, and what to do."""
    art, lists = cases[0], list(cases[1:])
    thr = usd(threshold_usd_per_year)
    # 1. the article's own numbers against its rule
    if art.break_even_tokens_per_day is None:
        p1 = (
            f"On the article's own numbers ({usd_per_m(art.api_usd_per_m)}/M) self-hosting never pays on cost "
            f"({art.never_reason}), so its {thr}/year rule is, if anything, too generous to self-hosting"
        )
    elif art.break_even_tokens_per_day == 0 or not art.break_even_annual_api_usd:
        p1 = (
            f"On the article's own numbers ({usd_per_m(art.api_usd_per_m)}/M) self-hosting is cheaper at every "
            f"volume, so its {thr}/year rule does not follow from its worked example"
        )
    else:
        ratio = threshold_usd_per_year / art.break_even_annual_api_usd
        cmp = (
            f"≈{ratio:.3g}× more conservative than its worked example" if ratio > 1.005
            else f"≈{1 / ratio:.3g}× less conservative than its worked example" if ratio < 1 / 1.005
            else "in line with its worked example"
        )
        p1 = (
            f"On the article's own numbers ({usd_per_m(art.api_usd_per_m)}/M API vs "
            f"{usd(selfhost_fixed_usd_per_month)}/month + {usd_per_m(selfhost_usd_per_m)}/M self-hosted) "
            f"self-hosting pays above ≈{qty(art.break_even_tokens_per_day)} tokens/day "
            f"(≈{usd(art.break_even_annual_api_usd)}/year of API spend), so the {thr}/year rule "
            f"(≈{qty(art.threshold_tokens_per_day)} tokens/day at that price) is {cmp}"
        )
    # 2. at list prices, over the whole input:output range
    lo_p = min(c.api_usd_per_m for c in lists)
    hi_p = max(c.api_usd_per_m for c in lists)
    crossing = [c for c in lists if c.break_even_tokens_per_day is not None]
    if not crossing:
        p2 = (
            f"at GPT-4o-mini list prices ({usd_per_m(lo_p)}–{usd_per_m(hi_p)}/M for any input:output mix, all "
            f"below self-hosting's {usd_per_m(selfhost_usd_per_m)}/M of GPU time alone) self-hosting never pays "
            f"on cost"
        )
    else:
        vols = [c.break_even_tokens_per_day or 0.0 for c in crossing]
        spend = [c.break_even_annual_api_usd or 0.0 for c in crossing]
        where = (
            f"above ≈{qty(min(vols))}–{qty(max(vols))} tokens/day depending on the mix "
            f"(≈{usd(min(spend))}–{usd(max(spend))}/year of API spend)"
            if len(crossing) > 1
            else f"above ≈{qty(vols[0])} tokens/day (≈{usd(spend[0])}/year of API spend)"
        )
        if len(crossing) == len(lists):
            p2 = f"at GPT-4o-mini list prices self-hosting pays {where}"
        else:
            nev = [c for c in lists if c.break_even_tokens_per_day is None]
            p2 = (
                f"at GPT-4o-mini list prices self-hosting pays only for the "
                f"{', '.join(c.label.split(', ', 1)[-1] for c in crossing)} mix, {where}, and never for "
                f"{', '.join(c.label.split(', ', 1)[-1] for c in nev)}"
            )
    # 3. what to do at this volume
    sh = lists[0].selfhost_monthly_usd
    lo_m = min(c.api_monthly_usd for c in lists)
    hi_m = max(c.api_monthly_usd for c in lists)
    v = qty(volume_tokens_per_day)
    bp = break_even_api_usd_per_m
    need = (
        f"you pay more than {usd_per_m(bp)}/M for it (the article's {usd_per_m(art.api_usd_per_m)}/M "
        + ("does" if art.api_usd_per_m > bp else "does not") + ") or " if bp is not None else ""
    )
    if sh >= hi_m:
        p3 = (
            f"so at {v} tokens/day (self-hosting {usd(sh)}/month vs {usd(lo_m)}–{usd(hi_m)}/month of API at list "
            f"prices) keep the API unless {need}you need compliance (HIPAA, SOC 2), latency or behaviour prompting "
            f"cannot reach"
        )
    elif sh < lo_m:
        p3 = (
            f"so at {v} tokens/day self-hosting ({usd(sh)}/month) is cheaper than the API at list prices for any "
            f"mix ({usd(lo_m)}–{usd(hi_m)}/month): examine it on cost, with your measured throughput and "
            f"utilisation in place of the article's"
        )
    else:
        p3 = (
            f"so at {v} tokens/day self-hosting ({usd(sh)}/month) beats the API at list prices only for some mixes "
            f"({usd(lo_m)}–{usd(hi_m)}/month) — measure your real input:output split and price before moving"
        )
    return f"{p1}; {p2}, {p3}."


def article_scenario(
    volume_tokens_per_day: float = ARTICLE.volume_tokens_per_day, *, article: _Article | None = None
) -> ScenarioReport:
    """The article's worked example rebuilt from stated assumptions with this module's cost model.

    At the default 50M tokens/day: API ≈ $2,250/month, self-hosting on four mid-tier GPUs ≈ $5,175/month
    ($1,800 GPU rental + $3,375 engineering overhead). Other volumes scale the variable parts linearly.
    The break-even and the $500K/year threshold are given both at the article's blended $1.50/M and at
    GPT-4o-mini's list prices (3:1 mix, all input, all output), with a sentence reconciling them.
    ``article`` overrides the assumptions (``dataclasses.replace(ARTICLE, ...)``).
    """
    A = article if article is not None else ARTICLE
    tokens_per_req = A.prompt_tokens + A.output_tokens
    # the throughput that makes 4 GPUs exactly enough at 50M tokens/day and 25% utilisation
    full_load_tok_s_per_gpu = A.volume_tokens_per_day / (86400 * A.gpus * A.utilisation)
    req_s = full_load_tok_s_per_gpu * A.gpus / tokens_per_req  # per 4-GPU replica
    n_req = 1000
    arm = ArmMeasurement(
        name="article: open 7-8B model", arm="A", requests=n_req, eval_seconds=n_req / req_s,
        device=f"{A.gpus}× mid-tier 24 GB GPU (L4/A10G class)",
        prompt_tokens_per_request=A.prompt_tokens, shared_prefix_tokens=0.0, output_tokens_per_request=A.output_tokens,
        api_prompt_tokens_per_request=A.prompt_tokens, api_shared_prefix_tokens=0.0,
        api_output_tokens_per_request=A.output_tokens,
    )
    inputs = CostInputs(
        volume_tokens_per_day=volume_tokens_per_day, gpu_hourly_usd=A.gpu_hourly_usd, gpus=A.gpus,
        utilisation=A.utilisation, api_model=A.api_model, api_provider="openai",
        engineering_usd_per_hour=A.engineering_usd_per_hour, selfhost_ops_hours_per_month=A.ops_hours_per_month,
        self_host_threshold_usd_per_year=A.threshold_usd_per_year, days_per_month=A.days_per_month,
    )
    blended = ApiPrices(
        model=A.api_model, provider="openai", input_usd_per_m=A.api_blended_usd_per_m,
        output_usd_per_m=A.api_blended_usd_per_m, cached_input_usd_per_m=None,
        source="blended price implied by the article's $2,250/month at 50M tokens/day",
    )
    rep = compute_costs([arm], inputs, blended)
    ac = rep.arms[0]
    listed = ApiPrices(
        model=A.api_model, provider="openai", input_usd_per_m=A.list_input_usd_per_m,
        output_usd_per_m=A.list_output_usd_per_m, cached_input_usd_per_m=A.list_cached_input_usd_per_m,
        source="genai-prices bundled list prices",
    )
    list_cost = api_cost(arm, listed)
    d = A.days_per_month
    rpd = rep.requests_per_day
    list_monthly = list_cost.usd_per_request * rpd * d
    gpu_monthly = ac.selfhost.usd_per_request_cached * rpd * d
    eng_monthly = ac.selfhost.ops_usd_per_month
    be = rep.break_evens[0] if rep.break_evens else None
    thr = rep.threshold
    assert thr is not None and ac.monthly_api is not None
    list_blend = list_cost.usd_per_request / tokens_per_req * 1e6
    fleet_gpu = A.gpus * A.gpu_hourly_usd * 24 * d  # at the article's 50M tokens/day
    fleet_eng = A.ops_hours_per_month * A.engineering_usd_per_hour
    assumptions = (
        f"Volume: {qty(volume_tokens_per_day)} tokens/day, {d:.0f}-day month = "
        f"{qty(volume_tokens_per_day * d)} tokens/month (article: 50M tokens/day).",
        f"API (article: ≈$2,250/month on GPT-4o-mini): $2,250 ÷ 1,500M tokens/month implies a blended "
        f"${A.api_blended_usd_per_m:.2f} per M tokens, one price for input and output, no prompt caching.",
        f"That blended price is not GPT-4o-mini's list price: at ${A.list_input_usd_per_m} input / "
        f"${A.list_output_usd_per_m} output per M (genai-prices) and a 3:1 input:output split "
        f"({A.prompt_tokens:.0f} + {A.output_tokens:.0f} tokens per request) the same volume costs "
        f"{usd(list_monthly)}/month (${list_blend:.4g}/M blended) — the article's figure is "
        f"{A.api_blended_usd_per_m / list_blend:.3g}× that.",
        f"Self-hosting (article: ≈$5,175/month on four mid-tier GPUs, mostly engineering overhead and low GPU "
        f"utilisation); the article gives only the total, the split is ours: GPU rental "
        f"{A.gpus} × ${A.gpu_hourly_usd}/GPU-hour × 24 h × {d:.0f} d = {usd(fleet_gpu)} (GPU) + engineering "
        f"overhead {A.ops_hours_per_month} h/month × ${A.engineering_usd_per_hour:.0f}/h = {usd(fleet_eng)} "
        f"(engineering, {pct(fleet_eng / (fleet_gpu + fleet_eng))}).",
        f"GPUs: mid-tier 24 GB cards (L4 / A10G class) serving a 7-8B open model, {pct(A.utilisation)} average "
        f"utilisation; at 50M tokens/day this needs exactly {A.gpus} GPUs running 24/7, i.e. each GPU sustains "
        f"≈{full_load_tok_s_per_gpu:.0f} tokens/s at full load ({req_s:.4g} requests/s per 4-GPU replica of "
        f"{tokens_per_req:.0f}-token requests).",
        "Costs scale linearly with volume (fractional GPUs); no fine-tuning in this example (no training line).",
        f"Article rule: self-hosting pays only above {usd(A.threshold_usd_per_year)}/year of API spend "
        f"(or for compliance: HIPAA, SOC 2; latency; behaviour prompting cannot reach).",
    )
    how = [
        f"API monthly = {qty(volume_tokens_per_day)} tokens/day × {d:.0f} d × ${A.api_blended_usd_per_m:.2f}/M "
        f"= {usd(ac.monthly_api)}",
        f"self-host GPU = {usd(ac.selfhost.usd_per_request_cached)}/req × {qty(rpd)} req/day × {d:.0f} d = "
        f"{usd(gpu_monthly)} (= {ac.selfhost.gpus_needed:.3g} GPUs × ${A.gpu_hourly_usd}/h × 24 h × {d:.0f} d)",
        f"self-host engineering = {A.ops_hours_per_month} h × ${A.engineering_usd_per_hour:.0f}/h = "
        f"{usd(eng_monthly)}",
        f"self-host monthly = {usd(gpu_monthly)} + {usd(eng_monthly)} = {usd(ac.monthly_selfhost_cached)}",
        f"API at GPT-4o-mini list prices = ({A.prompt_tokens:.0f} × ${A.list_input_usd_per_m} + "
        f"{A.output_tokens:.0f} × ${A.list_output_usd_per_m}) / 1M × {qty(rpd)} req/day × {d:.0f} d = "
        f"{usd(list_monthly)}",
    ]
    if be is not None:
        how.append("break-even: " + be.how)
    how.append(thr.sentence)
    # the break-even and the threshold at the article's price and at list prices over the input:output range
    sh_line = ac.selfhost_line
    sh_fixed = sh_line.fixed_usd_per_month
    sh_per_m = sh_line.usd_per_request / tokens_per_req * 1e6
    in_share = A.prompt_tokens / tokens_per_req
    mixes = (
        ("the article's blended price", None, A.api_blended_usd_per_m),
        (f"list price, {A.prompt_tokens / A.output_tokens:.3g}:1 input:output" if A.output_tokens else
         "list price, as the request shape", in_share,
         in_share * A.list_input_usd_per_m + (1 - in_share) * A.list_output_usd_per_m),
        ("list price, all input", 1.0, A.list_input_usd_per_m),
        ("list price, all output", 0.0, A.list_output_usd_per_m),
    )
    cases = tuple(
        _scenario_price_case(lbl, share, p, sh_line, tokens_per_req, volume_tokens_per_day, d,
                             A.threshold_usd_per_year)
        for lbl, share, p in mixes
    )
    for c in cases:
        how.extend(c.how)
    vol_m = volume_tokens_per_day * d / 1e6  # M tokens/month
    be_price = ac.monthly_selfhost_cached / vol_m if vol_m > 0 else None
    if be_price is not None:
        how.append(
            f"API price at which self-hosting breaks even at {qty(volume_tokens_per_day)} tokens/day = "
            f"{usd(ac.monthly_selfhost_cached)} / {qty(vol_m)}M tokens/month = {usd_per_m(be_price)}/M"
        )
    list_range = (min(c.api_monthly_usd for c in cases[1:]), max(c.api_monthly_usd for c in cases[1:]))
    reconciliation = _scenario_reconciliation(
        volume_tokens_per_day, A.threshold_usd_per_year, cases, sh_per_m, sh_fixed, be_price
    )
    return ScenarioReport(
        name=f"article: {qty(volume_tokens_per_day)} tokens/day, GPT-4o-mini API vs mid-tier GPUs",
        volume_tokens_per_day=volume_tokens_per_day,
        requests_per_day=rpd,
        api_monthly_usd=ac.monthly_api,
        api_blended_usd_per_m=A.api_blended_usd_per_m,
        api_list_price_monthly_usd=list_monthly,
        selfhost_monthly_usd=ac.monthly_selfhost_cached,
        selfhost_gpu_monthly_usd=gpu_monthly,
        selfhost_engineering_monthly_usd=eng_monthly,
        selfhost_gpus_needed=ac.selfhost.gpus_needed,
        break_even_tokens_per_day=be.tokens_per_day if be is not None else None,
        annual_api_usd=thr.annual_api_usd,
        threshold_usd_per_year=thr.threshold_usd_per_year,
        over_threshold=thr.over_threshold,
        threshold_tokens_per_day=thr.threshold_tokens_per_day,
        assumptions=assumptions,
        how=tuple(how),
        report=rep,
        selfhost_fixed_usd_per_month=sh_fixed,
        selfhost_usd_per_m=sh_per_m,
        price_cases=cases,
        api_list_price_range_monthly_usd=list_range,
        break_even_api_usd_per_m=be_price,
        reconciliation=reconciliation,
    )
