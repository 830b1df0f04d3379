"""Cost model: hand-computed figures, properties (hypothesis) and the article's worked example.

Every expected number below was worked out by hand (the arithmetic is in the comments), not by calling the code.
"""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from evaluator.costs.api import ApiPrices, api_cached_tokens, resolve_prices
from evaluator.costs.breakeven import CostLine, break_even
from evaluator.costs.compute import compute_costs, to_jsonable
from evaluator.costs.inputs import ArmMeasurement, CostInputError, CostInputs
from evaluator.costs.scenario import ARTICLE, article_scenario
from evaluator.costs.selfhost import training_cost
from evaluator.costs.text import format_cost_report, format_scenario
from evaluator.costs.workload import throughput

REL = 1e-9

# GPT-4o-mini list prices ($/M tokens): input 0.15, cached input 0.075, output 0.60; context 128k.
MINI = ApiPrices("gpt-4o-mini", "openai", 0.15, 0.60, cached_input_usd_per_m=0.075, context_window=128_000)

# $3.60/GPU-hour, 1 GPU, 50% utilisation → $/request = 3.6 / (rps × 3600 × 0.5) = 0.002 / rps.
# Defaults otherwise: 50M tokens/day, 30-day month, 16 h × $150 per training = $2,400, refresh 5 months,
# ops 22.5 h × $150 = $3,375/month.
INPUTS = CostInputs(gpu_hourly_usd=3.6)

# Zero-shot: 500 requests in 2.5 s = 200 req/s. API request: 90 prompt + 10 output = 100 tokens.
A0 = ArmMeasurement(
    "A base k=0", "A", 500, 2.5, "cpu", prompt_tokens_per_request=95, shared_prefix_tokens=0,
    output_tokens_per_request=5, api_prompt_tokens_per_request=90, api_shared_prefix_tokens=0,
    api_output_tokens_per_request=10,
)
# 32-shot: 500 requests in 10 s = 50 req/s; model tokens: 900 prompt of which 800 shared prefix, 10 output.
# API: 1,290 prompt of which 1,200 shared prefix, 10 output → unique + output = 90 + 10 = 100.
A32 = ArmMeasurement(
    "A base k=32", "A", 500, 10.0, "cpu", prompt_tokens_per_request=900, shared_prefix_tokens=800,
    output_tokens_per_request=10, api_prompt_tokens_per_request=1290, api_shared_prefix_tokens=1200,
    api_output_tokens_per_request=10,
)
# LoRA: like zero-shot (200 req/s) plus 1,800 s of training.
B = ArmMeasurement(
    "B lora n=100", "B", 500, 2.5, "cpu", prompt_tokens_per_request=95, shared_prefix_tokens=0,
    output_tokens_per_request=5, train_seconds=1800, api_prompt_tokens_per_request=90,
    api_shared_prefix_tokens=0, api_output_tokens_per_request=10,
)


@pytest.fixture(scope="module")
def report():
    return compute_costs([A0, A32, B], INPUTS, MINI)


def test_requests_per_day_from_zero_shot_baseline(report):
    # baseline = min(90-0+10, 1290-1200+10, 90-0+10) = 100 API tokens → 50,000,000 / 100 = 500,000 requests/day
    assert report.baseline_tokens_per_request == 100
    assert report.requests_per_day == pytest.approx(500_000, rel=REL)
    direct = compute_costs([A0], INPUTS.replace(requests_per_day=1234.0), MINI)
    assert direct.requests_per_day == 1234.0


