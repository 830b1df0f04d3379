"""Chat-formatted prompting (`prompt_format: chat`): prompts rendered with the model's chat template, the
demonstrations still one shared prefix, ids equal to tokenising the whole rendered prompt, LoRA trained on the same
format, parity with lm-eval's `apply_chat_template=True, fewshot_as_multiturn=True`, and one clear error for a model
without a template. Fixture models only: the fixture tokenizer with a small Jinja chat template added."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

torch = pytest.importorskip("torch")

from evaluator.cli.app import app  # noqa: E402
from evaluator.errors import UserError  # noqa: E402
from evaluator.prompts.tokenized import TokenizedPrompts  # noqa: E402
from evaluator.tasks.layout import PromptBuilder  # noqa: E402
from evaluator.tasks.load import load_task, with_prompt_format  # noqa: E402

# ChatML-like, with a BOS in the text (lm-eval then adds none) and a newline after the generation prompt (lm-eval moves
# it into the continuation); the second refuses a system turn (lm-eval then drops the system turn).
CHATML = ("{{ bos_token }}{% for m in messages %}{{ '<|' + m['role'] + '|>\n' + m['content'] + eos_token + '\n' }}"
          "{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}")
NO_SYSTEM = ("{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}"
             "{% endif %}{% for m in messages %}{{ '<' + m['role'] + '>' + m['content'] + eos_token }}{% endfor %}"
             "{% if add_generation_prompt %}{{ '<assistant>' }}{% endif %}")
TOL = 1e-4  # float32: per-choice log-likelihoods vs lm-eval (measured ~1e-5, the rows' 6-decimal rounding)
N_ITEMS = 8


def chat_model(src: Path, dest: Path, template: str) -> Path:
    """A copy of a fixture model folder whose tokenizer has `template` as its chat template."""
    from transformers import AutoTokenizer

    shutil.copytree(src, dest)
    tok = AutoTokenizer.from_pretrained(dest)
    tok.chat_template = template
    tok.save_pretrained(dest)
    return dest


@pytest.fixture(scope="module")
def chatml_dir(tmp_path_factory, tiny_llama_dir) -> Path:
    return chat_model(tiny_llama_dir, tmp_path_factory.mktemp("chat") / "llama-chat", CHATML)


def chat_task(**over):
    task = load_task("snips_intents")
    spec = task.spec.model_validate({**task.spec.model_dump(), "prompt_format": "chat", **over})
    return dataclasses.replace(task, spec=spec)


def _load(path: Path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, attn_implementation="sdpa").eval()
    return model, tok


def test_layout_is_the_templates_rendering(chatml_dir):
    """prefix(k) + query(item) is the template applied to lm-eval's messages: system turn (system + delimiter +
    instruction), demonstrations as user/assistant turns (or in one user turn), the query last, generation prompt."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(chatml_dir)
    for multiturn in (True, False):
        task = chat_task(system="Answer with the intent only.", fewshot_as_multiturn=multiturn)
        b = TokenizedPrompts(PromptBuilder(task, 3), tok).builder
        it = task.test[0]
        s = task.spec
        system = "Answer with the intent only." + s.fewshot_delimiter + s.instruction
        for k in (0, 2):
            demos = b.demos(k)
            if multiturn:
                turns = [m for d in demos for m in ({"role": "user", "content": b.user_text(d)},
                                                    {"role": "assistant", "content": d.target})]
                last = b.user_text(it)
            else:
                turns = []
                last = "".join(b.user_text(d) + s.target_delimiter + d.target + s.fewshot_delimiter for d in demos) + b.user_text(it)
            msgs = [{"role": "system", "content": system}, *turns, {"role": "user", "content": last}]
            want = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
            assert b.prefix(k) + b.query(it) == want
        assert b.prefix(2).startswith(tok.bos_token + "<|system|>\n" + system)
        assert b.query(it).endswith("<|assistant|>\n") and b.continuation(it.target) == it.target
        assert b.answer_lead == "\n"


