"""Free-form metrics (evaluator/tasks/metrics.py): each scorer on hand-written cases, the task fields they need
validated in one line, and a `metric: f1` run whose unit has non-binary scores and a bootstrap interval."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from evaluator.analysis.estimates import estimate
from evaluator.analysis.paired import paired_diff
from evaluator.cli.app import app
from evaluator.tasks import metrics as M
from evaluator.tasks.spec import TaskSpec
from tests.tiny_models import build_tiny_model

REPO = Path(__file__).resolve().parents[1]
GEN = yaml.safe_load((REPO / "tasks" / "snips_intents_generate.yaml").read_text())

# --- token F1 ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("answer, target, want", [
    ("the cat sat", "The cat sat.", 1.0),  # case, punctuation and articles do not count
    ("cat", "cat sat", 2 * 1 * 0.5 / 1.5),  # precision 1, recall 1/2
    ("cat cat", "cat", 2 * 0.5 * 1 / 1.5),  # repeated tokens count once per match (multiset overlap)
    ("dog", "cat", 0.0),
    ("", "cat", 0.0),  # empty answer
    ("", "", 1.0),  # both empty (SQuAD v2 rule)
    ("a an the", "", 1.0),  # only articles normalise to empty
    ("!!!", "cat", 0.0),
    ("¿Qué tal?", "qué TAL", 1.0),  # Unicode punctuation removed, Unicode lower-cased
    ("Éclair «bon»", "éclair", 2 * 0.5 * 1 / 1.5),
    ("play_music", "play music", 0.0),  # the underscore is punctuation: "playmusic" is one token
])
def test_token_f1(answer, target, want):
    assert M.token_f1(answer, target) == pytest.approx(want)


def test_normalise_is_squad_style():
    assert M.normalise("  The  Quick, brown-fox!  An apple ") == "quick brownfox apple"
    assert M.normalise("theatre another") == "theatre another"  # articles only as whole words


def test_exact_match_strips_only_whitespace():
    assert M.exact_match(" yes \n", "yes") == 1.0
    assert M.exact_match("Yes", "yes") == 0.0
    assert M.exact_match("", "") == 1.0


# --- regex extraction --------------------------------------------------------------------------------------------


def test_regex_first_match_or_named_group():
    whole = M.regex_scorer(r"\d+")
    assert whole("it is 42, not 7", "42") == 1.0  # the first match
    assert whole("it is 7, not 42", "42") == 0.0
    assert whole("no number here", "42") == 0.0  # no match scores 0
    assert whole("", "") == 0.0  # an empty answer does not match, even against an empty target
    named = M.regex_scorer(r"answer:\s*(?P<answer>\w+)")
    assert named("Reasoning… answer: Paris. answer: Rome", "Paris") == 1.0  # the first match's group
    assert named("answer: Zürich", "Zürich") == 1.0  # Unicode \w
    assert named("Paris", "Paris") == 0.0
    optional = M.regex_scorer(r"x(?P<answer>y)?")
    assert optional("x", "") == 0.0  # the group took no part: no extraction
    plain_group = M.regex_scorer(r"is (\w+)")
    assert plain_group("it is blue", "is blue") == 1.0  # without `answer`, the whole match


# --- JSON --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("answer, ok", [
    ('{"a": 1}', True), ("[1, 2]", True), ('"x"', True), ("null", True), (' {"ü": "ß"} ', True),
    ("", False), ("{a: 1}", False), ("{'a': 1}", False), ('{"a": 1', False), ("NaN", False),
    ('{"a": Infinity}', False), ("[" * 100000, False),
])
def test_json_valid(answer, ok):
    assert M.json_valid(answer, "") == float(ok)


NESTED = {
    "type": "object",
    "required": ["name", "address"],
    "properties": {
        "name": {"type": "string", "minLength": 1},
        "address": {"type": "object", "required": ["city"], "additionalProperties": False,
                    "properties": {"city": {"type": "string"}, "zip": {"type": "string", "pattern": "^[0-9]{5}$"}}},
        "tags": {"type": "array", "items": {"enum": ["a", "b"]}},
    },
}


@pytest.mark.parametrize("answer, ok", [
    ('{"name": "Ana", "address": {"city": "Köln"}}', True),
    ('{"name": "Ana", "address": {"city": "Köln", "zip": "50667"}, "tags": ["a"]}', True),
    ('{"name": "Ana", "address": {"city": "Köln", "zip": "5066"}}', False),  # nested pattern
    ('{"name": "Ana", "address": {"city": "Köln", "street": "x"}}', False),  # nested additionalProperties
    ('{"name": "Ana", "address": {}}', False),  # nested required
    ('{"name": "Ana", "address": {"city": "K"}, "tags": ["c"]}', False),
    ('{"name": "", "address": {"city": "K"}}', False),
    ("not json", False), ("", False), ("[]", False),
])
def test_json_schema_nested(answer, ok):
    assert M.schema_scorer(NESTED)(answer, "") == float(ok)


@pytest.mark.parametrize("answer, want", [
    ('{"city": "Köln", "n": 2, "ok": true}', 1.0),
    ('{"ok": true, "n": 2.0, "city": "Köln", "extra": 1}', 1.0),  # order, 2 == 2.0 and extra fields do not matter
    ('{"city": "Köln", "n": 3}', 1 / 3),  # one of three
    ('{"city": "Koln", "n": 2, "ok": 1}', 1 / 3),  # 1 is not true
    ('{"city": "Köln"}', 1 / 3),
    ("[]", 0.0), ("", 0.0), ("{broken", 0.0), ('"Köln"', 0.0),
])
def test_json_fields(answer, want):
    assert M.json_fields(answer, '{"city": "Köln", "n": 2, "ok": true}') == pytest.approx(want)


def test_json_fields_nested_values_compare_whole():
    target = '{"a": {"b": [1, {"c": false}]}, "d": null}'
    assert M.json_fields('{"a": {"b": [1, {"c": false}]}, "d": null}', target) == 1.0
    assert M.json_fields('{"a": {"b": [1, {"c": 0}]}, "d": null}', target) == 0.5
    with pytest.raises(ValueError, match="JSON object"):
        M.json_fields("{}", "[1]")


def test_scorer_for_each_metric():
    def spec(**over):
        return TaskSpec.model_validate({**GEN, **over})

    assert M.scorer_for(spec()) is M.exact_match
    assert M.scorer_for(spec(metric="f1")) is M.token_f1
    assert M.scorer_for(spec(metric="regex", answer_regex=r"(?P<answer>\w+)$"))("it is x", "x") == 1.0
    assert M.scorer_for(spec(metric="json_valid"))("{}", "") == 1.0
    assert M.scorer_for(spec(metric="json_schema", answer_schema={"type": "integer"}))("3", "") == 1.0
    assert M.scorer_for(spec(metric="json_fields")) is M.json_fields
    # fingerprints: the new fields are left out of dumps when not used
    assert "answer_regex" not in spec().model_dump() and "answer_schema" not in spec().model_dump()


# --- the analysis of non-binary scores ---------------------------------------------------------------------------


def test_fractional_scores_get_bootstrap_intervals_and_pair():
    a = [M.token_f1(p, t) for p, t in [("cat", "cat sat"), ("dog", "dog"), ("", "x"), ("a b", "b c")]] * 5
    b = [1.0, 1.0, 0.5, 0.0] * 5
    est = estimate(a)
    assert est.method == "bootstrap" and est.low <= est.value <= est.high
    d = paired_diff({str(i): x for i, x in enumerate(a)}, {str(i): x for i, x in enumerate(b)}, "A", "B")
    assert d.ci_method == "bootstrap" and not d.binary and d.ci_low <= d.diff <= d.ci_high
    assert estimate([M.exact_match("x", "x"), 0.0]).method == "wilson"


# --- task-spec validation: one line, exit 2 ----------------------------------------------------------------------


def _task_dir(d: Path, **over) -> None:
    (d / "tasks" / "data").mkdir(parents=True, exist_ok=True)
    for split in ("train", "test"):
        (d / "tasks" / "data" / f"snips_{split}.jsonl").write_bytes((REPO / "tasks" / "data" / f"snips_{split}.jsonl").read_bytes())
    spec = {**GEN, **over}
    for k in [k for k, v in spec.items() if v is None]:
        spec.pop(k)
    (d / "tasks" / "snips_intents_generate.yaml").write_text(yaml.safe_dump(spec, allow_unicode=True))


def _job(d: Path, base: str, **over) -> Path:
    job = {"name": "metrics", "tasks": ["snips_intents_generate"], "base": base, "limit": 6, "seed": 5,
           "arms": {"prompting": {"shots": [0]}, "lora": {"enabled": False}}, "output_dir": str(d / "runs"),
           "adapters_dir": str(d / "adapters")} | over
    p = d / "job.yaml"
    p.write_text(yaml.safe_dump(job))
    return p


BAD_SPECS = {
    "regex_without_pattern": ({"metric": "regex"}, "metric: regex needs `answer_regex`"),
    "pattern_does_not_compile": ({"metric": "regex", "answer_regex": "(?P<answer>x"}, "not a valid regular expression"),
    "pattern_without_regex_metric": ({"answer_regex": "x"}, "is used by metric: regex only"),
    "schema_missing": ({"metric": "json_schema"}, "metric: json_schema needs `answer_schema`"),
    "schema_invalid": ({"metric": "json_schema", "answer_schema": {"type": "objekt"}}, "is not a valid JSON Schema"),
    "schema_nested_invalid": ({"metric": "json_schema", "answer_schema": {"type": "object", "properties": {"a": {"minLength": -1}}}},
                              "is not a valid JSON Schema"),
    "schema_without_schema_metric": ({"answer_schema": {"type": "object"}}, "is used by metric: json_schema only"),
    "schema_file_missing": ({"metric": "json_schema", "answer_schema": "schemas/nope.json"}, "schema file schemas/nope.json not found"),
    "schema_file_invalid": ({"metric": "json_schema", "answer_schema": "bad.json"}, "is not a valid JSON Schema"),
    "schema_file_not_json": ({"metric": "json_schema", "answer_schema": "broken.json"}, "is not valid JSON"),
    "f1_on_a_choice_task": ({"metric": "f1", "kind": "choice", "choices": ["a", "b"]}, "f1 scores generated answers"),
    "unknown_metric": ({"metric": "bleu"}, "'metric'"),
    "json_fields_target_not_object": ({"metric": "json_fields"}, "metric json_fields needs each target to be a JSON object"),
}


@pytest.mark.parametrize("name", sorted(BAD_SPECS))
def test_bad_metric_fields_exit_2_with_one_line(name, tmp_path, tiny_llama_dir, monkeypatch):
    over, needle = BAD_SPECS[name]
    monkeypatch.chdir(tmp_path)
    _task_dir(tmp_path, **over)
    (tmp_path / "tasks" / "bad.json").write_text(json.dumps({"type": 3}))
    (tmp_path / "tasks" / "broken.json").write_text("{type: object")
    res = CliRunner().invoke(app, ["run", str(_job(tmp_path, str(tiny_llama_dir)))])
    err = res.stderr if hasattr(res, "stderr") else res.output
    lines = [x for x in err.splitlines() if x.strip()]
    assert res.exit_code == 2, (name, res.output, repr(res.exception))
    assert "Traceback" not in err and len(lines) == 1 and lines[0].startswith("error:"), (name, err)
    assert needle in lines[0], (name, lines[0])
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob("units/*.json"))


def test_schema_file_is_read_relative_to_the_task(tmp_path):
    from evaluator.tasks.load import load_task

    _task_dir(tmp_path, metric="json_schema", answer_schema="schemas/answer.yaml")
    (tmp_path / "tasks" / "schemas").mkdir()
    (tmp_path / "tasks" / "schemas" / "answer.yaml").write_text("type: object\nadditionalProperties: false\n")
    task = load_task(str(tmp_path / "tasks" / "snips_intents_generate.yaml"))
    assert task.spec.answer_schema == {"type": "object", "additionalProperties": False}
    assert M.scorer_for(task.spec)('{"a": 1}', "") == 0.0 and M.scorer_for(task.spec)("{}", "") == 1.0


# --- end to end: metric f1 on the fixture model ------------------------------------------------------------------


@pytest.fixture(scope="module")
def varied_llama(tmp_path_factory, tiny_tokenizer_dir) -> Path:
    """A tiny random Llama that writes words (tiny_llama_dir writes only punctuation, which F1 normalises away)."""
    return build_tiny_model(tmp_path_factory.mktemp("varied"), "llama", tiny_tokenizer_dir, seed=3, initializer_range=0.2)


def _rows(d: Path) -> dict[str, list[dict]]:
    (rd,) = list((d / "runs").iterdir())
    return {p.stem: [json.loads(x) for x in p.read_text().splitlines()] for p in (rd / "results").glob("*.jsonl")}


def test_run_with_f1_has_non_binary_scores_and_a_bootstrap_interval(tmp_path, varied_llama, monkeypatch):
    """At k=0 the prompt holds no target, so the answers of a first run are known before the targets of a second
    are written: each target is then built from its item's answer to score 1 (the answer), 0 (unrelated words) or
    a fraction (the answer plus extra words) — whatever the random fixture model writes."""
    monkeypatch.chdir(tmp_path)
    first = tmp_path / "first"
    first.mkdir()
    _task_dir(first, metric="f1")
    res = CliRunner().invoke(app, ["run", str(_job(first, str(varied_llama)))])
    assert res.exit_code == 0, res.output
    (rows,) = _rows(first).values()
    answers = {r["item_id"]: r["prediction"] for r in rows}
    assert any(M.normalise(a) for a in answers.values()), answers  # the fixture model writes words

    d = tmp_path / "second"
    d.mkdir()
    _task_dir(d, metric="f1")
    test_file = d / "tasks" / "data" / "snips_test.jsonl"
    out, told = [], 0
    for line in test_file.read_text().splitlines():
        row = json.loads(line)
        if row["id"] in answers:
            a = answers[row["id"]]
            told += 1
            row["label"] = (f"{a} zebra quokka" if told % 3 == 1 or not M.normalise(a) else a if told % 3 == 2
                            else "zebra quokka")
        out.append(json.dumps(row, ensure_ascii=False))
    test_file.write_text("\n".join(out) + "\n")
    res = CliRunner().invoke(app, ["run", str(_job(d, str(varied_llama), arms={
        "prompting": {"shots": [0, 2]}, "lora": {"enabled": False}}))])
    assert res.exit_code == 0, res.output
    (rd,) = list((d / "runs").iterdir())
    units = {p.stem: json.loads(p.read_text()) for p in (rd / "units").glob("*.json")}
    (k0,) = [u for u in units.values() if u["point"]["shots"] == 0]
    scores = [r["score"] for r in _rows(d)[k0["unit"]]]
    assert [r["prediction"] for r in _rows(d)[k0["unit"]]] == [answers[r["item_id"]] for r in _rows(d)[k0["unit"]]]
    assert all(0.0 <= s <= 1.0 for s in scores) and any(0.0 < s < 1.0 for s in scores), scores
    assert k0["metric"] == "f1" and k0["ci_method"] == "bootstrap"
    assert k0["ci_low"] <= k0["value"] <= k0["ci_high"] and k0["value"] == pytest.approx(sum(scores) / len(scores))
    # paired with the k=2 unit item by item
    (k2,) = [u for u in units.values() if u["point"]["shots"] == 2]
    assert k2["item_ids_hash"] == k0["item_ids_hash"]
    d2 = paired_diff({r["item_id"]: r["score"] for r in _rows(d)[k0["unit"]]},
                     {r["item_id"]: r["score"] for r in _rows(d)[k2["unit"]]}, "A k=0", "A k=2")
    assert d2.ci_method == "bootstrap" and d2.ci_low <= d2.diff <= d2.ci_high
    report = json.loads((rd / "report.json").read_text())
    assert re.search(r"bootstrap", json.dumps(report))


def test_generation_ending_at_a_stop_token_gives_the_same_cut_answer(tmp_path):
    """rows.end_token_ids: tokens whose text holds a stop sequence. Ending generation right after one cannot change
    the answer, which is cut at the first stop sequence anyway — checked on real decoded text for every such token."""
    from evaluator.arms.rows import _cut_at_stop, end_token_ids
    from tests.tiny_models import build_tokenizer

    tok_dir = build_tokenizer(tmp_path / "tok")
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tok_dir)
    ends = end_token_ids(tok, ["\n", "###"])
    assert ends and end_token_ids(tok, ["\n", "###"]) is ends  # computed once per tokenizer and stop set
    assert end_token_ids(tok, []) == []
    texts = tok.batch_decode([[i] for i in range(len(tok))])
    assert all("\n" in texts[i] or "###" in texts[i] for i in ends)
    assert not any("\n" in t for i, t in enumerate(texts) if i not in set(ends))
    body = tok("Intent: play_music", add_special_tokens=False)["input_ids"]
    tail = tok(" and more text", add_special_tokens=False)["input_ids"]
    for e in ends[:20]:
        full = tok.decode(body + [e] + tail)
        early = tok.decode(body + [e])
        assert _cut_at_stop(full, ["\n", "###"]) == _cut_at_stop(early, ["\n", "###"])
