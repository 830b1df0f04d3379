"""The task files shipped in tasks/: each loads through the real loader with sound splits and pinned data, the
structured-output task's targets fit its schema and metrics, and the extraction script's pure functions
(tasks/data/extract_bigbench.py) behave on small synthetic BIG-bench task dicts."""

from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import random
import re
import sys
import tarfile
from collections import Counter
from functools import lru_cache
from pathlib import Path

import pytest
import yaml

from evaluator.tasks import metrics as M
from evaluator.tasks.load import load_task

REPO = Path(__file__).resolve().parents[1]
TASKS_DIR = REPO / "tasks"
DATA = TASKS_DIR / "data"
TASK_FILES = sorted(TASKS_DIR.glob("*.yaml"))
E2E_ORDER = ["name", "eat_type", "food", "price_range", "customer_rating", "area", "family_friendly", "near"]

# Task.data_hash of (train, test) per shipped task: changes only when its items do (re-extraction must reproduce
# them; a deliberate change of a task's data updates this table).
PINNED = {
    "snips_intents": ("a66b8ed37c8b69f7", "c6ba23dcdd1a3cdb"),
    "snips_intents_generate": ("a66b8ed37c8b69f7", "c6ba23dcdd1a3cdb"),
    "restaurant_json": ("7850dc441a6fc41f", "3426590237134871"),
    "proverbs": ("28fcf34d3e90aa88", "f199424ca8cd28f7"),
    "language_id": ("c1144d3dbc93199f", "a9614b6aeaa9b5b5"),
    "review_sentiment": ("3e0eb021df3b8047", "389b3b8cc349db74"),
}


