"""`tunecheck tasks --check` (every problem of every task, one line each, no model) and validation messages that
name every problem on one line."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from evaluator.cli.app import app

ROWS = '{"id": "1", "text": "a", "label": "x"}\n{"id": "2", "text": "b", "label": "y"}\n'


def _task(d: Path, name: str, **over) -> None:
    spec = {"name": name, "data": {"path": "json", "data_files": {"train": "data/d.jsonl", "test": "data/d.jsonl"}},
            "id_field": "id", "input_field": "text", "target_field": "label", "choices": ["x", "y"], "prompt": "good.j2"}
    spec.update(over)
    (d / f"{name}.yaml").write_text(yaml.safe_dump(spec))


@pytest.fixture()
def tasks_dir(tmp_path, monkeypatch):
    d = tmp_path / "tasks"
    (d / "data").mkdir(parents=True)
    (d / "prompts").mkdir()
    (d / "data" / "d.jsonl").write_text(ROWS)
    (d / "data" / "dup.jsonl").write_text(ROWS.replace('"2"', '"1"'))
    (d / "prompts" / "good.j2").write_text("Q: {{ input }} ({{ choices | join(', ') }})")
    (d / "prompts" / "bad.j2").write_text("Q: {{ input }} {{ foo }} {% for c in choices %}{{ c }}{% endfor %}")
    _task(d, "t_good")
    monkeypatch.chdir(tmp_path)
    return d


def _errors(res) -> list[str]:
    return [ln for ln in res.output.splitlines() if ln.startswith("error:")]


def test_check_ok_prints_a_table_with_counts_and_variables(tasks_dir):
    res = CliRunner().invoke(app, ["tasks", "--check", "--dir", str(tasks_dir)], terminal_width=200)
    assert res.exit_code == 0, res.output
    assert not _errors(res)
    line = next(ln for ln in res.output.splitlines() if "t_good" in ln)
    assert "OK" in line and " 2 " in line and "choices, input" in line
    assert "a template gets input, id, choices" in res.output


def test_check_lists_every_problem_of_every_task(tasks_dir):
    _task(tasks_dir, "t_vars", prompt="bad.j2")
    _task(tasks_dir, "t_two", prompt="nope.j2", data={"path": "json", "data_files": {"train": "data/dup.jsonl",
                                                                                     "test": "data/d.jsonl"}})
    (tasks_dir / "t_spec.yaml").write_text("name: t_spec\ndata: {path: json}\ninput_fieldd: text\ntarget_field: label\n"
                                           "kind: choise\nprompt: good.j2\n")
    res = CliRunner().invoke(app, ["tasks", "--check", "--dir", str(tasks_dir)])
    assert res.exit_code == 2, res.output
    errors = _errors(res)
    assert len(errors) == 4, res.output
    assert "Traceback" not in res.output and "OK" not in res.output
    by = {t: [e for e in errors if t in e] for t in ("t_spec", "t_two", "t_vars")}
    # the task file: all three problems in its one line
    assert len(by["t_spec"]) == 1 and "missing required field 'input_field'" in by["t_spec"][0]
    assert "also:" in by["t_spec"][0] and "'kind'" in by["t_spec"][0] and "'input_fieldd'" in by["t_spec"][0]
    # two problems of one task: the prompt lookup (with the folders searched) and the data
    assert len(by["t_two"]) == 2
    assert any("prompt template 'nope.j2' not found (searched " in e and str(tasks_dir / "prompts") in e for e in by["t_two"])
    assert any("duplicate id '1'" in e for e in by["t_two"])
    # a variable the template does not get: named once, with the allowed ones
    assert len(by["t_vars"]) == 1 and "'foo'" in by["t_vars"][0] and "input, id and choices" in by["t_vars"][0]


def test_check_loads_no_model(tasks_dir, monkeypatch):
    import evaluator.models.load

    def no_model(*a, **k):
        raise AssertionError("tasks --check loaded a model")

    monkeypatch.setattr(evaluator.models.load, "load_model", no_model)
    res = CliRunner().invoke(app, ["tasks", "--check", "--dir", str(tasks_dir)])
    assert res.exit_code == 0, res.output


def test_template_variables_used():
    from evaluator.tasks.check import template_variables_used

    def used(text: str) -> list[str]:
        import tempfile

        with tempfile.NamedTemporaryFile("w", suffix=".j2", delete=False) as fh:
            fh.write(text)
        try:
            return template_variables_used(Path(fh.name))
        finally:
            Path(fh.name).unlink()

    assert used("{{ input }}{% for c in choices %}{{ loop.index }}{{ c }}{% endfor %}{% set z = 1 %}{{ z }}") == ["choices", "input"]
    assert used("{{ id }} {{ label.text }}") == ["id", "label"]


def test_validation_error_names_every_problem_on_one_line():
    from pydantic import ValidationError

    from evaluator.config.job import Job
    from evaluator.config.validation import format_validation_error

    with pytest.raises(ValidationError) as ei:
        Job.model_validate({"name": "j", "tasks": ["t"], "bas": "b", "seed": True,
                            "arms": {"lora": {"r": 0, "train_sizes": ["x"]}}})
    line = format_validation_error(ei.value, "job.yaml")
    assert "\n" not in line and "more problem" not in line
    assert line.startswith("job.yaml: missing required field 'base' — add it; also: ")
    for part in ("field 'seed': got the YAML boolean True", "field 'arms.lora.train_sizes.0': 'x' is not a training size",
                 "field 'arms.lora.r': Input should be greater than or equal to 1 (got 0)", "unknown field 'bas'"):
        assert part in line, line
    with pytest.raises(ValidationError) as ei:
        Job.model_validate({"name": "j", "tasks": ["t"], "base": "b", "seed": "x"})
    one = format_validation_error(ei.value, "job.yaml")
    assert "also:" not in one and one.startswith("job.yaml: field 'seed':")


def test_a_job_with_several_bad_fields_is_one_error_line(tmp_path):
    job = tmp_path / "job.yaml"
    job.write_text("name: j\ntasks: [t]\nbase: b\nseed: yes\nlimit: 0\narms: {lora: {r: 0}}\n")
    res = CliRunner().invoke(app, ["run", str(job)])
    assert res.exit_code == 2
    errors = _errors(res)
    assert len(errors) == 1 and len([ln for ln in res.output.splitlines() if ln.strip()]) == 1, res.output
    assert "field 'seed'" in errors[0] and "also:" in errors[0] and "'limit'" in errors[0] and "'arms.lora.r'" in errors[0]
