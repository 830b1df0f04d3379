"""Options served by a hosted API (arm C with an `api:` spec) in the cost model and the report: costed at the usage
measured in the run × their own prices — not self-hosted — beside the self-hosted options and LoRA.

Fast: no model, no network. Every expected figure is worked out in the comments from the usage and the prices, not
read off the code's output. GPT-4o-mini's prices in the bundled genai-prices table: $0.15 input / $0.075 cached
input / $0.60 output per million tokens (checked below, so a table update fails here first, loudly).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evaluator.costs.api import ApiPrices
from evaluator.costs.compute import compute_costs
from evaluator.costs.from_run import measurement, run_costs
from evaluator.costs.inputs import ApiUsage, ArmMeasurement, CostInputError, CostInputs
from evaluator.costs.pricing import api_prices
from evaluator.costs.text import format_cost_report
from evaluator.report.build import figures_for, write_reports
from evaluator.report.html import render_html
from evaluator.report.markdown import render_markdown
from evaluator.report.summary import summary_lines
from evaluator.store.run_store import RunStore
from tests.fake_runs import item_ids, make_run

REL = 1e-9
MINI = api_prices("gpt-4o-mini", "openai")

# Self-hosted zero-shot arm as in tests/test_costs.py: 500 requests in 2.5 s = 200 req/s at $3.60/GPU-h, 50%
# utilisation → $/req = 3.6 / (200 × 3600 × 0.5) = $0.00001; fixed = ops 22.5 h × $150 = $3,375/month.
INPUTS = CostInputs(gpu_hourly_usd=3.6, requests_per_day=10_000.0)
A0 = ArmMeasurement("A k=0", "A", 500, 2.5, "cpu", prompt_tokens_per_request=95, shared_prefix_tokens=0,
                    output_tokens_per_request=5, api_prompt_tokens_per_request=90, api_shared_prefix_tokens=0,
                    api_output_tokens_per_request=10)


def api_arm(name: str, inp: float, cached: float, out: float, prices: ApiPrices | None,
            why: str = "") -> ArmMeasurement:
    usage = ApiUsage(f"{name} model", inp, cached, out, prices, why, items=40, latency_p50_s=0.12,
                     latency_p95_s=0.30)
    return ArmMeasurement(name, "C", 40, 3.0, "API http://x/v1 (m), 4 concurrent requests", inp, 0.0, out,
                          api_prompt_tokens_per_request=inp, api_output_tokens_per_request=out, api_usage=usage)


def test_the_bundled_table_prices_gpt_4o_mini_as_the_tests_assume():
    assert (MINI.input_usd_per_m, MINI.cached_input_usd_per_m, MINI.output_usd_per_m) == (0.15, 0.075, 0.60)


def test_api_option_is_priced_from_its_measured_usage_with_cached_tokens_as_billed():
    # 1,300 input tokens per request, of which the API billed 1,024 as cached, + 5 output:
    # $/req = ((1,300 - 1,024) × 0.15 + 1,024 × 0.075 + 5 × 0.60) / 1e6 = (41.4 + 76.8 + 3.0) / 1e6 = $0.0001212
    # monthly = 0.0001212 × 10,000 req/day × 30 d = $36.36
    per = ((1300 - 1024) * 0.15 + 1024 * 0.075 + 5 * 0.60) / 1e6
    rep = compute_costs([A0, api_arm("C api", 1300, 1024, 5, MINI)], INPUTS, MINI)
    c = rep.arms[1]
    assert c.served_by == "API" and rep.arms[0].served_by == "self-host"
    assert c.usage.usd_per_request == pytest.approx(per, rel=REL) == pytest.approx(1.212e-4, rel=REL)
    assert c.usage.usd_per_1k_requests == pytest.approx(1000 * per, rel=REL)
    assert c.monthly_usd == c.monthly_usage == pytest.approx(per * 10_000 * 30, rel=REL) == pytest.approx(36.36)
    # the cache discount is the one billed (1,024 tokens), not the 1,024 + 128·k rule's 1,280 of a 1,300 prefix
    rule = ((1300 - 1280) * 0.15 + 1280 * 0.075 + 5 * 0.60) / 1e6
    assert c.usage.usd_per_request != pytest.approx(rule, rel=1e-6)
    # no self-host cost and no "same prompts" line for an API
    assert c.selfhost is None and c.throughput is None and c.monthly_selfhost_cached is None
    assert c.api is None and c.monthly_api is None and c.selfhost_line is None
    assert rep.arms[0].monthly_usd == rep.arms[0].monthly_selfhost_cached
    assert any("$0.0001212" in h and "1,024" in h for h in c.how), c.how
    assert any("$36.36" in h for h in c.how), c.how
    # its line: no fixed cost, its $/request
    assert c.usage_line.fixed_usd_per_month == 0.0 and c.usage_line.usd_per_request == pytest.approx(per, rel=REL)
    assert c.usage_line in rep.lines()


def test_cached_tokens_pay_the_input_price_without_a_cached_price():
    # ((100 - 40) × $1 + 40 × $1 + 10 × $2) / 1e6 = (60 + 40 + 20) / 1e6 = $0.00012
    rep = compute_costs([api_arm("C api", 100, 40, 10, ApiPrices("m", "p", 1.0, 2.0))], INPUTS)
    assert rep.arms[0].usage.usd_per_request == pytest.approx(1.2e-4, rel=REL)


def test_api_usage_refuses_more_cached_than_input_tokens():
    with pytest.raises(CostInputError, match="cached input tokens"):
        ApiUsage("m", 10, 20, 1)


def test_break_even_self_host_vs_api_option_is_where_the_monthly_lines_cross():
    # API option: 500 input + 50 output → (500 × 0.15 + 50 × 0.60) / 1e6 = $0.000105/req, no fixed cost.
    # A0 self-hosted: $3,375/month + $0.00001/req. Equal when 3,375 + 0.00001·r·30 = 0.000105·r·30:
    # r = 3,375 / ((0.000105 - 0.00001) × 30) = 3,375 / 0.00285 = 1,184,210.526 req/day; the API is cheaper below.
    api_per = (500 * 0.15 + 50 * 0.60) / 1e6
    rep = compute_costs([A0, api_arm("C api", 500, 0, 50, MINI)], INPUTS, MINI)
    be = [b for b in rep.break_evens if "measured usage" in b.b]
    assert len(be) == 1 and be[0].a == "A k=0 [self-host]"
    r = 3375 / ((api_per - 1e-5) * 30)
    assert r == pytest.approx(1_184_210.526316, rel=1e-9)
    assert be[0].requests_per_day == pytest.approx(r, rel=1e-9)
    sh, api = rep.arms[0].selfhost_line, rep.arms[1].usage_line
    assert sh.monthly(r, 30) == pytest.approx(api.monthly(r, 30), rel=1e-9)  # the two lines meet there
    assert be[0].cheaper_below.startswith("C api") and be[0].cheaper_above.startswith("A k=0")
    # the existing pairs stay: A0 vs its own "same prompts" API line
    assert any(b.a == "A k=0 [self-host]" and b.b == "A k=0 [API]" for b in rep.break_evens)
    assert len(rep.break_evens) == 2  # no pair of self-hosted options; A0 vs its API line; A0 vs the API option


def test_the_threshold_reads_the_cheapest_measured_api_option_and_says_so():
    rep = compute_costs([A0, api_arm("C dear", 500, 0, 50, MINI), api_arm("C cheap", 100, 0, 5, MINI)], INPUTS, MINI)
    # cheapest measured: (100 × 0.15 + 5 × 0.60) / 1e6 = $0.000018/req → × 10,000 × 30 = $5.40/month, $64.80/year
    t = rep.threshold
    assert t.line == "C cheap [API, measured usage]"
    assert t.sentence.startswith("On the cheapest measured API option, C cheap [API, measured usage]: annual")
    assert t.monthly_api_usd == pytest.approx(5.4, rel=REL) and t.annual_api_usd == pytest.approx(64.8, rel=REL)
    # without an API option it reads the cheapest "same prompts" line, and says that too
    t0 = compute_costs([A0], INPUTS, MINI).threshold
    assert t0.line == "A k=0 [API]" and "same prompts" in t0.sentence


def test_unpriced_api_option_says_not_priced_and_how_to_price_it():
    rep = compute_costs([A0, api_arm("C local", 60, 0, 2, None, "no model of the price table")], INPUTS, MINI)
    c = rep.arms[1]
    assert c.usage.usd_per_request is None and c.monthly_usd is None and c.usage_line is None
    assert "api.price_as" in c.usage.note and "api.input_usd_per_m and api.output_usd_per_m" in c.usage.note
    assert all("measured usage" not in b.b for b in rep.break_evens)  # no line to cross
    assert rep.threshold.line == "A k=0 [API]"  # the unpriced option is never read as $0
    text = "\n".join(format_cost_report(rep))
    assert "not priced" in text and "api.price_as" in text
    assert any("Not priced" in a for a in rep.assumptions)


# -- a stored run with A, B, a local newer base and API options ----------------------------------------------------

N = 200


@pytest.fixture(scope="module")
def api_run(tmp_path_factory) -> Path:
    return make_run(tmp_path_factory.mktemp("runs"), "api-run", item_ids(N), [
        {"arm": "A", "model": "old-base", "shots": 0, "q": 0.35},
        {"arm": "A", "model": "old-base", "shots": 8, "q": 0.40},
        {"arm": "B", "model": "old-base", "shots": 0, "train_size": 64, "q": 0.92},
        {"arm": "C", "model": "mid-base", "shots": 8, "q": 0.45},
        {"arm": "C", "model": "api:openai/gpt-4o-mini", "shots": 0, "q": 0.60,
         "api": {"usage": {"input_tokens_per_item": 80.0, "cached_input_tokens_per_item": 30.0,
                           "output_tokens_per_item": 3.0}}},
        {"arm": "C", "model": "api:http://127.0.0.1:8000/v1#local-model", "shots": 0, "q": 0.50},
    ], base="old-base", newer=["mid-base", "api:openai/gpt-4o-mini", "api:http://127.0.0.1:8000/v1#local-model"])


@pytest.fixture(scope="module")
def api_report(api_run) -> dict:
    write_reports(RunStore.open(api_run))
    return json.loads((api_run / "report.json").read_text(encoding="utf-8"))


# gpt-4o-mini option: ((80 - 30) × 0.15 + 30 × 0.075 + 3 × 0.60) / 1e6 = (7.5 + 2.25 + 1.8) / 1e6 = $0.00001155/req
MINI_PER_REQ = ((80 - 30) * 0.15 + 30 * 0.075 + 3 * 0.60) / 1e6
API_LABEL = "C api-gpt-4o-mini k=0"
LOCAL_LABEL = "C api-local-model k=0"


def test_fake_api_unit_reads_as_an_api_option(api_run):
    store = RunStore.open(api_run)
    u = next(x for x in store.units() if x["model"] == "api:openai/gpt-4o-mini")
    assert u["engine"] == "api" and u["measured_with"]["device_type"] == "api"
    assert u["api"]["price"] == {"model": "gpt-4o-mini", "provider": "openai", "how": "price table",
                                 "input_usd_per_m": None, "cached_input_usd_per_m": None, "output_usd_per_m": None}
    m = measurement(store, u, "gpt-4o-mini", "openai")
    assert m.served_by == "API" and m.name == API_LABEL
    assert (m.api_usage.input_tokens_per_request, m.api_usage.cached_input_tokens_per_request,
            m.api_usage.output_tokens_per_request) == (80.0, 30.0, 3.0)
    assert m.api_usage.prices.model == "gpt-4o-mini" and m.api_usage.prices.input_usd_per_m == 0.15
    assert (m.api_usage.latency_p50_s, m.api_usage.latency_p95_s) == (0.12, 0.30)
    assert m.device == "API https://api.openai.com/v1 (gpt-4o-mini), 4 concurrent requests"
    local = measurement(store, next(x for x in store.units() if x["model_slug"] == "api-local-model"), "gpt-4o-mini",
                        "openai")
    assert local.api_usage.prices is None and "price table" in local.api_usage.unpriced_reason


def test_api_unit_prices_from_the_job_or_on_top_of_the_table(tmp_path):
    run = make_run(tmp_path, "priced", item_ids(20), [
        {"arm": "A", "model": "old-base", "shots": 0, "q": 0.4},
        # an endpoint the table does not know, priced by the job's own prices
        {"arm": "C", "model": "api:http://127.0.0.1:8000/v1#local-model", "shots": 0, "q": 0.5,
         "api": {"price": {"how": "job api prices", "input_usd_per_m": 1.0, "output_usd_per_m": 4.0}}},
        # a table model with a negotiated input price on top: cached and output stay the table's
        {"arm": "C", "model": "api:openai/gpt-4o-mini", "shots": 0, "q": 0.6,
         "api": {"price": {"input_usd_per_m": 0.10}}},
    ])
    store = RunStore.open(run)
    ms = {m.name: m for m in (measurement(store, u, "gpt-4o-mini", "openai") for u in store.units())}
    p = ms[LOCAL_LABEL].api_usage.prices
    assert (p.input_usd_per_m, p.cached_input_usd_per_m, p.output_usd_per_m) == (1.0, None, 4.0)
    assert "job's API prices" in p.source
    q = ms[API_LABEL].api_usage.prices
    assert (q.input_usd_per_m, q.cached_input_usd_per_m, q.output_usd_per_m) == (0.10, 0.075, 0.60)
    # local: 60 input + 2 output per item (the fake's defaults) → (60 × 1 + 2 × 4) / 1e6 = $0.000068/req
    rep = run_costs(store)["toy_intents"]
    local = next(a for a in rep.arms if a.name == LOCAL_LABEL)
    assert local.usage.usd_per_request == pytest.approx(68e-6, rel=REL)


def test_report_json_costs_the_api_option_at_its_measured_usage(api_report):
    c = api_report["tasks"]["toy_intents"]["costs"]
    rpd, d = c["requests_per_day"], c["inputs"]["days_per_month"]
    arms = {a["name"]: a for a in c["arms"]}
    a = arms[API_LABEL]
    assert a["served_by"] == "API" and a["priced"] is True
    assert a["monthly_usd"] == pytest.approx(MINI_PER_REQ * rpd * d, rel=REL)
    assert a["api_usage"]["usd_per_request"] == pytest.approx(MINI_PER_REQ, rel=REL)
    assert a["monthly_selfhost_cached"] is None and a["monthly_api"] is None and a["requests_per_second"] is None
    for name in ("A k=8", "B n=64", "C mid-base k=8"):  # the self-hosted options: their one figure is self-hosted
        assert arms[name]["served_by"] == "self-host"
        assert arms[name]["monthly_usd"] == arms[name]["monthly_selfhost_cached"] is not None
    un = arms[LOCAL_LABEL]
    assert un["monthly_usd"] is None and un["priced"] is False and "api.price_as" in un["note"]
    # quality vs cost: the API option at its API monthly cost, the unpriced one without a cost
    qvc = {q["label"]: q for q in c["quality_vs_cost"]}
    assert qvc[API_LABEL]["monthly_usd"] == pytest.approx(MINI_PER_REQ * rpd * d, rel=REL)
    assert qvc[API_LABEL]["served_by"] == "API" and qvc[LOCAL_LABEL]["monthly_usd"] is None
    # cheapest and better than every self-hosted prompting option: on the frontier
    assert qvc[API_LABEL]["pareto"] is True
    # the verdict's cost case reads the same figure
    cc = api_report["tasks"]["toy_intents"]["verdict"]["cost_case"]
    assert API_LABEL in cc["statement"]  # LoRA's rival is the API option ...
    assert cc["best_prompting_monthly_usd"] == pytest.approx(MINI_PER_REQ * rpd * d, rel=REL)  # ... at its API cost
    assert c["threshold"]["line"] == f"{API_LABEL} [API, measured usage]"
    assert any(x["kind"] == "API, measured usage" and x["name"] == API_LABEL for x in c["lines"])


def test_report_json_validates_against_the_schema(api_report):
    jsonschema = pytest.importorskip("jsonschema")
    from tests.test_report_schema import schema

    v = jsonschema.Draft202012Validator(schema())
    assert [f"{list(e.absolute_path)}: {e.message}" for e in v.iter_errors(api_report)] == []


def test_report_md_shows_the_api_option_beside_self_hosting_and_its_api_table(api_run, api_report):
    md = (api_run / "report.md").read_text(encoding="utf-8")
    assert md == render_markdown(api_report)
    rpd = api_report["tasks"]["toy_intents"]["costs"]["requests_per_day"]
    monthly = f"${MINI_PER_REQ * rpd * 30:,.0f}"
    row = next(line for line in md.splitlines() if line.startswith(f"| {API_LABEL} | API (measured usage)"))
    assert f"**{monthly}**" in row and "p50 0.12 s / p95 0.3 s" in row
    assert row.count("| — |") >= 1  # self-host cells do not apply
    assert any(line.startswith("| B n=64 | self-host (estimate)") for line in md.splitlines())
    unpriced = next(line for line in md.splitlines() if line.startswith(f"| {LOCAL_LABEL} | API (measured usage)"))
    assert "**not priced**" in unpriced
    assert "**Not priced:**" in md and "api.price_as" in md
    # the API options table
    assert "### API options" in md
    api_row = next(line for line in md.splitlines() if line.startswith(f"| {API_LABEL} | gpt-4o-mini at "))
    for cell in ("https://api.openai.com/v1 (chat)", "generate_match", f"| {N} |", "80.0 / 30.0 / 3.0",
                 "0.12 s / 0.3 s", "429 ×1, 500 ×1"):
        assert cell in api_row, cell
    # the quality-vs-cost table
    qrow = next(line for line in md.splitlines() if line.startswith(f"| {API_LABEL} | API (measured usage) | 0.600"))
    assert monthly in qrow and "◆" in qrow


def test_report_html_shows_the_same(api_run):
    html = (api_run / "report.html").read_text(encoding="utf-8")
    for needle in ("API options", "API (measured usage)", "self-host (estimate)", "not priced", "api.price_as",
                   "80.0 / 30.0 / 3.0", "0.12 s / 0.3 s", "429 ×1, 500 ×1", "Quality vs monthly cost",
                   API_LABEL, LOCAL_LABEL):
        assert needle in html, needle
    assert "http://" not in html.split("<main>", 1)[0]  # still self-contained (CSP head untouched)


def test_figures_summary_compare_and_cost_text_take_api_options(api_run, api_report):
    figs = figures_for(api_report)
    assert figs["toy_intents/quality_vs_cost"].startswith(b"\x89PNG")
    assert figs["toy_intents/cost_vs_volume"].startswith(b"\x89PNG")
    section = api_report["tasks"]["toy_intents"]
    lines = summary_lines(api_report, api_run)
    assert section["selection"]["chosen"]["C"] == API_LABEL
    assert any(API_LABEL in line and "API, measured usage: $" in line for line in lines), lines
    # every newer base's own operating point is listed, not only the best one: the local newer base and the
    # unpriced endpoint too, each on the same test items
    for label in ("C mid-base k=8", LOCAL_LABEL):
        (line,) = [x for x in lines if label in x]
        assert f"on {section['selection']['test_items']} test items" in line
    assert "API, measured usage: not priced" in next(x for x in lines if LOCAL_LABEL in x)
    from evaluator.report.compare import _monthly_costs

    costs = _monthly_costs(RunStore.open(api_run))["toy_intents"]
    assert costs[API_LABEL] == pytest.approx(MINI_PER_REQ * section["costs"]["requests_per_day"] * 30, rel=REL)
    assert LOCAL_LABEL not in costs  # unpriced: no figure, never $0
    text = "\n".join(format_cost_report(run_costs(RunStore.open(api_run))["toy_intents"]))
    row = next(line for line in text.splitlines() if line.startswith(LOCAL_LABEL))
    assert "API" in row and "—" in row and row.rstrip().endswith("not priced")


def test_a_minimal_report_with_an_api_option_renders():
    minimal = {"run_id": "r", "job": {}, "complete": True, "tasks": {"t": {
        "units": [], "verdict": {"outcome": "inconclusive", "reason": "r"},
        "api_options": [{"option": "C api-x k=0"}],
        "costs": {"arms": [{"name": "C api-x k=0", "served_by": "API", "monthly_usd": None, "note": "n"}]}}}}
    assert "not priced" in render_html(minimal, {})


def _needs_chromium(fn):
    from tests.test_html import needs_chromium

    return needs_chromium(fn)


@_needs_chromium
@pytest.mark.parametrize("width", [1280, 390], ids=["1280px", "390px"])
def test_report_html_with_api_options_fits_the_screen(api_run, tmp_path, width):
    """The wider cost table and the API options table fit 1280 px and stack at 390 px like every other table."""
    from tests.test_html import layout_at

    m = layout_at((api_run / "report.html").read_text(encoding="utf-8"), width, tmp_path)
    assert m["scrollWidth"] <= m["innerWidth"], m
    assert m["tablesOverflowing"] == 0 and m["cellsOffScreen"] == 0 and m["unlabelled"] == [], m


def test_a_stated_throughput_for_an_api_option_is_refused(tmp_path):
    from evaluator.errors import UserError

    rd = make_run(tmp_path, "r", item_ids(40), [
        {"arm": "A", "model": "old-base", "shots": 0, "q": 0.5},
        {"arm": "C", "model": "api:openai/gpt-4o-mini", "shots": 0, "q": 0.7},
    ], newer=["api:openai/gpt-4o-mini"])
    with pytest.raises(UserError, match="served by an API"):
        run_costs(RunStore.open(rd), throughput={"C api-gpt-4o-mini k=0": 10.0}, must_use={"C api-gpt-4o-mini k=0"})
