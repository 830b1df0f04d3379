"""The article's worked example: break-even and the $500K/year rule at the article's price and at list prices.

Every expectation is computed by hand in the comments (30-day month, 1,000-token requests = 750 in + 250 out).
Self-hosting: $3,375/month engineering (22.5 h × $150) + GPU $1,800/month per 50M tokens/day
= $1,800 / (50M × 30 / 1M) = $1.20 per M tokens.
"""

from __future__ import annotations

import dataclasses

import pytest
from typer.testing import CliRunner

from evaluator.cli.app import app
from evaluator.costs.compute import to_jsonable
from evaluator.costs.scenario import ARTICLE, article_scenario
from evaluator.costs.text import format_scenario


def _case(s, label_part):
    (c,) = [c for c in s.price_cases if label_part in c.label]
    return c


def test_article_price_break_even_and_threshold():
    s = article_scenario()
    assert s.selfhost_fixed_usd_per_month == pytest.approx(3_375.0, rel=1e-12)
    assert s.selfhost_usd_per_m == pytest.approx(1.20, rel=1e-12)
    art = s.price_cases[0]
    assert art.input_share is None and art.api_usd_per_m == 1.50
    # 50M × 30 / 1M × $1.50 = $2,250; self-host 3,375 + 1,500 × 1.20 = $5,175
    assert art.api_monthly_usd == pytest.approx(2_250.0, rel=1e-12)
    assert art.selfhost_monthly_usd == pytest.approx(5_175.0, rel=1e-12)
    # break-even: 3,375 / ((1.50 - 1.20)/1e6 × 30) = 3,375 / 9e-6 = 375,000,000 tokens/day
    assert art.break_even_tokens_per_day == pytest.approx(375e6, rel=1e-9)
    assert s.break_even_tokens_per_day == pytest.approx(art.break_even_tokens_per_day, rel=1e-12)
    # API spend there: 375M × 30 × 12 × 1.5e-6 = $202,500/year
    assert art.break_even_annual_api_usd == pytest.approx(202_500.0, rel=1e-9)
    # $500K/year reached at 500,000 / (12 × 30 × 1.5e-6) = 925,925,925.9 tokens/day
    assert art.threshold_tokens_per_day == pytest.approx(925_925_925.93, rel=1e-9)
    assert s.threshold_tokens_per_day == pytest.approx(art.threshold_tokens_per_day, rel=1e-12)
    assert art.never_reason is None


def test_list_prices_range_and_never():
    s = article_scenario()
    mix, inp, out = _case(s, "3:1"), _case(s, "all input"), _case(s, "all output")
    # effective $/M: 0.75 × 0.15 + 0.25 × 0.60 = 0.2625; all input 0.15; all output 0.60
    assert mix.api_usd_per_m == pytest.approx(0.2625, rel=1e-12)
    assert (inp.api_usd_per_m, out.api_usd_per_m) == (0.15, 0.60)
    # monthly at 50M tokens/day: 1,500M tokens × price → $393.75, $225, $900
    assert mix.api_monthly_usd == pytest.approx(393.75, rel=1e-12)
    assert inp.api_monthly_usd == pytest.approx(225.0, rel=1e-12)
    assert out.api_monthly_usd == pytest.approx(900.0, rel=1e-12)
    assert s.api_list_price_range_monthly_usd == pytest.approx((225.0, 900.0), rel=1e-12)
    assert s.api_list_price_monthly_usd == pytest.approx(393.75, rel=1e-12)
    # every list price is below self-hosting's $1.20/M of GPU time alone: the lines never cross
    for c in (mix, inp, out):
        assert c.break_even_tokens_per_day is None and c.break_even_annual_api_usd is None
        assert c.never_reason is not None and "$1.20/M" in c.never_reason
        assert c.selfhost_monthly_usd == pytest.approx(5_175.0, rel=1e-12)
    # $500K/year reached at 500,000 / (360 × p/1e6): 5.291B, 9.259B, 2.315B tokens/day
    assert mix.threshold_tokens_per_day == pytest.approx(500_000 / (360 * 0.2625e-6), rel=1e-9)
    assert inp.threshold_tokens_per_day == pytest.approx(9_259_259_259.26, rel=1e-9)
    assert out.threshold_tokens_per_day == pytest.approx(2_314_814_814.81, rel=1e-9)
    # API price at which self-hosting breaks even at 50M tokens/day: 5,175 / 1,500 = $3.45/M
    assert s.break_even_api_usd_per_m == pytest.approx(3.45, rel=1e-12)


def test_reconciliation_sentence_default():
    s = article_scenario()
    r = s.reconciliation
    for needle in (
        "≈375M tokens/day", "≈$202,500/year of API spend", "$500,000/year rule", "≈925.9M tokens/day",
        "≈2.47× more conservative than its worked example",  # 500,000 / 202,500 = 2.469
        "$0.15–$0.60/M for any input:output mix", "never pays on cost", "at 50M tokens/day",
        "$225.00–$900.00/month", "more than $3.45/M", "(the article's $1.50/M does not)",
        "compliance (HIPAA, SOC 2), latency or behaviour prompting cannot reach",
    ):
        assert needle in r, (needle, r)
    assert r.count(".") >= 1 and r.endswith(".")
    text = "\n".join(format_scenario(s))
    assert "Reconciliation: " + r in text
    assert text.count("never: the API is cheaper at every volume") == 3
    assert "$225.00" in text and "$900.00" in text and "≈$202,500/year" in text and "≈925.9M tokens/day" in text
    assert to_jsonable(s)["reconciliation"] == r


