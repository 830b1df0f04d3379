"""End to end on fixture models: three arms, per-item results, report, resume after SIGKILL, bad jobs exit 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from evaluator.cli.app import app

REPO = Path(__file__).resolve().parents[1]


def write_job(tmp: Path, base_dir: Path, newer_dir: Path, **over) -> Path:
    job = {
        "name": "fixture",
        "tasks": ["snips_intents"],
        "base": str(base_dir),
        "newer": [str(newer_dir)],
        "seed": 7,
        "limit": 12,
        "arms": {
            "prompting": {"shots": [0, 3, "max"], "max_shots": 6},
            "lora": {"train_sizes": [16, 32], "epochs": 1, "batch_size": 8, "r": 4},
        },
        "output_dir": str(tmp / "runs"),
        "adapters_dir": str(tmp / "adapters"),
    }
    job.update(over)
    path = tmp / "job.yaml"
    path.write_text(yaml.safe_dump(job))
    return path


def cli(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    return subprocess.run([sys.executable, "-m", "evaluator.cli", *args], capture_output=True, text=True, env=env, cwd=REPO, timeout=600)


def run_dir_of(tmp: Path) -> Path:
    (d,) = list((tmp / "runs").iterdir())
    return d


@pytest.fixture(scope="module")
def full_run(tmp_path_factory, tiny_llama_dir, tiny_gemma_dir):
    tmp = tmp_path_factory.mktemp("full")
    job = write_job(tmp, tiny_llama_dir, tiny_gemma_dir)
    res = CliRunner().invoke(app, ["run", str(job)])
    assert res.exit_code == 0, res.output
    return tmp, run_dir_of(tmp)


def test_three_arms_write_per_item_results_and_report(full_run):
    tmp, rd = full_run
    units = {json.loads(p.read_text())["unit"]: json.loads(p.read_text()) for p in (rd / "units").glob("*.json")}
    arms = sorted({u["arm"] for u in units.values()})
    assert arms == ["A", "B", "C"]
    assert len(units) == 3 + 2 + 3  # A: k in 0,3,max; B: n in 16,32; C: k in 0,3,max
    for uid, u in units.items():
        rows = [json.loads(line) for line in (rd / "results" / f"{uid}.jsonl").read_text().splitlines()]
        assert len(rows) == 12 and len({r["item_id"] for r in rows}) == 12
        assert u["n_items"] == 12 and 0 <= u["ci_low"] <= u["value"] <= u["ci_high"] <= 1
        assert all(len(r["loglik"]) == 7 for r in rows)
    # same items in every arm (paired comparisons need it)
    assert len({u["item_ids_hash"] for u in units.values()}) == 1
    # max picks the cap (the tiny context fits it), recorded
    maxed = [u for u in units.values() if u["point"]["shots_requested"] == "max"]
    assert maxed and all(u["point"]["shots"] == 6 for u in maxed)
    k3 = [u for u in units.values() if u["point"]["shots"] == 3 and u["arm"] == "A"][0]
    k0 = [u for u in units.values() if u["point"]["shots"] == 0 and u["arm"] == "A"][0]
    assert k3["tokens"]["shared_prefix_tokens"] > k0["tokens"]["shared_prefix_tokens"]
    # adapters: standard peft format + metadata
    b = [u for u in units.values() if u["arm"] == "B"]
    for u in b:
        ad = Path(u["adapter"]["dir"])
        assert (ad / "adapter_config.json").is_file() and (ad / "adapter_model.safetensors").is_file()
        meta = json.loads((ad / "tunecheck-adapter.json").read_text())
        assert meta["train_size"] == u["point"]["train_size"] and meta["training"]["train_seconds"] > 0
        assert ad.is_relative_to(tmp / "adapters" / "snips_intents")
    rep = json.loads((rd / "report.json").read_text())
    assert rep["schema_version"] == "3.0" and rep["complete"]
    import jsonschema

    from tests.test_report_schema import schema

    jsonschema.validate(rep, schema())
    assert (rd / "report.html").is_file() and "data:image/png;base64" in (rd / "report.html").read_text()
    assert rep["tasks"]["snips_intents"]["verdict"]["outcome"] in {"no_option_works", "not_needed", "not_needed_newer_base", "justified", "inconclusive"}
    md = (rd / "report.md").read_text()
    assert "Verdict:" in md and md.count("| B |") == 3  # two B points + the B row of the selection table


def test_rerun_skips_everything_and_reuses_adapters(full_run):
    tmp, rd = full_run
    before = {p.name: p.stat().st_mtime_ns for p in (rd / "units").glob("*.json")}
    res = CliRunner().invoke(app, ["run", str(tmp / "job.yaml")])
    assert res.exit_code == 0, res.output
    inv = json.loads((rd / "last_invocation.json").read_text())
    assert inv["computed"] == [] and len(inv["skipped"]) == 8
    assert before == {p.name: p.stat().st_mtime_ns for p in (rd / "units").glob("*.json")}


def test_report_command_rebuilds_from_store(full_run):
    _, rd = full_run
    (rd / "report.md").unlink()
    res = CliRunner().invoke(app, ["report", str(rd)])
    assert res.exit_code == 0 and (rd / "report.md").is_file()
    assert "snips_intents" in res.output


def quality_numbers(rep: dict) -> dict:
    """Everything in a report that must not depend on timing: per-unit quality, paired statistics, verdict."""
    out = {}
    for name, t in rep["tasks"].items():
        out[name] = {
            "units": {u["unit"]: (u["value"], u["ci_low"], u["ci_high"], u["n_items"], u["point"]["shots"]) for u in t["units"]},
            "paired": [{k: v for k, v in d.items()} for d in t["paired"]],
            "verdict": t["verdict"]["outcome"],
            "crossover": t["crossover"],
        }
    return out


def test_same_seed_same_numbers(full_run, tmp_path, tiny_llama_dir, tiny_gemma_dir):
    """A second, independent run of the same job (fresh run dir, adapters retrained) gives identical per-item results
    and report numbers."""
    _, rd = full_run
    job = write_job(tmp_path, tiny_llama_dir, tiny_gemma_dir)
    assert CliRunner().invoke(app, ["run", str(job)]).exit_code == 0
    again = run_dir_of(tmp_path)
    assert json.loads((again / "last_invocation.json").read_text())["skipped"] == []  # nothing reused
    strip = lambda p: [{k: v for k, v in json.loads(x).items() if k != "seconds"} for x in p.read_text().splitlines()]  # noqa: E731
    units = sorted(p.name for p in (rd / "results").glob("*.jsonl"))
    assert units == sorted(p.name for p in (again / "results").glob("*.jsonl")) and len(units) == 8
    for name in units:
        assert strip(again / "results" / name) == strip(rd / "results" / name), name
    rep, ref = (json.loads((d / "report.json").read_text()) for d in (again, rd))
    assert quality_numbers(rep) == quality_numbers(ref)


def test_engine_lmeval_agrees_with_ours(full_run, tmp_path, tiny_llama_dir, tiny_gemma_dir):
    _, rd = full_run
    job = write_job(tmp_path, tiny_llama_dir, tiny_gemma_dir, arms={"prompting": {"shots": [3]}, "lora": {"enabled": False}}, newer=[])
    res = CliRunner().invoke(app, ["run", str(job), "--engine", "lm-eval"])
    assert res.exit_code == 0, res.output
    (unit,) = list((run_dir_of(tmp_path) / "results").glob("*.jsonl"))
    ref = {json.loads(x)["item_id"]: json.loads(x) for x in unit.read_text().splitlines()}
    ours = {json.loads(x)["item_id"]: json.loads(x) for x in (rd / "results" / unit.name).read_text().splitlines()}
    assert ref.keys() == ours.keys()
    assert all(ref[i]["prediction"] == ours[i]["prediction"] for i in ref)
    assert max(abs(a - b) for i in ref for a, b in zip(ref[i]["loglik"], ours[i]["loglik"])) < 1e-3
    rec = json.loads(next((run_dir_of(tmp_path) / "units").glob("*.json")).read_text())
    assert rec["engine"] == "lm-eval"


@pytest.mark.parametrize("kill_at", ["finish_unit:2", "append_items:5", "train_step:2", "report_write:2"])
def test_sigkill_then_rerun_finishes_without_recomputing(tmp_path, tiny_llama_dir, tiny_gemma_dir, full_run, kill_at):
    job = write_job(tmp_path, tiny_llama_dir, tiny_gemma_dir, limit=20 if kill_at.startswith("append") else 12)
    env_kill = dict(os.environ, TUNECHECK_KILL_AT=kill_at)
    first = subprocess.run([sys.executable, "-m", "evaluator.cli", "run", str(job)], env=env_kill, capture_output=True, text=True, cwd=REPO, timeout=600)
    assert first.returncode == -9, first.stderr[-2000:]  # really SIGKILLed
    rd = run_dir_of(tmp_path)
    done_before = {p.name: p.read_text() for p in (rd / "units").glob("*.json")}
    partial = {p.name: len(p.read_text().splitlines()) for p in (rd / "results").glob("*.jsonl")}
    if kill_at.startswith("report"):  # killed between writing report.md's temporary file and renaming it
        assert (rd / "report.json").is_file() and not (rd / "report.md").exists()
        assert list(rd.glob(".report.md.*.tmp"))
    second = cli("run", str(job))
    assert second.returncode == 0, second.stderr[-2000:]
    inv = json.loads((rd / "last_invocation.json").read_text())
    assert sorted(inv["skipped"]) == sorted(json.loads(v)["unit"] for v in done_before.values())
    assert len(inv["computed"]) + len(inv["skipped"]) == 8
    for name, text in done_before.items():  # finished units untouched
        assert (rd / "units" / name).read_text() == text
    for p in (rd / "results").glob("*.jsonl"):
        ids = [json.loads(x)["item_id"] for x in p.read_text().splitlines()]
        assert len(ids) == len(set(ids)) == (20 if kill_at.startswith("append") else 12)
    if kill_at.startswith("append"):  # the interrupted unit resumed after its last finished item
        assert any(0 < n < 20 for n in partial.values())
    assert not list(rd.rglob("*.tmp"))  # stale temporary files of the killed write are gone
    if kill_at in {"finish_unit:2", "report_write:2"}:  # same job as the uninterrupted run: same numbers
        _, full = full_run
        for p in (rd / "units").glob("*.json"):
            a, b = json.loads(p.read_text()), json.loads((full / "units" / p.name).read_text())
            assert a["value"] == b["value"], p.name
        rep, ref = (json.loads((d / "report.json").read_text()) for d in (rd, full))
        assert quality_numbers(rep) == quality_numbers(ref)
    if kill_at.startswith("report"):
        assert inv["computed"] == [] and all((rd / f).is_file() for f in ("report.md", "report.html"))


def test_bad_jobs_exit_2_with_one_line(tmp_path, tiny_llama_dir, tiny_gemma_dir):
    cases = {
        "unknown field": ({"arms": {"lora": {"rank": 8}}}, "unknown field 'arms.lora.rank'"),
        "missing data file": (None, "does not exist"),
        "model path missing": ({"base": str(tmp_path / "no-such-model")}, "does not exist"),
    }
    for name, (over, needle) in cases.items():
        d = tmp_path / name.replace(" ", "_")
        d.mkdir()
        if name == "missing data file":
            (d / "tasks").mkdir()
            spec = yaml.safe_load((REPO / "tasks" / "snips_intents.yaml").read_text())
            spec["data"]["data_files"]["test"] = "data/gone.jsonl"
            (d / "tasks" / "snips_intents.yaml").write_text(yaml.safe_dump(spec))
            job = write_job(d, tiny_llama_dir, tiny_gemma_dir)
        else:
            job = write_job(d, tiny_llama_dir, tiny_gemma_dir, **over)
        res = cli("run", str(job))
        assert res.returncode == 2, (name, res.stderr)
        lines = [x for x in res.stderr.strip().splitlines() if x.strip()]
        assert len(lines) == 1 and needle in lines[0], (name, res.stderr)
        assert "Traceback" not in res.stderr


def test_cost_command_recosts_a_run_without_models(full_run):
    import time

    _, rd = full_run
    t0 = time.perf_counter()
    res = CliRunner().invoke(app, ["cost", str(rd), "--volume", "2e8", "--gpu-hourly", "3.0", "--refresh-months", "4"])
    assert res.exit_code == 0, res.output
    assert "Costs at 200M tokens/day" in res.output and "Break-even volumes:" in res.output and "Verdict:" in res.output
    assert "$3/GPU-hour" in res.output and "4-month base refresh" in res.output
    assert time.perf_counter() - t0 < 10  # no model is loaded (the budget is for a cold import on a slow CI box)


def test_cost_prints_the_zero_shot_request_and_takes_stated_throughputs(full_run):
    """Requests/day come from instruction + input + reference answer (tiktoken), the same for every option; each
    option says what its throughput was measured with; a CPU figure is marked; --throughput replaces it."""
    import re

    _, rd = full_run
    res = CliRunner().invoke(app, ["cost", str(rd)])
    assert res.exit_code == 0, res.output
    m = re.search(r"zero-shot request = ([\d.]+) instruction \+ ([\d.]+) input \+ ([\d.]+) output = ([\d.]+) API "
                  r"tokens \(o200k_base\)", res.output)
    assert m, res.output
    instr, inp, outp, total = map(float, m.groups())
    assert instr > 0 and inp > 0 and outp > 0 and total == pytest.approx(instr + inp + outp, abs=0.01)
    rpd = re.search(r"→ ([\d,.]+[MK]?) requests/day", res.output).group(1)
    assert "[CPU: not a GPU serving figure]" in res.output and "float32" in res.output
    rep = json.loads((rd / "report.json").read_text())
    costs = rep["tasks"]["snips_intents"]["costs"]
    assert costs["requests_per_day"] == pytest.approx(50e6 / total, rel=1e-3)
    b = next(a["name"] for a in costs["arms"] if a["arm"] == "B")
    res2 = CliRunner().invoke(app, ["cost", str(rd), "--throughput", f"{b}=850"])
    assert res2.exit_code == 0, res2.output
    assert "serving throughput stated by the user: 850 req/s" in res2.output and rpd in res2.output
    bad = CliRunner().invoke(app, ["cost", str(rd), "--throughput", "B n=999=850"])
    assert bad.exit_code == 2 and "not a costed option" in bad.output
    bad = CliRunner().invoke(app, ["cost", str(rd), "--throughput", "B n=16=fast"])
    assert bad.exit_code == 2 and "OPTION=REQ_PER_S" in bad.output


def test_cost_article_scenario():
    res = CliRunner().invoke(app, ["cost", "--scenario", "article"])
    assert res.exit_code == 0, res.output
    assert "2,250" in res.output and "5,175" in res.output and "500,000" in res.output
