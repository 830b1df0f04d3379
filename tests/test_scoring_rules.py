"""Scoring rules for choice tasks: `scoring: sum | length_normalised` and the `labels` verbaliser.

The fixture is a binary task over the SNIPS utterances ("is it about music?") whose labels differ in token length
with the tiny tokenizer (" implausible" 8 tokens, " plausible" 6): `sum` favours the shorter label, which the unit
record and the report must say. `length_normalised` must be lm-eval 0.4.13's `acc_norm` (argmax of loglik / len(choice
text), characters, no target delimiter): per item and overall, against `simple_evaluate` on the same docs, the same
first_n demonstrations and the same tiny model.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from evaluator.errors import UserError
from evaluator.prompts.tokenized import TokenizedPrompts
from evaluator.tasks.layout import PromptBuilder
from evaluator.tasks.load import load_task
from evaluator.tasks.spec import TaskSpec

REPO = Path(__file__).resolve().parents[1]
MUSIC = {"play_music", "add_to_playlist"}
CHOICES = ["implausible", "plausible"]
WORDS = {"implausible": "no", "plausible": "yes"}
INSTRUCTION = "Is the utterance about music? Answer plausible or implausible."
N_TRAIN, N_TEST = 40, 40
K = 3


def _rows(split: str, n: int) -> list[dict]:
    out = []
    for line in (REPO / "tasks" / "data" / f"snips_{split}.jsonl").read_text(encoding="utf-8").splitlines()[:n]:
        r = json.loads(line)
        out.append({"id": r["id"], "text": r["text"], "label": "plausible" if r["label"] in MUSIC else "implausible"})
    return out


@pytest.fixture(scope="module")
def binary_dir(tmp_path_factory) -> Path:
    """d/data/{train,test}.jsonl, d/prompts/binary.j2, and task files written per test by `native`."""
    d = tmp_path_factory.mktemp("binary")
    (d / "data").mkdir()
    for split, n in (("train", N_TRAIN), ("test", N_TEST)):
        (d / "data" / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in _rows(split, n)))
    for split, n in (("train", N_TRAIN), ("test", N_TEST)):
        (d / "data" / f"opts_{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in _opts_rows(split, n)))
    (d / "prompts").mkdir()
    (d / "prompts" / "binary.j2").write_text("Utterance: {{ input }}\nAnswer:")
    return d


def _opts_rows(split: str, n: int) -> list[dict]:
    """SNIPS items with two per-row choices, the gold intent and another one (of other lengths), order varying."""
    intents = yaml.safe_load((REPO / "tasks" / "snips_intents.yaml").read_text())["choices"]
    out = []
    for i, line in enumerate((REPO / "tasks" / "data" / f"snips_{split}.jsonl").read_text(encoding="utf-8").splitlines()[:n]):
        r = json.loads(line)
        other = next(x for j in range(1, 8) if (x := intents[(intents.index(r["label"]) + i + j) % 7]) != r["label"])
        out.append({"id": r["id"], "text": r["text"], "label": r["label"],
                    "opts": [r["label"], other] if i % 2 else [other, r["label"]]})
    return out


def native(d: Path, name: str = "music_binary", **over) -> Path:
    spec = {
        "name": name,
        "data": {"path": "json", "data_files": {"train": "data/train.jsonl", "test": "data/test.jsonl"}},
        "id_field": "id", "input_field": "text", "target_field": "label",
        "kind": "choice", "choices": CHOICES, "prompt": "binary.j2", "instruction": INSTRUCTION,
        "demonstrations": "first_n",
    }
    spec.update(over)
    spec = {k: v for k, v in spec.items() if v is not None}
    path = d / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def lmeval_yaml(d: Path, name: str, choices: list[str] | str, target: str, files: str = "") -> Path:
    """The same task as an lm-eval YAML: first_n demonstrations from the training split, acc and acc_norm."""
    folder = d / f"lm_{name}"
    folder.mkdir(exist_ok=True)
    cfg = {
        "task": name,
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {s: str(d / "data" / f"{files}{s}.jsonl") for s in ("train", "test")}},
        "training_split": "train",
        "test_split": "test",
        "fewshot_config": {"sampler": "first_n"},
        "output_type": "multiple_choice",
        "description": INSTRUCTION + "\n\n",
        "doc_to_text": "Utterance: {{text}}\nAnswer:",
        "doc_to_choice": choices,
        "doc_to_target": target,
        "metric_list": [{"metric": "acc"}, {"metric": "acc_norm"}],
        "metadata": {"version": 1.0},
    }
    (folder / f"{name}.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    return folder


@pytest.fixture(scope="module")
def tiny(tiny_llama_dir):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_llama_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype=torch.float32, attn_implementation="sdpa").eval()
    return model, tok


def ours(task, tiny, k: int = K, items=None):
    from evaluator.arms.rows import choice_rows
    from evaluator.engine.scorer import PrefixScorer

    model, tok = tiny
    tp = TokenizedPrompts(PromptBuilder(task, 0), tok)
    items = list(task.test) if items is None else items
    return choice_rows(task, tp, PrefixScorer(model, tp.prefix_ids(k), mode="packed"), items, k), tp


def lmeval_samples(tiny, folder: Path, name: str, k: int = K):
    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    model, tok = tiny
    res = lm_eval.simple_evaluate(
        model=HFLM(pretrained=model, tokenizer=tok, batch_size=8), tasks=[name], num_fewshot=k, log_samples=True,
        bootstrap_iters=0, task_manager=TaskManager(include_path=str(folder)),
        random_seed=None, numpy_random_seed=None, torch_random_seed=None,
    )
    return sorted(res["samples"][name], key=lambda s: s["doc_id"]), res["results"][name]


def _old_choice_rows(task, tp, scorer, items, k):
    """`arms.choice_rows` as it was before `scoring` existed (the byte-identity reference for `sum`)."""
    from evaluator.engine.requests import ChoiceRequest

    reqs = [ChoiceRequest(item_ids=tp.item_ids(it, k), choice_ids=[tp.continuation_ids(c, it, k) for c in it.choices])
            for it in items]
    rows = []
    for it, req, sc in zip(items, reqs, scorer.score(reqs)):
        best = max(range(len(sc.loglik)), key=lambda j: sc.loglik[j])
        pred = it.choices[best]
        rows.append({
            "item_id": it.id, "query": tp.builder.query(it), "target": it.target, "choices": list(it.choices),
            "prediction": pred, "score": float(pred == it.target), "loglik": [round(x, 6) for x in sc.loglik],
            "is_greedy": list(sc.is_greedy), "item_tokens": len(req.item_ids),
            "prompt_tokens": scorer.prefix_len + len(req.item_ids), "output_tokens": 0,
        })
    return rows


# --------------------------------------------------------------------------------------------------------------------
# The spec
# --------------------------------------------------------------------------------------------------------------------


def test_defaults_leave_the_spec_and_its_dump_as_before(binary_dir):
    snips = load_task("snips_intents")
    assert snips.spec.scoring == "sum" and snips.spec.labels is None
    dump = snips.spec.model_dump(mode="json")
    assert "scoring" not in dump and "labels" not in dump  # task fingerprints of existing runs do not move
    assert TaskSpec.model_validate(dump) == snips.spec
    t = load_task(str(native(binary_dir, "dumped", scoring="length_normalised", labels=WORDS)))
    d2 = t.spec.model_dump(mode="json")
    assert d2["scoring"] == "length_normalised" and d2["labels"] == WORDS and TaskSpec.model_validate(d2) == t.spec


@pytest.mark.parametrize("over, needle", [
    ({"labels": {"implausible": "no"}}, "keys must be exactly the task's choices (implausible, plausible): missing 'plausible'"),
    ({"labels": {"implausible": "no", "plausible": "yes", "maybe": "m"}}, "not a choice: 'maybe'"),
    ({"labels": {"implausible": "no", "plausibel": "yes"}}, "missing 'plausible'; not a choice: 'plausibel'"),
    ({"labels": {"implausible": "", "plausible": "yes"}}, "label 'implausible' maps to an empty word"),
    ({"labels": {"implausible": "yes", "plausible": "yes"}}, "labels 'implausible' and 'plausible' both map to 'yes'"),
    ({"labels": {}}, "field 'labels': is empty"),
    ({"labels": {"implausible": 0, "plausible": 1}}, "field 'labels.implausible'"),
    ({"labels": ["no", "yes"]}, "field 'labels'"),
    ({"scoring": "mean"}, "field 'scoring'"),
    ({"kind": "generate", "choices": None, "labels": WORDS}, "labels (a verbaliser) apply to choice tasks"),
    ({"kind": "generate", "choices": None, "scoring": "length_normalised"}, "scoring: length_normalised applies to choice tasks"),
])
def test_bad_scoring_or_labels_is_one_line(binary_dir, over, needle):
    with pytest.raises(UserError) as exc:
        load_task(str(native(binary_dir, "bad", **over)))
    msg = str(exc.value)
    assert "\n" not in msg and needle in msg, msg
    assert "bad.yaml" in msg


def test_unquoted_yes_no_words_get_the_yaml_boolean_hint(binary_dir):
    path = binary_dir / "booleans.yaml"
    native(binary_dir, "booleans")
    path.write_text(path.read_text() + "labels: {implausible: no, plausible: yes}\n")
    with pytest.raises(UserError) as exc:
        load_task(str(path))
    msg = str(exc.value)
    assert "\n" not in msg and "labels" in msg and 'quote YAML booleans ("yes" / "no")' in msg, msg


def test_per_row_choices_missing_from_labels_fail_when_scored(binary_dir, tiny):
    rows = [dict(r, opts=CHOICES) for r in _rows("test", 4)]
    (binary_dir / "data" / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    path = native(binary_dir, "rowchoices", choices=None, choices_field="opts", labels={"implausible": "no", "other": "x"},
                  data={"path": "json", "data_files": {"train": "data/rows.jsonl", "test": "data/rows.jsonl"}})
    task = load_task(str(path))  # keys cannot be checked against per-row choices on load
    with pytest.raises(UserError) as exc:
        ours(task, tiny, k=0)
    assert "\n" not in str(exc.value) and "label 'plausible' has no word in `labels`" in str(exc.value)


# --------------------------------------------------------------------------------------------------------------------
# sum: unchanged
# --------------------------------------------------------------------------------------------------------------------


def test_sum_rows_are_byte_identical_to_before(binary_dir, tiny):
    from evaluator.engine.scorer import PrefixScorer

    for task in (load_task("snips_intents"), load_task(str(native(binary_dir)))):
        items = list(task.test[:12])
        new, tp = ours(task, tiny, items=items)
        old = _old_choice_rows(task, tp, PrefixScorer(tiny[0], tp.prefix_ids(K), mode="packed"), items, K)
        assert json.dumps(new) == json.dumps(old)


# --------------------------------------------------------------------------------------------------------------------
# length_normalised = lm-eval's acc_norm
# --------------------------------------------------------------------------------------------------------------------


def test_length_normalised_equals_lmeval_acc_norm(binary_dir, tiny):
    import numpy as np

    task = load_task(str(native(binary_dir, scoring="length_normalised")))
    norm, tp = ours(task, tiny)
    summed, _ = ours(load_task(str(native(binary_dir, "music_sum"))), tiny)
    samples, agg = lmeval_samples(tiny, lmeval_yaml(binary_dir, "music_lm", CHOICES, "{{label}}"), "music_lm")
    assert len(samples) == len(norm) == N_TEST
    for o, s_, it in zip(norm, samples, task.test):
        assert s_["arguments"][0][0] == tp.builder.prefix(K) + tp.builder.query(it)  # the same context, demos first_n
        ll = np.array([float(x[0]) for x in s_["filtered_resps"]])
        assert max(abs(a - b) for a, b in zip(ll, o["loglik"])) <= 1e-4
        lm_pred = CHOICES[int(np.argmax(ll / np.array([float(len(c)) for c in CHOICES])))]  # lm-eval's pred_norm
        assert o["prediction"] == lm_pred and o["score"] == float(s_["acc_norm"])
        assert o["loglik_norm"] == pytest.approx([x / len(c) for x, c in zip(o["loglik"], CHOICES)], abs=1e-6)
    for o, s_ in zip(summed, samples):
        assert o["score"] == float(s_["acc"])  # and sum is lm-eval's acc
    acc_norm = sum(o["score"] for o in norm) / N_TEST
    assert acc_norm == pytest.approx(agg["acc_norm,none"], abs=1e-12)
    assert sum(o["score"] for o in summed) / N_TEST == pytest.approx(agg["acc,none"], abs=1e-12)


@pytest.mark.parametrize("k", [0, K])
def test_per_row_choices_both_rules_equal_lmeval_item_by_item(binary_dir, tiny, k):
    """Per-row choices of varying lengths make the two rules disagree on items: each must still be lm-eval's."""
    rows_of = {}
    for rule in ("sum", "length_normalised"):
        task = load_task(str(native(binary_dir, f"opts_{rule}", choices=None, choices_field="opts", scoring=rule, data={
            "path": "json", "data_files": {"train": "data/opts_train.jsonl", "test": "data/opts_test.jsonl"}})))
        rows_of[rule], tp = ours(task, tiny, k=k)
    samples, agg = lmeval_samples(tiny, lmeval_yaml(binary_dir, "opts_lm", "opts", "{{label}}", "opts_"), "opts_lm", k)
    disagree = 0
    for s_, a, b, it in zip(samples, rows_of["sum"], rows_of["length_normalised"], task.test):
        assert s_["arguments"][0][0] == tp.builder.prefix(k) + tp.builder.query(it)
        assert (a["score"], b["score"]) == (float(s_["acc"]), float(s_["acc_norm"]))
        disagree += a["prediction"] != b["prediction"]
    assert disagree > 0  # the rules really differ on this fixture
    assert sum(r["score"] for r in rows_of["sum"]) / N_TEST == pytest.approx(agg["acc,none"], abs=1e-12)
    assert sum(r["score"] for r in rows_of["length_normalised"]) / N_TEST == pytest.approx(agg["acc_norm,none"], abs=1e-12)


