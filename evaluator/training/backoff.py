"""Out-of-GPU-memory back-off. In one process a step (or a validation) that runs out of memory is taken again with half
as many items per forward — gradient accumulation over micro-batches: the same global batch and normalisation, so
the same gradient up to float rounding and, with dropout 0, the same adapter (on a GPU up to TF32/bf16 rounding,
which Adam's normalised steps amplify in weights whose gradients are near zero) — down to one item per forward, below
which it is a one-line UserError with the fix. Under a distributed launch the processes cannot retry in step, so
there the first out-of-memory error is the UserError."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Callable, TypeVar

from evaluator.errors import UserError

if TYPE_CHECKING:
    from evaluator.training.distributed import DataParallel

T = TypeVar("T")


class OomBackoff:
    """The micro-batch (items per forward in this process, at first the whole global batch) and the retries so far."""

    def __init__(
        self,
        batch_size: int,
        dp: DataParallel,
        *,
        gradient_checkpointing: bool,
        zero_grad: Callable[[], None],
        reset_peak: Callable[[], None],
        log: Callable[[str], None] | None = None,
    ) -> None:
        """`zero_grad` drops the partial gradients of a failed step; `reset_peak` restarts the peak-memory record
        (the failed attempt's peak is not the run's); `log` reports each retry (default: the `tunecheck` logger)."""
        self.micro = batch_size
        self.retries = 0
        self.batch_size = batch_size
        self.dp = dp
        self.gradient_checkpointing = gradient_checkpointing
        self.zero_grad, self.reset_peak, self.log = zero_grad, reset_peak, log

    def run(self, fn: Callable[[int], T], n_items: int, step: int) -> T:
        """fn(micro); after an out-of-memory error, again with half as many items per forward (down to one).
        `n_items`: the items fn splits into micro-batches; `step`: steps done (for the message)."""
        from evaluator.engine.memory import free_memory, is_out_of_memory

        while True:
            try:
                return fn(self.micro)
            except RuntimeError as exc:  # torch.cuda.OutOfMemoryError is a RuntimeError
                if not is_out_of_memory(exc):
                    raise
                if self.dp.world > 1:
                    raise UserError(
                        f"LoRA training ran out of GPU memory in process {self.dp.rank} of {self.dp.world} "
                        f"({min(self.micro, n_items)} items per forward) — processes cannot retry in step: set "
                        "lora.gradient_checkpointing: true or a smaller lora.batch_size, or train in one process "
                        "(it halves the micro-batch by itself)"
                    ) from None
            # outside the except block: the exception and the frames holding its tensors are gone
            self.zero_grad()  # the micro-batches that did run left partial gradients
            free_memory()
            self.reset_peak()
            self.micro = min(self.micro, n_items) // 2
            if self.micro < 1:
                raise UserError(
                    "LoRA training ran out of GPU memory even with one item per forward — "
                    + ("set lora.gradient_checkpointing: true, " if not self.gradient_checkpointing else "")
                    + "use shorter prompts, a smaller dtype (e.g. dtype: bfloat16) or a GPU with more memory"
                )
            self.retries += 1
            (self.log or logging.getLogger("tunecheck").warning)(
                f"LoRA training ran out of GPU memory at step {step + 1}: retrying with {self.micro} items per forward "
                f"(gradient accumulation keeps the global batch of {self.batch_size})"
            )

    def record(self) -> dict:
        """The TrainResult fields of the back-off: the micro-batch it ended on and how many retries it took."""
        return {"micro_batch_size": self.micro, "oom_retries": self.retries}
