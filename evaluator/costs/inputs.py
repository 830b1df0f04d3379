"""The cost model's inputs: every assumption with its default and why (GPU price, utilisation, volume, refresh
period, engineering hours), what a measured arm brings (`ArmMeasurement`) and, for an option served by a hosted API,
its measured usage and its own prices (`ApiUsage`, `ApiPrices`). The one cost schema."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, get_args, get_type_hints

from evaluator.errors import UserError
from evaluator.fmt import price


class CostInputError(UserError, ValueError):
    """An invalid cost input (negative price, utilisation outside (0, 1], ...). One line, fixable by the user."""


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


# --- the one cost schema -------------------------------------------------------------------------------------------
#
# Every cost input is declared once, below, as a CostInputs field: its name, type, default, bounds and meaning. The
# cost model checks its inputs from these declarations (CostInputs.__post_init__), and the job file's `costs:` section
# (evaluator.config.job.CostConfig) is generated from them, so the two cannot drift apart.

#: Bounds a field's metadata may hold (pydantic's names): gt, ge, lt, le for numbers; min_length for text.
BOUNDS = ("gt", "ge", "lt", "le", "min_length")


def _input(default: Any, description: str, *, job: dict[str, Any] | None = None, **bounds: Any) -> Any:
    """One cost input: its default, its meaning (the job file's field reference, docs/FIELDS.md) and its bounds.

    ``job`` holds the bounds the job file's `costs:` section applies instead, where it differs from the cost model
    (e.g. a job's volume must be > 0, while the cost model also takes 0); without it, both apply ``bounds``."""
    unknown = (set(bounds) | set(job or {})) - set(BOUNDS)
    if unknown:
        raise TypeError(f"unknown bounds {sorted(unknown)}; use {', '.join(BOUNDS)}")
    meta: dict[str, Any] = {"description": description, **bounds}
    if job is not None:
        meta["job"] = dict(job)
    return dataclasses.field(default=default, metadata=meta)


def input_bounds(f: dataclasses.Field, *, job: bool = False) -> dict[str, Any]:
    """A CostInputs field's bounds (see :data:`BOUNDS`): the cost model's, or (``job=True``) the job file's."""
    if job and "job" in f.metadata:
        return dict(f.metadata["job"])
    return {k: f.metadata[k] for k in BOUNDS if k in f.metadata}


def input_types() -> dict[str, Any]:
    """Each CostInputs field's type, resolved (``float | None``, ``int``, ``str``)."""
    return dict(_TYPES)


_SYMBOLS = {"gt": ">", "ge": ">=", "lt": "<", "le": "<="}


def _range_text(bounds: dict[str, Any]) -> str:
    """``>= 0``, ``> 0``, or ``in (0, 1]`` when bounded on both sides."""
    lo = next(((k, bounds[k]) for k in ("gt", "ge") if k in bounds), None)
    hi = next(((k, bounds[k]) for k in ("lt", "le") if k in bounds), None)
    if lo and hi:
        return f"in {'(' if lo[0] == 'gt' else '['}{lo[1]}, {hi[1]}{')' if hi[0] == 'lt' else ']'}"
    return " and ".join(f"{_SYMBOLS[b[0]]} {b[1]}" for b in (lo, hi) if b)


def _within(value: float, bounds: dict[str, Any]) -> bool:
    return (
        ("gt" not in bounds or value > bounds["gt"])
        and ("ge" not in bounds or value >= bounds["ge"])
        and ("lt" not in bounds or value < bounds["lt"])
        and ("le" not in bounds or value <= bounds["le"])
    )


def _check_input(name: str, value: Any, tp: Any, bounds: dict[str, Any]) -> None:
    """One cost input against its declared type and bounds: numbers are finite and not bools, text is a string."""
    args = get_args(tp)
    if type(None) in args:
        if value is None:
            return
        (tp,) = [a for a in args if a is not type(None)]
    if tp is str:
        what = "a non-empty string" if bounds.get("min_length") else "a string"
        _check(isinstance(value, str) and len(value) >= bounds.get("min_length", 0), f"{name} must be {what}")
        return
    if tp is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
        what = "an integer"
    else:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        what = "a finite number"
    rng = _range_text(bounds)
    what = rng if rng.startswith("in ") and tp is not int else f"{what} {rng}".rstrip()
    _check(ok and _within(value, bounds), f"{name} must be {what}, got {value!r}")


@dataclass(frozen=True)
class CostInputs:
    """Every assumption of the cost model. All have defaults (see the module constants for why) and are validated.

    This is the one cost schema: each field's metadata holds its meaning and bounds (see :func:`_input`), the cost
    model checks its inputs from them and the job file's `costs:` section (``evaluator.config.job.CostConfig``) is
    generated from them. ``volume_tokens_per_day`` is task traffic measured in *zero-shot request* tokens (prompt +
    output); see the module docstring. ``requests_per_day``, when given, overrides the volume-derived request rate.
    ``api_*_usd_per_m`` override the price table (negotiated prices); ``None`` keeps the table's price.
    """

    volume_tokens_per_day: float = _input(
        DEFAULT_VOLUME_TOKENS_PER_DAY, ge=0, job={"gt": 0},
        description="Traffic in tokens per day, counted as zero-shot requests (instruction + input + reference "
        "answer); converted to requests/day, the same for every arm.")
    requests_per_day: float | None = _input(
        None, ge=0, job={"gt": 0},
        description="Traffic in requests per day; when set it overrides volume_tokens_per_day.")
    gpu_hourly_usd: float = _input(
        DEFAULT_GPU_HOURLY_USD, ge=0, description="GPU rental price, $ per GPU-hour (serving and training).")
    gpus: int = _input(1, ge=1, description="GPUs the serving throughput was measured on.")
    utilisation: float = _input(
        DEFAULT_UTILISATION, gt=0, le=1,
        description="Average utilisation of the serving GPUs, in (0, 1] (training runs them flat out).")
    api_model: str = _input(
        "gpt-4o-mini", min_length=1, job={},
        description="API model to compare with (a genai-prices model id); checked against the price table when the "
        "job loads.")
    api_provider: str = _input(
        "openai", min_length=1, job={},
        description="Provider id of api_model in the price table (e.g. openai, anthropic, google).")
    api_input_usd_per_m: float | None = _input(
        None, ge=0, description="Negotiated API input price, $ per million tokens; null: the price table's.")
    api_cached_input_usd_per_m: float | None = _input(
        None, ge=0, description="Negotiated API cached-input price, $ per million tokens; null: the price table's.")
    api_output_usd_per_m: float | None = _input(
        None, ge=0, description="Negotiated API output price, $ per million tokens; null: the price table's.")
    refresh_months: float = _input(
        DEFAULT_REFRESH_MONTHS, gt=0,
        description="Base-model refresh period in months: the adapter is retrained this often, so its training cost "
        "is amortised over it.")
    engineering_hours_per_training: float = _input(
        DEFAULT_ENGINEERING_HOURS_PER_TRAINING, ge=0,
        description="Engineering hours per (re)training of the adapter.")
    engineering_usd_per_hour: float = _input(
        DEFAULT_ENGINEERING_USD_PER_HOUR, ge=0,
        description="Engineering cost, $ per hour (retraining and self-host operations).")
    selfhost_ops_hours_per_month: float = _input(
        DEFAULT_SELFHOST_OPS_HOURS_PER_MONTH, ge=0,
        description="Operations hours per month to run self-hosted serving (a fixed monthly cost).")
    self_host_threshold_usd_per_year: float = _input(
        DEFAULT_SELF_HOST_THRESHOLD_USD_PER_YEAR, ge=0, job={"gt": 0},
        description="Annual API spend above which self-hosting is worth examining on cost (the article's "
        "$500K/year rule).")
    days_per_month: float = _input(30.0, gt=0, description="Days in a costed month.")
    prefix_cache_hours: float = _input(
        DEFAULT_PREFIX_CACHE_HOURS, gt=0,
        description="How long a serving replica keeps the shared prefix cached before encoding it again (the prefix "
        "is priced once per lifetime).")

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            _check_input(f.name, getattr(self, f.name), _TYPES[f.name], input_bounds(f))

    def replace(self, **changes: Any) -> "CostInputs":
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)


_TYPES: dict[str, Any] = get_type_hints(CostInputs)


@dataclass(frozen=True)
class ApiPrices:
    """Per-million-token API prices for one model (built by ``evaluator.costs.pricing.api_prices`` or by hand).

    Declared here, with the other cost inputs, because an API-served option carries its own prices in its
    measurement (:class:`ApiUsage`); ``evaluator.costs.api`` re-exports it."""

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


#: What an unpriced API option's cost cells point to: the job fields that price it.
HOW_TO_PRICE_API = ("set api.price_as: <provider>/<model>, or api.input_usd_per_m and api.output_usd_per_m in the "
                    "job")


@dataclass(frozen=True)
class ApiUsage:
    """What an option served by a hosted API measured, and its own prices: it is costed at this usage, not as a
    self-hosted model.

    Tokens are per *request* — one user request is one test item; an item scored by log-probabilities may take
    several HTTP calls, and its usage sums them — as the API billed them (the responses' usage fields), so the cache
    discount is the one actually given (``cached_input_tokens_per_request``), not an estimate. ``prices`` None: the
    option is unpriced (``unpriced_reason`` says why); it keeps its quality, and its cost says "not priced"."""

    model: str  # what was called, in words: "gpt-4o-mini (openai)", "model-name at http://127.0.0.1:8000/v1"
    input_tokens_per_request: float  # all input tokens, cached ones included
    cached_input_tokens_per_request: float
    output_tokens_per_request: float
    prices: ApiPrices | None = None
    unpriced_reason: str = ""
    items: int | None = None  # items the usage was measured over
    latency_p50_s: float | None = None  # per HTTP request
    latency_p95_s: float | None = None
    usage_source: str = "the responses' usage fields"
    missing_usage: int = 0  # responses without a usage field

    def __post_init__(self) -> None:
        for n in ("input_tokens_per_request", "cached_input_tokens_per_request", "output_tokens_per_request"):
            _finite_nonneg(f"{self.model}: API usage {n}", getattr(self, n))
        for n in ("latency_p50_s", "latency_p95_s"):
            _finite_nonneg(f"{self.model}: {n}", getattr(self, n), allow_none=True)
        _check(self.cached_input_tokens_per_request <= self.input_tokens_per_request,
               f"{self.model}: cached input tokens ({self.cached_input_tokens_per_request}) exceed input tokens "
               f"({self.input_tokens_per_request})")


@dataclass(frozen=True)
class ArmMeasurement:
    """What a run recorded for one arm point (built from the run directory).

    Token counts are per request, in the *model's* tokenizer; the ``api_*`` counts are the same prompts counted
    with tiktoken in the API model's encoding (see ``evaluator.costs.pricing.api_token_counts``). When an ``api_*``
    count is missing, the model-tokenizer count stands in for it (noted in ``how``).

    ``api_usage`` set: the option *is* a hosted API model (arm C with an ``api:`` spec). It is costed from that
    measured usage at its own prices — no GPU, training or ops — and its throughput fields are kept only as the
    record of the run (an API's request rate is its concurrency, not a serving cost).
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
    api_usage: ApiUsage | None = None  # served by a hosted API: its measured usage and prices (see the docstring)

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

    @property
    def served_by(self) -> str:
        """"API" for a hosted API model (costed at its measured usage), else "self-host"."""
        return "API" if self.api_usage is not None else "self-host"

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