def test_selfhost_hand_figures(report):
    a0, a32, b = report.arms
    # A0: $/req = 3.6 / (200 × 3600 × 0.5) = 3.6 / 360,000 = 0.00001 → $0.01 per 1k requests
    assert a0.selfhost.usd_per_1k_requests_cached == pytest.approx(0.01, rel=REL)
    # monthly = 0.00001 × 500,000 × 30 = $150, + $3,375 ops = $3,525
    assert a0.monthly_selfhost_cached == pytest.approx(3_525.0, rel=REL)
    assert a0.monthly_selfhost_uncached == pytest.approx(3_525.0, rel=REL)  # no prefix: the same
    # A32: $/req = 3.6 / (50 × 1800) = 0.00004 → $0.04 per 1k; monthly = 0.00004 × 15M = $600 + 3,375 = $3,975
    assert a32.selfhost.usd_per_1k_requests_cached == pytest.approx(0.04, rel=REL)
    assert a32.monthly_selfhost_cached == pytest.approx(3_975.0, rel=REL)
    # uncached estimate: work ratio = (900 - 800 + 10) / (900 + 10) = 110/910
    # $/req = 0.00004 × 910/110 = 0.000330909..., $/1k = 0.330909...; monthly = 4,963.6363... + 3,375 = 8,338.6363...
    assert a32.throughput.work_ratio == pytest.approx(110 / 910, rel=REL)
    assert a32.selfhost.usd_per_1k_requests_uncached == pytest.approx(0.3309090909, rel=1e-9)
    assert a32.monthly_selfhost_uncached == pytest.approx(8_338.636363636, rel=1e-9)
    # B: training per retrain = 1800/3600 h × $3.6 = $1.80 GPU + 16 h × $150 = $2,400 → $2,401.80
    # amortised over 5 months = $480.36/month; monthly = $150 + $3,375 + $480.36 = $4,005.36
    assert b.selfhost.training_gpu_usd == pytest.approx(1.80, rel=REL)
    assert b.selfhost.training_engineering_usd == pytest.approx(2_400.0, rel=REL)
    assert b.selfhost.training_usd_per_month == pytest.approx(480.36, rel=REL)
    assert b.monthly_selfhost_cached == pytest.approx(4_005.36, rel=REL)
    assert a0.selfhost.training_usd_per_month == 0.0
    # GPUs needed for A0: 500,000 / (200 × 86,400 × 0.5) = 500,000 / 8,640,000 = 0.05787...
    assert a0.selfhost.gpus_needed == pytest.approx(0.0578703704, rel=1e-9)


def test_api_hand_figures(report):
    a0, a32, b = report.arms
    # A0: (90 × 0.15 + 10 × 0.60) / 1e6 = (13.5 + 6) / 1e6 = $0.0000195 → monthly × 15,000,000 = $292.50
    assert a0.api.usd_per_request == pytest.approx(1.95e-5, rel=REL)
    assert a0.monthly_api == pytest.approx(292.5, rel=REL)
    assert a0.annual_api == pytest.approx(3_510.0, rel=REL)
    # A32: prefix 1,200 ≥ 1,024 → cached = 1024 + 128 × floor(176/128) = 1,152; fresh = 1,290 - 1,152 = 138
    # (138 × 0.15 + 1,152 × 0.075 + 10 × 0.60) / 1e6 = (20.7 + 86.4 + 6) / 1e6 = $0.0001131 → × 15M = $1,696.50
    assert a32.api.cached_tokens == 1152
    assert a32.api.usd_per_request == pytest.approx(1.131e-4, rel=REL)
    assert a32.monthly_api == pytest.approx(1_696.5, rel=REL)
    # B's API alternative is the API model with B's (zero-shot) prompts, no adapter: same as A0
    assert b.monthly_api == pytest.approx(292.5, rel=REL)
    assert "without the LoRA adapter" in b.api.label
    assert "adapter" not in a0.api.label


def test_break_even_hand_figures(report):
    be = {(x.a.split(" [")[0], x.b.split(" [")[0], "API" in x.b): x for x in report.break_evens}
    # A0 vs A32: equal fixed ($3,375), A0 cheaper per request → equal at 0, A0 cheaper above
    x = be[("A base k=0", "A base k=32", False)]
    assert x.requests_per_day == 0.0 and x.tokens_per_day == 0.0
    assert x.cheaper_above.startswith("A base k=0")
    # A0 vs B: same $/request, B has $480.36 more fixed → parallel lines → inf, A0 always cheaper
    x = be[("A base k=0", "B lora n=100", False)]
    assert math.isinf(x.requests_per_day) and math.isinf(x.tokens_per_day)
    assert x.cheaper_below.startswith("A base k=0")
    # A32 vs B: fixed diff 3,855.36 - 3,375 = 480.36; 480.36 / ((0.00004 - 0.00001) × 30) = 480.36 / 0.0009
    #   = 533,733.33 req/day
    # × 100 tokens = 53,373,333.3 tokens/day; A32 cheaper below, B above
    x = be[("A base k=32", "B lora n=100", False)]
    assert x.requests_per_day == pytest.approx(533_733.3333333, rel=1e-9)
    assert x.tokens_per_day == pytest.approx(53_373_333.333333, rel=1e-9)
    assert x.cheaper_below.startswith("A base k=32") and x.cheaper_above.startswith("B lora")
    # A0 vs API: 3,375 / ((0.0000195 - 0.00001) × 30) = 3,375 / 0.000285 = 11,842,105.263 req/day
    x = be[("A base k=0", "A base k=0", True)]
    assert x.requests_per_day == pytest.approx(11_842_105.263158, rel=1e-9)
    assert "API" in x.cheaper_below and "self-host" in x.cheaper_above
    # A32 vs API: 3,375 / ((0.0001131 - 0.00004) × 30) = 3,375 / 0.002193 = 1,538,987.688 req/day
    x = be[("A base k=32", "A base k=32", True)]
    assert x.requests_per_day == pytest.approx(1_538_987.688098, rel=1e-9)
    assert x.tokens_per_day == pytest.approx(153_898_768.8098, rel=1e-9)
    # B vs API: 3,855.36 / ((0.0000195 - 0.00001) × 30) = 3,855.36 / 0.000285 = 13,527,578.947 req/day
    x = be[("B lora n=100", "B lora n=100", True)]
    assert x.requests_per_day == pytest.approx(13_527_578.947368, rel=1e-9)
    assert len(report.break_evens) == 6  # 3 pairs + 3 vs API


