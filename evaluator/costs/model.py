"""Cost model: self-hosted vs API inference, LoRA training amortised over base-model refreshes, break-even volumes.

Pure arithmetic on stored measurements: no torch, no transformers, no network. Every input has a default in
:class:`CostInputs` and can be overridden; every output carries ``how`` strings that spell out the formula with
the numbers substituted, so a report can show *how* each figure was obtained.

Model (all costs are USD; a month is ``days_per_month`` days)
----------------------------------------------------------------
**Workload.** The traffic is a number of task requests per day. Users think in tokens/day (the article's
"50M tokens/day"), so ``requests/day = volume_tokens_per_day / zero-shot request tokens``, where the zero-shot
request (:class:`RequestSize`) is the request as the user would send it without demonstrations: the task's
instruction + the input + the *reference* answer — one size for every arm (API tiktoken counts where the run has
them, else the base model's tokens). A many-shot arm serves the *same* requests/day but sends more tokens per request.
``CostInputs.requests_per_day`` sets the traffic directly.

**Self-hosted inference** (per arm). ``throughput = requests / eval_seconds`` as measured on ``gpus`` GPUs, where
``eval_seconds`` is per-request work only: the one-off prefix encoding (``prefix_seconds``) and the warm-up are
recorded apart. tunecheck's many-shot engine reuses the shared demo prefix, so the measurement is the
*prefix-cached* throughput. The *uncached* throughput comes from the measured prefix encoding — every request would
encode the prefix again::

    uncached seconds per request = eval_seconds / requests + prefix_seconds

Where no prefix time was measured it is a FLOP-proportional estimate (labelled so):
``uncached ≈ cached × (prompt - shared prefix + output) / (prompt + output)``. The prefix itself is encoded once per
serving replica per cache lifetime (``prefix_cache_hours``) and priced as a fixed monthly part. If a measurement was
taken *without* prefix reuse (``ArmMeasurement.prefix_cached=False``) the cached figure is the estimate instead
(measured ÷ work ratio). A throughput measured on a CPU is not a GPU serving figure (every line says so); state a
GPU figure with ``ArmMeasurement.stated_rps`` (``tunecheck cost --throughput``). The formulas::

    $/request = gpu_hourly_usd × gpus / (throughput × 3600 × utilisation)
    monthly   = fixed + $/request × requests/day × days_per_month
    fixed     = self-host ops (selfhost_ops_hours_per_month × engineering_usd_per_hour)
                + amortised training (arms that need training: arm "B" or train_seconds > 0)
    training per retrain = train_seconds/3600 × gpu_hourly_usd × train_processes
                           + engineering_hours_per_training × rate
    (train_processes: how many processes/GPUs trained the adapter — independent of the serving GPUs)
    amortised training   = training per retrain / refresh_months   (every new base release means retraining)

Costs are linear in volume with fractional GPUs (no rounding up to whole GPUs: the number of GPUs the volume
needs is reported alongside). Training runs the GPUs flat out, so utilisation does not apply to it.

**API inference** (per arm: "rent the API model with the same prompts" — a LoRA adapter on our own base cannot
run on the API model, so for arm B this line is the API model prompted like arm B, *without* the adapter)::

    cached tokens = cacheable part of the shared prefix (see ``api_cached_tokens``)
    $/request = (prompt - cached) × input + cached × cached_input + output × output     (prices per token)
    monthly   = $/request × requests/day × days_per_month

Caching rule (OpenAI automatic prompt caching): prompts of at least 1,024 tokens are cached, and a cache hit
covers the longest previously seen prefix in steps of 128 tokens from 1,024. The part shared by every request is
the demonstration prefix, so ``cached = 1024 + 128·floor((prefix - 1024)/128)`` when ``prefix >= 1024`` and a
cached-input price exists, else 0. Steady traffic is assumed to keep the cache warm (the first request after an
eviction pays full price; negligible at volume). For other providers the same rule is applied with the
``ApiPrices.cache_min_tokens`` / ``cache_increment_tokens`` given (cache-write surcharges are ignored).

**Break-even.** Every option is a line ``monthly = F + v × requests/day × days``; two lines cross at
``requests/day* = (F_b - F_a) / ((v_a - v_b) × days)``, reported in requests/day and tokens/day (× baseline).
``None`` when they never cross at a non-negative volume (one option is cheaper at every volume), ``math.inf`` for
parallel lines with different fixed costs (they would meet only at infinite volume), ``0.0`` for identical lines.

**Article threshold.** Annual API spend (API monthly × 12) against ``self_host_threshold_usd_per_year`` (the
article's $500K/year): above it self-hosting is worth examining on cost; below it the API is the default.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Sequence

from evaluator.errors import UserError

__all__ = [
    "ARTICLE",
    "ApiCost",
    "ApiPrices",
    "ArmCost",
    "ArmMeasurement",
    "BreakEven",
    "RequestSize",
    "CostInputError",
    "CostInputs",
    "CostLine",
    "CostReport",
    "ScenarioReport",
    "SelfHostCost",
    "ThresholdCheck",
    "Throughput",
    "api_cached_tokens",
    "api_cost",
    "article_scenario",
    "fallback_request",
    "break_even",
    "compute_costs",
    "format_cost_report",
    "format_scenario",
    "requests_per_day",
    "resolve_prices",
    "selfhost_cost",
    "threshold_check",
    "throughput",
    "to_jsonable",
    "training_cost",
]


class CostInputError(UserError, ValueError):
    """An invalid cost input (negative price, utilisation outside (0, 1], ...). One line, fixable by the user."""


# ----------------------------------------------------------------------------------------------------------------
# Inputs
# ----------------------------------------------------------------------------------------------------------------

#: Default GPU price: one on-demand data-centre GPU (A100-80GB / H100 class) on a specialist cloud is roughly
#: $1.5–3 per GPU-hour; $2.00 sits in that range. Override with the price you actually pay.
DEFAULT_GPU_HOURLY_USD = 2.0
#: Average fraction of rented GPU time doing useful work at the measured throughput. Serving fleets are sized for
#: peaks and sit idle at night; 50% is a typical, not pessimistic, average (the article's example implies ~25%).
DEFAULT_UTILISATION = 0.5
#: Engineering time per (re)training of an adapter: data refresh, training run, evaluation, redeploy ≈ 2 days.
DEFAULT_ENGINEERING_HOURS_PER_TRAINING = 16.0
#: Fully loaded ML-engineer cost ≈ $300K/year ÷ 2,000 h.
DEFAULT_ENGINEERING_USD_PER_HOUR = 150.0
#: Ongoing ops of a self-hosted endpoint (monitoring, upgrades, incidents). The article's worked example implies
#: $3,375/month of engineering overhead = 22.5 h × $150/h (see :func:`article_scenario`). Set 0 to exclude.
DEFAULT_SELFHOST_OPS_HOURS_PER_MONTH = 22.5
#: The article: base models improve every 4–6 months.
DEFAULT_REFRESH_MONTHS = 5.0
#: The article's worked example volume.
DEFAULT_VOLUME_TOKENS_PER_DAY = 50e6
#: How long a serving replica keeps a shared prefix's KV cache before encoding it again (restarts, evictions).
DEFAULT_PREFIX_CACHE_HOURS = 24.0
#: The article's self-hosting threshold on annual API spend.
DEFAULT_SELF_HOST_THRESHOLD_USD_PER_YEAR = 500_000.0


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise CostInputError(msg)


def _finite_nonneg(name: str, value: float | None, *, allow_none: bool = False) -> None:
    if value is None:
        _check(allow_none, f"{name} must be given")
        return
    _check(
        isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0,
        f"{name} must be a finite number >= 0, got {value!r}",
    )


def _finite_pos(name: str, value: float) -> None:
    _check(
        isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0,
        f"{name} must be a finite number > 0, got {value!r}",
    )


@dataclass(frozen=True)
class CostInputs:
    """Every assumption of the cost model. All have defaults (see the module constants for why) and are validated.

    ``volume_tokens_per_day`` is task traffic measured in *zero-shot request* tokens (prompt + output); see the
    module docstring. ``requests_per_day``, when given, overrides the volume-derived request rate.
    ``api_*_usd_per_m`` override the price table (negotiated prices); ``None`` keeps the table's price.
    """

    volume_tokens_per_day: float = DEFAULT_VOLUME_TOKENS_PER_DAY
    requests_per_day: float | None = None
    gpu_hourly_usd: float = DEFAULT_GPU_HOURLY_USD
    gpus: int = 1
    utilisation: float = DEFAULT_UTILISATION
    api_model: str = "gpt-4o-mini"
    api_provider: str = "openai"
    api_input_usd_per_m: float | None = None
    api_cached_input_usd_per_m: float | None = None
    api_output_usd_per_m: float | None = None
    refresh_months: float = DEFAULT_REFRESH_MONTHS
    engineering_hours_per_training: float = DEFAULT_ENGINEERING_HOURS_PER_TRAINING
    engineering_usd_per_hour: float = DEFAULT_ENGINEERING_USD_PER_HOUR
    selfhost_ops_hours_per_month: float = DEFAULT_SELFHOST_OPS_HOURS_PER_MONTH
    self_host_threshold_usd_per_year: float = DEFAULT_SELF_HOST_THRESHOLD_USD_PER_YEAR
    days_per_month: float = 30.0
    prefix_cache_hours: float = DEFAULT_PREFIX_CACHE_HOURS

    def __post_init__(self) -> None:
        _finite_nonneg("volume_tokens_per_day", self.volume_tokens_per_day)
        _finite_nonneg("requests_per_day", self.requests_per_day, allow_none=True)
        _finite_nonneg("gpu_hourly_usd", self.gpu_hourly_usd)
        _check(
            isinstance(self.gpus, int) and not isinstance(self.gpus, bool) and self.gpus >= 1,
            f"gpus must be an integer >= 1, got {self.gpus!r}",
        )
        _check(
            isinstance(self.utilisation, (int, float)) and 0 < self.utilisation <= 1,
            f"utilisation must be in (0, 1], got {self.utilisation!r}",
        )
        _check(bool(self.api_model) and isinstance(self.api_model, str), "api_model must be a non-empty string")
        _check(
            bool(self.api_provider) and isinstance(self.api_provider, str), "api_provider must be a non-empty string"
        )
        for name in ("api_input_usd_per_m", "api_cached_input_usd_per_m", "api_output_usd_per_m"):
            _finite_nonneg(name, getattr(self, name), allow_none=True)
        _finite_pos("refresh_months", self.refresh_months)
        _finite_nonneg("engineering_hours_per_training", self.engineering_hours_per_training)
        _finite_nonneg("engineering_usd_per_hour", self.engineering_usd_per_hour)
        _finite_nonneg("selfhost_ops_hours_per_month", self.selfhost_ops_hours_per_month)
        _finite_nonneg("self_host_threshold_usd_per_year", self.self_host_threshold_usd_per_year)
        _finite_pos("days_per_month", self.days_per_month)
        _finite_pos("prefix_cache_hours", self.prefix_cache_hours)

    def replace(self, **changes: Any) -> "CostInputs":
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class ArmMeasurement:
    """What a run recorded for one arm point (built from the run directory).

    Token counts are per request, in the *model's* tokenizer; the ``api_*`` counts are the same prompts counted
    with tiktoken in the API model's encoding (see ``evaluator.api_pricing.api_token_counts``). When an ``api_*``
    count is missing, the model-tokenizer count stands in for it (noted in ``how``).
    """

    name: str  # e.g. "A base k=32"
    arm: str  # "A" | "B" | "C"
    requests: int  # requests measured
    eval_seconds: float  # wall seconds of per-request work for those requests (no prefix encoding, no warm-up)
    device: str  # how the throughput was measured: device, dtype, batch (printed beside every figure)
    prompt_tokens_per_request: float  # incl. the shared demonstration prefix
    shared_prefix_tokens: float  # 0 for zero-shot / LoRA
    output_tokens_per_request: float
    train_seconds: float = 0.0  # LoRA training wall seconds (arm B)
    api_prompt_tokens_per_request: float | None = None
    api_shared_prefix_tokens: float | None = None
    api_output_tokens_per_request: float | None = None
    prefix_cached: bool = True  # was the measured throughput obtained with the shared prefix computed once?
    prefix_seconds: float = 0.0  # one-off encoding of the shared prefix (measured; 0 = not measured / no prefix)
    train_processes: int = 1  # processes (GPUs) that trained the adapter
    on_cpu: bool = False  # measured on a CPU: not a GPU serving figure
    stated_rps: float | None = None  # a serving throughput stated by the user (req/s), replacing the measured one

    def __post_init__(self) -> None:
        _check(bool(self.name) and isinstance(self.name, str), "arm measurement name must be a non-empty string")
        _check(bool(self.arm) and isinstance(self.arm, str), f"{self.name}: arm must be a non-empty string")
        _check(
            isinstance(self.requests, int) and not isinstance(self.requests, bool) and self.requests >= 1,
            f"{self.name}: requests must be an integer >= 1, got {self.requests!r}",
        )
        _finite_pos(f"{self.name}: eval_seconds", self.eval_seconds)
        _finite_nonneg(f"{self.name}: prompt_tokens_per_request", self.prompt_tokens_per_request)
        _finite_nonneg(f"{self.name}: shared_prefix_tokens", self.shared_prefix_tokens)
        _finite_nonneg(f"{self.name}: output_tokens_per_request", self.output_tokens_per_request)
        _finite_nonneg(f"{self.name}: train_seconds", self.train_seconds)
        _finite_nonneg(f"{self.name}: prefix_seconds", self.prefix_seconds)
        _check(isinstance(self.train_processes, int) and self.train_processes >= 1,
               f"{self.name}: train_processes must be an integer >= 1, got {self.train_processes!r}")
        if self.stated_rps is not None:
            _finite_pos(f"{self.name}: stated throughput (req/s)", self.stated_rps)
        _check(
            self.shared_prefix_tokens <= self.prompt_tokens_per_request,
            f"{self.name}: shared_prefix_tokens ({self.shared_prefix_tokens}) exceeds "
            f"prompt_tokens_per_request ({self.prompt_tokens_per_request})",
        )
        for n in ("api_prompt_tokens_per_request", "api_shared_prefix_tokens", "api_output_tokens_per_request"):
            _finite_nonneg(f"{self.name}: {n}", getattr(self, n), allow_none=True)
        if self.api_prompt_tokens_per_request is not None and self.api_shared_prefix_tokens is not None:
            _check(
                self.api_shared_prefix_tokens <= self.api_prompt_tokens_per_request,
                f"{self.name}: api_shared_prefix_tokens exceeds api_prompt_tokens_per_request",
            )

    @property
    def needs_training(self) -> bool:
        return self.arm.strip().upper() == "B" or self.train_seconds > 0

    def api_tokens(self) -> tuple[float, float, float, bool]:
        """(prompt, shared prefix, output) per request in API tokens, and whether all three were API counts."""
        exact = (
            self.api_prompt_tokens_per_request is not None
            and (self.api_shared_prefix_tokens is not None or self.shared_prefix_tokens == 0)
            and self.api_output_tokens_per_request is not None
        )
        prompt = (
            self.api_prompt_tokens_per_request
            if self.api_prompt_tokens_per_request is not None
            else self.prompt_tokens_per_request
        )
        if self.api_shared_prefix_tokens is not None:
            prefix = self.api_shared_prefix_tokens
        elif self.api_prompt_tokens_per_request is not None and self.prompt_tokens_per_request > 0:
            # scale the model-token prefix share onto the API prompt length
            prefix = self.api_prompt_tokens_per_request * self.shared_prefix_tokens / self.prompt_tokens_per_request
        else:
            prefix = self.shared_prefix_tokens
        output = (
            self.api_output_tokens_per_request
            if self.api_output_tokens_per_request is not None
            else self.output_tokens_per_request
        )
        return prompt, min(prefix, prompt), output, exact


@dataclass(frozen=True)
class ApiPrices:
    """Per-million-token API prices for one model (built by ``evaluator.api_pricing.api_prices`` or by hand)."""

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
            f" / ${_p(self.cached_input_usd_per_m)} cached input"
            if self.cached_input_usd_per_m is not None
            else " / no cached-input discount"
        )
        ver = ""
        if self.data_version or self.data_date:
            ver = f"; data {self.data_version or '?'}" + (f", {self.data_date}" if self.data_date else "")
        ctx = f"; context {self.context_window:,} tokens" if self.context_window else ""
        return (
            f"{self.model} ({self.provider}): ${_p(self.input_usd_per_m)} input{cached} / "
            f"${_p(self.output_usd_per_m)} output per M tokens{ctx} — {self.source}{ver}"
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
    names = ", ".join(f"{k.replace('_usd_per_m', '')}=${_p(v)}/M" for k, v in given.items())
    return dataclasses.replace(prices, source=f"{prices.source}; user override {names}", **given)


# ----------------------------------------------------------------------------------------------------------------
# Formatting helpers
# ----------------------------------------------------------------------------------------------------------------


def _p(x: float | None) -> str:
    """A price per M tokens: as few digits as needed."""
    if x is None:
        return "-"
    return f"{x:.6g}"


def _usd(x: float | None) -> str:
    if x is None:
        return "n/a"
    if math.isinf(x):
        return "$inf"
    if math.isnan(x):
        return "$n/a"
    a = abs(x)
    if a >= 100:
        return f"${x:,.0f}" if a >= 10_000 else f"${x:,.2f}"
    if a >= 1:
        return f"${x:,.2f}"
    if a == 0:
        return "$0"
    digits = max(2, -math.floor(math.log10(a)) + 3)  # 4 significant digits, never exponent notation
    text = f"{x:.{digits}f}".rstrip("0")
    if len(text.split(".")[1]) < 2:
        text = f"{x:.2f}"
    return f"${text}"


def _q(x: float | None) -> str:
    """A quantity (tokens, requests): 1.5B, 50M, 48,020, 0.25."""
    if x is None:
        return "n/a"
    if math.isinf(x):
        return "inf"
    a = abs(x)
    if a >= 1e9:
        return f"{x / 1e9:.4g}B"
    if a >= 1e6:
        return f"{x / 1e6:.4g}M"
    if a >= 1000:
        return f"{x:,.0f}"
    return f"{x:.4g}"


def _pct(x: float) -> str:
    return f"{x * 100:.3g}%"


# ----------------------------------------------------------------------------------------------------------------
# Workload
# ----------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RequestSize:
    """The zero-shot request as the user sends it: instruction + input + reference answer, in `basis` tokens."""

    instruction: float
    input: float
    output: float
    basis: str  # e.g. "API tokens (o200k_base)" or "model tokens (smollm2-135m)"
    source: str = "measured"  # how it was obtained (e.g. "from the stored test items")

    def __post_init__(self) -> None:
        for n in ("instruction", "input", "output"):
            _finite_nonneg(f"zero-shot request {n} tokens", getattr(self, n))

    @property
    def tokens(self) -> float:
        return self.instruction + self.input + self.output

    def describe(self) -> str:
        return (f"zero-shot request = {_q(self.instruction)} instruction + {_q(self.input)} input + {_q(self.output)} "
                f"output = {_q(self.tokens)} {self.basis} ({self.source})")


def fallback_request(arms: Sequence[ArmMeasurement]) -> RequestSize:
    """For measurements without a recorded zero-shot request: the arm with the smallest prompt without demonstrations
    (its whole prompt is instruction + input; output as measured). Used only by callers that have nothing better."""
    if not arms:
        raise CostInputError("no arm measurements given")
    use_api = all(a.api_prompt_tokens_per_request is not None for a in arms)
    best = None
    for a in arms:
        p, s, o, _ = a.api_tokens() if use_api else (a.prompt_tokens_per_request, a.shared_prefix_tokens,
                                                      a.output_tokens_per_request, True)
        if best is None or p - s + o < best[0]:
            best = (p - s + o, p - s, o, a.name)
    _, inp, out, name = best
    return RequestSize(0.0, inp, out, "API tokens" if use_api else "model tokens",
                       f"approximation from {name}: its prompt without demonstrations; instruction not recorded")


def requests_per_day(inputs: CostInputs, request: RequestSize) -> tuple[float, float, str]:
    """(requests/day, zero-shot request tokens, how)."""
    base = request.tokens
    how = request.describe()
    if inputs.requests_per_day is not None:
        return (
            inputs.requests_per_day,
            base,
            f"requests/day = {_q(inputs.requests_per_day)} (given directly); {how}",
        )
    if base < 1:  # every request holds at least its item: a smaller size is a broken measurement
        raise CostInputError(
            f"cannot convert tokens/day to requests/day: the zero-shot request has {base:.3g} tokens (< 1); "
            "give requests_per_day"
        )
    rpd = inputs.volume_tokens_per_day / base
    return (
        rpd,
        base,
        f"requests/day = {_q(inputs.volume_tokens_per_day)} tokens/day ÷ {_q(base)} tokens per zero-shot request "
        f"= {_q(rpd)}; {how}",
    )


# ----------------------------------------------------------------------------------------------------------------
# Self-hosted
# ----------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Throughput:
    measured_rps: float  # requests / per-request seconds as measured (or the stated figure)
    cached_rps: float
    uncached_rps: float
    work_ratio: float  # (prompt - prefix + output) / (prompt + output), model tokens
    estimated: str  # "uncached" or "cached": which of the two is a FLOP-proportional estimate ("" if none is)
    how: tuple[str, ...]


def throughput(arm: ArmMeasurement) -> Throughput:
    """Requests/s with the shared prefix cached and without it (see the module docstring for which is measured)."""
    measured = arm.requests / arm.eval_seconds
    p, s, o = arm.prompt_tokens_per_request, arm.shared_prefix_tokens, arm.output_tokens_per_request
    total = p + o
    ratio = (p - s + o) / total if total > 0 else 1.0
    how = [
        f"measured throughput = {arm.requests} requests ÷ {arm.eval_seconds:.4g} s of per-request work = "
        f"{measured:.4g} req/s on {arm.device}"
        + (" — a CPU figure, not a GPU serving throughput: state one with --throughput" if arm.on_cpu else "")
    ]
    scale = 1.0
    if arm.stated_rps is not None:
        scale = arm.stated_rps / measured
        how.append(f"serving throughput stated by the user: {arm.stated_rps:.4g} req/s (replaces the measured "
                   f"{measured:.4g}; the uncached figure is scaled by the same factor {scale:.4g})")
    if s <= 0 or ratio >= 1.0:
        r = measured * scale
        return Throughput(r, r, r, 1.0, "", tuple(how + ["no shared prefix: cached = uncached"]))
    if ratio <= 0:  # everything is prefix: nothing to compute per request uncached-vs-cached; keep measured
        ratio = 1.0
    ratio_how = f"work ratio = ({_q(p)} - {_q(s)} + {_q(o)}) / ({_q(p)} + {_q(o)}) = {ratio:.4g} (model tokens)"
    if arm.prefix_cached and arm.prefix_seconds > 0:
        per = arm.eval_seconds / arm.requests
        unc = 1.0 / (per + arm.prefix_seconds)
        how.append(
            f"uncached throughput (every request encodes the {_q(s)}-token prefix again, from its measured encoding "
            f"time) = 1 ÷ ({per:.4g} s + {arm.prefix_seconds:.4g} s) = {unc:.4g} req/s"
        )
        return Throughput(measured * scale, measured * scale, unc * scale, ratio, "", tuple(how))
    if arm.prefix_cached:
        unc = measured * ratio
        how += [
            ratio_how,
            f"uncached throughput (estimate, FLOP-proportional; no prefix encoding time recorded) = {measured:.4g} × "
            f"{ratio:.4g} = {unc:.4g} req/s",
        ]
        return Throughput(measured * scale, measured * scale, unc * scale, ratio, "uncached", tuple(how))
    cached = measured / ratio
    how += [
        ratio_how,
        f"prefix-cached throughput (estimate, FLOP-proportional) = {measured:.4g} ÷ {ratio:.4g} = {cached:.4g} req/s",
    ]
    return Throughput(measured * scale, cached * scale, measured * scale, ratio, "cached", tuple(how))


@dataclass(frozen=True)
class SelfHostCost:
    usd_per_request_cached: float
    usd_per_request_uncached: float
    usd_per_1k_requests_cached: float
    usd_per_1k_requests_uncached: float
    training_gpu_usd: float  # per (re)training
    training_engineering_usd: float  # per (re)training
    training_usd_per_retrain: float
    training_usd_per_month: float  # amortised over refresh_months
    ops_usd_per_month: float
    prefix_usd_per_month: float  # encoding the shared prefix once per replica per cache lifetime
    fixed_usd_per_month: float  # ops + amortised training + prefix encodings
    gpus_needed: float  # at the volume, cached throughput, given utilisation (fractional)
    how: tuple[str, ...]


def training_cost(arm: ArmMeasurement, inputs: CostInputs) -> tuple[float, float, float, float, tuple[str, ...]]:
    """(gpu usd, engineering usd, usd per retrain, usd per month amortised, how) — zeros for arms without training."""
    if not arm.needs_training:
        return 0.0, 0.0, 0.0, 0.0, ()
    gpu = arm.train_seconds / 3600.0 * inputs.gpu_hourly_usd * arm.train_processes
    eng = inputs.engineering_hours_per_training * inputs.engineering_usd_per_hour
    per = gpu + eng
    monthly = per / inputs.refresh_months
    how = (
        f"training per retrain = {arm.train_seconds:.4g} s ÷ 3600 × ${inputs.gpu_hourly_usd:.4g}/GPU-h × "
        f"{arm.train_processes} process(es) that trained it = {_usd(gpu)} GPU + "
        f"{inputs.engineering_hours_per_training:.4g} h × "
        f"${inputs.engineering_usd_per_hour:.4g}/h = {_usd(eng)} engineering → {_usd(per)}",
        f"training amortised = {_usd(per)} ÷ {inputs.refresh_months:.4g} months (base refresh: every new base "
        f"means retraining) = {_usd(monthly)}/month",
    )
    return gpu, eng, per, monthly, how


def selfhost_cost(arm: ArmMeasurement, inputs: CostInputs, rpd: float | None = None) -> SelfHostCost:
    """Self-hosted $/request (prefix-cached and uncached), fixed monthly parts, and GPUs the volume needs."""
    tp = throughput(arm)
    gpu_h = inputs.gpu_hourly_usd * inputs.gpus

    def per_req(rps: float) -> float:
        return gpu_h / (rps * 3600.0 * inputs.utilisation)

    c, u = per_req(tp.cached_rps), per_req(tp.uncached_rps)
    tg, te, tper, tmonth, thow = training_cost(arm, inputs)
    ops = inputs.selfhost_ops_hours_per_month * inputs.engineering_usd_per_hour
    how = list(tp.how)
    how.append(
        f"self-host $/1k requests (cached) = 1000 ÷ ({tp.cached_rps:.4g} req/s × 3600 × {inputs.utilisation:.3g} "
        f"utilisation) × ${inputs.gpu_hourly_usd:.4g}/GPU-h × {inputs.gpus} GPU = {_usd(1000 * c)}"
    )
    if tp.estimated:
        how.append(
            f"self-host $/1k requests (uncached) = 1000 ÷ ({tp.uncached_rps:.4g} × 3600 × {inputs.utilisation:.3g}) "
            f"× ${gpu_h:.4g}/h = {_usd(1000 * u)}"
            + (" (estimate)" if tp.estimated == "uncached" else "; the cached figure above is the estimate")
        )
    how.append(
        f"self-host ops = {inputs.selfhost_ops_hours_per_month:.4g} h/month × "
        f"${inputs.engineering_usd_per_hour:.4g}/h = {_usd(ops)}/month"
    )
    how.extend(thow)
    gpus_needed = math.nan
    prefix_month = 0.0
    if rpd is not None:
        replicas = rpd / (tp.cached_rps * 86400.0 * inputs.utilisation)
        gpus_needed = replicas * inputs.gpus
        how.append(
            f"GPUs needed = {_q(rpd)} req/day ÷ ({tp.cached_rps:.4g} req/s × 86,400 s × {inputs.utilisation:.3g}) "
            f"× {inputs.gpus} GPU = {gpus_needed:.3g} (costs use fractional GPUs)"
        )
        if arm.prefix_seconds > 0 and arm.shared_prefix_tokens > 0:
            n_rep = max(1, math.ceil(replicas - 1e-9))
            times = inputs.days_per_month * 24.0 / inputs.prefix_cache_hours
            prefix_month = arm.prefix_seconds / 3600.0 * gpu_h * n_rep * times
            how.append(
                f"prefix encoding (one-off, not per request) = {arm.prefix_seconds:.4g} s ÷ 3600 × ${gpu_h:.4g}/h × "
                f"{n_rep} replica(s) × {times:.4g} encodings/month (cache lifetime {inputs.prefix_cache_hours:.4g} h) "
                f"= {_usd(prefix_month)}/month"
            )
    return SelfHostCost(
        usd_per_request_cached=c,
        usd_per_request_uncached=u,
        usd_per_1k_requests_cached=1000 * c,
        usd_per_1k_requests_uncached=1000 * u,
        training_gpu_usd=tg,
        training_engineering_usd=te,
        training_usd_per_retrain=tper,
        training_usd_per_month=tmonth,
        ops_usd_per_month=ops,
        prefix_usd_per_month=prefix_month,
        fixed_usd_per_month=ops + tmonth + prefix_month,
        gpus_needed=gpus_needed,
        how=tuple(how),
    )


# ----------------------------------------------------------------------------------------------------------------
# API
# ----------------------------------------------------------------------------------------------------------------


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
        rule = f"shared prefix {_q(s)} < {prices.cache_min_tokens:,} tokens: not cached"
    else:
        rule = (
            f"cached = {prices.cache_min_tokens:,} + {prices.cache_increment_tokens} × floor(({_q(s)} - "
            f"{prices.cache_min_tokens:,}) / {prices.cache_increment_tokens}) = {_q(cached)} of the "
            f"{_q(s)}-token prefix"
        )
    how.append(f"API caching: {rule}")
    how.append(
        f"API $/request = ({_q(fresh)} × ${_p(prices.input_usd_per_m)} + {_q(cached)} × ${_p(cached_price)} + "
        f"{_q(o)} × ${_p(prices.output_usd_per_m)}) / 1M = {_usd(per)}"
    )
    fits = None
    if prices.context_window:
        fits = p + o <= prices.context_window
        if not fits:
            how.append(
                f"WARNING: {_q(p)} prompt + {_q(o)} output tokens exceed {prices.model}'s context window "
                f"({prices.context_window:,}); this prompt cannot be sent as is"
            )
    return ApiCost(label, p, cached, o, exact, per, 1000 * per, fits, tuple(how))


# ----------------------------------------------------------------------------------------------------------------
# Lines, break-even, threshold
# ----------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CostLine:
    """monthly = fixed_usd_per_month + usd_per_request × requests/day × days_per_month."""

    name: str
    kind: str  # "self-host (prefix cached)" | "self-host (uncached)" | "API"
    fixed_usd_per_month: float
    usd_per_request: float

    def monthly(self, requests_per_day: float, days_per_month: float) -> float:
        return self.fixed_usd_per_month + self.usd_per_request * requests_per_day * days_per_month

    def monthly_at_tokens(self, tokens_per_day: float, tokens_per_request: float, days_per_month: float) -> float:
        return self.monthly(tokens_per_day / tokens_per_request, days_per_month)

    @property
    def label(self) -> str:
        return f"{self.name} [{self.kind}]"


@dataclass(frozen=True)
class BreakEven:
    a: str
    b: str
    requests_per_day: float | None  # None: never cross at volume >= 0; inf: parallel; 0.0: identical / cross at 0
    tokens_per_day: float | None
    cheaper_below: str | None  # cheaper at volumes below the break-even (None when not applicable)
    cheaper_above: str | None
    how: str


def break_even(a: CostLine, b: CostLine, days_per_month: float, tokens_per_request: float | None = None) -> BreakEven:
    """Volume where two linear monthly costs are equal (closed form; see module docstring for None / inf)."""
    fa, va, fb, vb = a.fixed_usd_per_month, a.usd_per_request, b.fixed_usd_per_month, b.usd_per_request
    la, lb = a.label, b.label

    def tok(r: float | None) -> float | None:
        if r is None or tokens_per_request is None:
            return None
        return r * tokens_per_request if not math.isinf(r) else math.inf

    lines = f"{la}: {_usd(fa)}/month + {_usd(va)}/req; {lb}: {_usd(fb)}/month + {_usd(vb)}/req"
    if va == vb:
        if fa == fb:
            return BreakEven(la, lb, 0.0, 0.0, None, None, f"{lines} — identical lines: equal at every volume")
        cheaper = la if fa < fb else lb
        return BreakEven(
            la, lb, math.inf, math.inf if tokens_per_request is not None else None, cheaper, cheaper,
            f"{lines} — parallel lines: {cheaper} stays cheaper by {_usd(abs(fa - fb))}/month at every volume "
            f"(they meet only at infinite volume)",
        )
    r = (fb - fa) / ((va - vb) * days_per_month)
    if r == 0:
        r = 0.0  # not -0.0
    if r < 0:
        cheaper = la if (fa < fb or (fa == fb and va < vb)) else lb
        return BreakEven(
            la, lb, None, None, cheaper, cheaper,
            f"{lines} — lines would cross at {_q(r)} req/day < 0: {cheaper} is cheaper at every volume",
        )
    below = la if fa < fb else lb if fb < fa else None
    above = la if va < vb else lb
    t = tok(r)
    tok_s = f" = {_q(t)} tokens/day" if t is not None else ""
    return BreakEven(
        la, lb, r, t, below, above,
        f"{lines} — equal at requests/day = ({_usd(fb)} - {_usd(fa)}) / (({_usd(va)} - {_usd(vb)}) × "
        f"{days_per_month:.4g} d) = {_q(r)}{tok_s}; "
        + (f"{below} cheaper below, " if below else "")
        + f"{above} cheaper above",
    )


@dataclass(frozen=True)
class ThresholdCheck:
    monthly_api_usd: float
    annual_api_usd: float
    threshold_usd_per_year: float
    over_threshold: bool
    threshold_tokens_per_day: float | None  # volume at which this API line reaches the threshold
    sentence: str


def threshold_check(
    api_line: CostLine, rpd: float, inputs: CostInputs, tokens_per_request: float | None
) -> ThresholdCheck:
    """The article's rule: self-hosting pays only above ~$500K/year of API spend."""
    monthly = api_line.monthly(rpd, inputs.days_per_month)
    annual = 12 * monthly
    thr = inputs.self_host_threshold_usd_per_year
    over = annual >= thr
    thr_tok = None
    per_day = api_line.usd_per_request * inputs.days_per_month * 12
    if per_day > 0 and tokens_per_request is not None:
        thr_tok = (thr - 12 * api_line.fixed_usd_per_month) / per_day * tokens_per_request
    at = f" (reached at ≈{_q(thr_tok)} tokens/day)" if thr_tok is not None else ""
    if over:
        s = (
            f"Annual API spend {_usd(monthly)}/month × 12 = {_usd(annual)} is at or above the {_usd(thr)}/year "
            f"threshold: on the article's rule self-hosting is worth examining on cost."
        )
    else:
        s = (
            f"Annual API spend {_usd(monthly)}/month × 12 = {_usd(annual)} is below the {_usd(thr)}/year "
            f"threshold{at}: on the article's rule the API stays the default unless compliance (HIPAA, SOC 2), "
            f"latency or behaviour prompting cannot reach requires self-hosting."
        )
    return ThresholdCheck(monthly, annual, thr, over, thr_tok, s)


