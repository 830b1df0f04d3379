"""`tunecheck run` under `accelerate launch` (2 CPU processes, gloo): every process runs every unit and scores its
share of each chunk of items; the main process alone writes the run folder. Per-item results, unit records and the
report must equal a one-process run's (numbers, not timings), and a killed multi-process run must resume.

The launch stays on CPU as in tests/test_ddp.py (torchrun launcher, no visible GPU, ACCELERATE_USE_CPU=true).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml
from typer.testing import CliRunner

from evaluator.cli.app import app

REPO = Path(__file__).resolve().parents[1]
LOGLIK_TOL = 1e-5  # arms A and C: the same model, requests batched differently (float rounding only)
LORA_TOL = 1e-3  # arm B: an adapter trained with DDP (gradients summed in another order) — see tests/test_ddp.py


def _job(tmp: Path, base: Path, newer: Path, out: str) -> Path:
    job = {
        "name": "dp", "tasks": ["snips_intents"], "base": str(base), "newer": [str(newer)], "seed": 3, "limit": 21,
        "device": "cpu",
        "arms": {"prompting": {"shots": [0, 3]},
                 "lora": {"train_sizes": [16], "epochs": 1, "batch_size": 8, "r": 4, "dropout": 0.0}},
        "output_dir": str(tmp / out), "adapters_dir": str(tmp / f"{out}-adapters"),
    }
    path = tmp / f"{out}.yaml"
    path.write_text(yaml.safe_dump(job))
    return path


def _launch(job: Path, **env_extra: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", ACCELERATE_USE_CPU="true", OMP_NUM_THREADS="1", **env_extra)
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines",
           "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "0",
           "-m", "evaluator.cli", "run", str(job)]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=env, timeout=600)


def _run_dir(tmp: Path, out: str) -> Path:
    (d,) = list((tmp / out).iterdir())
    return d


def _rows(rd: Path) -> dict[str, dict[str, dict]]:
    return {p.stem: {json.loads(line)["item_id"]: json.loads(line) for line in p.read_text().splitlines()}
            for p in (rd / "results").glob("*.jsonl")}


def _compare(one: Path, two: Path) -> dict[str, float]:
    """Max |Δ loglik| per arm; asserts the same units, items, predictions (A, C) and metrics."""
    r1, r2 = _rows(one), _rows(two)
    assert sorted(r1) == sorted(r2) and len(r1) == 2 + 2 + 1
    worst: dict[str, float] = {}
    for unit, rows in r1.items():
        arm = unit.split("__")[1]
        assert list(rows) == list(r2[unit]), unit  # the same items in the same (file) order
        for iid, a in rows.items():
            b = r2[unit][iid]
            d = max(abs(x - y) for x, y in zip(a["loglik"], b["loglik"]))
            worst[arm] = max(worst.get(arm, 0.0), d)
            if arm != "B":
                assert a["prediction"] == b["prediction"] and a["score"] == b["score"], (unit, iid)
        u1 = json.loads((one / "units" / f"{unit}.json").read_text())
        u2 = json.loads((two / "units" / f"{unit}.json").read_text())
        if arm != "B":
            assert u1["value"] == u2["value"] and u1["item_ids_hash"] == u2["item_ids_hash"]
        assert u2["measured_with"]["processes"] == 2 and u1["measured_with"]["processes"] == 1
    assert worst["A"] <= LOGLIK_TOL and worst["C"] <= LOGLIK_TOL and worst["B"] <= LORA_TOL, worst
    return worst


def test_two_processes_give_the_one_process_results_and_a_killed_launch_resumes(tmp_path, tiny_llama_dir,
                                                                                tiny_gemma_dir):
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        single = CliRunner().invoke(app, ["run", str(_job(tmp_path, tiny_llama_dir, tiny_gemma_dir, "one"))])
        assert single.exit_code == 0, single.output
    finally:
        torch.set_num_threads(threads)
    one = _run_dir(tmp_path, "one")

    two_job = _job(tmp_path, tiny_llama_dir, tiny_gemma_dir, "two")
    killed = _launch(two_job, TUNECHECK_KILL_AT="append_items:3")  # the main process dies after its 3rd append
    assert killed.returncode != 0
    two = _run_dir(tmp_path, "two")
    assert not (two / "report.json").exists()
    res = _launch(two_job)  # the same launch again resumes: stored rows are kept, the rest is scored
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.count("run_dir=") == 1  # one process reports
    worst = _compare(one, two)
    print(f"max |Δ loglik| one vs two processes: {worst}")
    r1 = json.loads((one / "report.json").read_text())["tasks"]["snips_intents"]
    r2 = json.loads((two / "report.json").read_text())["tasks"]["snips_intents"]
    assert r1["verdict"]["outcome"] == r2["verdict"]["outcome"]
    assert [u["value"] for u in r1["units"] if u["arm"] != "B"] == [u["value"] for u in r2["units"] if u["arm"] != "B"]
