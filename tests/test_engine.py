"""Parity tests for the shared-prefix engine: packed / plain scoring and generation vs plain full forwards."""

from __future__ import annotations

import json

import pytest
import torch

from evaluator.engine.masks import PACKED_MODEL_TYPES, packed_support
from evaluator.engine.reference import score_reference
from evaluator.engine.requests import ChoiceRequest
from evaluator.engine.scorer import PrefixScorer
from tests.tiny_models import REPO

TOL = 1e-4
LABELS = [
    "add_to_playlist",
    "book_restaurant",
    "get_weather",
    "play_music",
    "search_screening_event",
    "search_creative_work",
    "rate_book",
]


def _rows(split: str, n: int) -> list[dict]:
    lines = (REPO / "tasks" / "data" / f"snips_{split}.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(x) for x in lines[:n]]


@pytest.fixture(scope="module")
def tok(tiny_tokenizer_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_tokenizer_dir)


def _prefix(tok, k: int = 4, bos: bool = True) -> list[int]:
    text = "".join(f"Utterance: {r['text']}\nIntent: {r['label']}\n\n" for r in _rows("train", k))
    ids = tok(text, add_special_tokens=False)["input_ids"]
    return ([tok.bos_token_id] if bos else []) + ids


def _requests(tok, n_items: int = 6) -> list[ChoiceRequest]:
    """Items with 3-7 choices of 1-4 tokens; several choices share leading tokens (the tree mask must isolate them)."""
    label_ids = [tok(" " + lab, add_special_tokens=False)["input_ids"] for lab in LABELS]
    counts = [3, 7, 5, 4, 6, 7, 3, 5]
    reqs = []
    for i, row in enumerate(_rows("test", n_items)):
        item = tok(f"Utterance: {row['text']}\nIntent:", add_special_tokens=False)["input_ids"]
        choices = []
        for c in range(counts[i % len(counts)]):
            ids = label_ids[(c + i) % len(label_ids)]
            choices.append(ids[: 1 + (c + i) % 4])
        reqs.append(ChoiceRequest(item_ids=item, choice_ids=choices))
    return reqs


def _assert_parity(got, ref, tol: float = TOL) -> None:
    assert len(got) == len(ref)
    worst = 0.0
    for g, r in zip(got, ref):
        assert g.n_tokens == r.n_tokens
        assert len(g.loglik) == len(r.loglik)
        worst = max(worst, max(abs(a - b) for a, b in zip(g.loglik, r.loglik)))
        assert max(range(len(g.loglik)), key=g.loglik.__getitem__) == max(range(len(r.loglik)), key=r.loglik.__getitem__)
        assert g.is_greedy == r.is_greedy
    assert worst <= tol, worst


def _load(path, **kw):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, **kw).eval()


@pytest.fixture(scope="module")
def models(tiny_llama_dir, tiny_gemma_dir, tiny_qwen_dir):
    return {"llama": _load(tiny_llama_dir), "gemma": _load(tiny_gemma_dir), "qwen": _load(tiny_qwen_dir)}


@pytest.fixture(scope="module")
def data(tok):
    prefix = _prefix(tok)
    assert len(prefix) > 40  # longer than Gemma's 32-token window: sliding layers really mask something
    return prefix, _requests(tok)


@pytest.fixture(scope="module")
def refs(models, data):
    prefix, reqs = data
    return {name: score_reference(m, prefix, reqs) for name, m in models.items()}


@pytest.mark.parametrize("arch", ["llama", "gemma", "qwen"])
@pytest.mark.parametrize("mode", ["packed", "plain"])
def test_scores_match_reference(models, data, refs, arch, mode):
    prefix, reqs = data
    scorer = PrefixScorer(models[arch], prefix, mode=mode)
    assert scorer.mode == mode and scorer.prefix_len == len(prefix)
    _assert_parity(scorer.score(reqs), refs[arch])
    if mode == "packed":
        assert scorer.prefix_encode_seconds > 0
        # prefix once + one packed row with every item and choice once (vs prefix + item per choice in plain)
        packed = sum(len(r.item_ids) + sum(map(len, r.choice_ids)) for r in reqs)
        assert scorer.tokens_forwarded == len(prefix) + packed and scorer.forward_calls == 2