def test_threshold_hand_figures(report):
    t = report.threshold
    # cheapest API line: $292.50/month × 12 = $3,510/year < $500,000
    assert t.annual_api_usd == pytest.approx(3_510.0, rel=REL)
    assert t.over_threshold is False
    # reached at 500,000 / (0.0000195 × 30 × 12) = 71,225,071.2 req/day × 100 tokens = 7,122,507,122.5 tokens/day
    assert t.threshold_tokens_per_day == pytest.approx(7_122_507_122.507, rel=1e-9)
    assert "below" in t.sentence and "$500,000" in t.sentence
    over = compute_costs([A0], INPUTS.replace(self_host_threshold_usd_per_year=1_000.0), MINI).threshold
    assert over.over_threshold is True and "at or above" in over.sentence


def test_how_strings_substitute_numbers(report):
    a0 = report.arms[0]
    assert any("monthly self-host (cached) = $0.00001/req × 500,000 req/day × 30 d + $3,375.00 fixed = $3,525.00" == h
               for h in a0.how), a0.how
    assert any("monthly API" in h and "$292.50" in h for h in a0.how)
    text = "\n".join(format_cost_report(report))
    for needle in ("$3,525.00", "$3,975.00", "$4,005.36", "$1,696.50", "53.37M tokens/day", "parallel", "$500,000"):
        assert needle in text, needle
    assert "gpt-4o-mini" in text


def test_cached_prefix_rule():
    # OpenAI: ≥ 1,024 tokens, then 128-token steps
    assert api_cached_tokens(1023, MINI) == 0
    assert api_cached_tokens(1024, MINI) == 1024
    assert api_cached_tokens(1151, MINI) == 1024
    assert api_cached_tokens(1152, MINI) == 1152
    assert api_cached_tokens(5000, ApiPrices("m", "p", 1.0, 2.0)) == 0  # no cached-input price: no discount


def test_measured_without_prefix_cache_estimates_cached():
    arm = ArmMeasurement("x", "A", 100, 10.0, "cpu", 900, 800, 10, prefix_cached=False)
    tp = throughput(arm)
    # measured 10 req/s is the uncached figure; cached estimate = 10 / (110/910) = 82.7272...
    assert tp.uncached_rps == pytest.approx(10.0)
    assert tp.cached_rps == pytest.approx(82.727272727, rel=1e-9)
    assert tp.estimated == "cached"


def test_api_tokens_fall_back_to_model_tokens():
    arm = ArmMeasurement("x", "A", 100, 10.0, "cpu", 2000, 1500, 10)
    r = compute_costs([arm], INPUTS, MINI)
    a = r.arms[0]
    assert a.api.exact_token_counts is False
    # prefix 1,500 → cached 1,024 + 128 × floor(476/128) = 1,024 + 384 = 1,408; fresh 592
    # (592 × 0.15 + 1,408 × 0.075 + 10 × 0.6)/1e6 = (88.8 + 105.6 + 6)/1e6 = 0.0002004
    assert a.api.usd_per_request == pytest.approx(2.004e-4, rel=REL)
    assert any("approximation" in h for h in a.how)
    # baseline in model tokens: 2000 - 1500 + 10 = 510
    assert r.baseline_tokens_per_request == 510


def test_context_window_warning():
    arm = ArmMeasurement("big", "A", 10, 1.0, "cpu", 200_000, 199_000, 10, api_prompt_tokens_per_request=200_000,
                         api_shared_prefix_tokens=199_000, api_output_tokens_per_request=10)
    a = compute_costs([arm], INPUTS, MINI).arms[0]
    assert a.api.fits_context is False
    assert any("context window" in h for h in a.api.how)


