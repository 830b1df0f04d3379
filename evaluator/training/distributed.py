"""Data-parallel training under `accelerate launch`: world size, the main process, barriers, this process's device."""

from __future__ import annotations

import os


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def barrier() -> None:
    if world_size() > 1:
        from accelerate.state import PartialState

        PartialState().wait_for_everyone()


def process_device(device: str) -> str:
    """Under a multi-process launch each process loads the model onto its own GPU (not all onto cuda:0)."""
    if world_size() <= 1 or device not in ("auto", "cuda"):
        return device
    import torch

    if os.environ.get("ACCELERATE_USE_CPU", "").lower() in {"1", "true", "yes"} or not torch.cuda.is_available():
        return "cpu"
    local = int(os.environ.get("LOCAL_RANK", "0"))
    torch.cuda.set_device(local)
    return f"cuda:{local}"