def test_auto_picks_packed(models):
    for name, m in models.items():
        plan, reason = packed_support(m)
        assert plan is not None, reason
        assert PrefixScorer(m, [1, 2, 3]).mode == "packed"
    assert {"llama", "qwen2", "gemma3_text"} <= PACKED_MODEL_TYPES


def test_gemma_eager_float_mask(tiny_gemma_dir, data, refs):
    """eager attention adds the mask: the engine must pass a float 0/min mask, not booleans."""
    prefix, reqs = data
    model = _load(tiny_gemma_dir, attn_implementation="eager")
    scorer = PrefixScorer(model, prefix, mode="packed")
    _assert_parity(scorer.score(reqs), refs["gemma"])


@pytest.mark.parametrize("mode", ["packed", "plain"])
def test_small_batches_and_progress(models, data, refs, mode):
    prefix, reqs = data
    scorer = PrefixScorer(models["gemma"], prefix, mode=mode, max_batch_tokens=40)
    calls: list[int] = []
    got = scorer.score(reqs, progress=calls.append)
    _assert_parity(got, refs["gemma"])
    assert sum(calls) == len(reqs) and len(calls) > 2


@pytest.mark.parametrize("arch", ["llama", "gemma"])
@pytest.mark.parametrize("mode", ["packed", "plain"])
def test_empty_prefix(models, tok, arch, mode):
    reqs = [ChoiceRequest([tok.bos_token_id] + r.item_ids, r.choice_ids) for r in _requests(tok, 4)]
    ref = score_reference(models[arch], [], reqs)
    scorer = PrefixScorer(models[arch], [], mode=mode, max_batch_tokens=64)
    assert scorer.prefix_len == 0
    _assert_parity(scorer.score(reqs), ref)


def test_cache_not_corrupted_between_calls(models, data, refs):
    prefix, reqs = data
    scorer = PrefixScorer(models["gemma"], prefix, mode="packed", max_batch_tokens=64)
    first = scorer.score(reqs)
    assert scorer.score(reqs) == first  # same batches on the restored prefix: bit-identical
    _assert_parity(scorer.score(reqs[::-1])[::-1], refs["gemma"])  # other batch compositions: same numbers
    _assert_parity(first, refs["gemma"])


@pytest.mark.parametrize("mode", ["packed", "plain"])
def test_forwards_never_use_cudnn_attention(models, data, mode):
    """Masked SDPA on cuDNN builds a plan per new shape (~0.4 s on H100): the scorer's forwards run with cuDNN
    attention switched off, and the global setting is left as it was."""
    prefix, reqs = data
    seen: list[bool] = []
    layer = models["llama"].model.layers[0]
    handle = layer.register_forward_pre_hook(lambda *_: seen.append(torch.backends.cuda.cudnn_sdp_enabled()))
    try:
        before = torch.backends.cuda.cudnn_sdp_enabled()
        scorer = PrefixScorer(models["llama"], prefix, mode=mode, max_batch_tokens=64)
        scorer.score(reqs[:3])
        scorer.generate(reqs[0].item_ids, max_new_tokens=2)
    finally:
        handle.remove()
    assert seen and not any(seen)
    assert torch.backends.cuda.cudnn_sdp_enabled() == before


def test_invalid_requests(models, data):
    prefix, _ = data
    scorer = PrefixScorer(models["llama"], prefix)
    with pytest.raises(ValueError):
        scorer.score([ChoiceRequest([5], [[]])])
    with pytest.raises(ValueError):
        scorer.score([ChoiceRequest([], [[5]])])
    assert scorer.score([]) == []


def test_peft_lora_applied(tiny_llama_dir, data):
    from peft import LoraConfig, get_peft_model

    prefix, reqs = data
    torch.manual_seed(0)
    peft_model = get_peft_model(
        _load(tiny_llama_dir),
        LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"], init_lora_weights=False),
    ).eval()
    ref = score_reference(peft_model, prefix, reqs)
    scorer = PrefixScorer(peft_model, prefix)
    assert scorer.mode == "packed"
    _assert_parity(scorer.score(reqs), ref)
    with peft_model.disable_adapter():
        base = PrefixScorer(peft_model, prefix).score(reqs)
    diff = max(abs(a - b) for s, t in zip(base, ref) for a, b in zip(s.loglik, t.loglik))
    assert diff > 1e-2  # the adapter really changes the scores


