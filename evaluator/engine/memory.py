"""Device memory helpers: recognising an out-of-memory error on any backend, freeing caches, synchronising.
Shared by the engine's batch back-off and the LoRA loop's."""

from __future__ import annotations

import gc

import torch


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def is_out_of_memory(exc: BaseException) -> bool:
    """A device out-of-memory error: ``torch.cuda.OutOfMemoryError``, or a RuntimeError saying "out of memory" (what
    some backends and older kernels raise instead)."""
    return isinstance(exc, torch.cuda.OutOfMemoryError) or (
        isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()
    )


def free_memory() -> None:
    """Give memory held by dead tensors back after an out-of-memory error (call it outside the ``except`` block, once
    the exception and the frames it holds are gone)."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
