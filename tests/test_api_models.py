"""API models as an option of the run, against real OpenAI-compatible servers on 127.0.0.1 (no mock).

`transformers serve` serves a fixture model; a job whose arm C is that endpoint must give, item for item, the answers
our own engine gives for the same model on the generate path, with the usage tokens the server reports; a fault
proxy in front of it (429 + Retry-After, a 500, a dropped connection) must not make the run ask anything twice;
the API key given in the environment must appear in no file the run writes.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from evaluator.cli.app import app
from tests.api_servers import FaultProxy, TransformersServe, free_port, serve_unavailable
from tests.tiny_models import build_tiny_model

KEY = "sk-test-LEAKCHECK-4f1d2c3b5a6e7d8c9b0a"  # a fake key: the run must never write it anywhere

@pytest.fixture(scope="module")
def varied_llama(tmp_path_factory, tiny_tokenizer_dir) -> Path:
    """A tiny random Llama whose greedy answers differ from prompt to prompt (so agreement means something)."""
    return build_tiny_model(tmp_path_factory.mktemp("varied"), "llama", tiny_tokenizer_dir, seed=3, initializer_range=0.2)


def _cannot_serve(why: str) -> None:
    """Skip with the reason — except in CI (.ci/run sets TUNECHECK_REQUIRE_SERVE), where it installs what it needs."""
    if os.environ.get("TUNECHECK_REQUIRE_SERVE"):
        pytest.fail(f"TUNECHECK_REQUIRE_SERVE is set but {why}")
    pytest.skip(why)


@pytest.fixture(scope="module")
def served(varied_llama, tmp_path_factory):
    why = serve_unavailable()
    if why:
        _cannot_serve(why)
    try:
        srv = TransformersServe(varied_llama, tmp_path_factory.mktemp("serve") / "serve.log")
    except RuntimeError as exc:
        _cannot_serve(f"transformers serve could not be started: {exc}")
    yield srv
    srv.close()


def write_job(tmp: Path, base: Path, newer: list[str], *, kind: str = "generate", **over) -> Path:
    tasks = ["snips_intents_generate" if kind == "generate" else "snips_intents"]  # the same items, two kinds
    job = {
        "name": "apijob", "tasks": tasks, "base": str(base), "newer": newer, "seed": 5, "limit": 10,
        "arms": {"prompting": {"shots": [0, 2]}, "lora": {"enabled": False}},
        "api": {"cache_dir": str(tmp / "api-cache"), "price_as": "openai/gpt-4o-mini", "concurrency": 2},
        "output_dir": str(tmp / "runs"), "adapters_dir": str(tmp / "adapters"),
    }
    for k, v in over.items():
        job[k] = job[k] | v if isinstance(v, dict) and isinstance(job.get(k), dict) else v
    path = tmp / "job.yaml"
    path.write_text(yaml.safe_dump(job))
    return path


def run(job: Path, *args: str, key: str | None = KEY, monkeypatch=None):
    if monkeypatch is not None:
        if key is None:
            monkeypatch.delenv("OPENAI_API_KEY", raising=False)
        else:
            monkeypatch.setenv("OPENAI_API_KEY", key)
    return CliRunner().invoke(app, ["run", str(job), *args])


def rows_of(run_dir: Path, unit: str) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "results" / f"{unit}.jsonl").read_text().splitlines()]


def units_of(run_dir: Path) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in (run_dir / "units").glob("*.json")}


def the_run(tmp: Path) -> Path:
    (d,) = list((tmp / "runs").iterdir())
    return d


# --- against transformers serve ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def api_run(served, varied_llama, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("apirun")
    spec = f"api:{served.base_url}#{served.model_dir}"
    job = write_job(tmp, varied_llama, [str(varied_llama), spec])
    mp = pytest.MonkeyPatch()
    try:
        res = run(job, monkeypatch=mp)
    finally:
        mp.undo()
    assert res.exit_code == 0, res.output
    return tmp, the_run(tmp), spec, res.output


def test_api_answers_equal_the_local_engine_item_by_item(api_run):
    tmp, rd, spec, _ = api_run
    units = units_of(rd)
    for k in (0, 2):
        (local,) = [u for u in units.values() if u["arm"] == "C" and u["engine"] != "api" and u["point"]["shots"] == k]
        (api,) = [u for u in units.values() if u["arm"] == "C" and u["engine"] == "api" and u["point"]["shots"] == k]
        assert api["model"] == spec and api["api"]["scoring_method"] == "generate"
        lr = {r["item_id"]: r for r in rows_of(rd, local["unit"])}
        ar = {r["item_id"]: r for r in rows_of(rd, api["unit"])}
        assert sorted(lr) == sorted(ar) and len(ar) == 10
        assert [ar[i]["prediction"] for i in lr] == [lr[i]["prediction"] for i in lr]  # the same answers
        assert len({r["prediction"] for r in ar.values()}) > 3  # and they differ from item to item
        # usage from the server's responses: the same prompt tokens our engine fed the model, tokens generated
        assert [ar[i]["prompt_tokens"] for i in lr] == [lr[i]["prompt_tokens"] for i in lr]
        # the server stops at the task's stop sequence (sent as `stop`); the local engine generates to EOS or
        # max_new_tokens and cuts afterwards — so the API never bills more output tokens than were generated here
        assert all(0 < ar[i]["output_tokens"] <= lr[i]["output_tokens"] for i in lr)
        use = api["api"]["usage"]
        assert use["input_tokens"] == sum(r["prompt_tokens"] for r in ar.values()) and use["missing"] == 0
        assert use["output_tokens"] == sum(r["output_tokens"] for r in ar.values()) > 0
        lat = api["api"]["latency_s"]
        assert lat["n"] == 10 and 0 < lat["p50"] <= lat["p95"] <= lat["max"]
        assert api["api"]["requests"] == 10 and api["api"]["retries"] == 0
        assert api["item_ids_hash"] == local["item_ids_hash"]  # paired with every other arm


def test_api_option_is_in_the_report_and_its_costs(api_run):
    tmp, rd, spec, _ = api_run
    report = (rd / "report.md").read_text()
    assert "api-" in report and "API options" in report
    data = json.loads((rd / "report.json").read_text())
    (task,) = data["tasks"].values() if isinstance(data["tasks"], dict) else data["tasks"]
    names = [a["name"] for a in task["costs"]["arms"]]
    assert any("api-" in n for n in names), names


def test_the_key_is_written_nowhere(api_run):
    tmp, rd, _, output = api_run
    assert KEY not in output
    written = [p for p in tmp.rglob("*") if p.is_file()]
    assert any(p.suffix == ".json" and "api-cache" in str(p) for p in written)  # the cache was written ...
    for p in written:  # ... and neither it nor the run dir (config, env, units, results, reports, logs) holds the key
        data = p.read_bytes()
        assert KEY.encode() not in data and KEY[8:].encode() not in data, p


def test_a_rerun_asks_nothing(api_run, monkeypatch):
    tmp, rd, _, _ = api_run
    res = run(tmp / "job.yaml", monkeypatch=monkeypatch)
    assert res.exit_code == 0, res.output
    assert "skip" in res.output and "done" not in res.output


def test_faults_are_retried_and_nothing_is_asked_twice(served, varied_llama, tmp_path, monkeypatch):
    proxy = FaultProxy(("127.0.0.1", served.port), {1: "429", 3: "500", 6: "drop"})
    try:
        spec = f"api:http://127.0.0.1:{proxy.port}/v1#{served.model_dir}"
        job = write_job(tmp_path, varied_llama, [spec], api={"max_retries": 4, "concurrency": 2})
        res = run(job, monkeypatch=monkeypatch)
        assert res.exit_code == 0, res.output
        rd = the_run(tmp_path)
        (k0,) = [u for u in units_of(rd).values() if u["engine"] == "api" and u["point"]["shots"] == 0]
        (k2,) = [u for u in units_of(rd).values() if u["engine"] == "api" and u["point"]["shots"] == 2]
        assert len(proxy.forwarded) == 20 and set(proxy.forwarded.values()) == {1}  # every request reached it once
        errors = {}
        for u in (k0, k2):
            for e, n in u["api"]["errors"].items():
                errors[e] = errors.get(e, 0) + n
        assert errors == {"429": 1, "500": 1, "connection": 1}
        assert k0["api"]["retries"] + k2["api"]["retries"] == 3
        rows = rows_of(rd, k0["unit"]) + rows_of(rd, k2["unit"])
        (throttled,) = [r for r in rows if "429" in r["errors"]]
        assert throttled["waited_s"] >= 1.0  # Retry-After: 1 honoured
        assert all(r["prediction"] is not None for r in rows) and len(rows) == 20
        assert all(h == f"Bearer {KEY}" for h in proxy.auth_headers)  # the key went to the endpoint, nowhere else

        # killed after the answers arrived but before they were stored: the cache answers, nothing is asked again
        for u in (k0, k2):
            (rd / "units" / f"{u['unit']}.json").unlink()
        (rd / "results" / f"{k2['unit']}.jsonl").write_text("")
        before = sum(proxy.forwarded.values())
        res = run(job, monkeypatch=monkeypatch)
        assert res.exit_code == 0, res.output
        assert sum(proxy.forwarded.values()) == before
        again = units_of(rd)[k2["unit"]]
        assert again["api"]["from_cache"] == 10 and again["value"] == k2["value"]
    finally:
        proxy.close()


def test_an_unknown_model_is_one_line_exit_2(served, varied_llama, tmp_path, monkeypatch):
    job = write_job(tmp_path, varied_llama, [f"api:{served.base_url}#no-such-model"])
    res = run(job, monkeypatch=monkeypatch)
    assert res.exit_code == 2
    assert "does not serve a model named 'no-such-model'" in res.output and "Traceback" not in res.output


# --- without a model server -------------------------------------------------------------------------------------


class _Refusing(BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        body = b'{"error": {"message": "Incorrect API key provided"}}'
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_GET


def test_a_refused_key_is_one_line_exit_2(tiny_llama_dir, tmp_path, monkeypatch):
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Refusing)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        job = write_job(tmp_path, tiny_llama_dir, [str(tiny_llama_dir), f"api:http://127.0.0.1:{srv.server_address[1]}/v1#m"])
        res = run(job, monkeypatch=monkeypatch)
        assert res.exit_code == 2, res.output
        assert "refused the API key" in res.output and "$OPENAI_API_KEY" in res.output and KEY not in res.output
        assert not list((the_run(tmp_path) / "units").glob("*.json"))  # stopped before any unit ran
    finally:
        srv.shutdown()
        srv.server_close()


def test_an_unreachable_endpoint_is_one_line_exit_2(tiny_llama_dir, tmp_path, monkeypatch):
    job = write_job(tmp_path, tiny_llama_dir, [f"api:http://127.0.0.1:{free_port()}/v1#m"])
    res = run(job, monkeypatch=monkeypatch)
    assert res.exit_code == 2 and "is not reachable" in res.output and "Traceback" not in res.output


def test_a_hosted_provider_without_a_key_is_one_line_exit_2(tiny_llama_dir, tmp_path, monkeypatch):
    job = write_job(tmp_path, tiny_llama_dir, ["api:openai/gpt-4o-mini"])
    res = run(job, key=None, monkeypatch=monkeypatch)
    assert res.exit_code == 2 and "needs an API key: export it as $OPENAI_API_KEY" in res.output


@pytest.mark.parametrize("newer, api, expect", [
    (["api:gpt-4o-mini"], {}, "write api:<provider>/<model>"),
    (["api:acme/model"], {}, "unknown API provider 'acme'"),
    (["api:http://127.0.0.1:8000/v1"], {}, "name the model after '#'"),
    (["api:http://user:pw@host/v1#m"], {}, "credentials in the URL"),
    (["api:openai/gpt-4o-mini"], {"key_env": KEY}, "not an environment variable name"),
    (["api:openai/gpt-4o-mini"], {"key_env": "sk_live_abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz01"},
     "looks like an API key"),
    (["api:openai/gpt-4o-mini"], {"price_as": "gpt-4o-mini"}, "write <provider>/<model>"),
    (["api:openai/gpt-4o-mini"], {"input_usd_per_m": 1.0}, "give both input_usd_per_m and output_usd_per_m"),
    (["api:openai/gpt-4o-mini"], {"concurrency": 0}, "api.concurrency"),
])
def test_bad_api_settings_are_one_line_exit_2(tiny_llama_dir, tmp_path, monkeypatch, newer, api, expect):
    job = write_job(tmp_path, tiny_llama_dir, newer, api=api)
    res = run(job, monkeypatch=monkeypatch)
    assert res.exit_code == 2, res.output
    assert expect in res.output and "Traceback" not in res.output
    assert KEY[8:] not in res.output  # a key pasted into key_env is not echoed back


def test_an_api_base_is_refused(tmp_path, monkeypatch, tiny_llama_dir):
    job = write_job(tmp_path, tiny_llama_dir, [])
    data = yaml.safe_load(job.read_text()) | {"base": "api:openai/gpt-4o-mini"}
    job.write_text(yaml.safe_dump(data))
    res = run(job, monkeypatch=monkeypatch)
    assert res.exit_code == 2 and "put API models in newer" in res.output


def test_key_is_not_sent_over_plain_http_to_another_host(tiny_llama_dir, tmp_path, monkeypatch):
    job = write_job(tmp_path, tiny_llama_dir, ["api:http://example.invalid/v1#m"])
    res = run(job, monkeypatch=monkeypatch)
    assert res.exit_code == 2 and "refusing to send the API key" in res.output
    shutil.rmtree(tmp_path / "runs", ignore_errors=True)


def test_choice_tasks_are_scored_by_logprobs_where_the_endpoint_returns_them(varied_llama, tmp_path, monkeypatch):
    """Echoed prompt log-probabilities (vLLM / OpenAI completions): each choice's summed log-probability equals the
    local engine's, so the predictions are the same item by item."""
    from tests.api_servers import LogprobServer

    srv = LogprobServer(varied_llama)
    try:
        job = write_job(tmp_path, varied_llama, [str(varied_llama), f"api:{srv.base_url}#{srv.name}"], kind="choice",
                        limit=8, arms={"prompting": {"shots": [0, 2]}, "lora": {"enabled": False}})
        res = run(job, monkeypatch=monkeypatch)
        assert res.exit_code == 0, res.output
        rd = the_run(tmp_path)
        units = units_of(rd)
        for k in (0, 2):
            (local,) = [u for u in units.values() if u["arm"] == "C" and u["engine"] != "api" and u["point"]["shots"] == k]
            (api,) = [u for u in units.values() if u["engine"] == "api" and u["point"]["shots"] == k]
            assert api["api"]["scoring_method"] == "logprobs" and api["api"]["context_window"] == 2048
            lr = {r["item_id"]: r for r in rows_of(rd, local["unit"])}
            for r in rows_of(rd, api["unit"]):
                assert r["method"] == "logprobs" and r["requests"] == 7  # one request per choice
                assert r["loglik"] == pytest.approx(lr[r["item_id"]]["loglik"], abs=2e-3)
                assert r["prediction"] == lr[r["item_id"]]["prediction"]
            assert api["value"] == local["value"]
        res = CliRunner().invoke(app, ["samples", str(rd), "--out", str(tmp_path / "samples")])
        assert res.exit_code == 0 and len(list((tmp_path / "samples").glob("*api*.jsonl"))) == 2
    finally:
        srv.close()


