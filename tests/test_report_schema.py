"""report.json validates against the JSON Schema shipped in the package (evaluator/schemas/report.schema.json)."""

from __future__ import annotations

import copy
import json
from importlib import resources
from pathlib import Path

import pytest

jsonschema = pytest.importorskip("jsonschema")

from evaluator.report.build import SCHEMA_VERSION, write_reports  # noqa: E402
from evaluator.store.run_store import RunStore  # noqa: E402
from tests.fake_runs import item_ids, old_run  # noqa: E402

DEMO_REPORTS = sorted(Path("/tmp/demo-runs2").glob("*/report.json"))


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


@pytest.mark.skipif(not DEMO_REPORTS, reason="no demo run under /tmp/demo-runs2 on this machine")
@pytest.mark.parametrize("path", DEMO_REPORTS, ids=lambda p: p.parent.name)
def test_demo_reports_validate(validator, path):
    assert _errors(validator, json.loads(path.read_text(encoding="utf-8"))) == []
