"""report.json validates against the JSON Schema shipped in the package (evaluator/schemas/report.schema.json).

The suite builds the runs it checks, so nothing here skips: a fake run in the store's format (tests/fake_runs.py:
all three arms, costs, paired tests) and a tiny real run (`tunecheck run` on the offline tiny models of
tests/conftest.py: real scoring, training and measurement records). Set ``TUNECHECK_SCHEMA_RUN`` to a run folder
(or a folder of runs) to check your own run's report.json too, e.g.
``TUNECHECK_SCHEMA_RUN=runs/my-run .venv/bin/python -m pytest tests/test_report_schema.py``.
"""

from __future__ import annotations

import copy
import json
import os
from importlib import resources
from pathlib import Path

import pytest

jsonschema = pytest.importorskip("jsonschema")

from evaluator.report.build import SCHEMA_VERSION, write_reports  # noqa: E402
from evaluator.store.run_store import RunStore  # noqa: E402
from tests.fake_runs import item_ids, old_run  # noqa: E402

SCHEMA_RUN_ENV = "TUNECHECK_SCHEMA_RUN"


def named_reports() -> list[Path]:
    """The report.json files of the run (or runs) that TUNECHECK_SCHEMA_RUN names; [] when it is unset."""
    where = os.environ.get(SCHEMA_RUN_ENV, "").strip()
    if not where:
        return []
    root = Path(where).expanduser()
    found = [root / "report.json"] if (root / "report.json").is_file() else sorted(root.glob("*/report.json"))
    if not found:
        raise pytest.UsageError(f"{SCHEMA_RUN_ENV}={where}: no report.json there (nor in its subfolders) — name a "
                                "run folder (`tunecheck report RUN_DIR` writes one)")
    return found


def schema() -> dict:
    text = (resources.files("evaluator") / "schemas" / "report.schema.json").read_text(encoding="utf-8")
    return json.loads(text)


@pytest.fixture(scope="module")
def validator():
    s = schema()
    jsonschema.Draft202012Validator.check_schema(s)
    return jsonschema.Draft202012Validator(s)


@pytest.fixture(scope="module")
def fake_report(tmp_path_factory) -> dict:
    run = old_run(tmp_path_factory.mktemp("runs"), item_ids(80))
    write_reports(RunStore.open(run))
    # what a machine reads: the file, not the in-memory dict
    return json.loads((run / "report.json").read_text(encoding="utf-8"))


def _errors(validator, doc) -> list[str]:
    return [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(doc)]


def test_schema_file_is_packaged_and_valid():
    s = schema()
    assert s["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(s)


def test_real_report_validates(validator, fake_report):
    assert fake_report["schema_version"] == SCHEMA_VERSION
    assert _errors(validator, fake_report) == []
    t = fake_report["tasks"]["toy_intents"]
    # the keys the issue adds are present and validated, not just allowed
    assert t["paired"] and t["crossover"] and t["verdict"]["outcome"]
    assert t["costs"]["arms"] and t["costs"]["lines"]


def test_schema_rejects_broken_reports(validator, fake_report):
    bad = copy.deepcopy(fake_report)
    bad["tasks"]["toy_intents"]["verdict"]["outcome"] = "maybe"
    assert _errors(validator, bad)
    bad = copy.deepcopy(fake_report)
    del bad["schema_version"]
    assert _errors(validator, bad)
    bad = copy.deepcopy(fake_report)
    bad["tasks"]["toy_intents"]["paired"][0]["mcnemar_p"] = "0.5"
    assert _errors(validator, bad)
    bad = copy.deepcopy(fake_report)
    bad["tasks"]["toy_intents"]["units"][0]["arm"] = "D"
    assert _errors(validator, bad)


def test_schema_allows_growth(validator, fake_report):
    grown = copy.deepcopy(fake_report)
    grown["new_top_level_field"] = {"x": 1}
    grown["tasks"]["toy_intents"]["verdict"]["extra"] = [1, 2]
    grown["tasks"]["toy_intents"]["obsolescence"] = None
    assert _errors(validator, grown) == []


@pytest.fixture(scope="module")
def tiny_real_run(tmp_path_factory, tiny_llama_dir, tiny_gemma_dir) -> Path:
    """A real run, small: `tunecheck run` on the tiny offline models (arms A, B and C, one point or two each)."""
    from typer.testing import CliRunner

    from evaluator.cli.app import app
    from tests.test_run import run_dir_of, write_job

    tmp = tmp_path_factory.mktemp("schema-run")
    job = write_job(tmp, tiny_llama_dir, tiny_gemma_dir, limit=8,
                    arms={"prompting": {"shots": [0, 2]}, "lora": {"train_sizes": [16], "epochs": 1, "batch_size": 8,
                                                                   "r": 4}})
    res = CliRunner().invoke(app, ["run", str(job)])
    assert res.exit_code == 0, res.output
    return run_dir_of(tmp)


def test_the_suites_own_runs_validate(validator, fake_report, tiny_real_run):
    """Both runs the suite builds — and the one TUNECHECK_SCHEMA_RUN names, if any — validate; none is skipped."""
    real = json.loads((tiny_real_run / "report.json").read_text(encoding="utf-8"))
    assert real["schema_version"] == SCHEMA_VERSION and real["complete"]
    assert sorted({u["arm"] for u in real["tasks"]["snips_intents"]["units"]}) == ["A", "B", "C"]
    docs = {"fake run": fake_report, f"tiny real run {tiny_real_run.name}": real}
    docs |= {str(p): json.loads(p.read_text(encoding="utf-8")) for p in named_reports()}
    problems = {name: _errors(validator, doc) for name, doc in docs.items()}
    assert problems == {name: [] for name in docs}


def test_schema_run_env_names_a_run(monkeypatch, tmp_path):
    """TUNECHECK_SCHEMA_RUN: a run folder, a folder of runs, or unset; a folder without report.json is an error."""
    monkeypatch.delenv(SCHEMA_RUN_ENV, raising=False)
    assert named_reports() == []
    run = tmp_path / "runs" / "r1"
    run.mkdir(parents=True)
    (run / "report.json").write_text("{}")
    monkeypatch.setenv(SCHEMA_RUN_ENV, str(run))
    assert named_reports() == [run / "report.json"]
    monkeypatch.setenv(SCHEMA_RUN_ENV, str(tmp_path / "runs"))
    assert named_reports() == [run / "report.json"]
    monkeypatch.setenv(SCHEMA_RUN_ENV, str(tmp_path / "empty"))
    with pytest.raises(pytest.UsageError, match="no report.json"):
        named_reports()