def _extractor():
    spec = importlib.util.spec_from_file_location("extract_bigbench", DATA / "extract_bigbench.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["extract_bigbench"] = mod  # dataclasses look their module up while the class is built
    spec.loader.exec_module(mod)
    return mod


X = _extractor()


@lru_cache(maxsize=None)
def _task(stem: str):
    return load_task(str(TASKS_DIR / f"{stem}.yaml"))


def _rows(name: str, part: str) -> list[dict]:
    return [json.loads(line) for line in (DATA / f"{name}_{part}.jsonl").read_text(encoding="utf-8").splitlines()]


# --------------------------------------------------------------------------------------------- every shipped task


def test_the_expected_tasks_are_shipped():
    assert {p.stem for p in TASK_FILES} >= set(PINNED)
    assert not (DATA / "extract_snips.py").exists()  # folded into extract_bigbench.py


@pytest.mark.parametrize("path", TASK_FILES, ids=lambda p: p.stem)
def test_task_loads_with_sound_splits(path):
    task = _task(path.stem)
    train, test = task.train, task.test
    assert len(train) + len(test) >= 300
    assert 200 <= len(test) <= 300 and len(train) >= len(test)
    train_ids, test_ids = [it.id for it in train], [it.id for it in test]
    assert len(set(train_ids)) == len(train_ids) and len(set(test_ids)) == len(test_ids)
    assert not set(train_ids) & set(test_ids)
    assert all(it.input.strip() and it.target.strip() for it in (*train, *test))
    if task.spec.kind == "choice":
        assert all(len(it.choices) >= 2 and it.target in it.choices for it in (*train, *test))
    assert path.read_text(encoding="utf-8").startswith("#")  # the provenance header comment


@pytest.mark.parametrize("stem", sorted(PINNED))
def test_data_hash_is_pinned_and_deterministic(stem):
    task = _task(stem)
    got = (task.data_hash(task.train), task.data_hash(task.test))
    again = load_task(str(TASKS_DIR / f"{stem}.yaml"))
    assert (again.data_hash(again.train), again.data_hash(again.test)) == got
    assert got == PINNED[stem]


# --------------------------------------------------------------------------------------------- restaurant_json


def _schema() -> dict:
    return json.loads((TASKS_DIR / "restaurant_json.schema.json").read_text(encoding="utf-8"))


def test_restaurant_json_targets_fit_the_schema_and_the_metric():
    task, schema = _task("restaurant_json"), _schema()
    assert M.check_schema(schema) is None
    assert schema["required"] == E2E_ORDER == list(schema["properties"]) and schema["additionalProperties"] is False
    valid = M.schema_scorer(schema)
    for it in (*task.train, *task.test):
        assert "\n" not in it.target
        value = json.loads(it.target)
        assert list(value) == E2E_ORDER
        assert isinstance(value["name"], str) and value["family_friendly"] in (True, False, None)
        assert valid(it.target, it.target) == 1.0
        assert M.json_fields(it.target, it.target) == 1.0
    assert {json.loads(it.target)["family_friendly"] for it in task.test} == {True, False, None}
    one = task.test[0].target
    assert valid(one.replace('"name"', '"Name"'), one) == 0.0  # an unknown key fails the schema
    assert M.json_fields(one.replace('"near": ', '"near": "x", "y": '), one) < 1.0


def test_restaurant_json_can_switch_to_the_schema_metric(tmp_path):
    spec = yaml.safe_load((TASKS_DIR / "restaurant_json.yaml").read_text(encoding="utf-8"))
    spec["data"]["data_files"] = {k: str(TASKS_DIR / v) for k, v in spec["data"]["data_files"].items()}
    spec.update(metric="json_schema", answer_schema=str(TASKS_DIR / "restaurant_json.schema.json"))
    (tmp_path / "rj.yaml").write_text(yaml.safe_dump(spec, allow_unicode=True), encoding="utf-8")
    task = load_task(str(tmp_path / "rj.yaml"))
    score = M.scorer_for(task.spec)
    assert all(score(it.target, it.target) == 1.0 for it in task.test)
    assert score('{"name": "Cotto"}', task.test[0].target) == 0.0


def test_restaurant_json_groups_meaning_representations():
    train, test = _rows("restaurant_json", "train"), _rows("restaurant_json", "test")
    assert not {r["mr"] for r in train} & {r["mr"] for r in test}
    for r in (*train, *test):
        assert json.loads(r["json"]) == X.parse_mr(r["mr"])
    spec = _task("restaurant_json").spec
    assert spec.kind == "generate" and spec.metric == "json_fields" and spec.stop_sequences == ["\n"]
    assert all(k in spec.instruction for k in E2E_ORDER) and "null" in spec.instruction


def test_restaurant_json_budget_fits_the_longest_answer():
    tok_dir = Path.home() / ".cache" / "tunecheck" / "models" / "smollm2-135m"
    if not (tok_dir / "tokenizer.json").is_file():
        pytest.skip("demo tokenizer not converted on this machine")
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tok_dir / "tokenizer.json"))
    task = _task("restaurant_json")
    longest = max(len(tok.encode(" " + it.target + "\n").ids) for it in (*task.train, *task.test))
    assert longest + 16 <= task.spec.max_new_tokens


# --------------------------------------------------------------------------------------------- the choice tasks


def test_proverbs_fixed_label_set_and_stratified_split():
    task = _task("proverbs")
    choices = task.spec.choices
    assert len(choices) == 100 and task.spec.choices_field is None and task.spec.scoring == "length_normalised"
    assert Counter(it.target for it in task.test) == Counter({c: 3 for c in choices})
    assert Counter(it.target for it in task.train) == Counter({c: 7 for c in choices})
    assert {it.target for it in task.train[:100]} == set(choices)


def test_language_id_per_item_choices():
    task = _task("language_id")
    assert task.spec.choices_field == "choices" and task.spec.choices is None
    for it in (*task.train, *task.test):
        assert len(it.choices) == 11 and list(it.choices) == sorted(it.choices)
        assert 20 <= len(it.input) <= 400
    assert len({it.target for it in (*task.train, *task.test)}) > 500


def test_review_sentiment_classes_and_lengths():
    task = _task("review_sentiment")
    assert set(task.spec.choices) == {"positive", "negative", "neutral", "ambivalent"}
    lo, hi = X.REVIEW_CHARS
    assert all(lo <= len(it.input) <= hi for it in (*task.train, *task.test))
    assert {it.target for it in task.train[:20]} == set(task.spec.choices)


# --------------------------------------------------------------------------------------------- extraction functions


def _mc(text: str, labels: list[str], right: str) -> dict:
    return {"input": text, "target_scores": {c: int(c == right) for c in labels}}


