"""Self-hosted cost: $/request from measured throughput at the stated utilisation, GPUs needed at the volume,
LoRA training amortised over the refresh period, ops and prefix encodings as fixed monthly costs."""

from __future__ import annotations

import math
from dataclasses import dataclass

from evaluator.costs.inputs import ArmMeasurement, CostInputs
from evaluator.costs.workload import throughput
from evaluator.fmt import qty, usd


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
        f"{arm.train_processes} process(es) that trained it = {usd(gpu)} GPU + "
        f"{inputs.engineering_hours_per_training:.4g} h × "
        f"${inputs.engineering_usd_per_hour:.4g}/h = {usd(eng)} engineering → {usd(per)}",
        f"training amortised = {usd(per)} ÷ {inputs.refresh_months:.4g} months (base refresh: every new base "
        f"means retraining) = {usd(monthly)}/month",
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
        f"utilisation) × ${inputs.gpu_hourly_usd:.4g}/GPU-h × {inputs.gpus} GPU = {usd(1000 * c)}"
    )
    if tp.estimated:
        how.append(
            f"self-host $/1k requests (uncached) = 1000 ÷ ({tp.uncached_rps:.4g} × 3600 × {inputs.utilisation:.3g}) "
            f"× ${gpu_h:.4g}/h = {usd(1000 * u)}"
            + (" (estimate)" if tp.estimated == "uncached" else "; the cached figure above is the estimate")
        )
    how.append(
        f"self-host ops = {inputs.selfhost_ops_hours_per_month:.4g} h/month × "
        f"${inputs.engineering_usd_per_hour:.4g}/h = {usd(ops)}/month"
    )
    how.extend(thow)
    gpus_needed = math.nan
    prefix_month = 0.0
    if rpd is not None:
        replicas = rpd / (tp.cached_rps * 86400.0 * inputs.utilisation)
        gpus_needed = replicas * inputs.gpus
        how.append(
            f"GPUs needed = {qty(rpd)} req/day ÷ ({tp.cached_rps:.4g} req/s × 86,400 s × {inputs.utilisation:.3g}) "
            f"× {inputs.gpus} GPU = {gpus_needed:.3g} (costs use fractional GPUs)"
        )
        if arm.prefix_seconds > 0 and arm.shared_prefix_tokens > 0:
            n_rep = max(1, math.ceil(replicas - 1e-9))
            times = inputs.days_per_month * 24.0 / inputs.prefix_cache_hours
            prefix_month = arm.prefix_seconds / 3600.0 * gpu_h * n_rep * times
            how.append(
                f"prefix encoding (one-off, not per request) = {arm.prefix_seconds:.4g} s ÷ 3600 × ${gpu_h:.4g}/h × "
                f"{n_rep} replica(s) × {times:.4g} encodings/month (cache lifetime {inputs.prefix_cache_hours:.4g} h) "
                f"= {usd(prefix_month)}/month"
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