def test_loglik_norm_is_per_character_without_the_delimiter(binary_dir, tiny):
    task = load_task(str(native(binary_dir, scoring="length_normalised")))
    rows, _ = ours(task, tiny, items=list(task.test[:6]))
    for r in rows:
        assert r["loglik_norm"] == pytest.approx([x / len(c) for x, c in zip(r["loglik"], r["choices"])], abs=1e-6)
        by = r["loglik_norm"]
        assert r["prediction"] == r["choices"][by.index(max(by))]
        assert "scored_as" not in r


# --------------------------------------------------------------------------------------------------------------------
# labels: the verbaliser
# --------------------------------------------------------------------------------------------------------------------


def test_verbaliser_scores_the_word_and_keeps_the_labels(binary_dir, tiny):
    from evaluator.arms.lora import build_examples

    task = load_task(str(native(binary_dir, "music_words", labels=WORDS)))
    plain = load_task(str(native(binary_dir)))
    _, tok = tiny
    rows, tp = ours(task, tiny, items=list(task.test[:8]))
    plain_rows, ptp = ours(plain, tiny, items=list(plain.test[:8]))
    b = tp.builder
    assert b.verbalise("implausible") == "no" and b.continuation("plausible") == " yes"
    for r, pr in zip(rows, plain_rows):
        assert r["choices"] == CHOICES and r["target"] in CHOICES and r["prediction"] in CHOICES
        assert r["scored_as"] == ["no", "yes"] and r["score"] == float(r["prediction"] == r["target"])
        assert r["loglik"] != pr["loglik"]  # another word was scored
    it = task.test[0]
    assert tp.continuation_ids("plausible", it, K) == tok(" yes", add_special_tokens=False)["input_ids"]
    # demonstrations show the words, queries are unchanged
    demos = b.demos(K)
    assert b.prefix(K) == INSTRUCTION + "\n\n" + "".join(
        f"Utterance: {d.input}\nAnswer: {WORDS[d.target]}\n\n" for d in demos)
    assert b.query(it) == ptp.builder.query(plain.test[0])
    # LoRA trains on the word, and the adapter key sees the verbaliser
    ex = build_examples(task, tp, list(task.train[:4]), tok)
    for e, d in zip(ex, task.train[:4]):
        assert list(e.answer_ids) == tok(" " + WORDS[d.target], add_special_tokens=False)["input_ids"]
    assert b.signature() != ptp.builder.signature() and "labels" in b.signature()


