"""Beyond one process: `tunecheck train` under `accelerate launch` (2 CPU processes, gloo DDP) trains the same adapter
as one process, on the same data, and it scores the same.

How the launch stays on CPU: accelerate's `--cpu` launcher starts several processes only through mpirun, so the test
uses the torchrun launcher (`--multi_gpu --num_processes 2`) with no visible GPU and ACCELERATE_USE_CPU=true, which
makes every process a gloo CPU rank (accelerate's MULTI_CPU). On GPUs the same command without those variables is
the multi-GPU launch.

Why the two must agree closely: every process builds the same length-grouped global batches and takes its half, and
the loss is normalised by the global batch's answer tokens, so DDP's averaged gradient is the single-process
gradient. With dropout 0 the adapters differ only by float summation order. Tolerances: loss curves within 1e-3
relative, adapter weights within 1e-4, accuracy on 20 test items within 0.10 (two items).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from evaluator.cli.app import app

REPO = Path(__file__).resolve().parents[1]


def _train_args(model: Path, adapters: Path) -> list[str]:
    return ["train", "--model", str(model), "--task", "snips_intents", "--n", "48", "--epochs", "3", "--lr", "5e-3",
            "--dropout", "0", "--batch-size", "8", "--r", "4", "--seed", "11", "--device", "cpu",
            "--adapters-dir", str(adapters)]


def _only_adapter(root: Path) -> Path:
    (d,) = [p for p in (root / "snips_intents").glob("*/*") if p.is_dir()]
    return d


def _accuracy(adapter: Path) -> tuple[float, list[str]]:
    res = CliRunner().invoke(app, ["eval", "--adapter", str(adapter), "--limit", "20", "--device", "cpu", "--output", str(adapter.parent / f"{adapter.name}.eval.json")])
    assert res.exit_code == 0, res.output
    data = json.loads((adapter.parent / f"{adapter.name}.eval.json").read_text())
    return data["summary"]["value"], [r["prediction"] for r in data["items"]]


def test_accelerate_launch_two_cpu_processes_matches_single_process(tmp_path, tiny_llama_dir):
    import torch
    from safetensors.torch import load_file

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny model on a shared 2-core box: one thread per process (as in the launched ones)
    try:
        _check_ddp_matches_single(tmp_path, tiny_llama_dir, load_file)
    finally:
        torch.set_num_threads(threads)


def _check_ddp_matches_single(tmp_path, tiny_llama_dir, load_file):
    import torch

    single = CliRunner().invoke(app, _train_args(tiny_llama_dir, tmp_path / "single"))
    assert single.exit_code == 0, single.output

    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", ACCELERATE_USE_CPU="true", OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "0",
           "-m", "evaluator.cli", *_train_args(tiny_llama_dir, tmp_path / "ddp")]
    ddp = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=env, timeout=300)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    finals = [x for x in ddp.stdout.splitlines() if x.startswith("train ")]
    assert len(finals) == 1 and "world_size=2" in finals[0]  # only the main process reports

    a, b = _only_adapter(tmp_path / "single"), _only_adapter(tmp_path / "ddp")
    assert a.name == b.name  # same key: the process count does not change what the adapter is
    ma, mb = (json.loads((d / "tunecheck-adapter.json").read_text())["training"] for d in (a, b))
    assert ma["world_size"] == 1 and mb["world_size"] == 2
    assert mb["steps"] == ma["steps"] and mb["tokens_seen"] == ma["tokens_seen"] and mb["n_val"] == ma["n_val"] == 8
    assert mb["loss_curve"][-1] < mb["loss_curve"][0]  # it trains
    assert all(abs(x - y) <= 1e-3 * abs(y) for x, y in zip(mb["loss_curve"], ma["loss_curve"]))
    assert all(abs(x[1] - y[1]) <= 1e-3 * abs(y[1]) for x, y in zip(mb["val_curve"], ma["val_curve"]))
    wa, wb = load_file(str(a / "adapter_model.safetensors")), load_file(str(b / "adapter_model.safetensors"))
    assert wa.keys() == wb.keys() and max(float((wa[k] - wb[k]).abs().max()) for k in wa) < 1e-4
    assert any(float(w.abs().max()) > 0 for k, w in wb.items() if "lora_B" in k) and all(torch.isfinite(w).all() for w in wb.values())

    acc_a, pred_a = _accuracy(a)
    acc_b, pred_b = _accuracy(b)
    assert abs(acc_a - acc_b) <= 0.10, (acc_a, acc_b)
    assert sum(x != y for x, y in zip(pred_a, pred_b)) <= 2
