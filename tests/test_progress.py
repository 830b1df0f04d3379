"""Progress a person can plan by (bars with ETA on a terminal, none off it) and JSON events a scheduler can follow."""

from __future__ import annotations

import io
import json

from rich.console import Console
from typer.testing import CliRunner

from evaluator.cli.app import app
from evaluator.progress import RunProgress
from tests.test_run import write_job


def test_run_writes_json_progress_events(tmp_path, tiny_llama_dir, tiny_gemma_dir):
    job = write_job(tmp_path, tiny_llama_dir, tiny_gemma_dir, limit=6,
                    arms={"prompting": {"shots": [0, 2]}, "lora": {"enabled": False}})
    log = tmp_path / "logs" / "progress.jsonl"
    res = CliRunner().invoke(app, ["run", str(job), "--json-progress", str(log)])
    assert res.exit_code == 0, res.output
    ev = [json.loads(line) for line in log.read_text().splitlines()]
    assert ev[0]["event"] == "run_start" and ev[0]["units"] == 4 and ev[-1]["event"] == "run_end"
    assert all(b["t"] >= a["t"] for a, b in zip(ev, ev[1:]))
    starts = [e["unit"] for e in ev if e["event"] == "unit_start"]
    done = [e for e in ev if e["event"] == "unit_done"]
    assert len(starts) == len(done) == 4 and [d["unit"] for d in done] == starts
    assert [d["units_done"] for d in done] == [1, 2, 3, 4] and all(0 <= d["value"] <= 1 for d in done)
    for unit in starts:
        items = [e["done"] for e in ev if e["event"] == "items" and e["unit"] == unit]
        assert items == sorted(items) and items[-1] == 6
    # not a terminal: no bars in the output, the one-line records still print
    assert "━" not in res.output and res.output.count("done snips_intents__") == 4
    # a re-run computes nothing and says so in the log: zero units to compute
    res2 = CliRunner().invoke(app, ["run", str(job), "--json-progress", str(log)])
    assert res2.exit_code == 0, res2.output
    last_start = [json.loads(line) for line in log.read_text().splitlines() if '"run_start"' in line][-1]
    assert last_start["units"] == 0


def test_json_progress_path_that_is_a_folder_is_one_line(tmp_path, tiny_llama_dir, tiny_gemma_dir):
    job = write_job(tmp_path, tiny_llama_dir, tiny_gemma_dir)
    res = CliRunner().invoke(app, ["run", str(job), "--json-progress", str(tmp_path)])
    assert res.exit_code == 2 and "--json-progress" in res.output and "is a folder" in res.output
    assert not (tmp_path / "runs").exists()


def _terminal() -> tuple[Console, io.StringIO]:
    buf = io.StringIO()
    return Console(file=buf, force_terminal=True, width=120, color_system=None), buf


def test_terminal_shows_units_items_rate_eta_and_training_steps():
    console, buf = _terminal()
    with RunProgress(console, 2) as p:
        bar = p.unit("task__A__k0", 10)
        bar.advance(4)
        bar.advance(6)
        p.unit_done("task__A__k0")
        tr = p.training("n=16", 8)
        tr.step(4, loss=0.512, tokens_per_s=1234.0)
        tr.close()
    text = buf.getvalue()
    assert "units (of 2 to compute)" in text and "1/2" in text
    assert "task__A__k0" in text and "10/10" in text and "ETA" in text
    assert "loss 0.512" in text and "1,234 tok/s" in text


def test_quiet_shows_no_bars():
    console, buf = _terminal()
    with RunProgress(console, 1, quiet=True) as p:
        p.unit("u", 3).advance(3)
        p.unit_done("u")
    assert buf.getvalue() == ""



def test_lora_training_reports_steps_with_loss_and_rate(tmp_path, tiny_llama_dir, tiny_gemma_dir):
    job = write_job(tmp_path, tiny_llama_dir, tiny_gemma_dir, limit=4,
                    arms={"prompting": {"shots": [0]}, "lora": {"train_sizes": [16], "epochs": 2, "batch_size": 4,
                                                               "r": 4, "val_fraction": 0}})
    log = tmp_path / "progress.jsonl"
    res = CliRunner().invoke(app, ["run", str(job), "--json-progress", str(log)])
    assert res.exit_code == 0, res.output
    steps = [json.loads(line) for line in log.read_text().splitlines() if '"train_step"' in line]
    assert steps, "no training steps reported"
    assert all(s["unit"].startswith("LoRA n=16") and s["steps"] == 8 for s in steps)
    assert steps[-1]["step"] == 8 and steps[-1]["eta_s"] == 0.0  # the last step is always reported
    assert all(isinstance(s["loss"], float) and s["tokens_per_s"] > 0 for s in steps)
