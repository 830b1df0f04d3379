"""Data parallelism: one process, or many under `accelerate launch` (DDP). Every process builds the same global batches
(same seed) and takes its share `batch[rank::world]`; the loss is normalised by the answer-token count of the whole
global batch, so DDP's gradient average equals the single-process gradient. Validation sums, losses and peak memory
are reduced over processes (all take the same early-stopping decisions) and only the main process saves. This module
owns the process facts (world size, rank, device), the accelerator and those reductions and barriers."""

from __future__ import annotations

import os


def world_size() -> int:
    """Processes in this launch (torchrun / accelerate set WORLD_SIZE); readable before any accelerator exists."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    """Rank 0, or the only process: the one that writes shared files and reports."""
    return int(os.environ.get("RANK", "0")) == 0


def barrier() -> None:
    """Wait for every process (nothing in one process): e.g. until the main one has saved what all then read."""
    if world_size() > 1:
        from accelerate.state import PartialState

        PartialState().wait_for_everyone()


def refuse_device_map_launch(device_map) -> None:
    """A model dispatched by a device_map spans the node's GPUs from one process; under a multi-process launch each
    process would spread its own copy over the same GPUs (model and data parallel at once): refused, in one line."""
    if device_map is not None and world_size() > 1:
        from evaluator.errors import UserError

        raise UserError(f"device_map spreads one model over the GPUs from a single process, but this is a launch of "
                        f"{world_size()} processes — run without accelerate launch to use device_map, or remove "
                        "device_map for data parallel (each process then holds the whole model on its own GPU)")


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


def make_accelerator(mixed_precision: str, cpu: bool):
    """An Accelerator for this training. In a single process a previous, differently configured one (another
    device, or a `Trainer` in the same process) is reset; under a distributed launch the launch decides."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState, PartialState

    try:
        return Accelerator(mixed_precision=mixed_precision, cpu=cpu, device_placement=False)
    except ValueError:
        if PartialState().num_processes > 1:
            raise
        AcceleratorState._reset_state(reset_partial_state=True)
        return Accelerator(mixed_precision=mixed_precision, cpu=cpu, device_placement=False)


class DataParallel:
    """This process's place in the run (`world` processes, this one `rank`) and everything the loop does across them.
    In one process every reduction is the identity, so the same loop serves both."""

    def __init__(self, mixed_precision: str, cpu: bool) -> None:
        self.acc = make_accelerator(mixed_precision, cpu)
        self.world, self.rank = self.acc.num_processes, self.acc.process_index

    @property
    def is_main_process(self) -> bool:
        """The process that saves (rank 0)."""
        return self.acc.is_main_process

    def place(self, model, device: str) -> str:
        """The device this process trains on: under a distributed launch accelerate's (the model is moved there),
        else `device` as given."""
        if self.world > 1:
            refuse_device_map_launch(getattr(model, "hf_device_map", None))
            device = str(self.acc.device)
            model.to(device)
        return device

    def prepare(self, module):
        """DDP-wrap `module` under a distributed launch (its forward then runs the gradient reducer); bf16 autocast."""
        return self.acc.prepare(module)

    def unwrap(self, module):
        """The module inside the DDP wrapper (validation runs it without the gradient reducer)."""
        return self.acc.unwrap_model(module)

    def backward(self, loss) -> None:
        """accelerate's backward (under DDP the gradient all-reduce runs inside it)."""
        self.acc.backward(loss)

    def autocast(self):
        """The accelerator's autocast context (bf16 when that is the mixed precision; otherwise nothing)."""
        return self.acc.autocast()

    def share(self, items: list) -> list:
        """This process's share of `items`: every world-th one, from its rank."""
        return items[self.rank :: self.world]

    def shard(self, group: list) -> tuple[list, float]:
        """(this process's items of a global batch, loss weight). With fewer items than processes a process without
        one joins the gradient all-reduce with a zero-weight item (every process must run the backward)."""
        shard = self.share(group)
        if not shard:
            return group[:1], 0.0
        return shard, 1.0

    def sum(self, t):
        """Elementwise sum of `t` over processes."""
        return self.acc.reduce(t, "sum") if self.world > 1 else t

    def mean(self, t):
        """Elementwise mean of `t` over processes (moved to the accelerator's device first)."""
        return self.acc.reduce(t.to(self.acc.device), "mean") if self.world > 1 else t

    def max(self, value: float) -> float:
        """The largest `value` of any process (a float32 tensor on the way, in one process too)."""
        import torch

        t = torch.tensor([value], device=self.acc.device if self.world > 1 else "cpu")
        return float(self.acc.gather(t).max()) if self.world > 1 else float(t[0])

    def total(self, value: int) -> int:
        """The sum of an integer count over processes (the count itself in one process)."""
        import torch

        if self.world == 1:
            return int(value)
        return int(self.acc.reduce(torch.tensor([value], dtype=torch.long, device=self.acc.device), "sum")[0])

    def wait_for_everyone(self) -> None:
        """A barrier across processes (nothing in one process)."""
        self.acc.wait_for_everyone()

    def free_memory(self) -> None:
        """Drop the accelerator's references to what it prepared (the DDP wrapper and its buckets)."""
        self.acc.free_memory()


# --- evaluation across processes ---------------------------------------------------------------------------------
#
# `tunecheck run` under `accelerate launch`: every process runs every unit in the same order, scores its share of each
# chunk of items (chunk[rank::world]), and the rows are gathered so that the main process alone writes the run folder
# (appended rows, unit records, reports). LoRA trains with DDP as above. Collective calls below are made by every
# process at the same points, so they pair up.


def rank() -> int:
    """This process's index in the launch (0 in one process)."""
    return int(os.environ.get("RANK", "0"))


def _group() -> None:
    """The process group (gloo on CPU, NCCL on GPUs), started by accelerate's PartialState when first needed."""
    from accelerate.state import PartialState

    PartialState()


def broadcast_from_main(obj):
    """The main process's `obj` on every process (`obj` as given in one process)."""
    if world_size() <= 1:
        return obj
    import torch.distributed as dist

    _group()
    box = [obj if is_main_process() else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather_all(obj) -> list:
    """Every process's `obj`, in rank order, on every process ([obj] in one process)."""
    if world_size() <= 1:
        return [obj]
    import torch.distributed as dist

    _group()
    out: list = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out
