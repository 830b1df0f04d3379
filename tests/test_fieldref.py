"""The field reference (docs/FIELDS.md, `tunecheck schema`) is generated from the schemas and kept in sync."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from evaluator.cli.app import app
from evaluator.cli.schema import _fields, field_reference, field_rows, schemas
from evaluator.errors import UserError
from evaluator.tasks.templates import TEMPLATE_MEANINGS, prompt_folders, template_variables

REPO = Path(__file__).resolve().parents[1]
FIELDS_MD = REPO / "docs" / "FIELDS.md"


def test_docs_fields_md_is_the_generated_reference():
    assert FIELDS_MD.is_file(), "docs/FIELDS.md is missing — run `tunecheck schema --out docs/FIELDS.md`"
    assert FIELDS_MD.read_text(encoding="utf-8") == field_reference(), (
        "docs/FIELDS.md is out of date with the schemas — run `tunecheck schema --out docs/FIELDS.md`")


def test_every_field_of_every_model_has_a_meaning():
    missing = []
    for _title, _where, model, _intro in schemas():
        for path, fi, owner in _fields(model):
            if not (fi.description or "").strip():
                missing.append(f"{owner.__name__}.{path.rsplit('.', 1)[-1]} ({path})")
        for row in field_rows(model):
            assert row["meaning"].strip() and row["type"] and row["default"], row
    assert not missing, f"fields without description= in the schema: {', '.join(missing)}"
    for name in template_variables():
        assert TEMPLATE_MEANINGS.get(name, "").strip(), f"template variable {name!r} has no meaning"


def test_nested_models_are_expanded_with_dotted_paths():
    from evaluator.config.job import Job
    from evaluator.tasks.spec import TaskSpec

    job = {r["path"] for r in field_rows(Job)}
    task = {r["path"] for r in field_rows(TaskSpec)}
    # the fields the issue named as undocumented
    assert {"output_dir", "adapters_dir", "model_cache", "verdict.margin", "arms.lora.val_fraction",
            "arms.prompting.shots", "costs.api_model"} <= job
    assert {"choices_field", "instruction_delimiter", "max_new_tokens", "stop_sequences", "data.path",
            "data.data_files"} <= task
    # every nested model's fields, at every depth
    def count(model) -> int:
        from evaluator.cli.schema import _models_in

        return sum(1 + sum(count(m) for m in _models_in(fi.annotation)) for fi in model.model_fields.values())

    assert len(job) == count(Job) and len(task) == count(TaskSpec)
    rows = {r["path"]: r for r in field_rows(Job)}
    assert rows["arms.lora.val_fraction"]["type"] == "float (≥ 0, < 0.5)" and rows["arms.lora.val_fraction"]["default"] == "0.1"
    assert rows["base"]["default"] == "required"
    assert rows["arms.prompting.shots"]["type"] == 'list[int | "max"]'
    assert rows["arms.lora.max_steps"]["type"] == "int (≥ 1) | null"
    assert "no --model-cache" in rows["model_cache"]["meaning"]  # `run` reads the job's model_cache


def test_markdown_tables_are_well_formed():
    text = field_reference()
    for line in text.splitlines():
        if line.startswith("| `"):
            cells = line.replace("\\|", "").split("|")
            assert len(cells) in (4, 6), line  # path | type | default | meaning, or variable | meaning
    assert "## Job file" in text and "## Task file" in text and "## Template variables" in text
    for name in ("input", "id", "choices"):
        assert f"| `{name}` |" in text


def test_template_variables_are_what_render_query_passes():
    assert template_variables() == ["input", "id", "choices"]


def test_prompt_folders_are_find_prompts_in_its_order(tmp_path, monkeypatch):
    """The documented folders, checked against find_prompt on real folders: each found first when present."""
    from evaluator.tasks.templates import REPO_PROMPTS, find_prompt

    shown = prompt_folders()
    assert [s.split("`")[1] if "`" in s else s for s in shown] == [
        "<task folder>/prompts/", "<task folder>/../prompts/", "./prompts/", "prompts/"]
    assert "installed with tunecheck" in shown[3]
    task_file = tmp_path / "project" / "tasks" / "t.yaml"
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    folders = [task_file.parent / "prompts", task_file.parent.parent / "prompts", cwd / "prompts"]
    for d in folders:
        d.mkdir(parents=True)
        (d / "p.j2").write_text("{{ input }}")
    stub = SimpleNamespace(name="t", path=task_file, spec=SimpleNamespace(prompt="p.j2"))
    for d in folders:
        assert find_prompt(stub) == d / "p.j2"
        (d / "p.j2").unlink()
    bundled = next(REPO_PROMPTS.glob("*.j2"))
    assert find_prompt(SimpleNamespace(name="t", path=task_file, spec=SimpleNamespace(prompt=bundled.name))) == bundled
    with pytest.raises(UserError) as ei:
        find_prompt(stub)
    msg = str(ei.value)
    assert "\n" not in msg and "prompt template 'p.j2' not found" in msg
    for d in [*folders, REPO_PROMPTS]:
        assert str(d.resolve()) in msg, msg


def test_cli_schema_prints_and_writes_the_reference(tmp_path):
    res = CliRunner().invoke(app, ["schema"])
    assert res.exit_code == 0, res.output
    assert res.stdout == field_reference()
    target = tmp_path / "docs" / "FIELDS.md"
    res = CliRunner().invoke(app, ["schema", "--out", str(target)])
    assert res.exit_code == 0, res.output
    assert target.read_text(encoding="utf-8") == field_reference()
    res = CliRunner().invoke(app, ["schema", "--out", str(tmp_path)])
    assert res.exit_code == 2 and "error:" in res.output and "is a folder" in res.output