# ----------------------------------------------------------------------------------------------------------------
# Report
# ----------------------------------------------------------------------------------------------------------------


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

    ``prices`` is the API price table entry (``evaluator.api_pricing.api_prices``); the overrides in ``inputs``
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
            f"monthly self-host (cached) = {_usd(sh.usd_per_request_cached)}/req × {_q(rpd)} req/day × {d:.4g} d"
            + (f" + {_usd(sh.fixed_usd_per_month)} fixed" if sh.fixed_usd_per_month else "")
            + f" = {_usd(mc)}"
        )
        if a.needs_training or sh.ops_usd_per_month:
            how.append(
                f"  fixed = {_usd(sh.ops_usd_per_month)} ops + {_usd(sh.training_usd_per_month)} amortised training"
                + (f" + {_usd(sh.prefix_usd_per_month)} prefix encodings" if sh.prefix_usd_per_month else "")
            )
        if mu != mc:
            how.append(
                f"monthly self-host (uncached) = {_usd(sh.usd_per_request_uncached)}/req × {_q(rpd)} × {d:.4g} d"
                + (f" + {_usd(sh.fixed_usd_per_month)}" if sh.fixed_usd_per_month else "")
                + f" = {_usd(mu)}"
            )
        ac = ma = aa = None
        if prices is not None:
            ac = api_cost(a, prices)
            ma = ac.usd_per_request * rpd * d
            aa = 12 * ma
            how.extend(ac.how)
            how.append(f"monthly API = {_usd(ac.usd_per_request)}/req × {_q(rpd)} req/day × {d:.4g} d = {_usd(ma)}")
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
        f"Volume: {_q(inputs.volume_tokens_per_day)} tokens/day of zero-shot-request traffic → "
        f"{_q(rpd)} requests/day; {request.describe()}; many-shot arms send more tokens for the same requests."
        if inputs.requests_per_day is None
        else f"Volume: {_q(rpd)} requests/day (given directly).",
        f"Month = {inputs.days_per_month:.4g} days; costs are linear in volume (fractional GPUs).",
        f"Self-hosting: ${inputs.gpu_hourly_usd:.4g}/GPU-hour × {inputs.gpus} GPU(s) as measured, "
        f"{_pct(inputs.utilisation)} average utilisation; ops {inputs.selfhost_ops_hours_per_month:.4g} h/month.",
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
        f"Article rule: self-hosting pays only above {_usd(inputs.self_host_threshold_usd_per_year)}/year of API "
        "spend, or for compliance (HIPAA, SOC 2), latency, or behaviour prompting cannot reach."
    )
    return tuple(a)


