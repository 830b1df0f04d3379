"""The optimiser step: AdamW over the adapter's trainable tensors (fused into one kernel on CUDA and CPU), a linear
warm-up then linear decay to 0, gradient clipping at norm 1.0 and, with float16 weights, the loss scaler's part of
the step (scale before backward, unscale before clipping, skip a step whose gradients overflowed)."""

from __future__ import annotations

import warnings
from typing import Callable

from evaluator.config.arms import LoraArm

# float16 training: a step the gradient scaler skips (overflow) is followed by the schedule's step by design.
warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step\\(\\)` before `optimizer.step\\(\\)`")


class Optimiser:
    """AdamW + schedule + clipping (+ loss scaling), in the order one training step needs them."""

    def __init__(self, peft_model, hp: LoraArm, total_steps: int, device: str, scaler, backward: Callable) -> None:
        """`backward(loss)` is the unscaled backward (accelerate's: DDP's gradient all-reduce runs inside it)."""
        import torch

        self.params = [p for p in peft_model.parameters() if p.requires_grad]
        fused = True if str(device).startswith(("cuda", "cpu")) else None  # one kernel for all LoRA tensors
        self.opt = torch.optim.AdamW(self.params, lr=hp.learning_rate, weight_decay=hp.weight_decay, fused=fused)
        total, warmup = total_steps, int(total_steps * hp.warmup_ratio)
        self.sched = torch.optim.lr_scheduler.LambdaLR(
            self.opt, lambda s: (s + 1) / max(1, warmup) if s < warmup else max(0.0, (total - s) / max(1, total - warmup))
        )
        self.scaler = scaler
        self._backward = backward

    def backward(self, loss) -> None:
        """Accumulate the gradient of `loss` (scaled first under float16)."""
        if self.scaler is not None:
            self.scaler.scale(loss).backward()  # DDP's gradient all-reduce runs in this backward as well
        else:
            self._backward(loss)

    def step(self) -> None:
        """Clip the true (unscaled) gradients to norm 1.0 and apply them (the scaler skips an overflowed step)."""
        import torch

        if self.scaler is not None:
            self.scaler.unscale_(self.opt)  # clip the true gradients
        torch.nn.utils.clip_grad_norm_(self.params, 1.0)
        if self.scaler is not None:
            self.scaler.step(self.opt)  # skipped when a gradient overflowed; the scale is then lowered
            self.scaler.update()
        else:
            self.opt.step()

    def next_step(self) -> None:
        """Advance the learning-rate schedule and clear the gradients: every step, applied or not."""
        self.sched.step()
        self.zero_grad()

    def zero_grad(self) -> None:
        """Drop the gradients (set to None: no memory held, nothing to zero)."""
        self.opt.zero_grad(set_to_none=True)
