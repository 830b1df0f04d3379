"""Demonstration order: native `demonstrations: seeded | first_n`, and lm-eval tasks following their sampler.

`first_n` lm-eval tasks must give lm-eval's own k-shot prefix, hence its per-choice log-likelihoods; the default
sampler (a per-doc random draw) keeps tunecheck's seeded shared prefix and says so on the spec and in the log.
"""

from __future__ import annotations

import json
import logging
import random
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from evaluator.cli.app import app
from evaluator.errors import UserError
from evaluator.tasks.layout import PromptBuilder
from evaluator.tasks.load import load_task
from tests.test_lmeval_tasks import lmeval_yaml

REPO = Path(__file__).resolve().parents[1]
SNIPS = yaml.safe_load((REPO / "tasks" / "snips_intents.yaml").read_text())
K = 3
N_ITEMS = 10


def native_task(d: Path, **over) -> Path:
    """The SNIPS task in d/tasks (data files by absolute path, the shipped prompt), with spec overrides."""
    spec = {**SNIPS, **over}
    spec["data"] = {**SNIPS["data"], "data_files": {s: str(REPO / "tasks" / f) for s, f in SNIPS["data"]["data_files"].items()}}
    (d / "tasks").mkdir(parents=True, exist_ok=True)
    path = d / "tasks" / "snips_intents.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


# --------------------------------------------------------------------------------------------------------------------
# Native tasks
# --------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1234])
def test_seeded_is_todays_permutation(seed, tmp_path):
    task = load_task("snips_intents")
    assert task.spec.demonstrations == "seeded" and task.spec.demonstrations_note is None and task.fewshot is None
    old = list(task.train)
    random.Random(seed).shuffle(old)  # the order before `demonstrations` existed
    b = PromptBuilder(task, seed)
    assert b.demos(32) == old[:32] and b.demos(5) == old[:5]
    explicit = load_task(str(native_task(tmp_path, demonstrations="seeded")))
    eb = PromptBuilder(explicit, seed)
    assert [d.id for d in eb.demos(32)] == [d.id for d in old[:32]] and eb.prefix(K) == b.prefix(K)


def test_first_n_puts_train_items_in_file_order(tmp_path):
    task = load_task(str(native_task(tmp_path, demonstrations="first_n")))
    assert task.spec.demonstrations == "first_n"
    rows = [json.loads(x) for x in (REPO / "tasks" / "data" / "snips_train.jsonl").read_text().splitlines()]
    for seed in (0, 7):  # the seed does not matter
        b = PromptBuilder(task, seed)
        assert [d.id for d in b.demos(5)] == [r["id"] for r in rows[:5]]
    b = PromptBuilder(task, 7)
    demos = "".join(f"Utterance: {r['text']}\nIntent: {r['label']}\n\n" for r in rows[:K])
    assert b.prefix(K) == task.spec.instruction + "\n\n" + demos
    assert task.train[:16] == tuple(b.demos(16))  # LoRA's "first n" and the demonstrations now coincide


def test_bad_demonstrations_value_is_one_line_user_error(tmp_path):
    path = native_task(tmp_path, demonstrations="random")
    with pytest.raises(UserError) as exc:
        load_task(str(path))
    msg = str(exc.value)
    assert "\n" not in msg and "field 'demonstrations'" in msg and "'seeded' or 'first_n'" in msg and "'random'" in msg


