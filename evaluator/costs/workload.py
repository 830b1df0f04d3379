"""The workload: the zero-shot request that converts tokens/day into requests/day (the same for every arm), and
each arm's throughput with and without the shared prefix cached."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from evaluator.costs.inputs import ArmMeasurement, CostInputError, CostInputs, _finite_nonneg
from evaluator.fmt import qty


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
        return (f"zero-shot request = {qty(self.instruction)} instruction + {qty(self.input)} input + {qty(self.output)} "
                f"output = {qty(self.tokens)} {self.basis} ({self.source})")


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
            f"requests/day = {qty(inputs.requests_per_day)} (given directly); {how}",
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
        f"requests/day = {qty(inputs.volume_tokens_per_day)} tokens/day ÷ {qty(base)} tokens per zero-shot request "
        f"= {qty(rpd)}; {how}",
    )


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
    ratio_how = f"work ratio = ({qty(p)} - {qty(s)} + {qty(o)}) / ({qty(p)} + {qty(o)}) = {ratio:.4g} (model tokens)"
    if arm.prefix_cached and arm.prefix_seconds > 0:
        per = arm.eval_seconds / arm.requests
        unc = 1.0 / (per + arm.prefix_seconds)
        how.append(
            f"uncached throughput (every request encodes the {qty(s)}-token prefix again, from its measured encoding "
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
