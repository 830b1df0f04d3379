"""Single-token answers: when every choice of an item is one token, the engines score them all from the next-token
distribution at the item's last token (`PrefixScorer._score_single_token`) instead of one tree branch (packed) or
one row (plain) per choice. The numbers must be the tree path's: per-choice log-likelihoods within 1e-5 (fp32) and
the same is_greedy, in both engines, at k=0 and k>0, under `scoring: sum` and `length_normalised`; the plain
reference (`engine/reference.py`) agrees too; an item with a longer choice keeps the tree path.

The fixture is SNIPS's 7 intents with a `labels` verbaliser onto words that are one token in the tiny tokenizer
(" playlist", " restaurant", ...), and a mixed variant where one label's word is three tokens (" film").
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from evaluator.engine.reference import score_reference
from evaluator.engine.requests import ChoiceRequest, is_single_token
from evaluator.engine.scorer import PrefixScorer
from evaluator.prompts.tokenized import TokenizedPrompts
from evaluator.tasks.layout import PromptBuilder
from evaluator.tasks.load import load_task

REPO = Path(__file__).resolve().parents[1]
TOL = 1e-5  # fp32
N_ITEMS = 24
WORDS = {"add_to_playlist": "playlist", "book_restaurant": "restaurant", "get_weather": "weather",
         "play_music": "music", "search_screening_event": "movie", "search_creative_work": "show",
         "rate_book": "rate"}
MIXED = WORDS | {"search_creative_work": "film"}  # " film" is 3 tokens in the tiny tokenizer


def _task(d: Path, name: str, words: dict[str, str], scoring: str):
    snips = yaml.safe_load((REPO / "tasks" / "snips_intents.yaml").read_text())
    spec = {k: snips[k] for k in ("id_field", "input_field", "target_field", "kind", "choices", "instruction",
                                  "target_delimiter", "fewshot_delimiter")}
    spec |= {"name": name, "prompt": "intent.j2", "labels": words, "scoring": scoring, "demonstrations": "first_n",
             "data": {"path": "json", "data_files": {s: str(REPO / "tasks" / "data" / f"snips_{s}.jsonl")
                                                     for s in ("train", "test")}}}
    (d / f"{name}.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return load_task(str(d / f"{name}.yaml"))


@pytest.fixture(scope="module")
def task_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("single_token")
    (d / "prompts").mkdir()
    (d / "prompts" / "intent.j2").write_text((REPO / "prompts" / "intent.j2").read_text())
    return d


@pytest.fixture(scope="module")
def tok(tiny_tokenizer_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_tokenizer_dir)


@pytest.fixture(scope="module")
def models(tiny_llama_dir, tiny_gemma_dir):
    from transformers import AutoModelForCausalLM

    return {name: AutoModelForCausalLM.from_pretrained(p, dtype=torch.float32).eval()
            for name, p in (("llama", tiny_llama_dir), ("gemma", tiny_gemma_dir))}


def _requests(task, tp: TokenizedPrompts, k: int) -> list[ChoiceRequest]:
    """The requests `arms.rows.choice_rows` builds for the first test items."""
    return [ChoiceRequest(item_ids=tp.item_ids(it, k), choice_ids=[tp.continuation_ids(c, it, k) for c in it.choices])
            for it in list(task.test)[:N_ITEMS]]


def _max_delta(a, b) -> float:
    assert len(a) == len(b)
    worst = 0.0
    for x, y in zip(a, b):
        assert x.n_tokens == y.n_tokens and x.is_greedy == y.is_greedy
        worst = max(worst, max(abs(p - q) for p, q in zip(x.loglik, y.loglik)))
    return worst


def _scorer(model, prefix: list[int], mode: str, single_token: bool, **kw) -> PrefixScorer:
    s = PrefixScorer(model, prefix, mode=mode, **kw)
    s.single_token = single_token
    return s


def test_every_label_is_one_token(task_dir, tok):
    task = _task(task_dir, "st_sum", WORDS, "sum")
    for k in (0, 3):
        tp = TokenizedPrompts(PromptBuilder(task, 0), tok)
        assert all(is_single_token(r) and len(r.choice_ids) == 7 for r in _requests(task, tp, k))
    mixed = _task(task_dir, "st_mixed", MIXED, "sum")
    tp = TokenizedPrompts(PromptBuilder(mixed, 0), tok)
    assert not any(is_single_token(r) for r in _requests(mixed, tp, 3))


@pytest.mark.parametrize("arch", ["llama", "gemma"])  # gemma: its 32-token sliding window masks part of the k=3 prefix
@pytest.mark.parametrize("mode", ["packed", "plain"])
@pytest.mark.parametrize("k", [0, 3])
def test_single_token_path_equals_tree_and_reference(task_dir, tok, models, arch, mode, k):
    task = _task(task_dir, "st_sum", WORDS, "sum")
    tp = TokenizedPrompts(PromptBuilder(task, 0), tok)
    prefix, reqs = tp.prefix_ids(k), _requests(task, tp, k)
    model = models[arch]
    fast = _scorer(model, prefix, mode, True)
    got = fast.score(reqs)
    tree = _scorer(model, prefix, mode, False)
    want = tree.score(reqs)
    d_tree = _max_delta(got, want)
    d_ref = _max_delta(got, score_reference(model, prefix, reqs))
    print(f"single-token {arch} {mode} k={k}: max |Δ| vs tree {d_tree:.2e}, vs reference {d_ref:.2e}")
    assert d_tree <= TOL and d_ref <= TOL
    # the fast path forwards the items only (plain: one row per item, not per choice)
    n_item = sum(len(r.item_ids) for r in reqs)
    if mode == "packed":
        assert fast.tokens_forwarded == len(prefix) + n_item
        assert tree.tokens_forwarded == len(prefix) + n_item + sum(len(r.choice_ids) for r in reqs)
    else:
        assert fast.tokens_forwarded < tree.tokens_forwarded


@pytest.mark.parametrize("mode", ["packed", "plain"])
@pytest.mark.parametrize("scoring", ["sum", "length_normalised"])
@pytest.mark.parametrize("k", [0, 3])
def test_rows_equal_under_both_scoring_rules(task_dir, tok, models, mode, scoring, k):
    """The unit's rows (prediction, score, loglik, loglik_norm, is_greedy) are the tree path's."""
    from evaluator.arms.rows import choice_rows

    task = _task(task_dir, f"st_{scoring}", WORDS, scoring)
    tp = TokenizedPrompts(PromptBuilder(task, 0), tok)
    items = list(task.test)[:N_ITEMS]
    fast = choice_rows(task, tp, _scorer(models["llama"], tp.prefix_ids(k), mode, True), items, k)
    tree = choice_rows(task, tp, _scorer(models["llama"], tp.prefix_ids(k), mode, False), items, k)
    for a, b in zip(fast, tree):
        assert (a["prediction"], a["score"], a["is_greedy"], a["scored_as"]) == \
            (b["prediction"], b["score"], b["is_greedy"], b["scored_as"])
        for key in ("loglik",) + (("loglik_norm",) if scoring == "length_normalised" else ()):
            assert max(abs(x - y) for x, y in zip(a[key], b[key])) <= TOL


@pytest.mark.parametrize("mode", ["packed", "plain"])
def test_mixed_task_keeps_the_tree_path(task_dir, tok, models, mode, monkeypatch):
    task = _task(task_dir, "st_mixed", MIXED, "sum")
    tp = TokenizedPrompts(PromptBuilder(task, 0), tok)
    prefix, reqs = tp.prefix_ids(3), _requests(task, tp, 3)

    def refuse(self, requests, progress):
        raise AssertionError("a request with a multi-token choice took the single-token path")

    monkeypatch.setattr(PrefixScorer, "_score_single_token", refuse)
    got = _scorer(models["llama"], prefix, mode, True).score(reqs)
    assert _max_delta(got, score_reference(models["llama"], prefix, reqs)) <= 1e-4  # the engines' usual tolerance


@pytest.mark.parametrize("mode", ["packed", "plain"])
def test_a_batch_mixing_both_kinds_keeps_request_order(task_dir, tok, models, mode):
    """Single-token and multi-token requests in one call (and small batches): each scored by its own path, results
    in request order, progress counting every request once."""
    single = _task(task_dir, "st_sum", WORDS, "sum")
    mixed = _task(task_dir, "st_mixed", MIXED, "sum")
    tp_s = TokenizedPrompts(PromptBuilder(single, 0), tok)
    tp_m = TokenizedPrompts(PromptBuilder(mixed, 0), tok)
    prefix = tp_s.prefix_ids(0)
    assert prefix == tp_m.prefix_ids(0)
    a, b = _requests(single, tp_s, 0)[:8], _requests(mixed, tp_m, 0)[:8]
    reqs = [r for pair in zip(a, b) for r in pair]
    calls: list[int] = []
    got = _scorer(models["gemma"], prefix, mode, True, max_batch_tokens=64).score(reqs, progress=calls.append)
    assert sum(calls) == len(reqs) and len(calls) > 2
    assert _max_delta(got, score_reference(models["gemma"], prefix, reqs)) <= TOL


def test_unit_record_says_which_path(task_dir, tok, models, tmp_path):
    """`scoring.paths` in a real unit record (packed and plain); the record reads back; lm-eval units have none."""
    from evaluator.arms.evaluate import Unit, evaluate_unit, scoring_record
    from evaluator.store.records import unit_problem
    from evaluator.store.run_store import RunStore

    for name, words, want in (("st_sum", WORDS, {"single_token": 10, "tree": 0}),
                              ("st_mixed", MIXED, {"single_token": 0, "tree": 10})):
        task = _task(task_dir, name, words, "sum")
        tp = TokenizedPrompts(PromptBuilder(task, 0), tok)
        items = list(task.test)[:10]
        assert "paths" not in scoring_record(task, tp, items, 3, "lm-eval")
        for mode in ("packed", "plain"):
            store = RunStore(tmp_path / f"{name}_{mode}")
            unit = Unit(task=name, arm="A", model="tiny", model_slug="tiny", shots=3)
            rec = evaluate_unit(unit, task, items, tp, models["llama"], tok, 2048, store, engine=mode,
                                batch_tokens=4096, shots_cap=128)
            assert rec["scoring"]["paths"] == want
            on_disk = json.loads(store.unit_path(unit.id).read_text())
            assert on_disk["scoring"]["paths"] == want and unit_problem(on_disk) is None