def test_price_overrides():
    # negotiated input price replaces the table's; cached and output stay
    p = resolve_prices(INPUTS.replace(api_input_usd_per_m=0.10), MINI)
    assert (p.input_usd_per_m, p.cached_input_usd_per_m, p.output_usd_per_m) == (0.10, 0.075, 0.60)
    assert "override" in p.source
    # no table: both input and output overrides make a price set; one alone does not
    both = INPUTS.replace(api_input_usd_per_m=1.0, api_output_usd_per_m=2.0)
    assert resolve_prices(both, None).input_usd_per_m == 1.0
    assert resolve_prices(INPUTS.replace(api_input_usd_per_m=1.0), None) is None
    r = compute_costs([A0], INPUTS, None)
    assert r.arms[0].api is None and r.threshold is None
    assert any("API lines omitted" in a for a in r.assumptions)


@pytest.mark.parametrize(
    "kw",
    [
        {"utilisation": 0.0},
        {"utilisation": 1.5},
        {"gpu_hourly_usd": -1.0},
        {"gpus": 0},
        {"refresh_months": 0.0},
        {"volume_tokens_per_day": float("nan")},
        {"api_input_usd_per_m": -0.1},
        {"days_per_month": 0},
    ],
)
def test_invalid_inputs(kw):
    with pytest.raises(CostInputError):
        CostInputs(**kw)


def test_request_smaller_than_one_token_cannot_convert_volume():
    """Found by hypothesis: a request that is all shared prefix (0 or a subnormal 5e-324 tokens of its own) made
    requests/day infinite and the break-even figures NaN; every real request holds at least its item."""
    arm = ArmMeasurement("x", "A", 10, 1.0, "cpu", 10, 10, 5e-324, api_prompt_tokens_per_request=10,
                         api_shared_prefix_tokens=10, api_output_tokens_per_request=5e-324)
    with pytest.raises(CostInputError, match=r"< 1\); give requests_per_day"):
        compute_costs([arm], CostInputs(volume_tokens_per_day=1e6), ApiPrices("m", "openai", 1.0, 1.0))
    rep = compute_costs([arm], CostInputs(requests_per_day=1000), ApiPrices("m", "openai", 1.0, 1.0))
    assert rep.requests_per_day == 1000


def test_invalid_measurements():
    with pytest.raises(ValueError, match="exceeds"):
        ArmMeasurement("x", "A", 10, 1.0, "cpu", 10, 20, 1)
    with pytest.raises(ValueError):
        ArmMeasurement("x", "A", 0, 1.0, "cpu", 10, 0, 1)
    with pytest.raises(ValueError):
        ArmMeasurement("x", "A", 10, 0.0, "cpu", 10, 0, 1)
    with pytest.raises(ValueError, match="unique"):
        compute_costs([A0, A0], INPUTS, MINI)


def test_break_even_direct_cases():
    a = CostLine("a", "x", 100.0, 0.01)
    # b cheaper in both fixed and per-request: lines cross at a negative volume → None
    assert break_even(a, CostLine("b", "x", 50.0, 0.005), 30).requests_per_day is None
    # identical lines → 0.0
    assert break_even(a, CostLine("b", "x", 100.0, 0.01), 30).requests_per_day == 0.0
    # 100 + 0.01·r·30 = 400 + 0.005·r·30 → r = 300 / 0.15 = 2,000 req/day; × 50 tokens = 100,000 tokens/day
    x = break_even(a, CostLine("b", "x", 400.0, 0.005), 30, 50)
    assert x.requests_per_day == pytest.approx(2_000, rel=REL)
    assert x.tokens_per_day == pytest.approx(100_000, rel=REL)


def test_json_roundtrip(report):
    data = to_jsonable(report)
    s = json.dumps(data, allow_nan=False)
    assert '"inf"' in s  # the parallel A0/B break-even


# ------------------------------------------------------------------------------------------------------------
# Properties
# ------------------------------------------------------------------------------------------------------------

pos = st.floats(min_value=1e-3, max_value=1e4, allow_nan=False, allow_infinity=False)


@st.composite
def arms(draw, name="x"):
    # Every request holds its item (>= 1 token of its own): the shared prefix is at most prompt - 1.
    prompt = draw(st.floats(min_value=1, max_value=20_000))
    prefix = draw(st.floats(min_value=0, max_value=1)) * (prompt - 1)
    out = draw(st.floats(min_value=0, max_value=500))
    api_prompt = draw(st.floats(min_value=1, max_value=20_000))
    api_prefix = draw(st.floats(min_value=0, max_value=1)) * (api_prompt - 1)
    return ArmMeasurement(
        name, draw(st.sampled_from(["A", "B", "C"])), draw(st.integers(1, 10_000)), draw(pos), "dev",
        prompt, prefix, out, train_seconds=draw(st.floats(min_value=0, max_value=1e5)),
        api_prompt_tokens_per_request=api_prompt, api_shared_prefix_tokens=api_prefix,
        api_output_tokens_per_request=out,
    )


