"""The plain reference scorer: every (context, continuation) encoded from scratch, no cache. The prefix-cached
engine must agree with it; parity tests and `engine: plain` use it."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from evaluator.engine.masks import _model_device
from evaluator.engine.requests import ChoiceRequest, ChoiceScore, _validate


def score_reference(model: torch.nn.Module, prefix_ids: list[int], requests: Sequence[ChoiceRequest]) -> list[ChoiceScore]:
    """One plain, unbatched full forward per (item, choice): slow, but obviously what lm-eval computes."""
    _validate(requests)
    model.eval()
    device = _model_device(model)
    results = []
    with torch.inference_mode():
        for r in requests:
            ll, gr = [], []
            ctx = list(prefix_ids) + list(r.item_ids)
            for choice in r.choice_ids:
                ids = torch.tensor([ctx + list(choice)], device=device)
                logits = model(input_ids=ids, use_cache=False).logits[0]
                n = len(choice)
                pred = logits[len(ctx) - 1 : len(ctx) - 1 + n].float().log_softmax(-1)
                tgt = torch.tensor(choice, device=device)
                ll.append(float(pred.gather(-1, tgt[:, None]).sum()))
                gr.append(bool((pred.argmax(-1) == tgt).all()))
            results.append(ChoiceScore(ll, gr, [len(c) for c in r.choice_ids]))
    return results
