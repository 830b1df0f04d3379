"""What the engines score and return: a `ChoiceRequest` (an item's query ids and its choices' continuation ids),
its `ChoiceScore` (log-likelihood per choice, greedy match, lengths), and checking and splitting them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class ChoiceRequest:
    item_ids: list[int]  # tokens of the test item's query, placed right after the prefix (non-empty)
    choice_ids: list[list[int]]  # tokens of each answer continuation (each non-empty)


@dataclass(frozen=True)
class ChoiceScore:
    loglik: list[float]  # per choice: sum of log p(choice tokens | prefix + item + earlier choice tokens)
    is_greedy: list[bool]  # per choice: every choice token is the argmax (lm-eval's is_greedy)
    n_tokens: list[int]  # per choice: number of choice tokens


def _validate(requests: Sequence[ChoiceRequest]) -> None:
    """Items must be non-empty: the last item token is what predicts each choice's first token."""
    for i, r in enumerate(requests):
        if not r.item_ids:
            raise ValueError(f"request {i}: item_ids must be non-empty")
        if not r.choice_ids or any(len(c) == 0 for c in r.choice_ids):
            raise ValueError(f"request {i}: needs at least one choice and every choice non-empty")


def _choice_stats(
    logits: torch.Tensor, rows: torch.Tensor, targets: torch.Tensor, owner: torch.Tensor, n_choices: int
) -> tuple[list[float], list[bool]]:
    """Sum float32 log-probs and all-argmax flags per choice.

    ``logits[rows[t]]`` predicts ``targets[t]``, which belongs to choice ``owner[t]``. Works in chunks so a large
    vocabulary never gets a full float32 copy of all kept logits at once.
    """
    step = max(1, 2**28 // (4 * logits.shape[-1]))  # ~256 MiB of float32 per chunk
    lp_parts, miss_parts = [], []
    for start in range(0, rows.numel(), step):
        r = rows[start : start + step]
        t = targets[start : start + step]
        chunk = logits[r].float()
        lp_parts.append(chunk.gather(-1, t[:, None]).squeeze(-1) - torch.logsumexp(chunk, dim=-1))
        miss_parts.append((chunk.argmax(dim=-1) != t).float())
    lp = torch.cat(lp_parts)
    miss = torch.cat(miss_parts)
    loglik = torch.zeros(n_choices, dtype=torch.float64, device=lp.device).index_add_(0, owner, lp.double())
    misses = torch.zeros(n_choices, dtype=torch.float32, device=lp.device).index_add_(0, owner, miss)
    return loglik.tolist(), (misses == 0).tolist()


def is_single_token(request: ChoiceRequest) -> bool:
    """Every choice is one token: all of them are scored from the next-token distribution at the last item token
    (one position per item), so the engines need no tree branch per choice."""
    return all(len(c) == 1 for c in request.choice_ids)


def _next_token_stats(logits: torch.Tensor, requests: Sequence[ChoiceRequest]) -> list[ChoiceScore]:
    """Scores of single-token requests from ``logits[i]``, the next-token logits after request i's item.

    The same float32 maths as :func:`_choice_stats` (target logit minus logsumexp, argmax match), but the
    logsumexp and argmax are taken once per item and shared by its choices. Chunked over items like
    :func:`_choice_stats`, so a large vocabulary never gets a full float32 copy of all rows at once.
    """
    step = max(1, 2**28 // (4 * logits.shape[-1]))  # ~256 MiB of float32 per chunk
    out: list[ChoiceScore] = []
    for start in range(0, len(requests), step):
        reqs = requests[start : start + step]
        chunk = logits[start : start + len(reqs)].float()
        row = torch.tensor([i for i, r in enumerate(reqs) for _ in r.choice_ids], device=chunk.device)
        tgt = torch.tensor([c[0] for r in reqs for c in r.choice_ids], device=chunk.device)
        lp = (chunk[row, tgt] - torch.logsumexp(chunk, dim=-1)[row]).double().tolist()
        hit = (chunk.argmax(dim=-1)[row] == tgt).tolist()
        k = 0
        for r in reqs:
            n = len(r.choice_ids)
            out.append(ChoiceScore(lp[k : k + n], hit[k : k + n], [1] * n))
            k += n
    return out


def _split_scores(
    requests: Sequence[ChoiceRequest], loglik: list[float], greedy: list[bool]
) -> list[ChoiceScore]:
    out, k = [], 0
    for r in requests:
        n = len(r.choice_ids)
        out.append(ChoiceScore(loglik[k : k + n], greedy[k : k + n], [len(c) for c in r.choice_ids]))
        k += n
    return out


def _returned_cache(out):
    """The cache a forward returned (named ``cache`` from transformers 5.2x, ``past_key_values`` before)."""
    cache = out.get("cache")
    return cache if cache is not None else out.get("past_key_values")