@st.composite
def inputs(draw):
    return CostInputs(
        volume_tokens_per_day=draw(st.floats(min_value=0, max_value=1e10)),
        gpu_hourly_usd=draw(st.floats(min_value=0, max_value=50)),
        gpus=draw(st.integers(1, 8)),
        utilisation=draw(st.floats(min_value=0.01, max_value=1.0)),
        refresh_months=draw(st.floats(min_value=0.5, max_value=24)),
        engineering_hours_per_training=draw(st.floats(min_value=0, max_value=200)),
        selfhost_ops_hours_per_month=draw(st.floats(min_value=0, max_value=200)),
    )


prices = st.builds(
    lambda i, c, o: ApiPrices("m", "openai", i, o, cached_input_usd_per_m=c),
    st.floats(min_value=0, max_value=100), st.one_of(st.none(), st.floats(min_value=0, max_value=100)),
    st.floats(min_value=0, max_value=100),
)


@settings(max_examples=60, deadline=None)
@given(arms(), inputs(), prices, st.floats(min_value=0, max_value=1e10), st.floats(min_value=0, max_value=1e10))
def test_monthly_cost_monotonic_in_volume(arm, inp, pr, v1, v2):
    lo, hi = sorted((v1, v2))
    r1 = compute_costs([arm], inp.replace(volume_tokens_per_day=lo), pr).arms[0]
    r2 = compute_costs([arm], inp.replace(volume_tokens_per_day=hi), pr).arms[0]
    assert r1.monthly_selfhost_cached <= r2.monthly_selfhost_cached
    assert r1.monthly_selfhost_uncached <= r2.monthly_selfhost_uncached
    assert r1.monthly_api <= r2.monthly_api


@settings(max_examples=60, deadline=None)
@given(arms("one"), arms("two"), inputs(), prices)
def test_costs_equal_at_break_even(a1, a2, inp, pr):
    rep = compute_costs([a1, a2], inp, pr)
    checked = 0
    for i, be in enumerate(rep.break_evens):
        t = be.tokens_per_day
        if t is None or math.isinf(t) or t <= 0 or t > 1e15:
            continue
        again = compute_costs([a1, a2], inp.replace(volume_tokens_per_day=t), pr)
        if i == 0:  # the pair of arms, self-hosted
            x, y = again.arms[0].monthly_selfhost_cached, again.arms[1].monthly_selfhost_cached
        else:  # arm vs its API line
            arm = again.arms[i - 1]
            x, y = arm.monthly_selfhost_cached, arm.monthly_api
        assert x == pytest.approx(y, rel=1e-9)
        checked += 1
    assume(checked > 0)


@settings(max_examples=60, deadline=None)
@given(arms(), inputs(), st.floats(min_value=0.1, max_value=60), st.floats(min_value=0.1, max_value=60))
def test_amortised_training_inverse_in_refresh_period(arm, inp, m1, m2):
    arm = ArmMeasurement(**{**arm.__dict__, "arm": "B"})
    _, _, per1, month1, _ = training_cost(arm, inp.replace(refresh_months=m1))
    _, _, per2, month2, _ = training_cost(arm, inp.replace(refresh_months=m2))
    assert per1 == per2
    assert month1 * m1 == pytest.approx(per1, rel=1e-12)
    assert month1 * m1 == pytest.approx(month2 * m2, rel=1e-12)


# ------------------------------------------------------------------------------------------------------------
# The article's worked example
# ------------------------------------------------------------------------------------------------------------


