"""The cost model's inputs: every assumption with its default and why (GPU price, utilisation, volume, refresh
period, engineering hours), and what a measured arm brings (`ArmMeasurement`). The one cost schema."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from evaluator.errors import UserError


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
    with tiktoken in the API model's encoding (see ``evaluator.costs.pricing.api_token_counts``). When an ``api_*``
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
