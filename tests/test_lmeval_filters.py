"""lm-eval `generate_until` tasks with a `filter_list`: scored through lm-eval's own filters and metric (the first
filter decides), with parity against lm-eval's `simple_evaluate` on a fixture task, and custom filters refused.

Offline: the task's data are JSONL files written here (`dataset_path: json`); the model is a tiny random llama whose
greedy answers differ from prompt to prompt (initializer_range 0.2). Its golds are crafted from its own zero-shot
answers so that the first filter scores some items 1 (only through exact_match's ignore_case / ignore_punctuation)
and others 0 — the comparison can fail.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

torch = pytest.importorskip("torch")
pytest.importorskip("lm_eval")

from evaluator.arms.rows import _cut_at_stop, generate_rows  # noqa: E402
from evaluator.engine.scorer import PrefixScorer  # noqa: E402
from evaluator.errors import UserError  # noqa: E402
from evaluator.prompts.tokenized import TokenizedPrompts  # noqa: E402
from evaluator.tasks.layout import PromptBuilder  # noqa: E402
from evaluator.tasks.load import load_task  # noqa: E402
from evaluator.tasks.metrics import scorer_for  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
NAME = "tc_filtered"
N_TEST, N_TRAIN = 12, 4
STRICT = r"([A-Za-z]{2,})"  # the first word of two letters or more (group_select 0)
FLEXIBLE = r"([A-Za-z]+)"  # the last word (group_select -1)
UNTIL = ["\n\n", "Question:"]
FILTERS = [
    {"name": "strict-match", "filter": [{"function": "regex", "regex_pattern": STRICT}, {"function": "take_first"}]},
    {"name": "flexible-extract",
     "filter": [{"function": "regex", "regex_pattern": FLEXIBLE, "group_select": -1}, {"function": "take_first"}]},
]
METRIC = {"metric": "exact_match", "aggregation": "mean", "higher_is_better": True, "ignore_case": True,
          "ignore_punctuation": True}


def _texts() -> list[str]:
    lines = (REPO / "tasks" / "data" / "snips_test.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(x)["text"] for x in lines[: N_TEST + N_TRAIN]]


def _write_task(folder: Path, golds: list[str], name: str = NAME, **over) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    texts = _texts()
    files = {}
    for split, rows in (("test", zip(texts[:N_TEST], golds)), ("train", ((t, "music") for t in texts[N_TEST:]))):
        path = folder / f"{name}_{split}.jsonl"
        path.write_text("".join(json.dumps({"text": t, "answer": a}) + "\n" for t, a in rows), encoding="utf-8")
        files[split] = str(path)
    cfg = {
        "task": name, "dataset_path": "json", "dataset_kwargs": {"data_files": files},
        "training_split": "train", "test_split": "test", "fewshot_config": {"sampler": "first_n"},
        "output_type": "generate_until", "doc_to_text": "Question: {{text}}\nAnswer:", "doc_to_target": "{{answer}}",
        "generation_kwargs": {"until": UNTIL, "max_gen_toks": 10, "do_sample": False},
        "filter_list": FILTERS, "metric_list": [METRIC], "metadata": {"version": 1.0},
    }
    cfg.update(over)
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def varied(tmp_path_factory, tiny_tokenizer_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tests.tiny_models import build_tiny_model

    path = build_tiny_model(tmp_path_factory.mktemp("varied"), "llama", tiny_tokenizer_dir, seed=0, initializer_range=0.2)
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, attn_implementation="sdpa").eval()
    return path, model, tok


@pytest.fixture(scope="module")
def fixture_task(tmp_path_factory, varied):
    """The task file, its golds crafted from the model's greedy answers (plain HF generate on lm-eval's context):
    even docs get the first word of their zero-shot answer, odd docs that of their 2-shot answer, upper-cased with a
    "!" — it matches only through ignore_case + ignore_punctuation, so at each k some items score 1 and others 0."""
    _, model, tok = varied
    texts = _texts()
    demos = "".join(f"Question: {t}\nAnswer: music\n\n" for t in texts[N_TEST : N_TEST + 2])  # first_n, k = 2
    golds = []
    for i, text in enumerate(texts[:N_TEST]):
        context = ("" if i % 2 == 0 else demos) + f"Question: {text}\nAnswer:"
        ids = tok(context, return_tensors="pt").input_ids
        with torch.inference_mode():
            out = model.generate(ids, max_new_tokens=10, do_sample=False, pad_token_id=tok.pad_token_id)
        answer = _cut_at_stop(tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True), UNTIL)
        words = re.findall(STRICT, answer)
        golds.append(words[0].upper() + "!" if words else "Zyzzyva")
    folder = tmp_path_factory.mktemp("lm_filtered")
    return _write_task(folder, golds), folder


def _lmeval(model, tok, folder: Path, k: int) -> dict:
    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    lm = HFLM(pretrained=model, tokenizer=tok, batch_size=1)
    return lm_eval.simple_evaluate(
        model=lm, tasks=[NAME], num_fewshot=k, log_samples=True,
        task_manager=TaskManager(include_path=str(folder), include_defaults=False), bootstrap_iters=0,
        random_seed=None, numpy_random_seed=None, torch_random_seed=None,
    )


def _ours(model, tok, task, k: int) -> list[dict]:
    tp = TokenizedPrompts(PromptBuilder(task, 0), tok)
    return generate_rows(task, tp, PrefixScorer(model, tp.prefix_ids(k)), list(task.test), tok, k)


@pytest.mark.parametrize("k", [0, 2])
def test_filtered_scores_equal_lmeval(fixture_task, varied, k):
    path, folder = fixture_task
    _, model, tok = varied
    task = load_task(f"lm-eval:{path}")
    assert task.spec.metric == "exact_match" and task.spec.demonstrations == "first_n"
    assert [f["name"] for f in task.spec.lmeval_filters] == ["strict-match", "flexible-extract"]
    assert task.spec.lmeval_metric == {"metric": "exact_match", "kwargs": {"ignore_case": True, "ignore_punctuation": True},
                                       "aggregation": "mean", "gold": "target"}
    rows = _ours(model, tok, task, k)
    res = _lmeval(model, tok, folder, k)
    by = {(int(s["doc_id"]), s["filter"]): s for s in res["samples"][NAME]}
    assert len(rows) == N_TEST and len(by) == 2 * N_TEST
    # the second filter, scored by a spec that puts it first
    flexible = scorer_for(task.spec.model_copy(update={"lmeval_filters": FILTERS[::-1]}))
    for i, (row, it) in enumerate(zip(rows, task.test)):
        strict, flex = by[(i, "strict-match")], by[(i, "flexible-extract")]
        assert strict["arguments"][0][0] == PromptBuilder(task, 0).prefix(k) + it.input  # the same context
        assert row["prediction"] == strict["resps"][0][0], it.id  # the same response: cut at `until`, not stripped
        assert row["filter"] == "strict-match" and row["filtered"] == strict["filtered_resps"][0], it.id
        assert row["score"] == float(strict["exact_match"]), it.id
        assert flexible.item(row["prediction"], it) == (flex["filtered_resps"][0], float(flex["exact_match"])), it.id
    ours = sum(r["score"] for r in rows) / len(rows)
    assert ours == pytest.approx(res["results"][NAME]["exact_match,strict-match"], abs=1e-12)
    # the golds were crafted so that both outcomes occur at each k; the two filters extract different words
    assert {r["score"] for r in rows} == {0.0, 1.0}
    assert any(r["filtered"] != by[(i, "flexible-extract")]["filtered_resps"][0] for i, r in enumerate(rows))
    # ignore_case / ignore_punctuation do the matching: no filtered answer is its gold as written
    assert all(r["filtered"] != r["target"] for r in rows)


def test_run_and_samples_export(fixture_task, varied, tmp_path):
    """A job over the filtered task runs end to end; its rows carry the filter and its output; `tunecheck samples`
    exports them."""
    from typer.testing import CliRunner

    from evaluator.cli.app import app

    path, _ = fixture_task
    model_dir, _, _ = varied
    job = {"name": "filt", "tasks": [f"lm-eval:{path}"], "base": str(model_dir), "limit": 4,
           "arms": {"prompting": {"shots": [0]}, "lora": {"enabled": False}}, "output_dir": str(tmp_path / "runs")}
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(job))
    res = CliRunner().invoke(app, ["run", str(tmp_path / "job.yaml")])
    assert res.exit_code == 0, res.output
    (run,) = list((tmp_path / "runs").iterdir())
    (results,) = list((run / "results").glob("*.jsonl"))
    rows = [json.loads(x) for x in results.read_text().splitlines()]
    assert len(rows) == 4 and all(r["filter"] == "strict-match" and isinstance(r["filtered"], str) for r in rows)
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["tasks"][NAME]["spec"]["lmeval_filters"][0]["name"] == "strict-match"
    res = CliRunner().invoke(app, ["samples", str(run), "--out", str(tmp_path / "samples")])
    assert res.exit_code == 0, res.output
    (out,) = list((tmp_path / "samples").glob("samples_*.jsonl"))
    samples = [json.loads(x) for x in out.read_text().splitlines()]
    assert [s["exact_match"] for s in samples] == [r["score"] for r in rows]
    assert [s["filter"] for s in samples] == ["strict-match"] * 4  # as lm-eval logs its first filter
    assert [s["filtered_resps"] for s in samples] == [[r["filtered"]] for r in rows]
    assert [s["resps"] for s in samples] == [[[r["prediction"]]] for r in rows]


def _custom_task(folder: Path, step: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "utils.py").write_text(
        "def first_word(resps, docs):\n    return [[r.split()[0] if r.split() else '' for r in rs] for rs in resps]\n\n"
        "class FirstWord:\n    def __init__(self, **kw):\n        pass\n\n"
        "    def apply(self, resps, docs):\n        return first_word(resps, docs)\n", encoding="utf-8")
    base = _write_task(folder, ["x"] * N_TEST, filter_list=None)
    text = base.read_text(encoding="utf-8").replace("filter_list: null\n", "")
    text += f"filter_list:\n- name: custom-extract\n  filter:\n  - {step}\n  - function: take_first\n"
    base.write_text(text, encoding="utf-8")
    return base


@pytest.mark.parametrize("step", ["function: custom\n    filter_fn: !function utils.first_word",
                                  "function: !function utils.FirstWord"])
def test_custom_function_filter_is_one_clear_error(tmp_path, step):
    path = _custom_task(tmp_path / "c", step)
    with pytest.raises(UserError) as info:
        load_task(f"lm-eval:{path}")
    msg = str(info.value)
    assert "\n" not in msg and NAME in msg and "'custom-extract'" in msg and "!function" in msg, msg


def test_unknown_filter_and_bad_kwargs_fail_on_load(tmp_path):
    bad = [{"name": "odd", "filter": [{"function": "no_such_filter"}, {"function": "take_first"}]}]
    with pytest.raises(UserError, match="Unknown filter 'no_such_filter'. Available: .*take_first.* check the task's filter_list"):
        load_task(f"lm-eval:{_write_task(tmp_path / 'a', ['x'] * N_TEST, filter_list=bad)}")
    bad = [{"name": "odd", "filter": [{"function": "regex", "no_such_kwarg": 1}, {"function": "take_first"}]}]
    with pytest.raises(UserError, match="filter 'odd' failed"):
        load_task(f"lm-eval:{_write_task(tmp_path / 'b', ['x'] * N_TEST, filter_list=bad)}")
    bad = [{"name": "list", "filter": [{"function": "regex", "regex_pattern": STRICT}]}]  # no take_first
    with pytest.raises(UserError, match="not one answer text"):
        load_task(f"lm-eval:{_write_task(tmp_path / 'c', ['x'] * N_TEST, filter_list=bad)}")


def test_metric_kwargs_without_filters_and_plain_tasks(tmp_path):
    """exact_match kwargs alone: lm-eval's scoring (its default take_first, no doc kept); neither filters nor kwargs:
    tunecheck's exact match of the stripped answer, and the spec has no lm-eval scoring fields (same fingerprint)."""
    task = load_task(f"lm-eval:{_write_task(tmp_path / 'k', ['Play'] * N_TEST, filter_list=None)}")
    assert task.spec.lmeval_filters is None and task.spec.lmeval_metric["kwargs"] == {"ignore_case": True,
                                                                                    "ignore_punctuation": True}
    sc = scorer_for(task.spec)
    assert sc.filter_name == "none" and task.test[0].lmeval_doc is None
    assert sc.item("play!", task.test[0]) == ("play!", 1.0) and sc.item(" play", task.test[0])[1] == 0.0  # not stripped
    plain = load_task(f"lm-eval:{_write_task(tmp_path / 'p', ['Play'] * N_TEST, filter_list=None, metric_list=[{'metric': 'exact_match'}])}")
    dump = plain.spec.model_dump(mode="json")
    assert "lmeval_filters" not in dump and "lmeval_metric" not in dump
    assert scorer_for(plain.spec)(" Play ", "Play") == 1.0