def test_article_scenario_reproduces_figures():
    s = article_scenario()
    # API: 50M tokens/day × 30 d = 1,500M tokens × $1.50/M = $2,250
    assert s.api_monthly_usd == pytest.approx(2_250.0, rel=1e-9)
    assert s.api_blended_usd_per_m == 1.50
    # self-host: 4 GPUs × $0.625/h × 24 h × 30 d = $1,800 GPU + 22.5 h × $150 = $3,375 engineering = $5,175
    assert s.selfhost_gpu_monthly_usd == pytest.approx(1_800.0, rel=1e-9)
    assert s.selfhost_engineering_monthly_usd == pytest.approx(3_375.0, rel=1e-9)
    assert s.selfhost_monthly_usd == pytest.approx(5_175.0, rel=1e-9)
    assert s.selfhost_gpus_needed == pytest.approx(4.0, rel=1e-9)
    # GPT-4o-mini at list prices: (750 × 0.15 + 250 × 0.60)/1e6 = 0.0002625 $/req × 50,000 req/day × 30 = $393.75
    assert s.requests_per_day == pytest.approx(50_000, rel=1e-9)
    assert s.api_list_price_monthly_usd == pytest.approx(393.75, rel=1e-9)
    # break-even: 3,375 / ((0.0015 - 0.0012) × 30) = 375,000 req/day × 1,000 tokens = 375M tokens/day
    assert s.break_even_tokens_per_day == pytest.approx(375e6, rel=1e-9)
    # $2,250 × 12 = $27,000/year < $500,000; threshold reached at
    # 500,000 / (1.5e-6 × 30 × 12) = 925,925,925.9 tokens/day
    assert s.annual_api_usd == pytest.approx(27_000.0, rel=1e-9)
    assert s.over_threshold is False
    assert s.threshold_tokens_per_day == pytest.approx(925_925_925.93, rel=1e-9)
    text = "\n".join(format_scenario(s))
    for needle in ("$2,250", "$5,175", "$1,800", "$3,375", "$1.50", "GPT-4o-mini", "$500,000", "engineering", "GPU"):
        assert needle in text, needle
    assert any("implies a blended" in a for a in s.assumptions)
    assert any("the split is ours" in a for a in s.assumptions)


def test_article_scenario_other_volume():
    # 100M tokens/day: API 2 × 2,250 = $4,500; GPU 2 × 1,800 = $3,600 (8 GPUs) + 3,375 = $6,975
    s = article_scenario(100e6)
    assert s.api_monthly_usd == pytest.approx(4_500.0, rel=1e-9)
    assert s.selfhost_monthly_usd == pytest.approx(6_975.0, rel=1e-9)
    assert s.selfhost_gpus_needed == pytest.approx(8.0, rel=1e-9)
    assert ARTICLE.volume_tokens_per_day == 50e6


# -- the zero-shot request, per-request throughput, training processes, CPU figures, stated throughput ------------

from evaluator.costs.workload import RequestSize  # noqa: E402


def test_requests_per_day_use_the_full_zero_shot_request():
    """The old rule took prompt − shared prefix + output: at k=0 the shared prefix IS the instruction, so a 78-token
    request counted as ~21 tokens (2.4M requests/day instead of ~640K). The request is instruction + input + output."""
    req = RequestSize(55, 20, 3, "model tokens (demo)")
    arm = ArmMeasurement("A k=0", "A", 60, 6.0, "cpu", prompt_tokens_per_request=75, shared_prefix_tokens=55,
                         output_tokens_per_request=0)
    r = compute_costs([arm], CostInputs(), None, req)
    # 50M / (55 + 20 + 3) = 641,025.6 requests/day
    assert r.requests_per_day == pytest.approx(50e6 / 78, rel=REL) and r.baseline_tokens_per_request == 78
    text = "\n".join(format_cost_report(r))
    assert "zero-shot request = 55 instruction + 20 input + 3 output = 78 model tokens" in text
    assert "641,026 requests/day" in text
    # every arm converts with the same request: a 32-shot arm changes tokens per request, not requests per day
    arm32 = ArmMeasurement("A k=32", "A", 60, 8.0, "cpu", 964, 941, 0)
    assert compute_costs([arm, arm32], CostInputs(), None, req).requests_per_day == r.requests_per_day


def test_per_request_throughput_and_the_uncached_figure_from_the_measured_prefix():
    """A k=128 unit: 20 requests in 97 s of per-request work (4.85 s each) after a 103 s prefix encoding. Cached
    throughput excludes the one-off encoding; uncached adds it to every request: 1 / (4.85 + 103) req/s — not the
    FLOP extrapolation (which gave ~1,480 s per request)."""
    arm = ArmMeasurement("A k=128", "A", 20, 97.0, "cpu", 3500, 3477, 0, prefix_seconds=103.0)
    tp = throughput(arm)
    assert tp.cached_rps == pytest.approx(20 / 97) and tp.estimated == ""
    assert tp.uncached_rps == pytest.approx(1 / (4.85 + 103.0))
    # the prefix is priced once per replica per cache lifetime: 103 s / 3600 × $2 × 1 replica × 30 encodings/month
    sh = compute_costs([arm], CostInputs(volume_tokens_per_day=1000.0), None, RequestSize(55, 20, 3, "t")).arms[0]
    assert sh.selfhost.prefix_usd_per_month == pytest.approx(103 / 3600 * 2.0 * 1 * 30)


