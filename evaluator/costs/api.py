"""API cost: per-million-token prices (`ApiPrices`, with the prompt-cache discount), cached prefix tokens as billed,
the $/request of an arm's prompts at those prices ("the API with the same prompts"), and the $/request of an option
served by a hosted API from its measured usage at its own prices (`usage_cost`)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from evaluator.costs.inputs import HOW_TO_PRICE_API, ApiPrices, ApiUsage, ArmMeasurement, CostInputs
from evaluator.fmt import price, qty, usd


def resolve_prices(inputs: CostInputs, prices: ApiPrices | None) -> ApiPrices | None:
    """Apply the user's negotiated-price overrides in ``inputs`` to ``prices`` (the table's).

    Without a table, the overrides alone make a price set when both input and output prices are given.
    """
    over = {
        "input_usd_per_m": inputs.api_input_usd_per_m,
        "cached_input_usd_per_m": inputs.api_cached_input_usd_per_m,
        "output_usd_per_m": inputs.api_output_usd_per_m,
    }
    given = {k: v for k, v in over.items() if v is not None}
    if prices is None:
        if inputs.api_input_usd_per_m is None or inputs.api_output_usd_per_m is None:
            return None
        return ApiPrices(
            model=inputs.api_model,
            provider=inputs.api_provider,
            source="user override (no price table)",
            **given,  # type: ignore[arg-type]
        )
    given = {k: v for k, v in given.items() if getattr(prices, k) != v}  # already applied upstream: keep as is
    if not given:
        return prices
    names = ", ".join(f"{k.replace('_usd_per_m', '')}=${price(v)}/M" for k, v in given.items())
    return dataclasses.replace(prices, source=f"{prices.source}; user override {names}", **given)


def api_cached_tokens(prefix_tokens: float, prices: ApiPrices) -> float:
    """Tokens of the shared prefix billed at the cached-input price (see the module docstring's caching rule)."""
    if prices.cached_input_usd_per_m is None or prefix_tokens < prices.cache_min_tokens:
        return 0.0
    steps = math.floor((prefix_tokens - prices.cache_min_tokens) / prices.cache_increment_tokens)
    return float(prices.cache_min_tokens + steps * prices.cache_increment_tokens)


@dataclass(frozen=True)
class ApiCost:
    label: str
    prompt_tokens: float
    cached_tokens: float
    output_tokens: float
    exact_token_counts: bool  # False: model-tokenizer counts stood in for tiktoken counts
    usd_per_request: float
    usd_per_1k_requests: float
    fits_context: bool | None
    how: tuple[str, ...]


def api_cost(arm: ArmMeasurement, prices: ApiPrices) -> ApiCost:
    """$/request of sending this arm's prompts to the API model (no adapter: "rent the API with the same prompts")."""
    p, s, o, exact = arm.api_tokens()
    cached = min(api_cached_tokens(s, prices), p)
    fresh = p - cached
    cached_price = prices.cached_input_usd_per_m if prices.cached_input_usd_per_m is not None else 0.0
    per = (fresh * prices.input_usd_per_m + cached * cached_price + o * prices.output_usd_per_m) / 1e6
    label = f"API alternative: {prices.model} ({prices.provider}) with the same prompts"
    if arm.needs_training:
        label += " — without the LoRA adapter (an adapter on our base cannot run on the API model)"
    how = []
    if not exact:
        how.append(
            f"{arm.name}: API token counts missing for some fields; model-tokenizer counts used as an approximation"
        )
    if prices.cached_input_usd_per_m is None:
        rule = "no cached-input price: every prompt token at the input price"
    elif s < prices.cache_min_tokens:
        rule = f"shared prefix {qty(s)} < {prices.cache_min_tokens:,} tokens: not cached"
    else:
        rule = (
            f"cached = {prices.cache_min_tokens:,} + {prices.cache_increment_tokens} × floor(({qty(s)} - "
            f"{prices.cache_min_tokens:,}) / {prices.cache_increment_tokens}) = {qty(cached)} of the "
            f"{qty(s)}-token prefix"
        )
    how.append(f"API caching: {rule}")
    how.append(
        f"API $/request = ({qty(fresh)} × ${price(prices.input_usd_per_m)} + {qty(cached)} × ${price(cached_price)} + "
        f"{qty(o)} × ${price(prices.output_usd_per_m)}) / 1M = {usd(per)}"
    )
    fits = None
    if prices.context_window:
        fits = p + o <= prices.context_window
        if not fits:
            how.append(
                f"WARNING: {qty(p)} prompt + {qty(o)} output tokens exceed {prices.model}'s context window "
                f"({prices.context_window:,}); this prompt cannot be sent as is"
            )
    return ApiCost(label, p, cached, o, exact, per, 1000 * per, fits, tuple(how))


@dataclass(frozen=True)
class UsageCost:
    """An API-served option's $/request from its measured usage at its own prices; None figures: not priced."""

    model: str
    input_tokens: float  # per request, cached ones included
    cached_tokens: float  # billed at the cached-input price, as the API reported them
    output_tokens: float
    prices: ApiPrices | None
    usd_per_request: float | None
    usd_per_1k_requests: float | None
    latency_p50_s: float | None
    latency_p95_s: float | None
    how: tuple[str, ...]
    note: str = ""  # unpriced: why, and how to price it


def usage_cost(name: str, usage: ApiUsage) -> UsageCost:
    """$/request of an API-served option as billed: ((input - cached) × input + cached × cached-input + output ×
    output) / 1M, from its *measured* usage (the cached tokens the API reported, not the 1,024/128 rule the "same
    prompts" lines estimate). Without prices it is unpriced — never $0."""
    inp, cached, out = (usage.input_tokens_per_request, usage.cached_input_tokens_per_request,
                        usage.output_tokens_per_request)
    over = f" over {usage.items} items" if usage.items else ""
    how = [f"{name}: served by the API {usage.model}; measured usage per request (one request = one test item){over}: "
           f"{qty(inp)} input tokens, of which {qty(cached)} cached, + {qty(out)} output — from {usage.usage_source}"]
    if usage.missing_usage:
        how.append(f"WARNING: {usage.missing_usage} response(s) carried no usage: the per-request usage is over the "
                   "responses that did")
    p = usage.prices
    if p is None:
        note = (f"{name} is not priced ({usage.unpriced_reason or 'no price for its model'}): "
                f"{HOW_TO_PRICE_API}")
        how.append(note)
        return UsageCost(usage.model, inp, cached, out, None, None, None, usage.latency_p50_s, usage.latency_p95_s,
                         tuple(how), note)
    cp = p.cached_input_usd_per_m if p.cached_input_usd_per_m is not None else p.input_usd_per_m
    per = ((inp - cached) * p.input_usd_per_m + cached * cp + out * p.output_usd_per_m) / 1e6
    how.append(f"API prices: {p.describe()}"
               + ("" if p.cached_input_usd_per_m is not None else " — no cached-input price: cached tokens at the "
                  "input price"))
    how.append(f"API $/request (measured usage) = (({qty(inp)} - {qty(cached)}) × ${price(p.input_usd_per_m)} + "
               f"{qty(cached)} × ${price(cp)} + {qty(out)} × ${price(p.output_usd_per_m)}) / 1M = {usd(per)}")
    return UsageCost(usage.model, inp, cached, out, p, per, 1000 * per, usage.latency_p50_s, usage.latency_p95_s,
                     tuple(how))