def test_parse_mr_fixed_keys_nulls_and_booleans():
    got = X.parse_mr("name: Blue Spice, eatType: coffee shop, area: city centre")
    assert list(got) == E2E_ORDER
    assert got == {"name": "Blue Spice", "eat_type": "coffee shop", "food": None, "price_range": None,
                   "customer_rating": None, "area": "city centre", "family_friendly": None, "near": None}
    full = X.parse_mr("name: Cotto, eatType: pub, food: Fast food, priceRange: more than £30, "
                      "customer rating: 5 out of 5, area: riverside, familyFriendly: no, near: Café Sicilia")
    assert full["price_range"] == "more than £30" and full["customer_rating"] == "5 out of 5"
    assert full["family_friendly"] is False and full["near"] == "Café Sicilia"
    assert X.parse_mr("name: A, familyFriendly: yes")["family_friendly"] is True
    assert X.parse_mr("name: A, near: The Rice Boat, Ltd")["near"] == "The Rice Boat, Ltd"  # a comma inside a value
    line = X.mr_json("name: Café X, near: B")
    assert "\n" not in line and "Café" in line and json.loads(line)["name"] == "Café X"


@pytest.mark.parametrize("mr", [
    "name: A, colour: red",  # unknown attribute
    "name: A, area: city centre, area: riverside",  # repeated
    "name: A, familyFriendly: maybe",
    "eatType: pub",  # no name
    "name: A, food: ",  # empty value
    "just text",
])
def test_parse_mr_refuses_what_has_no_one_answer(mr):
    with pytest.raises(ValueError):
        X.parse_mr(mr)


def test_rows_restaurant_json_skips_repeated_attributes():
    task = {"examples": [
        {"input": "name: A, eatType: pub", "target": "A  is a\npub.", "comment": "c0"},
        {"input": "name: B, area: city centre, area: riverside", "target": "B is central.", "comment": "c1"},
        {"input": "name: C, familyFriendly: yes", "target": "C is for kids.", "comment": "c2"},
    ]}
    rows = X.rows_restaurant_json(task)
    assert [r["id"] for r in rows] == ["e2e-0000", "e2e-0002"]
    assert rows[0]["text"] == "A is a pub." and rows[0]["mr"] == "name: A, eatType: pub"
    assert json.loads(rows[1]["json"])["family_friendly"] is True


def test_grouped_split_keeps_groups_together_and_is_seeded():
    rng = random.Random(3)
    rows = [{"id": f"r{i}", "g": f"g{rng.randrange(40)}"} for i in range(400)]
    a = X.grouped_split(rows, group=lambda r: r["g"], n_test=100, seed=5)
    assert not {r["g"] for r in a["train"]} & {r["g"] for r in a["test"]}
    assert len(a["test"]) >= 100 and a["train"]
    assert sorted(r["id"] for r in a["train"] + a["test"]) == sorted(r["id"] for r in rows)
    assert X.grouped_split(rows, group=lambda r: r["g"], n_test=100, seed=5) == a
    assert X.grouped_split(rows, group=lambda r: r["g"], n_test=100, seed=6) != a
    with pytest.raises(ValueError):
        X.grouped_split(rows[:3], group=lambda r: "one", n_test=1)


def test_stratified_split_covers_classes_first_and_is_seeded():
    rows = [{"id": f"r{i}", "label": f"c{i % 25}"} for i in range(250)]
    a = X.stratified_split(rows, label=lambda r: r["label"], n_test_per_class=3, seed=1)
    assert Counter(r["label"] for r in a["test"]) == Counter({f"c{i}": 3 for i in range(25)})
    assert len(a["train"]) == 175 and {r["label"] for r in a["train"][:25]} == {f"c{i}" for i in range(25)}
    assert not {r["id"] for r in a["train"]} & {r["id"] for r in a["test"]}
    assert X.stratified_split(rows, label=lambda r: r["label"], n_test_per_class=3, seed=1) == a
    assert X.stratified_split(rows, label=lambda r: r["label"], n_test_per_class=3, seed=2) != a
    with pytest.raises(ValueError):
        X.stratified_split(rows[:30], label=lambda r: r["label"], n_test_per_class=1)