def test_training_is_priced_by_the_processes_that_trained_not_the_serving_gpus():
    arm = ArmMeasurement("B n=100", "B", 10, 1.0, "cpu", 10, 0, 1, train_seconds=3600, train_processes=4)
    gpu, *_ = training_cost(arm, CostInputs(gpu_hourly_usd=2.0, gpus=8))
    assert gpu == pytest.approx(1.0 * 2.0 * 4)  # 1 h × $2 × 4 processes, whatever the 8 serving GPUs
    gpu1, *_ = training_cost(dataclasses_replace(arm, train_processes=1), CostInputs(gpu_hourly_usd=2.0, gpus=8))
    assert gpu1 == pytest.approx(2.0)


def dataclasses_replace(obj, **kw):
    import dataclasses

    return dataclasses.replace(obj, **kw)


def test_a_cpu_throughput_is_marked_and_a_stated_one_replaces_it():
    req = RequestSize(55, 20, 3, "t")
    cpu = ArmMeasurement("B n=100", "B", 60, 6.0, "CPU (2 cores), float32", 78, 0, 0, on_cpu=True)
    r = compute_costs([cpu], CostInputs(), None, req)
    text = "\n".join(format_cost_report(r))
    assert "[CPU: not a GPU serving figure]" in text and r.arms[0].on_cpu
    assert any("WARNING: throughput measured on a CPU" in a for a in r.assumptions)
    stated = dataclasses_replace(cpu, stated_rps=850.0)
    r2 = compute_costs([stated], CostInputs(), None, req)
    assert r2.arms[0].throughput.cached_rps == 850.0 and not r2.arms[0].on_cpu
    assert not any("WARNING: throughput measured on a CPU" in a for a in r2.assumptions)
    # $/request = $2 / (850 × 3600 × 0.5)
    assert r2.arms[0].selfhost.usd_per_request_cached == pytest.approx(2.0 / (850 * 3600 * 0.5))
    with pytest.raises(CostInputError):
        dataclasses_replace(cpu, stated_rps=0.0)


def test_one_cost_schema_the_jobs_costs_section_is_generated_from_cost_inputs(tmp_path):
    """Issue 14: CostInputs (evaluator/costs/inputs.py) is the one cost schema. The job's `costs:` section
    (CostConfig) has every one of its fields with the same default, meaning and bounds (the job's own where the
    field declares them), and a job file's costs section round-trips into CostInputs."""
    import dataclasses

    from pydantic import ValidationError

    from evaluator.config.job import CostConfig, load_job
    from evaluator.costs.from_run import cost_inputs
    from evaluator.costs.inputs import input_bounds

    declared = {f.name: f for f in dataclasses.fields(CostInputs)}
    assert list(CostConfig.model_fields) == list(declared)
    props = CostConfig.model_json_schema()["properties"]
    to_json = {"gt": "exclusiveMinimum", "ge": "minimum", "lt": "exclusiveMaximum", "le": "maximum",
               "min_length": "minLength"}
    for name, fi in CostConfig.model_fields.items():
        f = declared[name]
        assert fi.default == f.default and type(fi.default) is type(f.default), name
        assert fi.description == f.metadata["description"] and fi.description.strip(), name
        schema = next((s for s in props[name].get("anyOf", [props[name]]) if s.get("type") != "null"))
        got = {k: schema[j] for k, j in to_json.items() if j in schema}
        assert got == input_bounds(f, job=True), name
    assert CostInputs(**CostConfig().model_dump()) == CostInputs()
    # where the job file is stricter than the cost model, each keeps its own rule
    assert CostInputs(volume_tokens_per_day=0).volume_tokens_per_day == 0
    with pytest.raises(ValidationError):
        CostConfig(volume_tokens_per_day=0)

    job_file = tmp_path / "job.yaml"
    job_file.write_text(
        "name: one-schema\ntasks: [t]\nbase: b\ncosts:\n  volume_tokens_per_day: 2.0e+6\n  requests_per_day: 900\n"
        "  gpu_hourly_usd: 3.5\n  gpus: 2\n  utilisation: 0.25\n  api_input_usd_per_m: 0.1\n"
        "  api_output_usd_per_m: 0.4\n  refresh_months: 6\n  days_per_month: 31\n  prefix_cache_hours: 12\n",
        encoding="utf-8",
    )
    recorded = load_job(job_file).costs.model_dump()
    assert set(recorded) == set(declared)
    inputs = cost_inputs({**recorded, "a_key_from_an_older_run": 1}, {"gpus": 4, "utilisation": None})
    assert inputs == CostInputs(volume_tokens_per_day=2e6, requests_per_day=900, gpu_hourly_usd=3.5, gpus=4,
                                utilisation=0.25, api_input_usd_per_m=0.1, api_output_usd_per_m=0.4,
                                refresh_months=6, days_per_month=31, prefix_cache_hours=12)


