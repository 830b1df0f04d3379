"""Cost lines (fixed $/month + $/request), the volume where two lines cross, and the article's self-hosting
threshold on annual API spend."""

from __future__ import annotations

import math
from dataclasses import dataclass

from evaluator.costs.inputs import CostInputs
from evaluator.fmt import qty, usd


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
    how: str  # the two lines, the derivation and the result in words
    summary: str = ""  # the result in words only: "X is always cheaper; Y is never cheaper", "X is cheaper below …"


def break_even(a: CostLine, b: CostLine, days_per_month: float, tokens_per_request: float | None = None) -> BreakEven:
    """Volume where two linear monthly costs are equal (closed form; see module docstring for None / inf).

    When the lines never cross at a positive volume (identical, parallel, equal fixed costs, or crossing only at a
    negative volume) ``summary`` and ``how`` say so in words — "X is always cheaper; Y is never cheaper" — rather
    than as a volume of 0 or below zero; the numbers themselves are as documented on :class:`BreakEven`."""
    fa, va, fb, vb = a.fixed_usd_per_month, a.usd_per_request, b.fixed_usd_per_month, b.usd_per_request
    la, lb = a.label, b.label

    def tok(r: float | None) -> float | None:
        if r is None or tokens_per_request is None:
            return None
        return r * tokens_per_request if not math.isinf(r) else math.inf

    def other(x: str) -> str:
        return lb if x == la else la

    lines = f"{la}: {usd(fa)}/month + {usd(va)}/req; {lb}: {usd(fb)}/month + {usd(vb)}/req"
    if va == vb:
        if fa == fb:
            words = f"{la} and {lb} cost the same at every volume: neither is ever cheaper"
            return BreakEven(la, lb, 0.0, 0.0, None, None, f"{lines} — {words}: identical lines", words)
        cheaper = la if fa < fb else lb
        words = f"{cheaper} is always cheaper; {other(cheaper)} is never cheaper"
        return BreakEven(
            la, lb, math.inf, math.inf if tokens_per_request is not None else None, cheaper, cheaper,
            f"{lines} — {words}: parallel lines (the same $/request) never cross; {cheaper} stays cheaper by "
            f"{usd(abs(fa - fb))}/month at every volume",
            words,
        )
    r = (fb - fa) / ((va - vb) * days_per_month)
    if r == 0:
        r = 0.0  # not -0.0
    if r < 0:
        cheaper = la if (fa < fb or (fa == fb and va < vb)) else lb
        words = f"{cheaper} is always cheaper; {other(cheaper)} is never cheaper"
        return BreakEven(
            la, lb, None, None, cheaper, cheaper,
            f"{lines} — {words}: the lines never cross at a positive volume ({cheaper} costs less both fixed and "
            f"per request; solving for equal cost gives {qty(r)} req/day, below zero)",
            words,
        )
    below = la if fa < fb else lb if fb < fa else None
    above = la if va < vb else lb
    t = tok(r)
    if r == 0:  # the same fixed cost: the lines meet only at zero volume
        words = f"{above} is always cheaper (at every volume above zero); {other(above)} is never cheaper"
        return BreakEven(
            la, lb, r, t, below, above,
            f"{lines} — {words}: the same fixed cost, so the lines meet only at zero volume and {above} costs less "
            "per request",
            words,
        )
    tok_s = f" = {qty(t)} tokens/day" if t is not None else ""
    at = f"{qty(t)} tokens/day ({qty(r)} req/day)" if t is not None else f"{qty(r)} req/day"
    words = f"{below} is cheaper below {at}, {above} above it" if below else f"{above} is cheaper above {at}"
    return BreakEven(
        la, lb, r, t, below, above,
        f"{lines} — equal at requests/day = ({usd(fb)} - {usd(fa)}) / (({usd(va)} - {usd(vb)}) × "
        f"{days_per_month:.4g} d) = {qty(r)}{tok_s}; "
        + (f"{below} cheaper below, " if below else "")
        + f"{above} cheaper above",
        words,
    )


@dataclass(frozen=True)
class ThresholdCheck:
    monthly_api_usd: float
    annual_api_usd: float
    threshold_usd_per_year: float
    over_threshold: bool
    threshold_tokens_per_day: float | None  # volume at which this API line reaches the threshold
    sentence: str
    line: str = ""  # the label of the API line the spend was read from


def threshold_check(
    api_line: CostLine, rpd: float, inputs: CostInputs, tokens_per_request: float | None, *, which: str | None = None
) -> ThresholdCheck:
    """The article's rule: self-hosting pays only above ~$500K/year of API spend. ``which`` leads the sentence with
    the line the spend was read from ("On the cheapest measured API option, C … [API, measured usage]")."""
    monthly = api_line.monthly(rpd, inputs.days_per_month)
    annual = 12 * monthly
    thr = inputs.self_host_threshold_usd_per_year
    over = annual >= thr
    thr_tok = None
    per_day = api_line.usd_per_request * inputs.days_per_month * 12
    if per_day > 0 and tokens_per_request is not None:
        thr_tok = (thr - 12 * api_line.fixed_usd_per_month) / per_day * tokens_per_request
    at = f" (reached at ≈{qty(thr_tok)} tokens/day)" if thr_tok is not None else ""
    if over:
        s = (
            f"Annual API spend {usd(monthly)}/month × 12 = {usd(annual)} is at or above the {usd(thr)}/year "
            f"threshold: on the article's rule self-hosting is worth examining on cost."
        )
    else:
        s = (
            f"Annual API spend {usd(monthly)}/month × 12 = {usd(annual)} is below the {usd(thr)}/year "
            f"threshold{at}: on the article's rule the API stays the default unless compliance (HIPAA, SOC 2), "
            f"latency or behaviour prompting cannot reach requires self-hosting."
        )
    if which:
        s = f"{which}: {s[0].lower()}{s[1:]}"
    return ThresholdCheck(monthly, annual, thr, over, thr_tok, s, api_line.label)