def test_ids_equal_the_whole_rendered_prompt_with_a_shared_prefix(chatml_dir):
    """Piecewise ids (shared prefix, item, choice) equal tokenising the whole chat prompt + choice at once — one BOS
    (the template writes it), the generation prompt's newline scored with the answer as lm-eval does."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(chatml_dir)
    task = chat_task()
    tp = TokenizedPrompts(PromptBuilder(task, 0), tok)
    b = tp.builder
    for k in (0, 2, 5):
        for it in task.test[:N_ITEMS]:
            for c in it.choices:
                whole = tok(b.prefix(k) + b.query(it) + b.continuation(c), add_special_tokens=False)["input_ids"]
                assert tp.prefix_ids(k) + tp.item_ids(it, k) + tp.continuation_ids(c, it, k) == whole
            assert tp.prefix_ids(k).count(tok.bos_token_id) == 1
    nl = tok("\n", add_special_tokens=False)["input_ids"]
    assert tp.continuation_ids("play_music")[: len(nl)] == nl
    assert tp.tokenisation["mode"] == "piecewise" and tp.tokenisation["residual_mismatches"] == 0
    # the demonstrations are the shared prefix: k=2's prefix extends k=0's up to its last user turn
    assert len(tp.prefix_ids(2)) > len(tp.prefix_ids(0))


def test_generate_tasks_generate_after_the_generation_prompt(chatml_dir):
    """A generate task keeps the generation prompt's newline in the context (generation starts after it, as lm-eval's
    generate_until); the answer LoRA trains on is the reply alone."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(chatml_dir)
    task = with_prompt_format(load_task("snips_intents_generate"), "chat")
    tp = TokenizedPrompts(PromptBuilder(task, 0), tok)
    it = task.test[0]
    assert tp.builder.answer_lead == "" and tok.decode(tp.item_ids(it, 2)).endswith("<|assistant|>\n")
    assert tok.decode(tp.continuation_ids(it.target, it, 2)) == it.target
    assert tp.tokenisation["residual_mismatches"] == 0


@pytest.mark.parametrize("template,multiturn,ks", [
    ("chatml", True, (0, 2)),
    ("chatml", False, (2,)),
    ("no_system", True, (2,)),
])
def test_lmeval_parity_apply_chat_template(template, multiturn, ks, tiny_llama_dir, tmp_path):
    """Our engine vs lm-eval's simple_evaluate(apply_chat_template=True, fewshot_as_multiturn=...): the same context
    text per item, the same predictions, per-choice log-likelihoods within 1e-4 (float32)."""
    pytest.importorskip("lm_eval")
    from evaluator.arms.lmeval import lmeval_requests, run_lmeval
    from evaluator.arms.rows import choice_rows
    from evaluator.engine.scorer import PrefixScorer

    path = chat_model(tiny_llama_dir, tmp_path / "m", CHATML if template == "chatml" else NO_SYSTEM)
    model, tok = _load(path)
    task = chat_task(system="Be brief.", fewshot_as_multiturn=multiturn)
    items = list(task.test[:N_ITEMS])
    for k in ks:
        tp = TokenizedPrompts(PromptBuilder(task, 0), tok)
        ours = choice_rows(task, tp, PrefixScorer(model, tp.prefix_ids(k), mode="packed"), items, k)
        theirs = run_lmeval(model, tok, task, PromptBuilder(task, 0), items, k, batch_size=8, work_dir=tmp_path / f"k{k}")
        assert [r["prediction"] for r in ours] == [r["prediction"] for r in theirs]
        assert [list(r["is_greedy"]) for r in ours] == [r["is_greedy"] for r in theirs]
        delta = max(abs(a - b) for r, s in zip(ours, theirs) for a, b in zip(r["loglik"], s["loglik"]))
        assert delta <= TOL, f"k={k}: max |Δ loglik| = {delta:.2e}"
        assert [r["prompt_tokens"] for r in theirs] == [len(tp.prefix_ids(k)) + len(tp.item_ids(it, k)) for it in items]
        _, _, same = lmeval_requests(tok, PromptBuilder(task, 0), items, k)
        assert all(same), "our piecewise ids should be lm-eval's"
    if template == "no_system":  # lm-eval leaves the system turn out where the template refuses one; so do we
        assert "Be brief." not in tp.builder.prefix(0) and tp.builder.chat.dropped_system


def test_lora_examples_are_the_chat_prompt_and_the_assistant_reply(chatml_dir):
    from transformers import AutoTokenizer

    from evaluator.arms.lora import build_examples

    tok = AutoTokenizer.from_pretrained(chatml_dir)
    task = chat_task()
    tp = TokenizedPrompts(PromptBuilder(task, 0), tok)
    b = tp.builder
    for it, ex in zip(task.train[:6], build_examples(task, tp, list(task.train[:6]), tok)):
        full = tok(b.prefix(0) + b.query(it) + b.continuation(it.target), add_special_tokens=False)["input_ids"]
        assert ex.context_ids + ex.answer_ids == full
        assert tok.decode(ex.answer_ids) == "\n" + it.target  # the reply, after the generation prompt's newline
        assert ex.format_head == 1 and tok.decode([ex.answer_ids[i] for i in ex.metric_span()]) == it.target
    # the adapter key sees the format: a chat adapter is never reused for raw prompts
    raw = PromptBuilder(load_task("snips_intents"), 0)
    assert b.signature() != raw.signature() and b.signature().startswith("<chat>")