def format_cost_report(report: CostReport) -> list[str]:
    """Printable lines: assumptions, a per-arm table, break-even volumes, the threshold, then every 'how'."""
    i = report.inputs
    lines = [f"Costs at {_q(i.volume_tokens_per_day)} tokens/day = {_q(report.requests_per_day)} requests/day"
             if i.requests_per_day is None else f"Costs at {_q(report.requests_per_day)} requests/day"]
    if report.request is not None:
        lines.append(f"  {report.request.describe()} → {_q(report.requests_per_day)} requests/day")
    lines.append("Assumptions:")
    lines.extend(f"  - {a}" for a in report.assumptions)
    lines.append("")
    w = max([22, *(len(a.name) for a in report.arms)])
    hdr = (f"{'arm':<{w}} {'req/s':>8} {'$/1k req cached':>16} {'$/1k uncached*':>15} {'train/month':>12} "
           f"{'self-host/month':>16} {'uncached/month*':>16} {'API $/1k':>10} {'API/month':>11}")
    lines.append(hdr)
    for a in report.arms:
        lines.append(
            f"{a.name:<{w}} {a.throughput.cached_rps:>8.4g} {_usd(a.selfhost.usd_per_1k_requests_cached):>16} "
            f"{_usd(a.selfhost.usd_per_1k_requests_uncached):>15} {_usd(a.selfhost.training_usd_per_month):>12} "
            f"{_usd(a.monthly_selfhost_cached):>16} {_usd(a.monthly_selfhost_uncached):>16} "
            f"{_usd(a.api.usd_per_1k_requests if a.api else None):>10} {_usd(a.monthly_api):>11}"
        )
    lines.append("  * uncached = every request encodes the shared prefix again (from its measured encoding time; a "
                 "FLOP-proportional estimate where none was recorded); API = the API model with the same prompts "
                 "(no adapter).")
    lines.append("Throughput measured with:")
    lines.extend(f"  {a.name}: {a.device}" + ("  [CPU: not a GPU serving figure]" if a.on_cpu else "")
                 for a in report.arms)
    if report.break_evens:
        lines.append("")
        lines.append("Break-even volumes:")
        for b in report.break_evens:
            if b.requests_per_day is None:
                v = f"never (≥ 0): {b.cheaper_below} cheaper at every volume"
            elif math.isinf(b.requests_per_day):
                v = f"never (parallel): {b.cheaper_below} cheaper at every volume"
            else:
                v = f"{_q(b.tokens_per_day)} tokens/day ({_q(b.requests_per_day)} req/day)"
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


