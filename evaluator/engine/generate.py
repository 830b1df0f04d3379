"""Greedy generation over the shared prefix, the generate-task half of :class:`~evaluator.engine.scorer.PrefixScorer`.

A mixin so that the scorer reads as scoring: it uses the scorer's prefix cache (`_fresh_cache`, `_restore`), its
forwards (`_packed_forward` with a causal visibility matrix in packed mode, `_forward` in plain mode) and its
`mode`, `prefix_len`, `prefix_ids`, `device` and the plain-mode prefix cache `_cache`."""

from __future__ import annotations

import copy
import time
from typing import Callable, Sequence

import torch

from evaluator.engine.memory import _sync
from evaluator.engine.requests import _returned_cache


class GreedyGeneration:
    """`generate`: greedy continuation of prefix + item, stopping at a stop id, after an end id, or at
    `max_new_tokens`."""

    def generate(self, item_ids: list[int], *, max_new_tokens: int, stop_ids: Sequence[int] = (),
                 end_ids: Sequence[int] = ()) -> list[int]:
        """Greedy continuation of prefix + item; returns the new ids without the stop token (e.g. EOS), but with an
        end token (one whose text holds a stop sequence: the caller cuts the text there, so nothing after it counts).

        Packed mode extends the shared prefix cache with custom masks and crops it back afterwards; plain mode
        continues a private copy of a (lazily built) prefix cache with the model's own masks.
        """
        if not item_ids and not self.prefix_len:
            raise ValueError("generate needs a non-empty prefix or item")
        if max_new_tokens <= 0:
            return []
        stop = set(int(s) for s in stop_ids)
        end = set(int(s) for s in end_ids)
        with torch.inference_mode():
            if self.mode == "packed":
                return self._generate_packed(list(item_ids), max_new_tokens, stop, end)
            return self._generate_plain(list(item_ids), max_new_tokens, stop, end)

    @staticmethod
    def _greedy_loop(step: Callable[[list[int]], torch.Tensor], first: list[int], max_new: int, stop: set[int],
                     end: set[int]):
        out: list[int] = []
        logits = step(first)
        while True:
            nxt = int(logits.argmax())
            if nxt in stop:
                break
            out.append(nxt)
            if len(out) >= max_new or nxt in end:
                break
            logits = step([nxt])
        return out

    def _generate_packed(self, item_ids: list[int], max_new: int, stop: set[int], end: set[int]) -> list[int]:
        dev = self.device
        P = self.prefix_len
        cache = self._fresh_cache()
        fed = 0

        def step(ids: list[int]) -> torch.Tensor:
            nonlocal fed
            n = len(ids)
            q_pos = torch.arange(P + fed, P + fed + n, device=dev)
            kv_pos = torch.arange(P + fed + n, device=dev)
            allowed = kv_pos[None, :] <= q_pos[:, None]
            logits = self._packed_forward(ids, q_pos, allowed, kv_pos, cache, 1)
            fed += n
            return logits[0, -1]

        self.last_batch = (1, len(item_ids))
        try:
            out = self._greedy_loop(step, item_ids, max_new, stop, end)
        except BaseException:
            self._restore(cache, fed, failed=True)
            raise
        self._restore(cache, fed)
        return out

    def _generate_plain(self, item_ids: list[int], max_new: int, stop: set[int], end: set[int]) -> list[int]:
        dev = self.device
        self.last_batch = (1, self.prefix_len + len(item_ids))
        if self.prefix_len and self._cache is None:
            _sync(dev)
            t0 = time.perf_counter()
            ids = torch.tensor([self.prefix_ids], device=dev)
            out, _ = self._forward(ids, use_cache=True, logits_to_keep=1)
            self._cache = _returned_cache(out)
            _sync(dev)
            self.prefix_encode_seconds += time.perf_counter() - t0
        cache = copy.deepcopy(self._cache) if self._cache is not None else None
        fed = 0

        def step(ids: list[int]) -> torch.Tensor:
            nonlocal fed, cache
            n = len(ids)
            pos = torch.arange(self.prefix_len + fed, self.prefix_len + fed + n, device=dev)[None]
            kwargs = {"cache": cache} if cache is not None else {}
            out, logits = self._forward(
                torch.tensor([ids], device=dev), position_ids=pos, use_cache=True, logits_to_keep=1, **kwargs
            )
            if cache is None:
                cache = _returned_cache(out)
            fed += n
            return logits[0, -1]

        return self._greedy_loop(step, item_ids, max_new, stop, end)