def test_doc_reading_filter_and_choice_golds(tmp_path):
    """multi_choice_regex reads the doc's `choices`; with doc_to_choice, the gold is choices[doc_to_target] — both as
    lm-eval's own pipeline scores them (its FilterEnsemble on Instances, then process_results)."""
    from evaluator.tasks.lmeval import load_lmeval_object

    folder = tmp_path / "mc"
    folder.mkdir()
    docs = [{"q": f"Pick {i}", "choices": ["red apple", "blue sky", "green leaf"], "label": i % 3} for i in range(6)]
    (folder / "test.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs), encoding="utf-8")
    cfg = {"task": "tc_mc", "dataset_path": "json", "dataset_kwargs": {"data_files": {"test": str(folder / "test.jsonl")}},
           "test_split": "test", "output_type": "generate_until", "doc_to_text": "{{q}}\nAnswer:",
           "doc_to_choice": "choices", "doc_to_target": "label",
           "generation_kwargs": {"until": ["\n"], "max_gen_toks": 8},
           "filter_list": [{"name": "mc", "filter": [{"function": "multi_choice_regex", "regex_pattern": "(red apple|blue sky|green leaf)"},
                                                     {"function": "take_first"}]}],
           "metric_list": [{"metric": "exact_match"}], "metadata": {"version": 1.0}}
    (folder / "tc_mc.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    ref = f"lm-eval:{folder / 'tc_mc.yaml'}"
    task = load_task(ref)
    assert task.spec.lmeval_metric["gold"] == "choice" and task.test[1].target == "blue sky"
    responses = [" red apple", " Blue sky", "answer: B", "(A)", "it is blue sky", " nothing"]
    ours, theirs = _both(task, load_lmeval_object(ref, [], []), responses)
    assert ours == theirs and {s for _, s in ours} == {0.0, 1.0}


def _both(task, obj, responses: list[str]) -> tuple[list, list]:
    """(filtered answer, score) per test doc by tunecheck's scorer and by lm-eval's own pipeline: its first
    FilterEnsemble applied to Instances holding the responses, then its process_results."""
    from lm_eval.api.instance import Instance

    sc = scorer_for(task.spec)
    ours = [sc.item(r, it) for r, it in zip(responses, task.test)]
    insts = [Instance("generate_until", d, ("", {}), i, resps=[r]) for i, (d, r) in enumerate(zip(obj.test_docs(), responses))]
    ens = obj._filters[0]
    ens.apply(insts)
    theirs = [(x.filtered_resps[ens.name], float(obj.process_results(x.doc, [x.filtered_resps[ens.name]])["exact_match"]))
              for x in insts]
    return ours, theirs


@pytest.mark.parametrize("target, gold", [("a", "target"), ("{{[a]}}", "targets")])
def test_targets_and_metric_kwargs_as_lmeval(tmp_path, target, gold):
    """A text gold and a list of golds (lm-eval's multiple_target), with a lowercase filter and exact_match's
    ignore_punctuation / regexes_to_ignore: the same filtered answers and scores as lm-eval's pipeline."""
    from evaluator.tasks.lmeval import load_lmeval_object

    folder = tmp_path / "t"
    folder.mkdir()
    docs = [{"q": f"Q{i}", "a": ["Yes", "no", "12"][i % 3]} for i in range(6)]
    (folder / "test.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs), encoding="utf-8")
    cfg = {"task": "tc_t", "dataset_path": "json", "dataset_kwargs": {"data_files": {"test": str(folder / "test.jsonl")}},
           "test_split": "test", "output_type": "generate_until", "doc_to_text": "{{q}}:", "doc_to_target": target,
           "generation_kwargs": {"until": ["\n"]}, "fewshot_config": {"sampler": "first_n"},
           "filter_list": [{"name": "low", "filter": [{"function": "lowercase"}, {"function": "take_first"}]}],
           "metric_list": [{"metric": "exact_match", "ignore_punctuation": True, "regexes_to_ignore": [" "]}],
           "metadata": {"version": 1.0}}
    (folder / "tc_t.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    ref = f"lm-eval:{folder / 'tc_t.yaml'}"
    task = load_task(ref)
    assert task.spec.lmeval_metric["gold"] == gold
    ours, theirs = _both(task, load_lmeval_object(ref, [], []), [" yes", "NO.", "1 2", "Yes", "n o", "12"])
    assert ours == theirs and {s for _, s in ours} == {0.0, 1.0}
