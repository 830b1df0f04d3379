"""Per-item result rows of a unit: choice tasks scored from per-choice log-likelihoods, generate tasks by greedy
generation cut at the stop sequences, scored by the task's metric (evaluator/tasks/metrics.py: a score in [0, 1]) —
the stripped answer, or, for lm-eval tasks scored through lm-eval's filters (`lmeval_metric`), the unstripped response
with the first filter's name and output (`filter`, `filtered`)."""

from __future__ import annotations

from typing import Sequence

from evaluator.errors import UserError
from evaluator.prompts.tokenized import TokenizedPrompts
from evaluator.tasks.metrics import scorer_for
from evaluator.tasks.spec import Item, Task


def accuracy_scores(rows: list[dict]) -> list[float]:
    return [float(r["score"]) for r in rows]


def choice_rows(task: Task, tp: TokenizedPrompts, scorer, items: list[Item], k: int) -> list[dict]:
    from evaluator.engine.requests import ChoiceRequest

    # The task's `scoring` rule picks the prediction: `sum` = argmax of the summed log-likelihood (lm-eval's acc);
    # `length_normalised` = argmax of loglik / len(word) (lm-eval 0.4.13's acc_norm: characters of the choice text,
    # without the target delimiter). Each label is scored as its word (`labels` verbaliser: continuation_ids
    # verbalises); target and prediction stay the task's labels.
    rule = task.spec.scoring
    verbalised = task.spec.labels is not None
    reqs = []
    for it in items:
        cont = [tp.continuation_ids(c, it, k) for c in it.choices]
        reqs.append(ChoiceRequest(item_ids=tp.item_ids(it, k), choice_ids=cont))
    scores = scorer.score(reqs)
    rows = []
    for it, req, sc in zip(items, reqs, scores):
        words = [tp.builder.verbalise(c) for c in it.choices]
        if rule == "length_normalised" and not all(words):
            raise UserError(f"task {task.name}: item {it.id} has an empty choice — scoring: length_normalised divides "
                            "by its length; give every choice text (or use scoring: sum)")
        best, norm = pick_choice(rule, words, list(sc.loglik))
        pred = it.choices[best]
        rows.append(
            {
                "item_id": it.id,
                "query": tp.builder.query(it),
                "target": it.target,
                "choices": list(it.choices),
                "prediction": pred,
                "score": float(pred == it.target),
                "loglik": [round(x, 6) for x in sc.loglik],
            }
            | ({"loglik_norm": [round(x, 6) for x in norm]} if norm is not None else {})
            | ({"scored_as": words} if verbalised else {})
            | {
                "is_greedy": list(sc.is_greedy),
                "item_tokens": len(req.item_ids),
                "prompt_tokens": scorer.prefix_len + len(req.item_ids),
                "output_tokens": 0,
            }
            | ({"lmeval_target": it.lmeval_target} if getattr(it, "lmeval_target", None) is not None else {})
        )
    return rows


def pick_choice(rule: str, words: list[str], loglik: list[float | None]) -> tuple[int | None, list | None]:
    """(index of the predicted choice, the length-normalised scores or None) by the task's `scoring` rule: `sum` =
    argmax of the log-likelihoods, `length_normalised` = argmax of loglik / len(word); the first of ties, as numpy's
    argmax. A choice without a score (None: an API label outside the top log-probabilities) is never picked; no score
    at all gives None."""
    norm = [None if x is None else x / max(1, len(w)) for x, w in zip(loglik, words)] \
        if rule == "length_normalised" else None
    by = loglik if norm is None else norm
    present = [j for j, x in enumerate(by) if x is not None]
    if not present:
        return None, norm
    return max(present, key=lambda j: by[j]), norm


def _cut_at_stop(text: str, stops: list[str]) -> str:
    """The text before the earliest stop sequence (lm-eval's `until`)."""
    cut = min((i for i in (text.find(s) for s in stops) if i >= 0), default=len(text))
    return text[:cut]


_END_IDS: dict[tuple[int, tuple[str, ...]], list[int]] = {}


def end_token_ids(tokenizer, stops: Sequence[str]) -> list[int]:
    """The vocabulary's tokens whose text holds a stop sequence: generation may end right after one, since the answer
    is cut at the first stop sequence anyway (the cut text is the same; stops split across tokens are still cut
    afterwards). Computed once per tokenizer and stop set (one batch decode of the vocabulary)."""
    stops = tuple(s for s in stops if s)
    if not stops:
        return []
    key = (id(tokenizer), stops)
    if key not in _END_IDS:
        texts = tokenizer.batch_decode([[i] for i in range(len(tokenizer))])
        _END_IDS[key] = [i for i, t in enumerate(texts) if any(s in t for s in stops)]
    return _END_IDS[key]


def scored_answer(task: Task, score, text: str, it: Item) -> dict:
    """A generated answer (cut at the stop sequences) as a row's prediction and score, for the local and the API path.

    An lm-eval task scored as lm-eval does (`lmeval_metric`): its filters see the response lm-eval's backends return —
    cut at `until`, NOT stripped — with the doc; the row keeps that response as the prediction, the first filter's
    name and its output. Otherwise the stripped answer is scored by the task's metric."""
    if task.spec.lmeval_metric is not None:
        filtered, value = score.item(text, it)
        return {"prediction": text, "filter": score.filter_name, "filtered": filtered, "score": value}
    text = text.strip()
    return {"prediction": text, "score": score(text, it.target)}


def generate_rows(task: Task, tp: TokenizedPrompts, scorer, items: list[Item], tokenizer, k: int) -> list[dict]:
    rows = []
    stop = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    end = end_token_ids(tokenizer, task.spec.stops)
    score = scorer_for(task.spec)
    for it in items:
        ids = tp.item_ids(it, k)
        out = scorer.generate(ids, max_new_tokens=task.spec.max_new_tokens, stop_ids=stop, end_ids=end)
        scored = scored_answer(task, score, _cut_at_stop(tokenizer.decode(out, skip_special_tokens=True),
                                                         task.spec.stops), it)
        rows.append(
            {
                "item_id": it.id,
                "query": tp.builder.query(it),
                "target": it.target,
            }
            | scored
            | {
                "item_tokens": len(ids),
                "prompt_tokens": scorer.prefix_len + len(ids),
                "output_tokens": len(out),
            }
            | ({"lmeval_target": it.lmeval_target} if getattr(it, "lmeval_target", None) is not None else {})
        )
    return rows
