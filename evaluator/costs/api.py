"""API cost: per-million-token prices (`ApiPrices`, with the prompt-cache discount), cached prefix tokens as billed,
and the $/request of an arm's prompts at those prices."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from evaluator.costs.inputs import ArmMeasurement, CostInputs, _check, _finite_nonneg
from evaluator.fmt import price, qty, usd


@dataclass(frozen=True)
class ApiPrices:
    """Per-million-token API prices for one model (built by ``evaluator.costs.pricing.api_prices`` or by hand)."""

    model: str
    provider: str
    input_usd_per_m: float
    output_usd_per_m: float
    cached_input_usd_per_m: float | None = None  # None: the API gives no discount for repeated prefixes
    context_window: int | None = None
    cache_min_tokens: int = 1024  # OpenAI: prompts >= 1,024 tokens are cached ...
    cache_increment_tokens: int = 128  # ... and hits grow in 128-token steps
    source: str = "user-supplied prices"
    data_version: str | None = None
    data_date: str | None = None
    notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _finite_nonneg("input_usd_per_m", self.input_usd_per_m)
        _finite_nonneg("output_usd_per_m", self.output_usd_per_m)
        _finite_nonneg("cached_input_usd_per_m", self.cached_input_usd_per_m, allow_none=True)
        _check(self.cache_min_tokens >= 0, "cache_min_tokens must be >= 0")
        _check(self.cache_increment_tokens >= 1, "cache_increment_tokens must be >= 1")

    def describe(self) -> str:
        cached = (
            f" / ${price(self.cached_input_usd_per_m)} cached input"
            if self.cached_input_usd_per_m is not None
            else " / no cached-input discount"
        )
        ver = ""
        if self.data_version or self.data_date:
            ver = f"; data {self.data_version or '?'}" + (f", {self.data_date}" if self.data_date else "")
        ctx = f"; context {self.context_window:,} tokens" if self.context_window else ""
        return (
            f"{self.model} ({self.provider}): ${price(self.input_usd_per_m)} input{cached} / "
            f"${price(self.output_usd_per_m)} output per M tokens{ctx} — {self.source}{ver}"
        )


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