def _greedy_full(model, ids: list[int], max_new: int, stop: set[int]) -> list[int]:
    """Reference greedy decoding: a full forward over the whole sequence per step, no cache."""
    out: list[int] = []
    with torch.inference_mode():
        for _ in range(max_new):
            nxt = int(model(input_ids=torch.tensor([ids + out]), use_cache=False).logits[0, -1].argmax())
            if nxt in stop:
                break
            out.append(nxt)
    return out


@pytest.mark.parametrize("arch", ["llama", "gemma", "qwen"])
@pytest.mark.parametrize("mode", ["packed", "plain"])
def test_generate_matches_full_greedy(models, data, refs, arch, mode):
    prefix, reqs = data
    model = models[arch]
    scorer = PrefixScorer(model, prefix, mode=mode)
    for r in reqs[:3]:
        want = _greedy_full(model, prefix + r.item_ids, 12, set())
        assert scorer.generate(r.item_ids, max_new_tokens=12) == want
        # a stop id cuts before the stop token
        if len(want) > 3:
            assert scorer.generate(r.item_ids, max_new_tokens=12, stop_ids=[want[3]]) == want[: want.index(want[3])]
            # an end id (a token holding a stop sequence) is kept, then generation ends
            j = want.index(want[2])
            assert scorer.generate(r.item_ids, max_new_tokens=12, end_ids=[want[2]]) == want[: j + 1]
    assert scorer.generate(reqs[0].item_ids, max_new_tokens=0) == []
    _assert_parity(scorer.score(reqs), refs[arch])  # prefix cache restored after generation


# Tiny random configs for the rest of the allow-list: the packed path must be exact on each one.
_EXTRA = {
    "mistral": ("MistralConfig", dict(sliding_window=16)),
    "qwen3": ("Qwen3Config", dict(head_dim=16)),
    "smollm3": ("SmolLM3Config", {}),
    "ministral": ("MinistralConfig", dict(head_dim=16, sliding_window=16, layer_types=["sliding_attention", "full_attention"])),
    "gemma2": ("Gemma2Config", dict(head_dim=16, sliding_window=16)),
    "cohere2": ("Cohere2Config", dict(sliding_window=16, layer_types=["sliding_attention", "full_attention"])),
    "phi3": ("Phi3Config", dict(sliding_window=16, pad_token_id=0)),
    "starcoder2": ("Starcoder2Config", dict(sliding_window=16)),
    "olmo": ("OlmoConfig", {}),
    "olmo2": ("Olmo2Config", {}),
    "granite": ("GraniteConfig", {}),
}


@pytest.mark.parametrize("arch", sorted(_EXTRA))
def test_allow_list_archs(tok, arch):
    import transformers

    cls_name, extra = _EXTRA[arch]
    cfg = getattr(transformers, cls_name)(
        vocab_size=len(tok),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        **{"bos_token_id": tok.bos_token_id, "eos_token_id": tok.eos_token_id, "pad_token_id": tok.pad_token_id, **extra},
    )
    torch.manual_seed(3)
    model = transformers.AutoModelForCausalLM.from_config(cfg, dtype=torch.float32).eval()
    assert model.config.model_type in PACKED_MODEL_TYPES
    prefix, reqs = _prefix(tok, k=3), _requests(tok, 4)
    ref = score_reference(model, prefix, reqs)
    scorer = PrefixScorer(model, prefix, max_batch_tokens=80)
    assert scorer.mode == "packed", scorer.fallback_reason
    _assert_parity(scorer.score(reqs), ref)


def test_unsupported_arch_falls_back_to_plain(tok, data):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(4)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_embd=64, n_layer=2, n_head=4, n_positions=512)).eval()
    prefix, reqs = data
    scorer = PrefixScorer(model, prefix)
    assert scorer.mode == "plain" and scorer.fallback_reason
    with pytest.raises(ValueError):
        PrefixScorer(model, prefix, mode="packed")
    _assert_parity(scorer.score(reqs), score_reference(model, prefix, reqs))
    assert scorer.generate(reqs[0].item_ids, max_new_tokens=5) == _greedy_full(model, prefix + reqs[0].item_ids, 5, set())