def test_spec_and_job_fields(tmp_path):
    from evaluator.config.job import Job

    raw = load_task("snips_intents")
    dump = raw.spec.model_dump(mode="json")
    assert not {"prompt_format", "fewshot_as_multiturn", "system"} & set(dump)  # raw tasks keep their fingerprint
    job = Job.model_validate({"name": "j", "tasks": ["snips_intents"], "base": "x/y"})
    assert "prompt_format" not in job.model_dump()  # and jobs without the field keep theirs
    assert Job.model_validate({"name": "j", "tasks": ["snips_intents"], "base": "x/y", "prompt_format": "chat"}).fingerprint() != job.fingerprint()
    with pytest.raises(Exception, match="system turn of chat prompts"):
        raw.spec.model_validate({**raw.spec.model_dump(), "system": "Be brief."})
    over = with_prompt_format(raw, "chat")
    assert over.spec.prompt_format == "chat" and over.test == raw.test and raw.spec.prompt_format == "raw"
    assert with_prompt_format(raw, None) is raw
    with pytest.raises(UserError, match="sets `system`"):
        with_prompt_format(chat_task(system="Be brief."), "raw")
    with pytest.raises(UserError, match="chat template"):  # a chat task never falls back to raw text silently
        PromptBuilder(over, 0).prefix(0)


def test_model_without_chat_template_is_one_error(tiny_llama_dir):
    from transformers import AutoTokenizer

    from evaluator.models.chat import check_chat_templates
    from evaluator.models.load import ModelSource, resolve_source

    tok = AutoTokenizer.from_pretrained(tiny_llama_dir)
    with pytest.raises(UserError, match="has no chat template"):
        TokenizedPrompts(PromptBuilder(chat_task(), 0), tok)
    with pytest.raises(UserError, match="has no chat template"):
        check_chat_templates([resolve_source(str(tiny_llama_dir))], ["snips_intents"])
    with pytest.raises(UserError, match="API model"):
        check_chat_templates([ModelSource("api:openai/gpt-4o-mini", "api", "api:openai/gpt-4o-mini")], ["snips_intents"])
    check_chat_templates([ModelSource("smollm2-135m", "builtin", "smollm2-135m")], ["snips_intents"])  # has one


def _job(tmp: Path, base: Path, **over) -> Path:
    job = {"name": "chat", "tasks": ["snips_intents"], "base": str(base), "seed": 7, "limit": 8,
           "prompt_format": "chat",
           "arms": {"prompting": {"shots": [0, 2]}, "lora": {"train_sizes": [16], "epochs": 1, "batch_size": 8, "r": 4}},
           "output_dir": str(tmp / "runs"), "adapters_dir": str(tmp / "adapters")}
    job.update(over)
    path = tmp / "job.yaml"
    path.write_text(yaml.safe_dump(job))
    return path


def test_run_without_chat_template_exits_2_before_scoring(tmp_path, tiny_llama_dir):
    res = CliRunner().invoke(app, ["run", str(_job(tmp_path, tiny_llama_dir))])
    assert res.exit_code == 2, res.output
    assert "has no chat template" in res.output and "prompt_format: raw" in res.output
    assert not (tmp_path / "runs").exists()  # refused while planning: no run folder, nothing scored


def test_job_runs_arms_a_and_b_in_chat_format(tmp_path, chatml_dir):
    """`prompt_format: chat` in the job: arm A and the LoRA arm (trained and evaluated on chat prompts) run; the run
    records the format in the task spec, the shared prefix is the chat text, and the rows' queries end in the
    generation prompt."""
    res = CliRunner().invoke(app, ["run", str(_job(tmp_path, chatml_dir))])
    assert res.exit_code == 0, res.output
    (rd,) = list((tmp_path / "runs").iterdir())
    config = json.loads((rd / "config.json").read_text())
    assert config["tasks"]["snips_intents"]["spec"]["prompt_format"] == "chat"
    units = [json.loads(p.read_text()) for p in (rd / "units").glob("*.json")]
    assert sorted(u["arm"] for u in units) == ["A", "A", "B"]
    for u in units:
        rows = [json.loads(x) for x in (rd / "results" / f"{u['unit']}.jsonl").read_text().splitlines()]
        assert len(rows) == 8 and all(r["query"].endswith("<|assistant|>\n") for r in rows)
    prefixes = [p.read_text() for p in (rd / "prefixes").glob("*.txt")]
    assert prefixes and all(p.startswith("<s><|system|>\n") for p in prefixes)
    # `tunecheck samples` logs what lm-eval logs under a chat template: the whole rendered context, the bare choice
    from transformers import AutoTokenizer

    from evaluator.report.samples import unit_samples

    a2 = next(u["unit"] for u in units if u["arm"] == "A" and u["point"]["shots"] == 2)
    b = TokenizedPrompts(PromptBuilder(with_prompt_format(load_task("snips_intents"), "chat"), 7),
                         AutoTokenizer.from_pretrained(chatml_dir)).builder
    by_id = {it.id: it for it in b.task.test}
    for sample in unit_samples(rd, a2):
        it = by_id[sample["doc"]["id"]]
        assert [tuple(a) for a in sample["arguments"]] == [(b.chat_context(it, 2), c) for c in it.choices]
