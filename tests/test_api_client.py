"""The API client's pieces that need no server: Retry-After parsing, the cache key, the response cache, a wait
above the limit, and API references."""

from __future__ import annotations

import email.utils
import time

import pytest

from evaluator.api.client import ApiClient, ApiUnavailable, ResponseCache, request_key, retry_after_seconds
from evaluator.api.spec import ApiSpecError, parse_api_spec
from evaluator.errors import UserError


def test_retry_after_in_ms_seconds_or_a_date():
    assert retry_after_seconds({"retry-after-ms": "1500"}) == 1.5
    assert retry_after_seconds({"retry-after": "2"}) == 2.0
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 27 <= retry_after_seconds({"retry-after": when}) <= 30
    assert retry_after_seconds({"retry-after": "soon"}) is None and retry_after_seconds({}) is None


def test_the_cache_key_is_the_endpoint_and_the_whole_request():
    body = {"model": "m", "prompt": "p", "max_tokens": 5, "temperature": 0}
    k = request_key("http://a/v1", "/completions", body)
    assert k == request_key("http://a/v1", "/completions", dict(reversed(body.items())))  # key order does not matter
    assert k != request_key("http://b/v1", "/completions", body)
    assert k != request_key("http://a/v1", "/chat/completions", body)
    assert k != request_key("http://a/v1", "/completions", body | {"max_tokens": 6})
    assert k != request_key("http://a/v1", "/completions", body | {"model": "n"})


def test_a_torn_cache_file_is_asked_again(tmp_path):
    cache = ResponseCache(tmp_path)
    cache.put("ab" * 32, {"path": "/completions"}, {"choices": []}, 0.25)
    assert cache.get("ab" * 32)["latency_s"] == 0.25
    (tmp_path / "ab" / f"{'ab' * 32}.json").write_text('{"response": {"cho')
    assert cache.get("ab" * 32) is None and cache.get("cd" * 32) is None


def test_a_retry_after_above_the_limit_stops_with_one_line():
    import httpx2
    import openai

    client = ApiClient(parse_api_spec("api:http://127.0.0.1:9/v1#m"), max_wait_s=30)
    resp = httpx2.Response(429, headers={"retry-after": "3600"}, request=httpx2.Request("POST", "http://127.0.0.1:9/v1"))
    with pytest.raises(ApiUnavailable, match="asks to wait 3600 s .* above api.max_wait_s = 30 s"):
        client._transient(openai.RateLimitError("slow down", response=resp, body=None), 0)
    bad = httpx2.Response(400, request=httpx2.Request("POST", "http://127.0.0.1:9/v1"))
    with pytest.raises(UserError, match="rejected the request .HTTP 400"):
        client._transient(openai.BadRequestError("context too long", response=bad, body=None), 0)


def test_api_references():
    m = parse_api_spec("api:openai/gpt-4o-mini")
    assert (m.base_url, m.model, m.provider, m.key_env, m.default_endpoint) == (
        "https://api.openai.com/v1", "gpt-4o-mini", "openai", "OPENAI_API_KEY", "chat")
    u = parse_api_spec("api:http://127.0.0.1:8000/v1/#Qwen/Qwen2.5-0.5B")
    assert (u.base_url, u.model, u.provider, u.default_endpoint, u.is_loopback) == (
        "http://127.0.0.1:8000/v1", "Qwen/Qwen2.5-0.5B", None, "completions", True)
    assert u.slug == "api-Qwen--Qwen2.5-0.5B-127.0.0.1-8000" and m.slug == "api-gpt-4o-mini"
    assert parse_api_spec("api:http://h:9/v1#/root/models/smollm2-135m").slug == "api-smollm2-135m-h-9"
    for bad in ("api:", "api:openai", "api:ftp://h/v1#m", "api:http://h/v1?x=1#m", "gpt-4o-mini"):
        with pytest.raises(ApiSpecError):
            parse_api_spec(bad)


class _Canned:
    """Stands in for ApiClient.post with one recorded chat answer (parsing only; the HTTP path is tested against
    real servers in test_api_models.py)."""

    def __init__(self, data: dict) -> None:
        self.data, self.bodies = data, []

    def post(self, path: str, body: dict):
        from evaluator.api.client import Answer

        self.bodies.append((path, body))
        return Answer(self.data, 0.01, 0, (), False)


def test_chat_top_logprobs_score_single_token_labels(tmp_path):
    import json as _json

    import yaml

    from evaluator.api.tokens import TiktokenTokenizer
    from evaluator.arms.api import ApiOption, ask_item
    from evaluator.prompts.tokenized import TokenizedPrompts
    from evaluator.tasks.layout import PromptBuilder
    from evaluator.tasks.load import load_task

    (tmp_path / "d.jsonl").write_text("".join(_json.dumps({"id": f"t{i}", "text": "is it?", "label": "no"}) + "\n"
                                              for i in range(2)))
    (tmp_path / "yn.yaml").write_text(yaml.safe_dump({
        "name": "yn", "data": {"path": "json", "data_files": {"train": "d.jsonl", "test": "d.jsonl"}},
        "train_split": "train", "test_split": "test", "id_field": "id", "input_field": "text", "target_field": "label",
        "kind": "choice", "choices": ["yes", "no", "maybe"], "prompt": "intent.j2"}))
    task = load_task(str(tmp_path / "yn.yaml"))
    items = task.test
    data = {"model": "gpt-4o-mini", "usage": {"prompt_tokens": 12, "completion_tokens": 1,
                                              "prompt_tokens_details": {"cached_tokens": 0}},
            "choices": [{"message": {"content": "No"}, "logprobs": {"content": [{"token": "No", "logprob": -0.2,
                        "top_logprobs": [{"token": "No", "logprob": -0.2}, {"token": " yes", "logprob": -1.9},
                                         {"token": "no", "logprob": -0.4}]}]}}]}
    canned = _Canned(data)
    opt = ApiOption(parse_api_spec("api:openai/gpt-4o-mini"), canned, "chat", "auto", 1, 128000, "table",
                    {"how": "price table"}, "OPENAI_API_KEY")
    tp = TokenizedPrompts(PromptBuilder(task, 0), TiktokenTokenizer("gpt-4o-mini", "openai"))
    row = ask_item(opt, task, tp, items[0], 0, "top_logprobs")
    # "no" takes the best of its spellings (-0.4; "No" differs in case and is another token), "yes" -1.9,
    # "maybe" is not among the top tokens: no score, never the prediction
    assert row["loglik"] == [-1.9, -0.4, None] and row["prediction"] == "no" and row["score"] == 1.0
    assert row["method"] == "top_logprobs" and row["prompt_tokens"] == 12 and row["output_tokens"] == 1
    path, body = canned.bodies[0]
    assert path == "/chat/completions" and body["top_logprobs"] == 20 and body["max_completion_tokens"] == 1