def test_reconciliation_changes_with_volume():
    base = article_scenario().reconciliation
    s = article_scenario(500e6)
    r = s.reconciliation
    assert r != base
    # break-even and threshold volumes do not depend on the volume; the action clause does:
    # self-host 3,375 + 500 × 30 × 1.20 = $21,375; list 15,000M tokens × 0.15 / 0.60 = $2,250 / $9,000;
    # break-even price 21,375 / 15,000 = $1.425/M < the article's $1.50/M
    assert s.price_cases[0].break_even_tokens_per_day == pytest.approx(375e6, rel=1e-9)
    assert s.break_even_api_usd_per_m == pytest.approx(1.425, rel=1e-12)
    for needle in ("at 500M tokens/day", "$21,375/month", "$2,250.00–$9,000.00/month", "more than $1.425/M",
                   "(the article's $1.50/M does)"):
        assert needle in r, (needle, r)
    # the article-price line now favours self-hosting: 500M × 30 × 1.5e-6 = $22,500 > $21,375
    assert s.price_cases[0].api_monthly_usd == pytest.approx(22_500.0, rel=1e-12)
    assert s.price_cases[0].selfhost_monthly_usd == pytest.approx(21_375.0, rel=1e-12)


def test_reconciliation_changes_with_inputs():
    # double the engineering overhead: fixed 45 h × $150 = $6,750 → break-even 6,750 / 9e-6 = 750M tokens/day,
    # API spend there 750M × 360 × 1.5e-6 = $405,000/year; 500,000 / 405,000 = 1.235×
    s = article_scenario(article=dataclasses.replace(ARTICLE, ops_hours_per_month=45.0))
    art = s.price_cases[0]
    assert art.break_even_tokens_per_day == pytest.approx(750e6, rel=1e-9)
    assert art.break_even_annual_api_usd == pytest.approx(405_000.0, rel=1e-9)
    r = s.reconciliation
    assert "≈750M tokens/day" in r and "≈$405,000/year" in r and "≈1.23× more conservative" in r
    assert "$6,750.00/month + $1.20/M" in r
    # a threshold below the scenario's break-even makes the rule *less* conservative: 202,500 / 100,000 = 2.025
    s = article_scenario(article=dataclasses.replace(ARTICLE, threshold_usd_per_year=100_000.0))
    assert "less conservative than its worked example" in s.reconciliation
    assert "$100,000/year rule" in s.reconciliation


def test_list_price_above_selfhost_crosses_for_some_mixes():
    # output at $3/M: all output 3.0 > 1.20 → break-even 3,375 / ((3.0 - 1.2)e-6 × 30) = 62.5M tokens/day,
    # API spend there 62.5M × 360 × 3e-6 = $67,500/year; 3:1 mix 0.75 × 0.15 + 0.25 × 3 = 0.8625 < 1.20 → never
    a = dataclasses.replace(ARTICLE, list_output_usd_per_m=3.0)
    s = article_scenario(article=a)
    out, mix, inp = _case(s, "all output"), _case(s, "3:1"), _case(s, "all input")
    assert out.break_even_tokens_per_day == pytest.approx(62.5e6, rel=1e-9)
    assert out.break_even_annual_api_usd == pytest.approx(67_500.0, rel=1e-9)
    assert mix.api_usd_per_m == pytest.approx(0.8625, rel=1e-12)
    assert mix.break_even_tokens_per_day is None and inp.break_even_tokens_per_day is None
    r = s.reconciliation
    assert "only for the all output mix, above ≈62.5M tokens/day (≈$67,500/year of API spend)" in r
    assert "never for 3:1 input:output, all input" in r
    # at 50M: self-host $5,175 vs list $225–$4,500 → keep the API
    assert "keep the API" in r and "$225.00–$4,500.00/month" in r
    # at 100M: self-host 3,375 + 3,000 × 1.2 = $6,975; list 3,000M × 0.15 / 3.0 = $450 / $9,000 → some mixes
    r100 = article_scenario(100e6, article=a).reconciliation
    assert "beats the API at list prices only for some mixes" in r100 and "$6,975.00/month" in r100


def test_cli_scenario_prints_both_prices_and_reconciliation():
    res = CliRunner().invoke(app, ["cost", "--scenario", "article"])
    assert res.exit_code == 0, res.output
    assert "Reconciliation: On the article's own numbers" in res.output
    assert "≈$202,500/year of API spend" in res.output and "never: the API is cheaper at every volume" in res.output
    res = CliRunner().invoke(app, ["cost", "--scenario", "article", "--volume", "5e8"])
    assert res.exit_code == 0, res.output
    assert "at 500M tokens/day" in res.output and "$1.425/M" in res.output