def test_seeded_split_is_the_snips_rule_and_subsamples():
    rows = [{"id": i} for i in range(50)]
    old = list(rows)
    random.Random(X.SEED).shuffle(old)  # what extract_snips.py did: one shuffle, the first N test, the rest train
    assert X.seeded_split(rows, 10) == {"test": old[:10], "train": old[10:]}
    sub = X.seeded_split(rows, 10, n_train=15)
    assert len(sub["test"]) == 10 and len(sub["train"]) == 15 and sub["test"] == old[:10]
    with pytest.raises(ValueError):
        X.seeded_split(rows, 40, n_train=20)


def test_choice_rows_from_synthetic_tasks():
    snips = X.rows_snips({"examples": [_mc("Utterance: play jazz", ["play_music", "get_weather"], "play_music")]})
    assert snips == [{"id": "snips-0000", "text": "play jazz", "label": "play_music"}]
    with pytest.raises(ValueError):
        X.the_label({"input": "x", "target_scores": {"a": 1, "b": 1}})
    with pytest.raises(ValueError):
        X.the_label({"input": "x", "target_scores": {"a": 0, "b": 0}})

    proverbs = {"examples": [_mc(" n1 ", ["P1", "P2"], "P2"), _mc("n2", ["P2", "P1"], "P1")]}
    assert X.rows_proverbs(proverbs)[0] == {"id": "proverb-0000", "text": "n1", "label": "P2"}
    assert X.proverb_choices(proverbs) == ["P1", "P2"]
    with pytest.raises(ValueError):
        X.rows_proverbs({"examples": [_mc("n1", ["P1", "P2"], "P1"), _mc("n2", ["P1", "P3"], "P1")]})

    langs = X.rows_language_id({"examples": [_mc("Dies ist ein deutscher Satz.", ["Zulu", "German", "Basque"], "German"),
                                             _mc("(-)", ["A", "B"], "A")]})
    assert langs == [{"id": "langid-00000", "text": "Dies ist ein deutscher Satz.", "label": "German",
                      "choices": ["Basque", "German", "Zulu"]}]

    reviews = X.rows_review_sentiment({"examples": [_mc("x" * 1001, ["positive", "negative"], "negative"),
                                                    _mc("  P ", ["positive", "negative"], "negative"),
                                                    _mc("Great stay, friendly staff.", ["positive", "negative"], "positive")]})
    assert reviews == [{"id": "multiemo-0002", "text": "Great stay, friendly staff.", "label": "positive"}]


def _tiny_sdist(path: Path, members: dict[str, dict]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, obj in members.items():
            data = json.dumps(obj).encode()
            info = tarfile.TarInfo(X.TASKS_PREFIX + name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_extract_checks_the_hash_and_writes_jsonl(tmp_path, monkeypatch, capsys):
    task = {"examples": [_mc(f"Utterance: u{i}", ["a", "b"], "ab"[i % 2]) for i in range(6)]}
    sdist = _tiny_sdist(tmp_path / "bigbench-1.0.0.tar.gz", {"tiny/task.json": task})
    with pytest.raises(SystemExit, match="sha256 mismatch"):
        X.extract(["snips"], sdist, tmp_path)
    monkeypatch.setattr(X, "SDIST_SHA256", hashlib.sha256(sdist.read_bytes()).hexdigest())
    monkeypatch.setitem(X.TASKS, "tiny", X.Extraction("tiny/task.json", X.rows_snips, lambda r: X.seeded_split(r, 2)))
    X.extract(["tiny"], sdist, tmp_path)
    test = (tmp_path / "tiny_test.jsonl").read_text(encoding="utf-8").splitlines()
    train = (tmp_path / "tiny_train.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(test) == 2 and len(train) == 4
    assert sorted(json.loads(x)["id"] for x in test + train) == [f"snips-{i:04d}" for i in range(6)]
    assert "tiny: 4 train, 2 test rows" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="no member"):
        X.extract(["snips"], sdist, tmp_path)  # the archive lacks intent_recognition/task.json


def test_cli_refuses_an_unknown_task(capsys):
    with pytest.raises(SystemExit):
        X.main(["--sdist", "nowhere.tar.gz", "sports_understanding"])
    assert re.search(r"unknown task\(s\) sports_understanding", capsys.readouterr().err)
