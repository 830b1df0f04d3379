"""The cost report of a task: every arm's measurement priced for self-hosting (prefix cached and not) and at the
API's rates, at the job's volume, with the break-even volumes between options; and its JSON form."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Sequence

from evaluator.costs.api import ApiCost, ApiPrices, api_cost, resolve_prices
from evaluator.costs.breakeven import BreakEven, CostLine, ThresholdCheck, break_even, threshold_check
from evaluator.costs.inputs import ArmMeasurement, CostInputError, CostInputs
from evaluator.costs.selfhost import SelfHostCost, selfhost_cost
from evaluator.costs.workload import RequestSize, Throughput, fallback_request, requests_per_day, throughput
from evaluator.fmt import pct, qty, usd


@dataclass(frozen=True)
class ArmCost:
    name: str
    arm: str
    device: str
    requests_per_day: float
    throughput: Throughput
    selfhost: SelfHostCost
    monthly_selfhost_cached: float
    monthly_selfhost_uncached: float
    api: ApiCost | None
    monthly_api: float | None
    annual_api: float | None
    how: tuple[str, ...]
    on_cpu: bool = False  # the throughput behind it was measured on a CPU (and not replaced by a stated figure)

    @property
    def selfhost_line(self) -> CostLine:
        return CostLine(self.name, "self-host", self.selfhost.fixed_usd_per_month, self.selfhost.usd_per_request_cached)

    @property
    def selfhost_uncached_line(self) -> CostLine:
        return CostLine(
            self.name, "self-host, no prefix cache", self.selfhost.fixed_usd_per_month,
            self.selfhost.usd_per_request_uncached,
        )

    @property
    def api_line(self) -> CostLine | None:
        if self.api is None:
            return None
        kind = "API, no adapter" if "adapter" in self.api.label else "API"
        return CostLine(self.name, kind, 0.0, self.api.usd_per_request)


@dataclass(frozen=True)
class CostReport:
    inputs: CostInputs
    prices: ApiPrices | None
    requests_per_day: float
    baseline_tokens_per_request: float  # = request.tokens
    arms: tuple[ArmCost, ...]
    break_evens: tuple[BreakEven, ...]  # each pair of arms (self-hosted, cached), then each arm vs its API line
    threshold: ThresholdCheck | None  # for the cheapest API line (the least you would spend renting)
    assumptions: tuple[str, ...]
    how: tuple[str, ...]
    request: RequestSize | None = None

    def lines(self) -> list[CostLine]:
        """Every monthly-cost line (for cost-vs-volume plots): self-host cached, uncached, API per arm."""
        out: list[CostLine] = []
        for a in self.arms:
            out.append(a.selfhost_line)
            if a.throughput.estimated:
                out.append(a.selfhost_uncached_line)
            if a.api_line is not None:
                out.append(a.api_line)
        return out


def compute_costs(
    arms: Sequence[ArmMeasurement], inputs: CostInputs | None = None, prices: ApiPrices | None = None,
    request: RequestSize | None = None,
) -> CostReport:
    """Monthly cost per arm at the stated volume, break-even volumes and the article's threshold.

    ``prices`` is the API price table entry (``evaluator.costs.pricing.api_prices``); the overrides in ``inputs``
    are applied on top. Without prices (and without both input/output overrides) the API lines are omitted.
    ``request`` is the zero-shot request that converts tokens/day into requests/day (one size for every arm);
    without it :func:`fallback_request` approximates it from the arms (and says so).
    """
    inputs = inputs or CostInputs()
    arms = list(arms)
    names = [a.name for a in arms]
    if len(set(names)) != len(names):
        raise CostInputError(f"arm measurement names must be unique, got {names}")
    prices = resolve_prices(inputs, prices)
    if not arms:
        raise CostInputError("no arm measurements given")
    request = request or fallback_request(arms)
    rpd, base, rpd_how = requests_per_day(inputs, request)
    d = inputs.days_per_month
    out: list[ArmCost] = []
    for a in arms:
        sh = selfhost_cost(a, inputs, rpd)
        mc = sh.fixed_usd_per_month + sh.usd_per_request_cached * rpd * d
        mu = sh.fixed_usd_per_month + sh.usd_per_request_uncached * rpd * d
        how = list(sh.how)
        how.append(
            f"monthly self-host (cached) = {usd(sh.usd_per_request_cached)}/req × {qty(rpd)} req/day × {d:.4g} d"
            + (f" + {usd(sh.fixed_usd_per_month)} fixed" if sh.fixed_usd_per_month else "")
            + f" = {usd(mc)}"
        )
        if a.needs_training or sh.ops_usd_per_month:
            how.append(
                f"  fixed = {usd(sh.ops_usd_per_month)} ops + {usd(sh.training_usd_per_month)} amortised training"
                + (f" + {usd(sh.prefix_usd_per_month)} prefix encodings" if sh.prefix_usd_per_month else "")
            )
        if mu != mc:
            how.append(
                f"monthly self-host (uncached) = {usd(sh.usd_per_request_uncached)}/req × {qty(rpd)} × {d:.4g} d"
                + (f" + {usd(sh.fixed_usd_per_month)}" if sh.fixed_usd_per_month else "")
                + f" = {usd(mu)}"
            )
        ac = ma = aa = None
        if prices is not None:
            ac = api_cost(a, prices)
            ma = ac.usd_per_request * rpd * d
            aa = 12 * ma
            how.extend(ac.how)
            how.append(f"monthly API = {usd(ac.usd_per_request)}/req × {qty(rpd)} req/day × {d:.4g} d = {usd(ma)}")
        out.append(ArmCost(a.name, a.arm, a.device, rpd, throughput(a), sh, mc, mu, ac, ma, aa, tuple(how),
                           a.on_cpu and a.stated_rps is None))
    bes: list[BreakEven] = []
    for i in range(len(out)):
        for j in range(i + 1, len(out)):
            bes.append(break_even(out[i].selfhost_line, out[j].selfhost_line, d, base))
    for ac_ in out:
        if ac_.api_line is not None:
            bes.append(break_even(ac_.selfhost_line, ac_.api_line, d, base))
    thr = None
    api_arms = [x for x in out if x.api_line is not None]
    if api_arms:
        cheapest = min(api_arms, key=lambda x: x.api.usd_per_request)  # type: ignore[union-attr]
        thr = threshold_check(cheapest.api_line, rpd, inputs, base)  # type: ignore[arg-type]
    assumptions = _assumptions(inputs, prices, rpd, request, arms)
    return CostReport(inputs, prices, rpd, base, tuple(out), tuple(bes), thr, assumptions, (rpd_how,), request)


def _assumptions(
    inputs: CostInputs, prices: ApiPrices | None, rpd: float, request: RequestSize, arms: Sequence[ArmMeasurement]
) -> tuple[str, ...]:
    measured_on = sorted({a.device for a in arms})
    a = [
        f"Volume: {qty(inputs.volume_tokens_per_day)} tokens/day of zero-shot-request traffic → "
        f"{qty(rpd)} requests/day; {request.describe()}; many-shot arms send more tokens for the same requests."
        if inputs.requests_per_day is None
        else f"Volume: {qty(rpd)} requests/day (given directly).",
        f"Month = {inputs.days_per_month:.4g} days; costs are linear in volume (fractional GPUs).",
        f"Self-hosting: ${inputs.gpu_hourly_usd:.4g}/GPU-hour × {inputs.gpus} GPU(s) as measured, "
        f"{pct(inputs.utilisation)} average utilisation; ops {inputs.selfhost_ops_hours_per_month:.4g} h/month.",
        f"Engineering: ${inputs.engineering_usd_per_hour:.4g}/h; {inputs.engineering_hours_per_training:.4g} h per "
        f"(re)training; training amortised over a {inputs.refresh_months:.4g}-month base refresh period "
        f"(each new base release means retraining).",
        "Self-hosted throughput is per-request work measured with the shared demonstration prefix computed once "
        "(prefix cache); the one-off prefix encoding and warm-up are excluded and the prefix is priced once per "
        f"replica per {inputs.prefix_cache_hours:.4g}-hour cache lifetime; the uncached figure adds the measured "
        "prefix encoding to every request.",
        "Throughput measured on: " + "; ".join(measured_on) + ".",
    ]
    if any(x.on_cpu and x.stated_rps is None for x in arms):
        a.append("WARNING: throughput measured on a CPU is priced at a GPU hourly rate — not a GPU serving figure; "
                 "re-run on the target GPU or state the serving throughput (tunecheck cost --throughput "
                 "\"OPTION=REQ_PER_S\").")
    if prices is not None:
        a.append("API prices: " + prices.describe() + ".")
        a.extend(f"API price note: {n}" for n in prices.notes)
        if prices.cached_input_usd_per_m is not None:
            a.append(
                f"API prompt caching: shared prefixes >= {prices.cache_min_tokens:,} tokens are billed at the cached "
                f"price in {prices.cache_increment_tokens}-token steps; steady traffic keeps the cache warm."
            )
        a.append(
            "The API line for each arm sends that arm's prompts to the API model; a LoRA adapter on our base cannot "
            "run there, so for arm B it is the API model without the adapter."
        )
    else:
        a.append("API prices not given: API lines omitted.")
    a.append(
        f"Article rule: self-hosting pays only above {usd(inputs.self_host_threshold_usd_per_year)}/year of API "
        "spend, or for compliance (HIPAA, SOC 2), latency, or behaviour prompting cannot reach."
    )
    return tuple(a)


def to_jsonable(obj: Any) -> Any:
    """Dataclasses → dicts for the run's JSON; ``inf`` → the string "inf", NaN → None (strict JSON)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, float):
        if math.isnan(obj):
            return None
        if math.isinf(obj):
            return "inf" if obj > 0 else "-inf"
        return obj
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(x) for x in obj]
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    return obj