def test_bad_demonstrations_value_exits_2_in_the_cli(tmp_path, tiny_llama_dir, monkeypatch):
    monkeypatch.chdir(tmp_path)
    native_task(tmp_path, demonstrations="first-n")
    job = {"name": "bad", "tasks": ["snips_intents"], "base": str(tiny_llama_dir), "limit": 2,
           "arms": {"prompting": {"shots": [0]}, "lora": {"enabled": False}}, "output_dir": str(tmp_path / "runs")}
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(job))
    res = CliRunner().invoke(app, ["run", str(tmp_path / "job.yaml")])
    err = res.stderr if hasattr(res, "stderr") else res.output
    assert res.exit_code == 2, res.output
    lines = [x for x in err.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "field 'demonstrations'" in lines[0], err
    assert "Traceback" not in err


# --------------------------------------------------------------------------------------------------------------------
# lm-eval tasks
# --------------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def first_n_folder(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("lm_first_n")
    lmeval_yaml(d, name="snips_first_n", fewshot_config={"sampler": "first_n"})
    return d


def _obj(ref: str, include: list[Path]):
    from evaluator.tasks.lmeval import load_lmeval_object

    return load_lmeval_object(ref, include, [])


def test_lmeval_first_n_prefix_is_lmevals(first_n_folder, caplog):
    with caplog.at_level(logging.WARNING, logger="tunecheck"):
        task = load_task("lm-eval:snips_first_n", lmeval_include=[first_n_folder])
    assert not [r for r in caplog.records if r.name == "tunecheck"]  # nothing to warn about
    assert task.spec.demonstrations == "first_n" and "first_n" in task.spec.demonstrations_note
    assert "split 'train'" in task.spec.demonstrations_note and task.fewshot is None
    obj = _obj("lm-eval:snips_first_n", [first_n_folder])
    train_docs, test_docs = list(obj.training_docs()), list(obj.test_docs())
    b = PromptBuilder(task, 99)
    assert [d.input for d in b.demos(K)] == [obj.doc_to_text(d) for d in train_docs[:K]]  # file order
    for i in (0, 5, len(test_docs) - 1):
        for k in (1, K, 8):
            assert b.prefix(k) + b.query(task.test[i]) == obj.fewshot_context(test_docs[i], k)


def test_lmeval_first_n_logliks_equal_simple_evaluate(first_n_folder, tiny_llama_dir):
    """Our engine on the `first_n` lm-eval task vs lm-eval's simple_evaluate on the same YAML at k=3."""
    import lm_eval
    import torch
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from evaluator.arms.rows import choice_rows
    from evaluator.engine.scorer import PrefixScorer
    from evaluator.prompts.tokenized import TokenizedPrompts

    task = load_task("lm-eval:snips_first_n", lmeval_include=[first_n_folder])
    tok = AutoTokenizer.from_pretrained(tiny_llama_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype=torch.float32, attn_implementation="sdpa").eval()
    items = list(task.test[:N_ITEMS])
    tp = TokenizedPrompts(PromptBuilder(task, 5), tok)
    ours = choice_rows(task, tp, PrefixScorer(model, tp.prefix_ids(K), mode="packed"), items, K)

    res = lm_eval.simple_evaluate(
        model=HFLM(pretrained=model, tokenizer=tok, batch_size=8), tasks=["snips_first_n"], num_fewshot=K,
        limit=N_ITEMS, log_samples=True, bootstrap_iters=0, task_manager=TaskManager(include_path=str(first_n_folder)),
        random_seed=None, numpy_random_seed=None, torch_random_seed=None,
    )
    theirs = sorted(res["samples"]["snips_first_n"], key=lambda s: s["doc_id"])
    assert len(theirs) == len(ours) == N_ITEMS
    worst = 0.0
    for o, t, it in zip(ours, theirs, items):
        assert t["arguments"][0][0] == tp.builder.prefix(K) + it.input  # the same context string
        ll = [float(x[0]) for x in t["filtered_resps"]]
        assert len(ll) == len(o["loglik"]) == len(it.choices)
        worst = max(worst, max(abs(a - b) for a, b in zip(ll, o["loglik"])))
        assert [bool(x[1]) for x in t["filtered_resps"]] == o["is_greedy"]
    assert worst <= 1e-4, f"max |Δ loglik| = {worst:.2e}"


def test_lmeval_default_sampler_keeps_seeded_prefix_and_says_so(tmp_path, caplog):
    path = lmeval_yaml(tmp_path / "d", name="snips_default")
    with caplog.at_level(logging.WARNING, logger="tunecheck"):
        task = load_task(f"lm-eval:{path}")
    assert task.spec.demonstrations == "seeded"
    note = task.spec.demonstrations_note
    assert "'default' few-shot sampler" in note and "seeded permutation" in note and "first_n" in note and "\n" not in note
    warnings = [r.getMessage() for r in caplog.records if r.name == "tunecheck"]
    assert len(warnings) == 1 and "snips_default" in warnings[0] and "\n" not in warnings[0]
    old = list(task.train)
    random.Random(4).shuffle(old)
    assert PromptBuilder(task, 4).demos(8) == old[:8]  # today's order, unchanged


def test_lmeval_first_n_from_a_separate_fewshot_split(tmp_path):
    """lm-eval's first_n reads the few-shot split, not the training split: demonstrations come from it, LoRA data not."""
    train_lines = (REPO / "tasks" / "data" / "snips_train.jsonl").read_text().splitlines()
    dev = tmp_path / "dev.jsonl"
    dev.write_text("\n".join(train_lines[-6:][::-1]) + "\n")
    path = lmeval_yaml(
        tmp_path / "f", name="snips_dev", fewshot_split="dev", fewshot_config={"sampler": "first_n"},
        dataset_kwargs={"data_files": {
            "train": str(REPO / "tasks" / "data" / "snips_train.jsonl"),
            "test": str(REPO / "tasks" / "data" / "snips_test.jsonl"),
            "dev": str(dev),
        }},
    )
    task = load_task(f"lm-eval:{path}")
    assert task.spec.demonstrations == "first_n" and "split 'dev'" in task.spec.demonstrations_note
    assert len(task.train) == 493 and task.fewshot is not None and len(task.fewshot) == 6
    rows = [json.loads(x) for x in train_lines[-6:][::-1]]
    b = PromptBuilder(task, 1)
    assert [d.target for d in b.demos(6)] == [r["label"] for r in rows]
    obj = _obj(f"lm-eval:{path}", [])
    doc = list(obj.test_docs())[3]
    assert b.prefix(K) + b.query(task.test[3]) == obj.fewshot_context(doc, K)
    with pytest.raises(UserError, match="few-shot docs are only 6"):
        b.demos(7)


def test_lmeval_first_n_on_the_test_split_falls_back_with_a_note(tmp_path, caplog):
    path = lmeval_yaml(tmp_path / "t", name="snips_fs_test", fewshot_split="test", fewshot_config={"sampler": "first_n"})
    with caplog.at_level(logging.WARNING, logger="tunecheck"):
        task = load_task(f"lm-eval:{path}")
    assert task.spec.demonstrations == "seeded" and "evaluated split 'test'" in task.spec.demonstrations_note
    assert len([r for r in caplog.records if r.name == "tunecheck"]) == 1


def test_lmeval_raw_targets_are_kept(tmp_path, first_n_folder):
    text = load_task("lm-eval:snips_first_n", lmeval_include=[first_n_folder])
    assert all(it.lmeval_target == it.target for it in text.test)  # doc_to_target "{{label}}": the text
    labels = json.dumps(["add_to_playlist", "book_restaurant", "get_weather", "play_music", "search_screening_event", "search_creative_work", "rate_book"])
    path = lmeval_yaml(tmp_path / "i", name="snips_index", doc_to_target="{{" + labels + ".index(label)}}")
    idx = load_task(f"lm-eval:{path}")
    assert all(isinstance(it.lmeval_target, int) and it.choices[it.lmeval_target] == it.target for it in idx.test)
    assert all(it.lmeval_target is None for it in idx.train)  # only what lm-eval logs: test docs
