"""The cost report of a task: every self-hosted arm's measurement priced for self-hosting (prefix cached and not)
and at the API's rates with the same prompts, every option served by a hosted API priced at its measured usage and
its own prices, at the job's volume, with the break-even volumes between options; and its JSON form."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Sequence

from evaluator.costs.api import ApiCost, ApiPrices, UsageCost, api_cost, resolve_prices, usage_cost
from evaluator.costs.breakeven import BreakEven, CostLine, ThresholdCheck, break_even, threshold_check
from evaluator.costs.inputs import HOW_TO_PRICE_API, ArmMeasurement, CostInputError, CostInputs
from evaluator.costs.selfhost import SelfHostCost, selfhost_cost
from evaluator.costs.workload import RequestSize, Throughput, fallback_request, requests_per_day, throughput
from evaluator.fmt import pct, qty, usd

#: The kind of an API-served option's own cost line (beside "self-host", "API" = the same prompts sent to the job's
#: API model, "API, no adapter").
MEASURED_API = "API, measured usage"


@dataclass(frozen=True)
class ArmCost:
    """One option's costs. A self-hosted option has ``throughput``, ``selfhost`` and the monthly self-host figures,
    plus the job's API model with the same prompts (``api``); an option served by a hosted API (``served_by`` "API")
    has none of those — only ``usage``, its measured usage at its own prices. ``monthly_usd`` is the one figure
    "what running this option costs a month" wherever a single figure per option is needed."""

    name: str
    arm: str
    device: str
    requests_per_day: float
    throughput: Throughput | None  # None: served by an API
    selfhost: SelfHostCost | None  # None: served by an API
    monthly_selfhost_cached: float | None
    monthly_selfhost_uncached: float | None
    api: ApiCost | None  # the job's API model sent this option's prompts (self-hosted options only)
    monthly_api: float | None
    annual_api: float | None
    how: tuple[str, ...]
    on_cpu: bool = False  # the throughput behind it was measured on a CPU (and not replaced by a stated figure)
    served_by: str = "self-host"  # "self-host" | "API"
    usage: UsageCost | None = None  # served by an API: its measured usage priced at its own prices
    monthly_usage: float | None = None  # served by an API: usage $/request × requests/day × days (None: unpriced)
    annual_usage: float | None = None

    @property
    def monthly_usd(self) -> float | None:
        """The monthly cost of running this option: self-hosted (prefix cached), or its measured API usage; None for
        an unpriced API option."""
        return self.monthly_usage if self.served_by == "API" else self.monthly_selfhost_cached

    @property
    def selfhost_line(self) -> CostLine | None:
        if self.selfhost is None:
            return None
        return CostLine(self.name, "self-host", self.selfhost.fixed_usd_per_month, self.selfhost.usd_per_request_cached)

    @property
    def selfhost_uncached_line(self) -> CostLine | None:
        if self.selfhost is None:
            return None
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

    @property
    def usage_line(self) -> CostLine | None:
        """An API-served option's own line (no fixed cost); None when self-hosted or unpriced."""
        if self.usage is None or self.usage.usd_per_request is None:
            return None
        return CostLine(self.name, MEASURED_API, 0.0, self.usage.usd_per_request)

    @property
    def line(self) -> CostLine | None:
        """The line of running this option as it is served (self-host cached, or its measured API usage)."""
        return self.usage_line if self.served_by == "API" else self.selfhost_line


@dataclass(frozen=True)
class CostReport:
    inputs: CostInputs
    prices: ApiPrices | None
    requests_per_day: float
    baseline_tokens_per_request: float  # = request.tokens
    arms: tuple[ArmCost, ...]
    # each pair of self-hosted options (cached), each self-hosted option vs its API line with the same prompts, then
    # each self-hosted option vs each priced API-served option
    break_evens: tuple[BreakEven, ...]
    threshold: ThresholdCheck | None  # the cheapest measured API option, else the cheapest same-prompts API line
    assumptions: tuple[str, ...]
    how: tuple[str, ...]
    request: RequestSize | None = None

    def lines(self) -> list[CostLine]:
        """Every monthly-cost line (for cost-vs-volume plots): self-host cached, uncached, API per arm; an API-served
        option's measured-usage line."""
        out: list[CostLine] = []
        for a in self.arms:
            if a.selfhost_line is not None:
                out.append(a.selfhost_line)
            if a.throughput is not None and a.throughput.estimated and a.selfhost_uncached_line is not None:
                out.append(a.selfhost_uncached_line)
            if a.api_line is not None:
                out.append(a.api_line)
            if a.usage_line is not None:
                out.append(a.usage_line)
        return out


