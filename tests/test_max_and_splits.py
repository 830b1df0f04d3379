"""`max` names its binding limit; LoRA states the items it trained on and held out, with answer-only validation
metrics; task-level `split:` options (seeded / first, fraction / size, bad values)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

from evaluator.arms.adapters import adapter_key, hp_dict, prompt_signature
from evaluator.arms.evaluate import resolve_shots
from evaluator.arms.lora import build_examples, train_or_reuse
from evaluator.cli.app import app
from evaluator.config.arms import LoraArm
from evaluator.errors import UserError
from evaluator.identity import task_fingerprint
from evaluator.prompts.tokenized import TokenizedPrompts
from evaluator.tasks.layout import PromptBuilder
from evaluator.tasks.load import load_task
from evaluator.tasks.spec import Task
from evaluator.training.data import Example, split_validation
from evaluator.training.loss import answer_metrics

REPO = Path(__file__).resolve().parents[1]
SNIPS = yaml.safe_load((REPO / "tasks" / "snips_intents.yaml").read_text())
ROWS = (REPO / "tasks" / "data" / "snips_train.jsonl").read_text(encoding="utf-8").splitlines()


@pytest.fixture(scope="module")
def tok(tiny_tokenizer_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_tokenizer_dir)


@pytest.fixture(scope="module")
def snips():
    return load_task("snips_intents")


def _task(d: Path, *, train_rows: int | None = None, all_rows: int | None = None, **spec_over) -> Path:
    """A copy of the SNIPS task in d/tasks: its own train split cut to `train_rows`, or ONE file of `all_rows` rows
    (data_files: {all: ...}) for `split:`. Returns the task file."""
    data = d / "tasks" / "data"
    data.mkdir(parents=True, exist_ok=True)
    spec = {**SNIPS, **spec_over}
    if all_rows is not None:
        (data / "all.jsonl").write_text("\n".join(ROWS[:all_rows]) + "\n", encoding="utf-8")
        spec["data"] = {"path": "json", "data_files": {"all": "data/all.jsonl"}}
    else:
        for split in ("train", "test"):
            lines = (REPO / "tasks" / "data" / f"snips_{split}.jsonl").read_text(encoding="utf-8").splitlines()
            if split == "train" and train_rows is not None:
                lines = lines[:train_rows]
            (data / f"snips_{split}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    path = d / "tasks" / "snips_intents.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


# --------------------------------------------------------------------------------------------------------------------
# 1. `max` and its binding limit
# --------------------------------------------------------------------------------------------------------------------


def _brute_k_context(tp: TokenizedPrompts, items, context: int) -> int:
    room = context - tp.longest_request(items)
    k = 0
    while k < len(tp.builder.task.demo_pool) and len(tp.prefix_ids(k + 1)) <= room:
        k += 1
    return k


def test_max_limited_by_the_max_shots_cap(snips, tok):
    tp = TokenizedPrompts(PromptBuilder(snips, 0), tok)
    items = list(snips.test[:8])
    context = len(tp.prefix_ids(40)) + tp.longest_request(items)  # the context alone fits exactly 40
    k, how = resolve_shots("max", tp, items, context, 8)
    assert k == 8 == tp.max_shots_that_fit(context, items, 8)
    assert how.max_limit == {"binding": "max_shots", "k_context": 40, "cap": 8, "pool": 493, "context": context}
    assert _brute_k_context(tp, items, context) == 40
    assert str(how).startswith(f"limited by the max_shots cap (the {context}-token context would fit k=40; 493 demonstrations)")


def test_max_limited_by_the_context(snips, tok):
    tp = TokenizedPrompts(PromptBuilder(snips, 0), tok)
    items = list(snips.test[:8])
    context = len(tp.prefix_ids(5)) + tp.longest_request(items) + 3  # k=6 no longer fits
    k, how = resolve_shots("max", tp, items, context, 256)
    assert k == 5 == _brute_k_context(tp, items, context)
    assert how.max_limit == {"binding": "context", "k_context": 5, "cap": 256, "pool": 493, "context": context}
    assert str(how).startswith(f"limited by the {context}-token context window (max_shots cap 256; 493 demonstrations)")
    # the context fitting exactly the cap: a higher cap would not help, so the context binds
    _, how = resolve_shots("max", tp, items, context, 5)
    assert how.max_limit["binding"] == "context" and how.max_limit["k_context"] == 5


def test_max_limited_by_the_demonstration_pool(snips, tok, tmp_path):
    task = load_task(str(_task(tmp_path, train_rows=6)))
    tp = TokenizedPrompts(PromptBuilder(task, 0), tok)
    items = list(task.test[:8])
    k, how = resolve_shots("max", tp, items, 2048, 256)
    assert k == 6
    assert how.max_limit == {"binding": "demonstrations", "k_context": 6, "cap": 256, "pool": 6, "context": 2048}
    assert str(how).startswith("limited by the demonstration pool (all 6 demonstrations fit the 2048-token context")
    # zero-shot does not fit: still one line
    with pytest.raises(UserError, match="does not fit"):
        resolve_shots("max", tp, items, 10, 256)


def test_run_records_and_reports_the_binding_limit(tiny_llama_dir, tmp_path):
    _task(tmp_path, train_rows=6)
    job = {
        "name": "maxlimit", "tasks": ["snips_intents"], "base": str(tiny_llama_dir), "limit": 4, "seed": 3,
        "arms": {"prompting": {"shots": ["max"], "max_shots": 256}, "lora": {"enabled": False}},
        "output_dir": str(tmp_path / "runs"),
    }
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(job))
    res = CliRunner().invoke(app, ["run", str(tmp_path / "job.yaml")])
    assert res.exit_code == 0, res.output
    (rd,) = list((tmp_path / "runs").iterdir())
    (unit,) = [json.loads(p.read_text()) for p in (rd / "units").glob("*.json")]
    pt = unit["point"]
    assert pt["shots"] == 6 and pt["max_limit"]["binding"] == "demonstrations" and pt["max_limit"]["pool"] == 6
    assert pt["max_limit"]["k_context"] == 6 and pt["max_limit"]["cap"] == 256
    md = (rd / "report.md").read_text()
    assert "k=6 — limited by the demonstration pool (all 6 demonstrations fit the" in md
    assert "limited by the demonstration pool" in (rd / "report.html").read_text()


# --------------------------------------------------------------------------------------------------------------------
# 2. LoRA: items trained on / held out, answer-only validation metrics
# --------------------------------------------------------------------------------------------------------------------


def _peft(tiny_llama_dir):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir, attn_implementation="sdpa")
    return get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], lora_dropout=0.0))


def test_validation_metrics_read_the_answer_tokens_only(tiny_llama_dir, snips, tok):
    pm = _peft(tiny_llama_dir).eval()
    tp = TokenizedPrompts(PromptBuilder(snips, 0), tok)
    fmt, eos = 31, tok.eos_token_id
    ctxs = [tp.prefix_ids(0) + tp.item_ids(it, 0) for it in snips.train[:6]]
    with torch.no_grad():  # the model's own greedy 2-token answer after context + delimiter (argmax-correct)
        greedy = []
        for c in ctxs:
            ids = c + [fmt]
            for _ in range(2):
                ids.append(int(pm(input_ids=torch.tensor([ids])).logits[0, -1].argmax()))
            greedy.append(ids[len(c) + 1:])
    # answers wrapped in format tokens: one delimiter id before, EOS after; half of them the greedy answer
    answers = [g if i % 2 == 0 else [g[0], (g[1] + 1) % 300 + 3] for i, g in enumerate(greedy)]
    wrapped = [Example(c, [fmt] + a + [eos], format_head=1, format_tail=1) for c, a in zip(ctxs, answers)]
    # the same answers with the delimiter moved into the context and no EOS: exactly what the metrics read
    plain = [Example(c + [fmt], a) for c, a in zip(ctxs, answers)]
    loss_w, acc_w = answer_metrics(pm, wrapped, tok.pad_token_id, "cpu", batch_size=4)
    loss_p, acc_p = answer_metrics(pm, plain, tok.pad_token_id, "cpu", batch_size=4)
    assert loss_w == pytest.approx(loss_p, abs=1e-5) and acc_w == acc_p
    everything, _ = answer_metrics(pm, [Example(e.context_ids, e.answer_ids) for e in wrapped], tok.pad_token_id, "cpu")
    assert everything != pytest.approx(loss_w, abs=1e-4)  # counting the format tokens would move the loss
    # accuracy by hand: items whose answer tokens are all argmax-correct, from full forwards
    correct = 0
    with torch.no_grad():
        for e in plain:
            seq = e.context_ids + e.answer_ids
            logits = pm(input_ids=torch.tensor([seq])).logits[0]
            pred = logits[len(e.context_ids) - 1 : len(seq) - 1].argmax(-1).tolist()
            correct += pred == e.answer_ids
    assert acc_p == pytest.approx(correct / len(plain)) and 0 < acc_p < 1


def test_build_examples_marks_format_tokens(snips, tok):
    tp = TokenizedPrompts(PromptBuilder(snips, 0), tok)
    exs = build_examples(snips, tp, list(snips.train[:4]), tok)
    assert all(e.format_head == 0 and e.format_tail == 0 for e in exs)  # " label": the space merges into the word
    arrow = Task(spec=snips.spec.model_copy(update={"target_delimiter": " => "}), path=snips.path,
                 train=snips.train[:4], test=snips.test[:4])
    tpa = TokenizedPrompts(PromptBuilder(arrow, 0), tok)
    delim = tok(" => ", add_special_tokens=False)["input_ids"]
    for it, e in zip(arrow.train, build_examples(arrow, tpa, list(arrow.train), tok)):
        cont = tpa.continuation_ids(it.target, it, 0)
        assert e.answer_ids == cont and 0 < e.format_head < len(cont)
        assert cont[: e.format_head] == delim[: e.format_head]
    gen = Task(spec=snips.spec.model_copy(update={"kind": "generate"}), path=snips.path, train=snips.train[:2],
               test=snips.test[:2])
    tpg = TokenizedPrompts(PromptBuilder(gen, 0), tok)
    assert all(e.format_tail == 1 and e.answer_ids[-1] == tok.eos_token_id
               for e in build_examples(gen, tpg, list(gen.train), tok))


def test_lora_states_items_trained_and_held_out(tiny_llama_dir, snips, tmp_path):
    from evaluator.models.load import load_model, resolve_source

    lm = load_model(resolve_source(str(tiny_llama_dir)), device="cpu")
    hp = LoraArm(r=4, epochs=1, batch_size=8)
    logs: list[str] = []
    tp = TokenizedPrompts(PromptBuilder(snips, 7), lm.tokenizer)
    # the key depends on what the adapter saw, not on the new metadata fields
    key = adapter_key(lm.fingerprint, snips, list(snips.train[:48]), hp_dict(hp), 7, prompt_signature(tp))
    pm, meta, out = train_or_reuse(lm, snips, 48, hp, 7, tmp_path, log=logs.append)
    assert meta["key"] == key and out.name.endswith(key)
    tr = meta["training"]
    assert tr["train_items"] == 40 and tr["val_items"] == 8 and tr["n_train"] == 40 and tr["n_val"] == 8
    m = meta["metrics"]
    assert 0 <= m["best_val_accuracy"] <= 1 and m["best_val_loss"] > 0 and m["val_accuracy_curve"]
    assert tr["best_val_accuracy"] == m["best_val_accuracy"]  # the unit record's `training` carries it
    line = logs[-1]
    assert line.startswith("trained adapter n=48 (40 trained, 8 held out) in ") and "accuracy" in line
    # the stored validation metrics are those of the kept adapter on the held-out items, answer tokens only
    _, val = split_validation(build_examples(snips, tp, list(snips.train[:48]), lm.tokenizer), hp, 7)
    loss, acc = answer_metrics(pm, val, lm.tokenizer.pad_token_id, "cpu")
    assert loss == pytest.approx(m["best_val_loss"], abs=1e-4) and acc == pytest.approx(m["best_val_accuracy"])
    lm.model = pm.unload()


def test_report_point_shows_the_trained_n():
    from evaluator.analysis.labels import point_label
    from evaluator.report.html import render_html
    from evaluator.report.markdown import render_markdown

    u = {"arm": "B", "point": {"train_size": 256, "shots": 0, "shots_requested": 0},
         "training": {"train_items": 230, "val_items": 26}}
    assert point_label(u) == "n=256 (230 trained, 26 held out), k=0"
    old = dict(u, training={"n_train": 230, "n_val": 26})  # adapters trained before train_items existed
    assert point_label(old) == "n=256 (230 trained, 26 held out), k=0"
    small = dict(u, point={"train_size": 16, "shots": 0}, training={"train_items": 16, "val_items": 0})
    assert point_label(small) == "n=16, k=0"
    assert point_label(dict(u, training=None)) == "n=256, k=0"
    # report.md and report.html show that same text in their point column
    unit = u | {"model": "m", "value": 0.5, "ci_low": 0.4, "ci_high": 0.6, "n_items": 10, "timings": {"eval_seconds": 1.0},
                "tokens": {"prompt_tokens_per_request": 20.0, "shared_prefix_tokens": 5}}
    rep = {"run_id": "r", "job": {}, "tunecheck_version": "0", "complete": True,
           "tasks": {"t": {"units": [unit], "paired": [], "verdict": {"title": "T", "reason": "r"}}}}
    assert "| m | n=256 (230 trained, 26 held out), k=0 |" in render_markdown(rep)
    assert "<td>m</td><td>n=256 (230 trained, 26 held out), k=0</td>" in render_html(rep, {})


# --------------------------------------------------------------------------------------------------------------------
# 3. split: options
# --------------------------------------------------------------------------------------------------------------------


def _ids(items) -> list[str]:
    return [it.id for it in items]


def test_seeded_split_is_reproducible_and_disjoint(tmp_path):
    a = load_task(str(_task(tmp_path / "a", all_rows=50, split={"test_fraction": 0.4, "seed": 13})))
    b = load_task(str(_task(tmp_path / "b", all_rows=50, split={"test_fraction": 0.4, "seed": 13})))
    c = load_task(str(_task(tmp_path / "c", all_rows=50, split={"test_fraction": 0.4, "seed": 14})))
    assert len(a.train) == 30 and len(a.test) == 20
    assert _ids(a.test) == _ids(b.test) and _ids(a.train) == _ids(b.train)
    assert set(_ids(a.test)) != set(_ids(c.test))
    file_order = [json.loads(r)["id"] for r in ROWS[:50]]
    assert sorted(_ids(a.train) + _ids(a.test)) == sorted(file_order) and not set(_ids(a.train)) & set(_ids(a.test))
    assert _ids(a.test) == [i for i in file_order if i in set(_ids(a.test))]  # file order kept in each part
    # seeded by random.Random(seed): the first n_test of one permutation of the rows
    order = list(range(50))
    random.Random(13).shuffle(order)
    assert set(_ids(a.test)) == {file_order[i] for i in order[:20]}
    # recorded: the spec carries the options, and the identity follows the items
    assert a.spec.model_dump(mode="json")["split"] == {"source": None, "train_fraction": None, "test_fraction": 0.4,
                                                       "train_size": None, "test_size": None, "mode": "seeded", "seed": 13}
    assert task_fingerprint(a)["test"] == task_fingerprint(b)["test"] != task_fingerprint(c)["test"]
    assert "split" not in load_task("snips_intents").spec.model_dump(mode="json")  # other tasks' specs unchanged


def test_first_mode_and_sizes(tmp_path):
    file_order = [json.loads(r)["id"] for r in ROWS[:50]]
    first = load_task(str(_task(tmp_path / "f", all_rows=50, split={"train_fraction": 0.6, "mode": "first"})))
    assert _ids(first.train) == file_order[:30] and _ids(first.test) == file_order[30:]
    first_test = load_task(str(_task(tmp_path / "g", all_rows=50, split={"test_size": 12, "mode": "first"})))
    assert _ids(first_test.train) == file_order[:38] and _ids(first_test.test) == file_order[38:]
    sized = load_task(str(_task(tmp_path / "s", all_rows=50, split={"test_size": 20, "seed": 13})))
    assert len(sized.test) == 20 and len(sized.train) == 30
    frac = load_task(str(_task(tmp_path / "t", all_rows=50, split={"test_fraction": 0.4, "seed": 13})))
    assert _ids(sized.test) == _ids(frac.test)  # 40% of 50 = 20 items, the same draw
    train_sized = load_task(str(_task(tmp_path / "u", all_rows=50, split={"train_size": 45})))
    assert len(train_sized.train) == 45 and len(train_sized.test) == 5
    half = load_task(str(_task(tmp_path / "h", all_rows=5, split={"test_fraction": 0.5, "mode": "first"})))
    assert len(half.test) == 3  # 2.5 rounds half up
    # without an id field, ids are the divided split's row ids (stable whatever the split)
    spec_no_id = {k: v for k, v in SNIPS.items() if k != "id_field"}
    p = tmp_path / "n"
    _task(p, all_rows=10, split={"test_size": 3, "mode": "first"})
    (p / "tasks" / "snips_intents.yaml").write_text(yaml.safe_dump(
        {**spec_no_id, "data": {"path": "json", "data_files": {"all": "data/all.jsonl"}},
         "split": {"test_size": 3, "mode": "first"}}))
    t = load_task(str(p / "tasks" / "snips_intents.yaml"))
    assert _ids(t.train) == [f"all-{i}" for i in range(7)] and _ids(t.test) == ["all-7", "all-8", "all-9"]


def test_split_source_picks_one_of_several_files(tmp_path):
    path = _task(tmp_path, split={"source": "train", "test_size": 93, "seed": 2})
    t = load_task(str(path))
    assert len(t.train) == 400 and len(t.test) == 93


@pytest.mark.parametrize("split, data_all, needle", [
    ({"test_fraction": 1.5}, True, "split.test_fraction"),
    ({"test_fraction": 0}, True, "split.test_fraction"),
    ({"train_fraction": 0.5, "test_fraction": 0.5}, True, "field 'split': give exactly one of"),
    ({"seed": 3}, True, "field 'split': give exactly one of"),
    ({"test_size": 0}, True, "split.test_size"),
    ({"test_size": 2.5}, True, "split.test_size"),
    ({"test_size": "yes"}, True, "split.test_size"),
    ({"test_fraction": True}, True, "split.test_fraction"),
    ({"test_fraction": 0.4, "mode": "random"}, True, "split.mode"),
    ({"test_fraction": 0.4, "mode": "first", "seed": 1}, True, "split.seed"),
    ({"test_fraction": 0.4, "sed": 1}, True, "split.sed"),
    ({"test_size": 50}, True, "split.test_size 50 of 50 rows leaves 0 train items"),
    ({"train_size": 60}, True, "split.train_size 60 of 50 rows leaves 0 test items"),
    ({"test_fraction": 0.001}, True, "split.test_fraction 0.001 of 50 rows gives no test items"),
    ({"test_fraction": 0.4}, False, "split divides one data split but data.data_files has 2"),
    ({"test_fraction": 0.4, "source": "dev"}, False, "split.source 'dev' is not in data.data_files"),
])
def test_bad_split_options_are_one_line(tmp_path, split, data_all, needle):
    path = _task(tmp_path, all_rows=50 if data_all else None, split=split)
    with pytest.raises(UserError) as err:
        load_task(str(path))
    msg = str(err.value)
    assert needle in msg and "\n" not in msg, msg


def test_bad_split_in_a_run_exits_2(tiny_llama_dir, tmp_path):
    _task(tmp_path, all_rows=50, split={"test_fraction": 2})
    job = {"name": "badsplit", "tasks": ["snips_intents"], "base": str(tiny_llama_dir), "limit": 4,
           "arms": {"prompting": {"shots": [0]}, "lora": {"enabled": False}}, "output_dir": str(tmp_path / "runs")}
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(job))
    res = CliRunner().invoke(app, ["run", str(tmp_path / "job.yaml")])
    assert res.exit_code == 2 and "split.test_fraction" in res.output
    assert len([ln for ln in res.output.strip().splitlines() if ln.startswith("error:")]) == 1
