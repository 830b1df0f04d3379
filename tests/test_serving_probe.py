"""Throughput as serving sees it: each choice unit also times one batch as large as the device's token budget holds
(not the 16-item resume chunk), records it, and the cost model prices self-hosting from it."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from typer.testing import CliRunner

from evaluator.cli.app import app
from evaluator.costs.from_run import measurement
from evaluator.store.run_store import RunStore


def _run(tmp: Path, model: Path, **over) -> dict:
    job = {"name": "probe", "tasks": ["snips_intents"], "base": str(model), "limit": 5, "device": "cpu",
           "arms": {"prompting": {"shots": [0]}, "lora": {"enabled": False}},
           "output_dir": str(tmp / "runs"), "adapters_dir": str(tmp / "adapters"), **over}
    (tmp / "job.yaml").write_text(yaml.safe_dump(job))
    res = CliRunner().invoke(app, ["run", str(tmp / "job.yaml")])
    assert res.exit_code == 0, res.output
    (rd,) = list((tmp / "runs").iterdir())
    (unit,) = [json.loads(p.read_text()) for p in (rd / "units").glob("*.json")]
    return {"run": rd, "unit": unit}


def test_a_unit_times_a_full_batch_and_the_costs_use_it(tmp_path, tiny_llama_dir):
    got = _run(tmp_path, tiny_llama_dir)
    u = got["unit"]
    sv = u["measured_with"]["serving"]
    # 5 test items, but the batch is as large as 4096 tokens hold (items repeat): more requests per forward than the
    # 16-item resume chunk could give
    assert sv["requests"] > 16 > u["n_items"] and sv["forwards"] >= 1 and sv["seconds"] > 0
    assert sv["requests_per_forward"] == sv["requests"] / sv["forwards"] and sv["batch_tokens"] == 4096
    assert u["measured_with"]["batch_note"].startswith(f"a serving batch: {sv['requests']} requests")
    m = measurement(RunStore.open(got["run"]), u, "gpt-4o-mini", "openai")
    assert (m.requests, m.eval_seconds) == (sv["requests"], sv["seconds"])  # priced from the serving batch


def test_a_small_token_budget_gives_a_batch_of_several_forwards(tmp_path, tiny_llama_dir):
    sv = _run(tmp_path, tiny_llama_dir, batch_tokens=64)["unit"]["measured_with"]["serving"]
    assert sv["requests"] == 16 and sv["forwards"] > 1 and sv["batch_tokens"] == 64
