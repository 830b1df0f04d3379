"""Table-driven bad inputs: each exits 2 with one line naming the problem, no traceback, earlier results intact."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from evaluator.cli.app import app

REPO = Path(__file__).resolve().parents[1]
SNIPS = yaml.safe_load((REPO / "tasks" / "snips_intents.yaml").read_text())


def _task(d: Path, rows_train: str | bytes | None = None, rows_test: str | bytes | None = None, **spec_over) -> None:
    """A copy of the SNIPS task in d/tasks with optional replacement data files."""
    (d / "tasks" / "data").mkdir(parents=True, exist_ok=True)
    for split, rows in (("train", rows_train), ("test", rows_test)):
        src = (REPO / "tasks" / "data" / f"snips_{split}.jsonl").read_bytes()
        data = src if rows is None else (rows.encode() if isinstance(rows, str) else rows)
        (d / "tasks" / "data" / f"snips_{split}.jsonl").write_bytes(data)
    spec = {**SNIPS, **spec_over}
    (d / "tasks" / "snips_intents.yaml").write_text(yaml.safe_dump(spec))


def _job(d: Path, base: str, **over) -> Path:
    job = {
        "name": "bad", "tasks": ["snips_intents"], "base": base, "limit": 4,
        "arms": {"prompting": {"shots": [0]}, "lora": {"enabled": False}},
        "output_dir": str(d / "runs"),
    }
    job.update(over)
    p = d / "job.yaml"
    p.write_text(yaml.safe_dump(job))
    return p


def _row(i: int, **over) -> str:
    row = {"id": f"x{i}", "text": "play some jazz", "label": "play_music", **over}
    return json.dumps(row) + "\n"


# name -> (builder(tmp, model_dir) -> argv, substring the one line must contain)
def case_malformed_yaml(d, m):
    p = d / "job.yaml"
    p.write_text("name: [unclosed\n")
    return ["run", str(p)], "not valid YAML"


def case_yaml_not_mapping(d, m):
    p = d / "job.yaml"
    p.write_text("- a\n- b\n")
    return ["run", str(p)], "must be a YAML mapping"


def case_unknown_field(d, m):
    return ["run", str(_job(d, m, colour="blue"))], "unknown field 'colour'"


def case_mistyped_nested_field(d, m):
    return ["run", str(_job(d, m, arms={"prompting": {"shot": [0]}}))], "unknown field 'arms.prompting.shot'"


def case_wrong_type(d, m):
    return ["run", str(_job(d, m, seed="abc"))], "field 'seed'"


def case_negative_shots(d, m):
    return ["run", str(_job(d, m, arms={"prompting": {"shots": [-1]}}))], "negative"


def case_empty_tasks(d, m):
    return ["run", str(_job(d, m, tasks=[]))], "field 'tasks'"


def case_unknown_task(d, m):
    return ["run", str(_job(d, m, tasks=["no_such_task"]))], "unknown task 'no_such_task'"


def case_task_path_traversal(d, m):
    return ["run", str(_job(d, m, tasks=["../../etc/passwd"]))], "not a plain name"


def case_missing_data_file(d, m):
    _task(d)
    (d / "tasks" / "data" / "snips_test.jsonl").unlink()
    return ["run", str(_job(d, m))], "does not exist"


def case_empty_split(d, m):
    _task(d, rows_test="")
    return ["run", str(_job(d, m))], "split 'test' is empty"


def case_target_not_in_choices(d, m):
    _task(d, rows_test=_row(0, label="order_pizza"))
    return ["run", str(_job(d, m))], "not among the choices"


def case_missing_field_in_row(d, m):
    _task(d, rows_test=json.dumps({"id": "x0", "label": "play_music"}) + "\n")
    return ["run", str(_job(d, m))], "has no field 'text'"


def case_non_utf8_data(d, m):
    _task(d, rows_test=b'{"id": "x0", "text": "caf\xe9", "label": "play_music"}\n')
    return ["run", str(_job(d, m))], "not UTF-8"


def case_invalid_json_line(d, m):
    _task(d, rows_test=_row(0) + "{oops\n")
    return ["run", str(_job(d, m))], "line 2 is not valid JSON"


def case_k_beyond_context(d, m):
    return ["run", str(_job(d, m, arms={"prompting": {"shots": [400]}, "lora": {"enabled": False}}))], "does not fit"


def case_model_path_missing(d, m):
    return ["run", str(_job(d, str(d / "nope")))], "does not exist"


def case_model_folder_not_a_model(d, m):
    (d / "empty-model").mkdir()
    return ["run", str(_job(d, str(d / "empty-model")))], "no config.json"


def case_bad_device(d, m):
    return ["run", str(_job(d, m, device="tpu"))], "unknown device"


def case_bad_dtype(d, m):
    return ["run", str(_job(d, m, dtype="float8"))], "field 'dtype'"


def case_job_file_missing(d, m):
    return ["run", str(d / "missing.yaml")], "does not exist"


def case_job_not_utf8(d, m):
    p = d / "job.yaml"
    p.write_bytes(b"name: caf\xe9\n")
    return ["run", str(p)], "not UTF-8"


def case_unwritable_output_dir(d, m):
    (d / "a-file").write_text("x")
    return ["run", str(_job(d, m, output_dir=str(d / "a-file" / "runs")))], "not writable"


def case_report_on_foreign_dir(d, m):
    return ["report", str(d)], "not a tunecheck run directory"


def case_cost_on_corrupted_run(d, m):
    (d / "run").mkdir()
    (d / "run" / "config.json").write_text("{not json")
    return ["cost", str(d / "run")], "corrupted"


def case_compare_foreign_dirs(d, m):
    return ["compare", str(d), str(d)], "run"


def case_eval_missing_adapter(d, m):
    return ["eval", "--adapter", str(d / "no-adapter")], "adapter"


def case_unknown_engine(d, m):
    return ["run", str(_job(d, m)), "--engine", "vllm"], "unknown engine"


def case_unknown_cost_scenario(d, m):
    return ["cost", "--scenario", "blog"], "unknown scenario"


def case_not_a_causal_lm(d, m):
    from transformers import T5Config, T5ForConditionalGeneration

    T5ForConditionalGeneration(T5Config(vocab_size=64, d_model=16, d_kv=4, d_ff=32, num_layers=1, num_heads=2)).save_pretrained(d / "t5")
    return ["run", str(_job(d, str(d / "t5")))], "no causal language-model class"


def case_pickle_weights_refused(d, m):
    import shutil

    import torch
    from safetensors.torch import load_file

    shutil.copytree(m, d / "pickled")
    (weights,) = list((d / "pickled").glob("*.safetensors"))
    torch.save(load_file(weights), d / "pickled" / "pytorch_model.bin")
    weights.unlink()
    return ["run", str(_job(d, str(d / "pickled")))], "only pickle weights"


def case_trust_remote_code_needed(d, m):
    import shutil

    shutil.copytree(m, d / "custom")
    cfg = json.loads((d / "custom" / "config.json").read_text())
    cfg.update(model_type="my_custom_llm", auto_map={"AutoConfig": "configuration_custom.CustomConfig"})
    cfg.pop("architectures", None)
    (d / "custom" / "config.json").write_text(json.dumps(cfg))
    return ["run", str(_job(d, str(d / "custom")))], "trust_remote_code"


def case_adapter_for_another_base(d, m):
    from tests.tiny_models import build_tiny_model

    res = CliRunner().invoke(app, ["train", "--model", m, "--task", "snips_intents", "--n", "8", "--max-steps", "1",
                                   "--adapters-dir", str(d / "ad"), "--device", "cpu"])
    assert res.exit_code == 0, res.output
    (adapter,) = [p.parent for p in (d / "ad").rglob("tunecheck-adapter.json")]
    other = build_tiny_model(d / "other", "llama", Path(m), seed=5)  # same architecture and size, other weights
    return ["eval", "--adapter", str(adapter), "--model", str(other), "--limit", "2"], "different weights"


def case_run_dir_holds_another_job(d, m):
    assert CliRunner().invoke(app, ["run", str(_job(d, m)), "--run-id", "shared"]).exit_code == 0
    return ["run", str(_job(d, m, seed=99)), "--run-id", "shared"], "holds a different job"


def case_corrupted_unit_record_on_resume(d, m):
    job = _job(d, m)
    assert CliRunner().invoke(app, ["run", str(job)]).exit_code == 0
    (unit,) = list((d / "runs").glob("*/units/*.json"))
    unit.write_text('{"unit": ')
    return ["run", str(job)], "corrupted"


def case_lmeval_unknown_task(d, m):
    return ["run", str(_job(d, m, tasks=["lm-eval:snips_intentz"], lm_eval_include=[str(d)]))], "is not in lm-eval's registry"


def case_lmeval_include_missing(d, m):
    return ["run", str(_job(d, m, tasks=["lm-eval:x"], lm_eval_include=[str(d / "nope")]))], "lm_eval_include folder"


def case_lmeval_unsupported_output_type(d, m):
    (d / "lm").mkdir()
    (d / "lm" / "ll.yaml").write_text(yaml.safe_dump({
        "task": "ll_task", "dataset_path": "json", "output_type": "loglikelihood", "test_split": "test",
        "dataset_kwargs": {"data_files": {"test": str(REPO / "tasks" / "data" / "snips_test.jsonl")}},
        "doc_to_text": "{{text}}", "doc_to_target": "{{label}}",
    }))
    return ["run", str(_job(d, m, tasks=[f"lm-eval:{d / 'lm' / 'll.yaml'}"]))], "output_type 'loglikelihood'"


def case_duplicate_task(d, m):
    return ["run", str(_job(d, m, tasks=["snips_intents", "snips_intents"]))], "listed twice"


def case_tasks_lmeval_folder_missing(d, m):
    return ["tasks", "--lm-eval", str(d / "nope")], "lm-eval task folder"


def case_samples_on_foreign_dir(d, m):
    return ["samples", str(d)], "not a tunecheck run directory"


MID_RUN = {"k_beyond_context"}  # needs the model's context window: found after the run has started
CASES = {name[5:]: fn for name, fn in sorted(globals().items()) if name.startswith("case_")}


def test_there_are_at_least_20_cases():
    assert len(CASES) >= 20


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input_exits_2_with_one_line(name, tmp_path, tiny_llama_dir, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv, needle = CASES[name](tmp_path, str(tiny_llama_dir))
    res = CliRunner().invoke(app, argv)
    err = res.stderr if hasattr(res, "stderr") else res.output
    errors = [x for x in err.splitlines() if x.startswith("error:")]
    assert res.exit_code == 2, (name, res.exit_code, res.output, repr(res.exception))
    assert "Traceback" not in res.output and "Traceback" not in err
    assert len(errors) == 1, (name, err)  # progress lines may precede it when the problem shows mid-run
    assert needle in errors[0], (name, errors[0])
    if name not in MID_RUN:
        assert len([x for x in err.splitlines() if x.strip()]) == 1, (name, err)


def test_a_bad_rerun_leaves_earlier_results_intact(tmp_path, tiny_llama_dir, monkeypatch):
    monkeypatch.chdir(tmp_path)
    job = _job(tmp_path, str(tiny_llama_dir))
    assert CliRunner().invoke(app, ["run", str(job)]).exit_code == 0
    (rd,) = list((tmp_path / "runs").iterdir())
    before = {p.relative_to(rd): p.read_bytes() for p in rd.rglob("*") if p.is_file() and p.suffix in {".json", ".jsonl"}}
    bad = yaml.safe_load(job.read_text())
    bad["arms"]["prompting"]["shots"] = [0, 400]  # a different job (new run dir), whose second unit cannot fit
    job.write_text(yaml.safe_dump(bad))
    assert CliRunner().invoke(app, ["run", str(job)]).exit_code == 2
    for rel, data in before.items():
        if rel.name not in {"env.json", "last_invocation.json", "report.json"}:
            assert (rd / rel).read_bytes() == data, rel
