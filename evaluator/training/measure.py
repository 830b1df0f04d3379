"""What a training run measures and records: wall time of the steps (GPU work synchronised before the clock stops),
non-pad and answer tokens seen, the padding share, the per-step losses (kept on the device until the end: no host
sync per step), peak memory (CUDA: max allocated; CPU: process peak RSS) — and `TrainResult`, the record the
adapter's metadata stores."""

from __future__ import annotations

import resource
import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Callable

from evaluator.training.data import Example

if TYPE_CHECKING:
    from evaluator.training.distributed import DataParallel


@dataclass
class TrainResult:
    """One training run as the adapter's metadata records it (`as_dict`): what was trained, how, and its numbers."""

    adapter_dir: str
    train_seconds: float
    steps: int
    epochs: float
    tokens_seen: int  # non-pad tokens processed (all processes)
    answer_tokens_seen: int
    peak_mem_mb: float  # CUDA: max allocated; CPU: process peak RSS (max over processes)
    adapter_bytes: int
    final_loss: float  # mean answer-token loss of the last 5 steps
    loss_curve: list[float]
    tokens_per_second: float = 0.0
    n_train: int = 0
    n_val: int = 0
    train_items: int = 0  # items the adapter was trained on (= n_train): n minus the validation slice held out
    val_items: int = 0  # items held out for validation / early stopping (= n_val)
    val_curve: list[list[float]] = field(default_factory=list)  # [step, mean loss on the answers' own tokens]
    val_accuracy_curve: list[list[float]] = field(default_factory=list)  # [step, share of answers all argmax-correct]
    best_step: int | None = None
    best_val_loss: float | None = None  # at best_step (the adapter kept): answer tokens only, format tokens excluded
    best_val_accuracy: float | None = None  # at best_step: held-out items whose answer tokens are all argmax-correct
    stopped_early: bool = False
    world_size: int = 1
    mixed_precision: str = "no"  # "bf16" (autocast), "fp16" (float16 weights, loss scaled by a GradScaler) or "no"
    grad_scaler: bool = False  # float16 training: loss scaling (torch.amp.GradScaler) against gradient underflow
    loss_scale: float | None = None  # the scaler's final scale (halved after each step whose gradients overflowed)
    loss_path: str = "answer-logits"  # or "full-logits" (architectures outside ANSWER_LOGITS_TYPES)
    padding_fraction: float = 0.0  # pad tokens / all tokens in the training batches
    shared_prefix_tokens: int = 0  # of tokens_seen, not run again: a micro-batch's shared prefix after its first row
    micro_batch_size: int = 0  # at most this many items per forward (per process); < batch_size after OOM retries
    oom_retries: int = 0  # steps (or validations) taken again with a halved micro-batch after running out of memory

    def as_dict(self) -> dict:
        return asdict(self)


def peak_mem_mb(device: str) -> float:
    """This process's peak memory in MiB since the last reset: CUDA max allocated, else the process's peak RSS."""
    import torch

    if str(device).startswith("cuda"):
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB → MiB (process peak RSS)


@dataclass(frozen=True)
class StepInfo:
    """What `train_lora`'s `on_step` callback gets after each optimiser step. `loss()` reads the latest step's loss
    (on a GPU that waits for the step to finish, so a progress display calls it at most a few times a second)."""

    step: int
    total: int  # steps planned (an early stop or a halt may end sooner)
    tokens: int  # tokens trained on so far (whole global batches)
    seconds: float  # since the first step started
    loss: Callable[[], float | None]

    @property
    def tokens_per_second(self) -> float | None:
        return self.tokens / self.seconds if self.seconds > 0 else None


class Meter:
    """Counters and clock of one run. Token counts are of whole global batches (what every process sees alike)."""

    def __init__(self, device: str) -> None:
        self.device = device
        self.on_cuda = str(device).startswith("cuda")
        self.tokens = self.answer_tokens = 0
        self._real = self._padded = 0
        self.shared = 0  # this process's tokens skipped by running a micro-batch's shared prefix once
        self._losses: list = []  # device scalars: no sync per step
        self._t0 = 0.0
        self.seconds = 0.0

    def reset_peak(self) -> None:
        """Restart the CUDA peak-memory record (at the start, and after an out-of-memory retry)."""
        if self.on_cuda:
            import torch

            torch.cuda.reset_peak_memory_stats(self.device)

    def start(self) -> None:
        """Start the clock (and the peak-memory record) just before the first step."""
        self.reset_peak()
        self._t0 = time.perf_counter()

    def count(self, group: list[Example], answer_tokens: int, width: int | None = None, packed: bool = False) -> None:
        """A global batch about to be trained on: its tokens, padding and answer tokens. `width`: the length its rows
        are padded to when that is more than its longest item (the sweep pads to the longest row of all its runs);
        `packed`: no padding at all."""
        n = sum(len(e) for e in group)
        self._real += n
        self._padded += n if packed else len(group) * max([len(e) for e in group] + [width or 0])
        self.tokens += n
        self.answer_tokens += answer_tokens

    def shared_prefix(self, tokens: int) -> None:
        """A step's micro-batches ran their common prefixes once: `tokens` not run again (see `_forward_backward`)."""
        self.shared += tokens

    def loss(self, loss) -> None:
        """This step's loss (a device scalar: this process's share of the global-batch mean)."""
        self._losses.append(loss)

    def elapsed(self) -> float:
        """Seconds since `start`."""
        return time.perf_counter() - self._t0

    def last_loss(self) -> float | None:
        """The latest step's loss as a number (this process's share of the global-batch mean), or None before one."""
        return float(self._losses[-1]) if self._losses else None

    def stop(self) -> None:
        """Stop the clock once the queued GPU work has finished."""
        if self.on_cuda:
            import torch

            torch.cuda.synchronize(self.device)
        self.seconds = time.perf_counter() - self._t0

    def record(self, dp: DataParallel) -> dict:
        """The TrainResult fields measured here. Collective under a distributed launch: every process calls it."""
        import torch

        losses = torch.stack(self._losses).float() if self._losses else torch.zeros(0, device=self.device)
        # each process holds world x (its share of the global mean): the mean over processes is the global loss
        losses = dp.mean(losses)
        losses = [float(x) for x in losses.cpu()]
        seconds = self.seconds
        return {
            "train_seconds": seconds,
            "tokens_seen": self.tokens,
            "answer_tokens_seen": self.answer_tokens,
            "peak_mem_mb": dp.max(peak_mem_mb(self.device)),
            "final_loss": sum(losses[-5:]) / max(1, len(losses[-5:])),
            "loss_curve": losses[:: max(1, len(losses) // 50)],
            "tokens_per_second": self.tokens / seconds if seconds > 0 else 0.0,
            "padding_fraction": (self._padded - self._real) / self._padded if self._padded else 0.0,
            "shared_prefix_tokens": dp.total(self.shared),
        }
