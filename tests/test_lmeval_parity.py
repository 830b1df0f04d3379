"""Parity with lm-eval: the same task, model, demonstrations and items scored by lm-eval's HF backend and by our
PrefixScorer must give the same predictions and the same log-likelihoods (to float rounding).

Offline: the task files are written by the bridge (dataset_path: json), the models are the tiny fixtures.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("lm_eval")

from evaluator.arms.lmeval import lmeval_context, lmeval_requests, run_lmeval, write_lmeval_task  # noqa: E402
from evaluator.arms.rows import choice_rows  # noqa: E402
from evaluator.engine.scorer import PrefixScorer  # noqa: E402
from evaluator.prompts.tokenized import TokenizedPrompts  # noqa: E402
from evaluator.tasks.layout import PromptBuilder
from evaluator.tasks.load import load_task  # noqa: E402

K = 3
N_ITEMS = 10
SEED = 0
# float32 on CPU: lm-eval re-encodes each (context, choice) in a right-padded batch, we reuse a prefix KV cache and
# pack the choices behind a tree mask; the sums of log-probs differ only by float rounding (measured ~1e-6).
TOL = 1e-4


@pytest.fixture(scope="module")
def snips():
    task = load_task("snips_intents")
    return task, PromptBuilder(task, SEED), list(task.test[:N_ITEMS])


def _load(path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, attn_implementation="sdpa").eval()
    return model, tok


def _max_delta(a_rows, b_rows):
    return max(abs(x - y) for a, b in zip(a_rows, b_rows) for x, y in zip(a["loglik"], b["loglik"]))


def _ours(model, tok, task, builder, items, k):
    tp = TokenizedPrompts(builder, tok)
    scorer = PrefixScorer(model, tp.prefix_ids(k), mode="packed")
    return choice_rows(task, tp, scorer, items, k)


def _aligned(model, tok, builder, items, k):
    """Our engine fed with lm-eval's own token ids."""
    shared, reqs, same = lmeval_requests(tok, builder, items, k)
    scores = PrefixScorer(model, shared, mode="packed").score(reqs)
    rows = []
    for it, sc in zip(items, scores):
        best = max(range(len(sc.loglik)), key=lambda j: sc.loglik[j])
        rows.append({"item_id": it.id, "prediction": it.choices[best], "loglik": sc.loglik, "is_greedy": sc.is_greedy})
    return rows, same


def _check(lm_rows, ours_rows, items):
    assert [r["item_id"] for r in lm_rows] == [it.id for it in items]
    assert [r["prediction"] for r in lm_rows] == [r["prediction"] for r in ours_rows]
    assert [r["is_greedy"] for r in lm_rows] == [list(r["is_greedy"]) for r in ours_rows]
    delta = _max_delta(lm_rows, ours_rows)
    assert delta <= TOL, f"max |Δ loglik| = {delta:.2e}"
    return delta


def test_context_text_identical(snips, tmp_path):
    """lm-eval's own fewshot_context equals our prefix + query, with and without demonstrations."""
    task, builder, items = snips
    for k in (0, K):
        name = write_lmeval_task(task, builder, items, k, tmp_path / f"k{k}")  # verifies item 0 itself
        for i in (0, len(items) - 1):
            assert lmeval_context(tmp_path / f"k{k}", name, k, doc_index=i) == builder.prefix(k) + builder.query(items[i])
    # The demonstrations are ours, in order: k=3 starts with the instruction and holds the first three demos.
    assert builder.prefix(K).startswith(task.spec.instruction + task.spec.fewshot_delimiter)
    for d in builder.demos(K):
        assert builder.query(d) + task.spec.target_delimiter + d.target + task.spec.fewshot_delimiter in builder.prefix(K)


@pytest.mark.parametrize("arch", ["llama", "gemma"])
def test_lmeval_parity_in_memory(arch, snips, tmp_path, request):
    """HFLM around the loaded model vs PrefixScorer via the runner's row code; the fixture tokenizer's piecewise ids
    equal lm-eval's whole-string ids, so the product path itself must match."""
    task, builder, items = snips
    path = request.getfixturevalue(f"tiny_{arch}_dir")
    model, tok = _load(path)
    lm_rows = run_lmeval(model, tok, task, builder, items, K, batch_size=8, work_dir=tmp_path)
    ours = _ours(model, tok, task, builder, items, K)
    aligned, same = _aligned(model, tok, builder, items, K)
    assert all(same), "fixture tokenizer: piecewise ids should equal lm-eval's"
    _check(lm_rows, ours, items)
    _check(lm_rows, aligned, items)
    tp = TokenizedPrompts(builder, tok)
    assert [r["prompt_tokens"] for r in lm_rows] == [len(tp.prefix_ids(K)) + len(tp.item_ids(it, K)) for it in items]


def test_lmeval_parity_from_folder_with_adapter(snips, tiny_llama_dir, tmp_path):
    """lm-eval loads the folder and applies a peft adapter itself (the --engine lm-eval path for arm B)."""
    from peft import LoraConfig, PeftModel, get_peft_model

    task, builder, items = snips
    base, tok = _load(tiny_llama_dir)
    torch.manual_seed(0)
    lora = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    adapter = tmp_path / "adapter"
    lora.save_pretrained(adapter)

    lm_rows = run_lmeval(
        str(tiny_llama_dir), str(tiny_llama_dir), task, builder, items, K,
        peft=adapter, batch_size=4, device="cpu", dtype="float32", work_dir=tmp_path,
    )
    base2, _ = _load(tiny_llama_dir)
    model = PeftModel.from_pretrained(base2, adapter).eval()
    ours = _ours(model, tok, task, builder, items, K)
    _check(lm_rows, ours, items)
    # The adapter really changes the scores (so this compares adapted models, not two base models).
    plain, _ = _load(tiny_llama_dir)
    assert _max_delta(_ours(plain, tok, task, builder, items, K), ours) > 1e-3


def test_piecewise_ids_match_lmeval_when_the_delimiter_merges(snips):
    """A GPT-2-style tokenizer that has a "\\n\\n" token (as SmolLM2's has): tokenising the prefix text on its own
    would end it in that token while lm-eval, tokenising prefix + query whole, gets "\\n", "\\n". Our piecewise ids
    (prefix cut before the delimiter, delimiter tokenised with the item) must still equal lm-eval's."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    task, builder, items = snips
    corpus = [builder.query(it) + " " + it.target for it in task.train[:200]] + ["\n\n"] * 500
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(
        corpus, trainers.BpeTrainer(vocab_size=400, special_tokens=["<pad>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    )
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, pad_token="<pad>")
    assert len(tok.encode("\n\n")) == 1
    naive = tok.encode(builder.prefix(K))
    assert tok.encode(builder.prefix(K) + builder.query(items[0]))[: len(naive)] != naive  # the trap is real
    for k in (0, 1, K):
        shared, reqs, same = lmeval_requests(tok, builder, items, k)
        assert all(same), f"k={k}: piecewise ids differ from lm-eval's"
        tp = TokenizedPrompts(builder, tok)
        assert shared == tp.prefix_ids(k)[: len(shared)]