# --- break-even rows in words (issue 15): "always cheaper" / "never cheaper", never "0 tokens/day" or "< 0" --------


def _no_odd_volumes(text: str) -> None:
    assert "< 0" not in text and "would cross" not in text and "= 0 tokens/day" not in text and "= 0 =" not in text


def test_break_even_negative_crossing_says_always_and_never_cheaper():
    a, b = CostLine("a", "self-host", 100.0, 0.01), CostLine("b", "API", 50.0, 0.005)  # b cheaper in both
    x = break_even(a, b, 30, 10)
    assert x.requests_per_day is None and x.tokens_per_day is None  # the numbers are as before
    assert x.cheaper_below == x.cheaper_above == "b [API]"
    assert x.summary == "b [API] is always cheaper; a [self-host] is never cheaper"
    assert f" — {x.summary}: the lines never cross at a positive volume" in x.how
    # (50 - 100) / ((0.01 - 0.005) × 30) = -333.3 req/day: kept as the derivation, said to be below zero
    assert "solving for equal cost gives -333.3 req/day, below zero" in x.how
    _no_odd_volumes(x.how)


def test_break_even_identical_lines_say_neither_is_ever_cheaper():
    x = break_even(CostLine("a", "x", 100.0, 0.01), CostLine("b", "x", 100.0, 0.01), 30, 10)
    assert (x.requests_per_day, x.tokens_per_day, x.cheaper_below, x.cheaper_above) == (0.0, 0.0, None, None)
    assert x.summary == "a [x] and b [x] cost the same at every volume: neither is ever cheaper"
    assert x.how.endswith(f" — {x.summary}: identical lines")
    _no_odd_volumes(x.how)


def test_break_even_parallel_lines_say_always_and_never_cheaper():
    x = break_even(CostLine("a", "x", 400.0, 0.01), CostLine("b", "x", 100.0, 0.01), 30, 10)
    assert math.isinf(x.requests_per_day) and math.isinf(x.tokens_per_day)
    assert x.cheaper_below == x.cheaper_above == "b [x]"
    assert x.summary == "b [x] is always cheaper; a [x] is never cheaper"
    assert "parallel lines (the same $/request) never cross; b [x] stays cheaper by $300.00/month at every volume" in x.how
    _no_odd_volumes(x.how)


def test_break_even_at_zero_volume_says_always_cheaper_above_zero():
    """Equal fixed costs: the lines meet only at 0 — "always cheaper", not "equal at 0 = 0 tokens/day"."""
    x = break_even(CostLine("a", "x", 100.0, 0.02), CostLine("b", "x", 100.0, 0.01), 30, 10)
    assert (x.requests_per_day, x.tokens_per_day, x.cheaper_below, x.cheaper_above) == (0.0, 0.0, None, "b [x]")
    assert x.summary == "b [x] is always cheaper (at every volume above zero); a [x] is never cheaper"
    _no_odd_volumes(x.how)


def test_break_even_positive_crossing_keeps_its_derivation_and_says_who_is_cheaper_where():
    x = break_even(CostLine("a", "x", 100.0, 0.01), CostLine("b", "x", 400.0, 0.005), 30, 50)
    assert x.requests_per_day == pytest.approx(2_000, rel=REL)
    assert x.summary == "a [x] is cheaper below 100,000 tokens/day (2,000 req/day), b [x] above it"
    assert "= 2,000 = 100,000 tokens/day; a [x] cheaper below, b [x] cheaper above" in x.how
    no_tokens = break_even(CostLine("a", "x", 100.0, 0.01), CostLine("b", "x", 400.0, 0.005), 30)
    assert no_tokens.summary == "a [x] is cheaper below 2,000 req/day, b [x] above it"


def test_report_markdown_break_even_rows_lead_with_words(report):
    from evaluator.report.markdown import break_even_row

    rows = [break_even_row(to_jsonable(b)) for b in report.break_evens]
    for b, row in zip(report.break_evens, rows):
        assert row.startswith(f"**{b.summary}** — ") and row.count(b.summary) == 1
        _no_odd_volumes(row)
    assert any("is always cheaper" in r and "is never cheaper" in r for r in rows)  # the parallel A0/B pair
    assert any(" is cheaper below " in r for r in rows)
    # a report dict from before the summary field: the derivation as it was
    assert break_even_row({"how": "x — y"}) == "x — y"
    assert to_jsonable(report.break_evens[0])["summary"] == report.break_evens[0].summary