def _api_served(a: ArmMeasurement, rpd: float, d: float) -> ArmCost:
    """An option served by a hosted API: its measured usage at its own prices; no GPU, training or ops."""
    assert a.api_usage is not None
    uc = usage_cost(a.name, a.api_usage)
    how = list(uc.how)
    monthly = annual = None
    if uc.usd_per_request is not None:
        monthly = uc.usd_per_request * rpd * d
        annual = 12 * monthly
        how.append(f"monthly API (measured usage) = {usd(uc.usd_per_request)}/req × {qty(rpd)} req/day × {d:.4g} d = "
                   f"{usd(monthly)}")
    else:
        how.append("monthly API (measured usage): not priced")
    how.append("no self-host cost: no GPU, no training, no ops (the API serves it); no \"same prompts\" line (it is "
               "an API)")
    return ArmCost(a.name, a.arm, a.device, rpd, None, None, None, None, None, None, None, tuple(how), False,
                   served_by="API", usage=uc, monthly_usage=monthly, annual_usage=annual)


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
        if a.api_usage is not None:
            out.append(_api_served(a, rpd, d))
            continue
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
    hosted = [x.selfhost_line for x in out if x.selfhost_line is not None]
    same_prompts = [(x.selfhost_line, x.api_line) for x in out if x.selfhost_line is not None and x.api_line is not None]
    rented = [x.usage_line for x in out if x.usage_line is not None]
    bes: list[BreakEven] = [break_even(hosted[i], hosted[j], d, base)
                            for i in range(len(hosted)) for j in range(i + 1, len(hosted))]
    bes += [break_even(sh_, api_, d, base) for sh_, api_ in same_prompts]
    bes += [break_even(sh_, api_, d, base) for sh_ in hosted for api_ in rented]  # self-host vs renting that API
    thr = None
    if rented or same_prompts:  # the least you would spend renting; a measured API option before an estimate
        which, pool = (("the cheapest measured API option", rented) if rented else
                       ("the cheapest API line with the same prompts", [api_ for _, api_ in same_prompts]))
        line = min(pool, key=lambda x: x.usd_per_request)
        thr = threshold_check(line, rpd, inputs, base, which=f"On {which}, {line.label}")
    assumptions = _assumptions(inputs, prices, rpd, request, arms)
    return CostReport(inputs, prices, rpd, base, tuple(out), tuple(bes), thr, assumptions, (rpd_how,), request)


def _assumptions(
    inputs: CostInputs, prices: ApiPrices | None, rpd: float, request: RequestSize, arms: Sequence[ArmMeasurement]
) -> tuple[str, ...]:
    hosted = [a for a in arms if a.api_usage is None]
    measured_on = sorted({a.device for a in hosted})
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
    ]
    if measured_on:
        a.append("Throughput measured on: " + "; ".join(measured_on) + ".")
    rented = [x for x in arms if x.api_usage is not None]
    if rented:
        a.append(
            "Served by a hosted API: " + ", ".join(f"{x.name} ({x.api_usage.model})" for x in rented)  # type: ignore[union-attr]
            + " — costed at the usage measured in this run (the responses' usage fields: input, cached input and "
            "output tokens per request, the cache discount as billed) × that model's own prices; no GPU, training "
            "or ops, and no \"same prompts\" line."
        )
        unpriced = [f"{x.name} ({x.api_usage.unpriced_reason or 'no price for its model'})"  # type: ignore[union-attr]
                    for x in rented if x.api_usage.prices is None]  # type: ignore[union-attr]
        if unpriced:
            a.append(f"Not priced: {'; '.join(unpriced)} — {HOW_TO_PRICE_API}.")
    if any(x.on_cpu and x.stated_rps is None for x in arms):
        a.append("WARNING: throughput measured on a CPU is priced at a GPU hourly rate — not a GPU serving figure; "
                 "re-run on the target GPU or state the serving throughput (tunecheck cost --throughput "
                 "\"OPTION=REQ_PER_S\").")
    if prices is not None and hosted:
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
    elif hosted:
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