def test_verbaliser_with_length_normalised_equals_lmeval_on_the_words(binary_dir, tiny):
    import numpy as np

    task = load_task(str(native(binary_dir, "music_words_norm", labels=WORDS, scoring="length_normalised")))
    rows, tp = ours(task, tiny)
    folder = lmeval_yaml(binary_dir, "music_words_lm", ["no", "yes"], "{{ 'yes' if label == 'plausible' else 'no' }}")
    samples, agg = lmeval_samples(tiny, folder, "music_words_lm")
    for r, s_, it in zip(rows, samples, task.test):
        assert s_["arguments"][0][0] == tp.builder.prefix(K) + tp.builder.query(it)
        ll = np.array([float(x[0]) for x in s_["filtered_resps"]])
        assert max(abs(a - b) for a, b in zip(ll, r["loglik"])) <= 1e-4
        assert r["prediction"] == CHOICES[int(np.argmax(ll / np.array([2.0, 3.0])))]
        assert r["score"] == float(s_["acc_norm"])
    assert sum(r["score"] for r in rows) / N_TEST == pytest.approx(agg["acc_norm,none"], abs=1e-12)


# --------------------------------------------------------------------------------------------------------------------
# The unit record, the report
# --------------------------------------------------------------------------------------------------------------------


def test_scoring_record_warns_when_sum_compares_uneven_labels(binary_dir, tiny):
    from evaluator.arms.evaluate import scoring_record

    _, tok = tiny
    for name, over, want in [
        ("w_sum", {}, ("choices differ in token length (implausible 8, plausible 6): summed log-likelihood favours "
                       "shorter labels — consider scoring: length_normalised or labels")),
        ("w_norm", {"scoring": "length_normalised"}, None),
        ("w_words", {"labels": WORDS}, None),  # " no" and " yes" are 2 tokens each
    ]:
        task = load_task(str(native(binary_dir, name, **over)))
        tp = TokenizedPrompts(PromptBuilder(task, 0), tok)
        rec = scoring_record(task, tp, list(task.test), K)
        assert rec["rule"] == over.get("scoring", "sum") and rec["labels"] == over.get("labels")
        assert rec["warning"] == want
        assert rec["choice_tokens"] == ({"implausible": 2, "plausible": 2} if "labels" in over
                                        else {"implausible": 8, "plausible": 6})


