"""Number formats of a training run: bf16 autocast on GPUs that support it, TF32 matmuls on CUDA, and for float16
weights (dtype: float16, or auto on a GPU without bf16) loss scaling with torch.amp.GradScaler instead — the LoRA
tensors kept in float32, the loss scaled so small float16 gradients do not underflow, unscaled before clipping, and
steps whose gradients overflowed skipped (see `evaluator.training.optim`)."""

from __future__ import annotations

import contextlib
from typing import Iterator

from evaluator.errors import UserError


def mixed_precision_for(device: str, weights_dtype=None) -> str:
    """bf16 autocast on GPUs that support it; none on CPU and for float16 weights (these train in float16 with a
    gradient scaler instead: see `needs_grad_scaler`)."""
    import torch

    if weights_dtype == torch.float16:
        return "no"
    return "bf16" if str(device).startswith("cuda") and torch.cuda.is_bf16_supported() else "no"


def weights_dtype(model):
    """The floating-point dtype of the model's (first) weights."""
    return next((p.dtype for p in model.parameters() if p.is_floating_point()), None)


def needs_grad_scaler(model) -> bool:
    """float16 weights (dtype: float16, or auto on a GPU without bf16): activations and their gradients are float16,
    whose small gradients underflow to zero without loss scaling — so training scales the loss (torch.amp.GradScaler),
    unscales before clipping and skips steps whose gradients overflowed. bf16 and float32 need none."""
    import torch

    return weights_dtype(model) == torch.float16


def make_grad_scaler(device: str):
    """A torch.amp.GradScaler for the device type (cuda, cpu, mps, ...)."""
    import torch

    kind = torch.device(str(device)).type
    try:
        return torch.amp.GradScaler(kind)
    except Exception as exc:  # noqa: BLE001 - a device type without loss-scaling support
        raise UserError(
            f"float16 training needs a gradient scaler, which torch does not provide on {kind} ({exc}) — "
            "use dtype: float32 or bfloat16"
        ) from None


def loss_scaler(model, peft_model, device: str):
    """The GradScaler float16 weights need (None for bf16/float32); with one, the trainable (LoRA) tensors are made
    float32, because the scaler unscales float32 gradients only (peft keeps LoRA in float32 already)."""
    import torch

    if not needs_grad_scaler(model):
        return None
    scaler = make_grad_scaler(device)
    for p in peft_model.parameters():
        if p.requires_grad and p.dtype == torch.float16:
            p.data = p.data.float()
    return scaler


def precision_record(mixed_precision: str, scaler) -> dict:
    """The TrainResult fields that say how the run computed: autocast mode, loss scaling and its final scale."""
    return {
        "mixed_precision": "fp16" if scaler is not None else mixed_precision,
        "grad_scaler": scaler is not None,
        "loss_scale": float(scaler.get_scale()) if scaler is not None else None,
    }


@contextlib.contextmanager
def tf32(on: bool = True) -> Iterator[None]:
    """TF32 matmuls (CUDA) while training, the previous setting restored after; nothing when `on` is false."""
    if not on:
        yield
        return
    import torch

    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old
