"""Shared-prefix log-likelihood engine: score many items behind ONE fixed few-shot prefix, fast and lm-eval-exact.

Many-shot prompting puts thousands of demonstration tokens in front of every test item. Re-encoding them for every
(item, choice) pair is what makes the naive evaluation slow, so this module encodes the prefix once, keeps its KV
cache, and then scores only the item + choice tokens:

* ``mode="packed"`` (the fast path): several requests are packed into ONE row after the cached prefix, as
  ``[item, choice1, choice2, ..., item', choice1', ...]``. Position ids put every choice at the positions it would have
  in its own full sequence, and a custom "tree" attention mask lets each token see the prefix, earlier tokens of its
  own item and earlier tokens of its own choice only. Sliding-window layers get the same mask AND the window
  condition on positions. The result equals a full forward of ``prefix + item + choice`` up to float rounding.
* ``mode="plain"``: batched full re-encoding of ``prefix + item + choice`` rows (right padded); the fallback for
  architectures / attention kernels that cannot take a custom mask, and the baseline for benchmarks.

Everything works on token ids; tokenisation happens elsewhere.

Mask format (checked in transformers 5.17 and 5.24, ``masking_utils.py`` ``_preprocess_mask_arguments``): a 4D
attention mask is used as-is. ``sdpa`` takes a boolean ``[batch, 1, q, kv]`` mask (True = attend, as ``sdpa_mask``
builds it); ``eager`` adds the mask to the scores, so it needs a float mask with 0 / ``finfo(dtype).min``
(``eager_mask``). Models with several layer types (Gemma2/3, Qwen2/3, SmolLM3, ...) accept a precomputed dict
``{"full_attention": m, "sliding_attention": m2}`` (``if not isinstance(causal_mask_mapping := attention_mask, dict)``
in their ``forward``). Sliding windows follow ``sliding_window_overlay``: key visible iff ``kv_pos > q_pos - window``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import torch

from evaluator.engine.generate import GreedyGeneration
from evaluator.engine.masks import (
    PACKED_MODEL_TYPES,
    _cache_kwarg,
    _forward_params,
    _index_device,
    _model_device,
    _model_dtype,
    _render_mask,
    attention_kernels,
    packed_support,
)
from evaluator.engine.memory import _sync, free_memory, is_out_of_memory
from evaluator.engine.reference import score_reference
from evaluator.engine.requests import (
    ChoiceRequest,
    ChoiceScore,
    _choice_stats,
    _next_token_stats,
    _split_scores,
    _validate,
    is_single_token,
)

__all__ = [
    "ChoiceRequest",
    "ChoiceScore",
    "PrefixScorer",
    "PACKED_MODEL_TYPES",
    "free_memory",
    "is_out_of_memory",
    "packed_support",
    "score_reference",
]


# --------------------------------------------------------------------------------------------------------------------
# Model introspection
# --------------------------------------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------------------------------------
# Shared helpers
# --------------------------------------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------------------------------------
# Reference
# --------------------------------------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------------------------------------
# Engine
# --------------------------------------------------------------------------------------------------------------------


class PrefixScorer(GreedyGeneration):
    """Scores answer choices (and greedy-generates) for many items sharing one fixed token prefix.

    ``model`` may be a transformers causal LM or a peft ``PeftModel`` (forwards go through the wrapper so the adapter
    is applied). The model is put in eval mode. ``mode="auto"`` picks "packed" when :func:`packed_support` says the
    architecture and attention kernel take custom masks, else "plain"; an explicit "packed" on an unsupported model
    raises. Not thread-safe: the prefix cache is temporarily extended during each call.

    A request whose choices are all one token is scored from the next-token distribution at its last item token
    (:meth:`_score_single_token`: one position per item, no choice tokens forwarded) in both modes; requests with a
    longer choice take the tree (packed) or one row per choice (plain).
    """

    single_token: bool = True  # the one-position path for all-single-token requests (False: parity tests, benchmarks)

    def __init__(
        self,
        model: torch.nn.Module,
        prefix_ids: list[int],
        *,
        mode: str = "auto",
        max_batch_tokens: int = 4096,
        device: torch.device | str | None = None,
    ) -> None:
        if mode not in ("auto", "packed", "plain"):
            raise ValueError(f"mode must be 'auto', 'packed' or 'plain', not {mode!r}")
        if max_batch_tokens < 1:
            raise ValueError("max_batch_tokens must be >= 1")
        self.model = model.eval()
        self.prefix_ids = [int(t) for t in prefix_ids]
        self.prefix_len = len(self.prefix_ids)
        self.max_batch_tokens = max_batch_tokens
        self.device = torch.device(device) if device is not None else _model_device(model)
        self.dtype = _model_dtype(model)
        self._cache_kw = _cache_kwarg(model)
        self._has_logits_to_keep = "logits_to_keep" in _forward_params(model)
        self._keep_device = _index_device(model, self.device)  # a dispatched model: a CPU index

        plan, reason = packed_support(model)
        if mode == "packed" and plan is None:
            raise ValueError(f"packed mode unsupported: {reason}")
        self.mode = "packed" if (mode != "plain" and plan is not None) else "plain"
        self.fallback_reason = reason if (mode == "auto" and plan is None) else ""
        self._plan = plan

        # Cost-model counters.
        self.prefix_encode_seconds = 0.0
        self.tokens_forwarded = 0  # query tokens run through the model, padding included
        self.forward_calls = 0
        # The batch of the latest scoring forward, (requests or rows, tokens incl. padding): after an out-of-memory
        # error it is the batch that failed (evaluate_unit halves the budget below it; 1 request = nothing to halve).
        self.last_batch: tuple[int, int] = (0, 0)

        self._cache = None  # prefix KV (packed: kept; plain: built lazily for generate and copied per call)
        if self.mode == "packed" and self.prefix_len:
            self._cache = self._encode_prefix()

    # ----------------------------------------------------------------------------------------------- internals

    def _packed_forward(self, tokens: list[int], q_pos: torch.Tensor, allowed: torch.Tensor, kv_pos: torch.Tensor,
                        cache, keep):
        """New tokens over the cached prefix in one forward, with an explicit visibility matrix (`allowed`, query ×
        key: the choice tree when scoring, causal when generating) rendered as the attention kernel wants it."""
        mask = _render_mask(self._plan, allowed, q_pos, kv_pos, self.dtype)
        _, logits = self._forward(torch.tensor([tokens], device=self.device), position_ids=q_pos[None],
                                  attention_mask=mask, cache=cache, use_cache=True, logits_to_keep=keep)
        return logits

    def _forward(self, ids: torch.Tensor, **kwargs):
        """One model call via the (possibly peft) wrapper, with the version-appropriate cache kwarg."""
        if "cache" in kwargs:
            kwargs[self._cache_kw] = kwargs.pop("cache")
        keep = kwargs.pop("logits_to_keep", None)
        if keep is not None and self._has_logits_to_keep:
            kwargs["logits_to_keep"] = keep if isinstance(keep, int) else keep.to(self._keep_device)
            keep = None
        with attention_kernels():
            out = self.model(input_ids=ids, **kwargs)
        self.tokens_forwarded += ids.numel()
        self.forward_calls += 1
        logits = out.logits
        if keep is not None:  # model without logits_to_keep: slice afterwards
            logits = logits[:, -keep:] if isinstance(keep, int) else logits[:, keep]
        return out, logits

    def _packed_call(self, n_reqs: int, tokens: list[int], q_pos, allowed, kv_pos, keep: list[int]) -> torch.Tensor:
        """One packed forward of `n_reqs` requests over the shared prefix cache, which is cropped back to the prefix
        afterwards (also after a failure, e.g. out of memory); `last_batch` names the batch for the OOM back-off."""
        cache = self._fresh_cache()
        n = len(tokens)
        self.last_batch = (n_reqs, n)
        try:
            logits = self._packed_forward(tokens, q_pos, allowed, kv_pos, cache, torch.tensor(keep, device=self.device))
        except BaseException:
            self._restore(cache, n, failed=True)
            raise
        self._restore(cache, n)
        return logits

    def _encode_prefix(self):
        """Run the prefix once; the model builds its own (ordinary causal) masks here, so fast kernels apply."""
        from transformers import DynamicCache

        # No config: every layer keeps full keys, sliding windows are applied by our masks instead.
        cache = DynamicCache()
        ids = torch.tensor([self.prefix_ids], device=self.device)
        pos = torch.arange(self.prefix_len, device=self.device)[None]
        _sync(self.device)
        t0 = time.perf_counter()
        with torch.inference_mode():
            self._forward(ids, position_ids=pos, cache=cache, use_cache=True, logits_to_keep=1)
        _sync(self.device)
        self.prefix_encode_seconds += time.perf_counter() - t0
        return cache

    def _fresh_cache(self):
        """The cache a packed forward extends: the shared prefix one, or a throwaway when there is no prefix."""
        if self._cache is None and self.prefix_len:  # dropped after a failed forward: encode the prefix again
            self._cache = self._encode_prefix()
        if self._cache is not None:
            return self._cache
        from transformers import DynamicCache

        return DynamicCache()

    def _restore(self, cache, n_new: int, failed: bool = False) -> None:
        """Drop the tokens a forward appended (negative crop = tokens to remove, valid in 4.56 .. 5.24).

        After a forward that failed part way (CUDA out of memory, ...) some layers may hold the new tokens and some
        not (or a layer its new keys but not its values), so a crop could eat into the prefix: the shared cache is
        dropped instead and :meth:`_fresh_cache` encodes the prefix again on next use.
        """
        if cache is not self._cache:
            return
        if failed:
            self._cache = None
        elif n_new:
            cache.crop(-n_new)
            if cache.get_seq_length() != self.prefix_len:
                raise RuntimeError("prefix cache could not be restored")

    def _batches(self, requests: Sequence[ChoiceRequest], cost: Callable[[ChoiceRequest], int]) -> list[list[int]]:
        """Greedy in-order packing of request indices under max_batch_tokens (at least one request per batch)."""
        batches: list[list[int]] = []
        cur: list[int] = []
        used = 0
        for i, r in enumerate(requests):
            c = cost(r)
            if cur and used + c > self.max_batch_tokens:
                batches.append(cur)
                cur, used = [], 0
            cur.append(i)
            used += c
        if cur:
            batches.append(cur)
        return batches

    # ----------------------------------------------------------------------------------------------- scoring

    def score(
        self, requests: Sequence[ChoiceRequest], progress: Callable[[int], None] | None = None
    ) -> list[ChoiceScore]:
        """Log-likelihood, is_greedy and length of every choice of every request, in request order."""
        _validate(requests)
        if not requests:
            return []
        with torch.inference_mode():
            if self.single_token and any(is_single_token(r) for r in requests):
                return self._score_split(requests, progress)
            if self.mode == "packed":
                return self._score_packed(requests, progress)
            return self._score_plain(requests, progress)

    # ----------------------------------------------------------------------------------------------- single token

    def _score_split(self, requests: Sequence[ChoiceRequest], progress) -> list[ChoiceScore]:
        """All-single-token requests by :meth:`_score_single_token`, the others by the mode's own path; request
        order kept (every request is scored independently of its batch, so the split changes no number)."""
        fast = [i for i, r in enumerate(requests) if is_single_token(r)]
        fast_set = set(fast)
        rest = [i for i in range(len(requests)) if i not in fast_set]
        out: list[ChoiceScore | None] = [None] * len(requests)
        for i, sc in zip(fast, self._score_single_token([requests[i] for i in fast], progress)):
            out[i] = sc
        if rest:
            tree = self._score_packed if self.mode == "packed" else self._score_plain
            for i, sc in zip(rest, tree([requests[i] for i in rest], progress)):
                out[i] = sc
        return out  # type: ignore[return-value]

    def _score_single_token(self, requests: Sequence[ChoiceRequest], progress) -> list[ChoiceScore]:
        """Requests whose choices are one token each: one forward position per item (its last token), whose
        next-token distribution scores every choice — the choice tokens themselves are never forwarded."""
        results: list[ChoiceScore] = []
        if self.mode == "packed":
            batches = self._batches(requests, lambda r: len(r.item_ids))
        else:
            batches = self._padded_batches([self.prefix_len + len(r.item_ids) for r in requests])
        for batch in batches:
            reqs = [requests[i] for i in batch]
            logits = self._next_logits_packed(reqs) if self.mode == "packed" else self._next_logits_plain(reqs)
            results.extend(_next_token_stats(logits, reqs))
            if progress is not None:
                progress(len(batch))
        return results

    def _padded_batches(self, lengths: list[int]) -> list[list[int]]:
        """In-order batches of right-padded rows with rows * longest <= max_batch_tokens (at least one row)."""
        batches: list[list[int]] = []
        cur: list[int] = []
        width = 0
        for i, n in enumerate(lengths):
            if cur and max(width, n) * (len(cur) + 1) > self.max_batch_tokens:
                batches.append(cur)
                cur, width = [], 0
            cur.append(i)
            width = max(width, n)
        if cur:
            batches.append(cur)
        return batches

    def _next_logits_packed(self, reqs: list[ChoiceRequest]) -> torch.Tensor:
        """[requests, vocab] logits after each item: the items packed in one row over the cached prefix, each
        seeing the prefix and its own earlier tokens (the tree mask with no choice branches)."""
        P = self.prefix_len
        tokens: list[int] = []
        pos: list[int] = []
        group: list[int] = []
        keep: list[int] = []
        for g, r in enumerate(reqs):
            L = len(r.item_ids)
            tokens += r.item_ids
            pos += range(P, P + L)
            group += [g] * L
            keep.append(len(tokens) - 1)
        dev = self.device
        N = len(tokens)
        pos_t = torch.tensor(pos, device=dev)
        grp_t = torch.tensor(group, device=dev)
        idx = torch.arange(N, device=dev)
        new_vis = (grp_t[:, None] == grp_t[None, :]) & (idx[None, :] <= idx[:, None])
        allowed = torch.cat([torch.ones(N, P, dtype=torch.bool, device=dev), new_vis], dim=1)
        kv_pos = torch.cat([torch.arange(P, device=dev), pos_t])
        logits = self._packed_call(len(reqs), tokens, pos_t, allowed, kv_pos, keep)
        return logits[0]

    def _next_logits_plain(self, reqs: list[ChoiceRequest]) -> torch.Tensor:
        """[requests, vocab] logits after each item: one right-padded row of prefix + item per request (not one
        per choice), logits kept only over the span of the rows' last item tokens."""
        last = [self.prefix_len + len(r.item_ids) - 1 for r in reqs]
        width = max(last) + 1
        lo = min(last)
        ids = [self.prefix_ids + list(r.item_ids) + [0] * (width - n - 1) for r, n in zip(reqs, last)]
        attn = [[1] * (n + 1) + [0] * (width - n - 1) for n in last]
        dev = self.device
        self.last_batch = (len(reqs), width * len(reqs))
        _, logits = self._forward(
            torch.tensor(ids, device=dev),
            attention_mask=torch.tensor(attn, device=dev),
            use_cache=False,
            logits_to_keep=torch.arange(lo, width, device=dev),
        )
        at = logits.device  # the last layer's device (a dispatched model need not end where it starts)
        return logits[torch.arange(len(reqs), device=at), torch.tensor(last, device=at) - lo]

    def _score_packed(self, requests: Sequence[ChoiceRequest], progress) -> list[ChoiceScore]:
        cost = lambda r: len(r.item_ids) + sum(len(c) for c in r.choice_ids)  # noqa: E731
        results: list[ChoiceScore] = []
        for batch in self._batches(requests, cost):
            reqs = [requests[i] for i in batch]
            results.extend(self._score_packed_batch(reqs))
            if progress is not None:
                progress(len(batch))
        return results

    def _score_packed_batch(self, reqs: list[ChoiceRequest]) -> list[ChoiceScore]:
        P = self.prefix_len
        tokens: list[int] = []
        pos: list[int] = []
        group: list[int] = []  # request index within the batch
        seg: list[int] = []  # 0 = item, c + 1 = choice c
        keep: list[int] = []  # packed indices whose logits we need
        rows: list[int] = []  # per choice token: index into keep of its predicting position
        targets: list[int] = []
        owner: list[int] = []  # per choice token: flat choice index
        n_choice = 0
        for g, r in enumerate(reqs):
            L = len(r.item_ids)
            tokens += r.item_ids
            pos += range(P, P + L)
            group += [g] * L
            seg += [0] * L
            keep.append(len(tokens) - 1)  # last item token predicts every choice's first token
            item_row = len(keep) - 1
            for c, choice in enumerate(r.choice_ids):
                start = len(tokens)
                n = len(choice)
                tokens += choice
                pos += range(P + L, P + L + n)
                group += [g] * n
                seg += [c + 1] * n
                for j in range(n):
                    if j == 0:
                        rows.append(item_row)
                    else:
                        keep.append(start + j - 1)
                        rows.append(len(keep) - 1)
                    targets.append(choice[j])
                    owner.append(n_choice)
                n_choice += 1

        dev = self.device
        N = len(tokens)
        pos_t = torch.tensor(pos, device=dev)
        grp_t = torch.tensor(group, device=dev)
        seg_t = torch.tensor(seg, device=dev)
        idx = torch.arange(N, device=dev)
        # Tree attention among the new tokens: same request, causal, and (item token or same choice).
        new_vis = (
            (grp_t[:, None] == grp_t[None, :])
            & (idx[None, :] <= idx[:, None])
            & ((seg_t[None, :] == 0) | (seg_t[None, :] == seg_t[:, None]))
        )
        allowed = torch.cat([torch.ones(N, P, dtype=torch.bool, device=dev), new_vis], dim=1)
        kv_pos = torch.cat([torch.arange(P, device=dev), pos_t])
        logits = self._packed_call(len(reqs), tokens, pos_t, allowed, kv_pos, keep)
        loglik, greedy = _choice_stats(
            logits[0],
            torch.tensor(rows, device=dev),
            torch.tensor(targets, device=dev),
            torch.tensor(owner, device=dev),
            n_choice,
        )
        return _split_scores(reqs, loglik, greedy)

    def _score_plain(self, requests: Sequence[ChoiceRequest], progress) -> list[ChoiceScore]:
        """Batched full re-encoding: rows of prefix + item + choice, right padded, rows * max_len <= budget."""
        P = self.prefix_len
        flat = [(ri, c) for ri, r in enumerate(requests) for c in r.choice_ids]
        lengths = [P + len(requests[ri].item_ids) + len(c) for ri, c in flat]
        remaining = [len(r.choice_ids) for r in requests]
        pad_id = 0
        loglik: list[float] = []
        greedy: list[bool] = []
        start = 0
        while start < len(flat):
            end, width = start + 1, lengths[start]
            while end < len(flat):
                w = max(width, lengths[end])
                if w * (end - start + 1) > self.max_batch_tokens:
                    break
                width, end = w, end + 1
            rows_ids, attn = [], []
            keep_lo = min(P + len(requests[flat[i][0]].item_ids) - 1 for i in range(start, end))
            keep_hi = max(lengths[i] - 1 for i in range(start, end))
            rows, targets, owner = [], [], []
            for b, i in enumerate(range(start, end)):
                ri, choice = flat[i]
                ids = self.prefix_ids + list(requests[ri].item_ids) + list(choice)
                rows_ids.append(ids + [pad_id] * (width - len(ids)))
                attn.append([1] * len(ids) + [0] * (width - len(ids)))
                ctx = len(ids) - len(choice)
                for j, t in enumerate(choice):
                    rows.append(b * (keep_hi - keep_lo) + (ctx - 1 + j - keep_lo))
                    targets.append(t)
                    owner.append(b)
            dev = self.device
            self.last_batch = (end - start, width * (end - start))
            _, logits = self._forward(
                torch.tensor(rows_ids, device=dev),
                attention_mask=torch.tensor(attn, device=dev),
                use_cache=False,
                logits_to_keep=torch.arange(keep_lo, keep_hi, device=dev),
            )
            ll, gr = _choice_stats(
                logits.reshape(-1, logits.shape[-1]),
                torch.tensor(rows, device=dev),
                torch.tensor(targets, device=dev),
                torch.tensor(owner, device=dev),
                end - start,
            )
            loglik += ll
            greedy += gr
            done = 0
            for i in range(start, end):
                remaining[flat[i][0]] -= 1
                done += remaining[flat[i][0]] == 0
            if progress is not None and done:
                progress(done)
            start = end
        return _split_scores(requests, loglik, greedy)
