"""The public surface of `import evaluator`: a notebook user loads a job, runs it, reads the run, gets the report,
the verdict and the costs without knowing the module layout — and `import evaluator` alone loads no torch."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import evaluator as tc
from evaluator.errors import UserError
from tests.test_run import write_job


def test_import_loads_no_model_library():
    code = "import sys, evaluator; print(sorted(m for m in ('torch', 'transformers', 'peft') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_every_public_name_is_documented():
    for name in tc.__all__:
        assert name == "__version__" or (getattr(tc, name).__doc__ or "").strip(), name


def test_a_bad_job_is_one_user_error(tmp_path):
    bad = tmp_path / "job.yaml"
    bad.write_text("name: x\ntasks: []\nbase: m\n")
    with pytest.raises(UserError) as e:
        tc.load_job(bad)
    assert "tasks" in str(e.value) and "\n" not in str(e.value)


def test_run_read_report_decide_and_cost(tmp_path, tiny_llama_dir, tiny_gemma_dir):
    job = write_job(tmp_path, tiny_llama_dir, tiny_gemma_dir, limit=8,
                    arms={"prompting": {"shots": [0, 2]}, "lora": {"enabled": False}})
    assert tc.load_job(job).name == "fixture"
    run_dir = tc.run(job)
    assert (run_dir / "report.json").is_file()
    store = tc.open_run(run_dir)
    assert {u["arm"] for u in store.units()} == {"A", "C"}
    # the report dict is what report.json holds (same numbers; recomputed from the stored results)
    rep = tc.build_report(run_dir)
    on_disk = json.loads((run_dir / "report.json").read_text())
    assert rep["tasks"].keys() == on_disk["tasks"].keys() == {"snips_intents"}
    assert rep["tasks"]["snips_intents"]["verdict"] == on_disk["tasks"]["snips_intents"]["verdict"]
    assert tc.decide(run_dir) == {"snips_intents": on_disk["tasks"]["snips_intents"]["verdict"]}
    # costs with an override: the GPU price scales the self-hosted cost, the API line does not move
    base, dear = tc.compute_costs(run_dir)["snips_intents"], tc.compute_costs(run_dir, gpu_hourly_usd=4.0)["snips_intents"]
    assert dear.inputs.gpu_hourly_usd == 4.0 and base.inputs.gpu_hourly_usd == 2.0
    a_base = next(a for a in base.arms if a.arm == "A")
    a_dear = next(a for a in dear.arms if a.arm == "A")
    assert a_dear.selfhost.usd_per_request_cached == pytest.approx(2 * a_base.selfhost.usd_per_request_cached)
    assert a_dear.monthly_api == a_base.monthly_api
    # a second call resumes the same run and recomputes nothing
    assert tc.run(job) == run_dir


def test_open_run_refuses_a_folder_that_is_not_a_run(tmp_path):
    with pytest.raises(UserError, match="not a tunecheck run directory"):
        tc.open_run(tmp_path)