def test_choice_tasks_fall_back_to_a_matched_answer_without_logprobs(served, varied_llama, tmp_path, monkeypatch):
    """`transformers serve` returns no log-probabilities: the unit is scored by greedy answers matched to a choice,
    and says so (method per unit and per row, match counts)."""
    job = write_job(tmp_path, varied_llama, [f"api:{served.base_url}#{served.model_dir}"], kind="choice", limit=6,
                    arms={"prompting": {"shots": [0]}, "lora": {"enabled": False}})
    res = run(job, monkeypatch=monkeypatch)
    assert res.exit_code == 0, res.output
    rd = the_run(tmp_path)
    (api,) = [u for u in units_of(rd).values() if u["engine"] == "api"]
    assert api["api"]["scoring_method"] == "generate_match" and "no log-probabilities" in api["api"]["scoring_why"]
    assert sum(api["api"]["matched"].values()) == 6
    rows = rows_of(rd, api["unit"])
    assert {r["method"] for r in rows} == {"generate_match"}
    assert all(r["score"] == float(r["matched"] is not None and r["prediction"] == r["target"]) for r in rows)
    # no per-choice log-likelihoods: lm-eval samples are not written for it, and the export says why
    res = CliRunner().invoke(app, ["samples", str(rd), "--out", str(tmp_path / "samples")])
    assert res.exit_code == 0 and "scored over an API by generate_match" in res.output
    assert not list((tmp_path / "samples").glob("*api*"))