# ----------------------------------------------------------------------------------------------------------------
# The article's worked example
# ----------------------------------------------------------------------------------------------------------------


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


def _usd_per_m(x: float) -> str:
    """A $/M-tokens price: $1.50, $0.60, $0.2625."""
    return f"${x:.2f}" if abs(round(x, 2) - x) < 1e-12 else f"${x:.4g}"


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
        f"[{label}] API = {_q(volume_tokens_per_day)} tokens/day × {d:.4g} d × {_usd_per_m(api_usd_per_m)}/M = "
        f"{_usd(api_m)}/month; self-host = {_usd(fixed)} + {_q(volume_tokens_per_day)} × {d:.4g} d × "
        f"{_usd_per_m(sh_per_m)}/M = {_usd(sh_m)}/month"
    ]
    t = be.tokens_per_day
    never = None
    be_tok = be_annual = None
    if t is None or math.isinf(t):
        never = (
            f"API {_usd_per_m(api_usd_per_m)}/M "
            + ("<" if api_usd_per_m < sh_per_m else "=")
            + f" self-hosting's {_usd_per_m(sh_per_m)}/M for GPU time alone"
            + (f", before its {_usd(fixed)}/month fixed overhead" if fixed > 0 else "")
        )
        how.append(f"[{label}] break-even: never — {never}")
    else:
        be_tok = t
        be_annual = 12 * api.monthly_at_tokens(t, tokens_per_req, d)
        how.append(
            f"[{label}] break-even = {_usd(fixed)} / (({_usd_per_m(api_usd_per_m)} - {_usd_per_m(sh_per_m)})/M × "
            f"{d:.4g} d) = {_q(t)} tokens/day; API spend there = {_q(t)} × {d:.4g} d × 12 × "
            f"{_usd_per_m(api_usd_per_m)}/M = {_usd(be_annual)}/year"
        )
    thr_tok = None
    if api_usd_per_m > 0:
        thr_tok = threshold_usd_per_year / (12 * d * api_usd_per_m / 1e6)
        how.append(
            f"[{label}] {_usd(threshold_usd_per_year)}/year of API spend reached at {_usd(threshold_usd_per_year)} / "
            f"(12 × {d:.4g} d × {_usd_per_m(api_usd_per_m)}/M) = {_q(thr_tok)} tokens/day"
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
    thr = _usd(threshold_usd_per_year)
    # 1. the article's own numbers against its rule
    if art.break_even_tokens_per_day is None:
        p1 = (
            f"On the article's own numbers ({_usd_per_m(art.api_usd_per_m)}/M) self-hosting never pays on cost "
            f"({art.never_reason}), so its {thr}/year rule is, if anything, too generous to self-hosting"
        )
    elif art.break_even_tokens_per_day == 0 or not art.break_even_annual_api_usd:
        p1 = (
            f"On the article's own numbers ({_usd_per_m(art.api_usd_per_m)}/M) self-hosting is cheaper at every "
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
            f"On the article's own numbers ({_usd_per_m(art.api_usd_per_m)}/M API vs "
            f"{_usd(selfhost_fixed_usd_per_month)}/month + {_usd_per_m(selfhost_usd_per_m)}/M self-hosted) "
            f"self-hosting pays above ≈{_q(art.break_even_tokens_per_day)} tokens/day "
            f"(≈{_usd(art.break_even_annual_api_usd)}/year of API spend), so the {thr}/year rule "
            f"(≈{_q(art.threshold_tokens_per_day)} tokens/day at that price) is {cmp}"
        )
    # 2. at list prices, over the whole input:output range
    lo_p = min(c.api_usd_per_m for c in lists)
    hi_p = max(c.api_usd_per_m for c in lists)
    crossing = [c for c in lists if c.break_even_tokens_per_day is not None]
    if not crossing:
        p2 = (
            f"at GPT-4o-mini list prices ({_usd_per_m(lo_p)}–{_usd_per_m(hi_p)}/M for any input:output mix, all "
            f"below self-hosting's {_usd_per_m(selfhost_usd_per_m)}/M of GPU time alone) self-hosting never pays "
            f"on cost"
        )
    else:
        vols = [c.break_even_tokens_per_day or 0.0 for c in crossing]
        spend = [c.break_even_annual_api_usd or 0.0 for c in crossing]
        where = (
            f"above ≈{_q(min(vols))}–{_q(max(vols))} tokens/day depending on the mix "
            f"(≈{_usd(min(spend))}–{_usd(max(spend))}/year of API spend)"
            if len(crossing) > 1
            else f"above ≈{_q(vols[0])} tokens/day (≈{_usd(spend[0])}/year of API spend)"
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
    v = _q(volume_tokens_per_day)
    bp = break_even_api_usd_per_m
    need = (
        f"you pay more than {_usd_per_m(bp)}/M for it (the article's {_usd_per_m(art.api_usd_per_m)}/M "
        + ("does" if art.api_usd_per_m > bp else "does not") + ") or " if bp is not None else ""
    )
    if sh >= hi_m:
        p3 = (
            f"so at {v} tokens/day (self-hosting {_usd(sh)}/month vs {_usd(lo_m)}–{_usd(hi_m)}/month of API at list "
            f"prices) keep the API unless {need}you need compliance (HIPAA, SOC 2), latency or behaviour prompting "
            f"cannot reach"
        )
    elif sh < lo_m:
        p3 = (
            f"so at {v} tokens/day self-hosting ({_usd(sh)}/month) is cheaper than the API at list prices for any "
            f"mix ({_usd(lo_m)}–{_usd(hi_m)}/month): examine it on cost, with your measured throughput and "
            f"utilisation in place of the article's"
        )
    else:
        p3 = (
            f"so at {v} tokens/day self-hosting ({_usd(sh)}/month) beats the API at list prices only for some mixes "
            f"({_usd(lo_m)}–{_usd(hi_m)}/month) — measure your real input:output split and price before moving"
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
        f"Volume: {_q(volume_tokens_per_day)} tokens/day, {d:.0f}-day month = "
        f"{_q(volume_tokens_per_day * d)} tokens/month (article: 50M tokens/day).",
        f"API (article: ≈$2,250/month on GPT-4o-mini): $2,250 ÷ 1,500M tokens/month implies a blended "
        f"${A.api_blended_usd_per_m:.2f} per M tokens, one price for input and output, no prompt caching.",
        f"That blended price is not GPT-4o-mini's list price: at ${A.list_input_usd_per_m} input / "
        f"${A.list_output_usd_per_m} output per M (genai-prices) and a 3:1 input:output split "
        f"({A.prompt_tokens:.0f} + {A.output_tokens:.0f} tokens per request) the same volume costs "
        f"{_usd(list_monthly)}/month (${list_blend:.4g}/M blended) — the article's figure is "
        f"{A.api_blended_usd_per_m / list_blend:.3g}× that.",
        f"Self-hosting (article: ≈$5,175/month on four mid-tier GPUs, mostly engineering overhead and low GPU "
        f"utilisation); the article gives only the total, the split is ours: GPU rental "
        f"{A.gpus} × ${A.gpu_hourly_usd}/GPU-hour × 24 h × {d:.0f} d = {_usd(fleet_gpu)} (GPU) + engineering "
        f"overhead {A.ops_hours_per_month} h/month × ${A.engineering_usd_per_hour:.0f}/h = {_usd(fleet_eng)} "
        f"(engineering, {_pct(fleet_eng / (fleet_gpu + fleet_eng))}).",
        f"GPUs: mid-tier 24 GB cards (L4 / A10G class) serving a 7-8B open model, {_pct(A.utilisation)} average "
        f"utilisation; at 50M tokens/day this needs exactly {A.gpus} GPUs running 24/7, i.e. each GPU sustains "
        f"≈{full_load_tok_s_per_gpu:.0f} tokens/s at full load ({req_s:.4g} requests/s per 4-GPU replica of "
        f"{tokens_per_req:.0f}-token requests).",
        "Costs scale linearly with volume (fractional GPUs); no fine-tuning in this example (no training line).",
        f"Article rule: self-hosting pays only above {_usd(A.threshold_usd_per_year)}/year of API spend "
        f"(or for compliance: HIPAA, SOC 2; latency; behaviour prompting cannot reach).",
    )
    how = [
        f"API monthly = {_q(volume_tokens_per_day)} tokens/day × {d:.0f} d × ${A.api_blended_usd_per_m:.2f}/M "
        f"= {_usd(ac.monthly_api)}",
        f"self-host GPU = {_usd(ac.selfhost.usd_per_request_cached)}/req × {_q(rpd)} req/day × {d:.0f} d = "
        f"{_usd(gpu_monthly)} (= {ac.selfhost.gpus_needed:.3g} GPUs × ${A.gpu_hourly_usd}/h × 24 h × {d:.0f} d)",
        f"self-host engineering = {A.ops_hours_per_month} h × ${A.engineering_usd_per_hour:.0f}/h = "
        f"{_usd(eng_monthly)}",
        f"self-host monthly = {_usd(gpu_monthly)} + {_usd(eng_monthly)} = {_usd(ac.monthly_selfhost_cached)}",
        f"API at GPT-4o-mini list prices = ({A.prompt_tokens:.0f} × ${A.list_input_usd_per_m} + "
        f"{A.output_tokens:.0f} × ${A.list_output_usd_per_m}) / 1M × {_q(rpd)} req/day × {d:.0f} d = "
        f"{_usd(list_monthly)}",
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
            f"API price at which self-hosting breaks even at {_q(volume_tokens_per_day)} tokens/day = "
            f"{_usd(ac.monthly_selfhost_cached)} / {_q(vol_m)}M tokens/month = {_usd_per_m(be_price)}/M"
        )
    list_range = (min(c.api_monthly_usd for c in cases[1:]), max(c.api_monthly_usd for c in cases[1:]))
    reconciliation = _scenario_reconciliation(
        volume_tokens_per_day, A.threshold_usd_per_year, cases, sh_per_m, sh_fixed, be_price
    )
    return ScenarioReport(
        name=f"article: {_q(volume_tokens_per_day)} tokens/day, GPT-4o-mini API vs mid-tier GPUs",
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


def format_scenario(s: ScenarioReport) -> list[str]:
    """Printable lines for ``tunecheck cost --scenario article``."""
    be = s.break_even_tokens_per_day
    lines = [
        f"Scenario — {s.name}",
        f"  volume                      {_q(s.volume_tokens_per_day)} tokens/day "
        f"({_q(s.requests_per_day)} requests/day)",
        f"  hosted API                  {_usd(s.api_monthly_usd)}/month  (${s.api_blended_usd_per_m:.2f}/M blended)",
        f"  {f'self-hosted, {s.selfhost_gpus_needed:.3g} GPUs':<28}{_usd(s.selfhost_monthly_usd)}/month  "
        f"= {_usd(s.selfhost_gpu_monthly_usd)} GPU rental + {_usd(s.selfhost_engineering_monthly_usd)} engineering",
        f"  GPT-4o-mini at list prices  {_usd(s.api_list_price_monthly_usd)}/month"
        + (f" at {s.price_cases[1].label.split(', ', 1)[-1]}; {_usd(s.api_list_price_range_monthly_usd[0])}–"
           f"{_usd(s.api_list_price_range_monthly_usd[1])}/month from all input to all output"
           if len(s.price_cases) > 1 else ""),
        "  break-even (self-host=API)  "
        + (f"{_q(be)} tokens/day" if be is not None and not math.isinf(be) else "never"),
        f"  annual API spend            {_usd(s.annual_api_usd)} vs {_usd(s.threshold_usd_per_year)}/year threshold "
        f"→ {'self-hosting worth examining' if s.over_threshold else 'API stays the default'}"
        + (f" (threshold reached at ≈{_q(s.threshold_tokens_per_day)} tokens/day)"
           if s.threshold_tokens_per_day is not None and not s.over_threshold else ""),
    ]
    if s.price_cases:
        lines.append(
            f"Break-even and the {_usd(s.threshold_usd_per_year)}/year rule at each API price "
            f"(self-hosting: {_usd(s.selfhost_fixed_usd_per_month)}/month + "
            f"{_usd_per_m(s.selfhost_usd_per_m)}/M tokens):"
        )
        for c in s.price_cases:
            be_s = (
                f"break-even never: the API is cheaper at every volume ({c.never_reason})"
                if c.never_reason is not None
                else f"break-even: self-hosting pays above ≈{_q(c.break_even_tokens_per_day)} tokens/day "
                f"(≈{_usd(c.break_even_annual_api_usd)}/year of API spend)"
            )
            thr_s = (
                f"; {_usd(s.threshold_usd_per_year)}/year of API spend at "
                f"≈{_q(c.threshold_tokens_per_day)} tokens/day"
                if c.threshold_tokens_per_day is not None else ""
            )
            lines.append(
                f"  {c.label + ', ' + _usd_per_m(c.api_usd_per_m) + '/M':<44}API {_usd(c.api_monthly_usd)}/month vs "
                f"self-host {_usd(c.selfhost_monthly_usd)}/month"
            )
            lines.append(f"  {'':<44}{be_s}{thr_s}")
    if s.reconciliation:
        lines.append("Reconciliation: " + s.reconciliation)
    lines.append("Assumptions:")
    lines.extend(f"  - {a}" for a in s.assumptions)
    lines.append("How:")
    lines.extend(f"  {h}" for h in s.how)
    return lines


# ----------------------------------------------------------------------------------------------------------------
# JSON
# ----------------------------------------------------------------------------------------------------------------


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