def test_engine_lmeval_refuses_scoring_and_labels(binary_dir):
    from evaluator.arms.evaluate import _evaluate_with_lmeval

    for name, over, needle in [("r_norm", {"scoring": "length_normalised"}, "scoring: length_normalised"),
                               ("r_words", {"labels": WORDS}, "labels")]:
        task = load_task(str(native(binary_dir, name, **over)))
        with pytest.raises(UserError) as exc:
            _evaluate_with_lmeval(None, task, [], [], None, None, None, 0, "", 0, None, None, None, None)
        msg = str(exc.value)
        assert "\n" not in msg and "engine lm-eval" in msg and needle in msg


def test_report_shows_scoring_and_the_warning(tmp_path):
    import jsonschema

    from evaluator.report.build import write_reports
    from evaluator.store.run_store import RunStore
    from tests.fake_runs import item_ids, old_run
    from tests.test_report_schema import schema

    run = old_run(tmp_path, item_ids(40))
    warning = ("choices differ in token length (implausible 8, plausible 6): summed log-likelihood favours shorter "
               "labels — consider scoring: length_normalised or labels")
    for i, f in enumerate(sorted((run / "units").glob("*.json"))):
        rec = json.loads(f.read_text())
        rec["scoring"] = {"rule": "sum", "labels": None, "choice_tokens": {"implausible": 8, "plausible": 6},
                          "warning": warning if i == 0 else None}
        f.write_text(json.dumps(rec))
    write_reports(RunStore.open(run))
    md = (run / "report.md").read_text(encoding="utf-8")
    line = next(x for x in md.splitlines() if x.startswith("**Scoring:**"))
    assert "sum of log-likelihoods" in line and "implausible 8, plausible 6" in line and warning in line
    html = (run / "report.html").read_text(encoding="utf-8")
    assert '<p class="scoring"><strong>Scoring:</strong> sum of log-likelihoods' in html
    assert "summed log-likelihood favours shorter labels" in html
    rep = json.loads((run / "report.json").read_text(encoding="utf-8"))
    errors = [e.message for e in jsonschema.Draft202012Validator(schema()).iter_errors(rep)]
    assert errors == []
    bad = json.loads(json.dumps(rep))
    next(iter(bad["tasks"].values()))["units"][0]["scoring"]["rule"] = "mean"
    assert list(jsonschema.Draft202012Validator(schema()).iter_errors(bad))