def test_an_endpoint_that_keeps_failing_stops_with_one_line_and_keeps_every_answer(served, varied_llama, tmp_path,
                                                                                   monkeypatch):
    proxy = FaultProxy(("127.0.0.1", served.port), {5: "500", 6: "500"})  # item 5 fails twice: past max_retries=1
    try:
        spec = f"api:http://127.0.0.1:{proxy.port}/v1#{served.model_dir}"
        job = write_job(tmp_path, varied_llama, [spec], api={"max_retries": 1, "concurrency": 1},
                        arms={"prompting": {"shots": [0]}, "lora": {"enabled": False}})
        res = run(job, monkeypatch=monkeypatch)
        assert res.exit_code == 2, res.output
        assert "failed 2 times (last: 500" in res.output and "answers received so far are kept" in res.output
        rd = the_run(tmp_path)
        (results,) = (rd / "results").glob("*api*.jsonl")
        # every item answered is stored — the other nine of the chunk were asked while item 5 was retried
        assert len(results.read_text().splitlines()) == 9
        res = run(job, monkeypatch=monkeypatch)  # the endpoint recovers: the run resumes
        assert res.exit_code == 0, res.output
        assert len(results.read_text().splitlines()) == 10
        assert len(proxy.forwarded) == 10 and set(proxy.forwarded.values()) == {1}  # nothing asked twice
    finally:
        proxy.close()


def test_two_models_with_one_short_name_are_refused(tiny_llama_dir, tmp_path, monkeypatch):
    """Units are named by a model's short name: two folders both called `same` would share (and lose) units."""
    a, b = tmp_path / "a" / "same", tmp_path / "b" / "same"
    shutil.copytree(tiny_llama_dir, a)
    shutil.copytree(tiny_llama_dir, b)
    job = write_job(tmp_path, tiny_llama_dir, [str(a), str(b)])
    res = run(job, monkeypatch=monkeypatch)
    assert res.exit_code == 2 and "have the same short name 'same'" in res.output