def test_run_records_scoring_and_trains_lora_on_the_words(binary_dir, tiny_llama_dir, tmp_path, monkeypatch):
    """A real `tunecheck run` (A at k=0 and 3, LoRA on 8 items) of the verbalised, length-normalised task."""
    from typer.testing import CliRunner

    from evaluator.cli.app import app

    monkeypatch.chdir(tmp_path)
    (tmp_path / "tasks").mkdir()
    src = native(binary_dir, "music_e2e", labels=WORDS, scoring="length_normalised")
    spec = yaml.safe_load(src.read_text())
    spec["data"]["data_files"] = {s: str(binary_dir / f) for s, f in spec["data"]["data_files"].items()}
    (tmp_path / "tasks" / "music_e2e.yaml").write_text(yaml.safe_dump(spec))
    (tmp_path / "tasks" / "prompts").mkdir()
    (tmp_path / "tasks" / "prompts" / "binary.j2").write_text((binary_dir / "prompts" / "binary.j2").read_text())
    job = {"name": "scoring", "tasks": ["music_e2e"], "base": str(tiny_llama_dir), "seed": 3, "limit": 10,
           "arms": {"prompting": {"shots": [0, K]}, "lora": {"train_sizes": [8], "epochs": 1, "batch_size": 4, "r": 4}},
           "output_dir": str(tmp_path / "runs"), "adapters_dir": str(tmp_path / "adapters")}
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(job))
    res = CliRunner().invoke(app, ["run", str(tmp_path / "job.yaml")])
    assert res.exit_code == 0, res.output
    (run,) = list((tmp_path / "runs").iterdir())
    units = [json.loads(f.read_text()) for f in sorted((run / "units").glob("*.json"))]
    assert {u["arm"] for u in units} == {"A", "B"}
    for u in units:
        assert u["scoring"] == {"rule": "length_normalised", "labels": WORDS,
                                "choice_tokens": {"implausible": 2, "plausible": 2}, "warning": None,
                                "paths": {"single_token": 0, "tree": 10}}  # " no" / " yes": 2 tokens each
        rows = [json.loads(x) for x in (run / "results" / f"{u['unit']}.jsonl").read_text().splitlines() if x.strip()]
        assert rows and all(r["prediction"] in CHOICES and r["scored_as"] == ["no", "yes"] and "loglik_norm" in r for r in rows)
    md = (run / "report.md").read_text(encoding="utf-8")
    assert "**Scoring:** log-likelihood per character" in md and "implausible → “no”" in md
