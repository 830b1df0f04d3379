"""The learning-curve sweep as one job, `train_lora_sweep`: arm B's adapters for several training sizes (one `SweepRun`
each: its examples, seed and folder, as `train_lora` takes them) trained together over the one frozen base, told top
to bottom like `loop.train_lora`. Each step takes the next global batch of every run still training, puts all their
rows into ONE padded batch (each run's rows one contiguous block), runs one forward and one backward — every targeted
Linear adds to each row its own run's LoRA update, all runs' LoRAs computed as one wide LoRA whose rank columns are
masked row by row (`_multi_lora_class`) — and then each run clips and steps its own optimiser. A small-n run thus
no longer leaves the device idle with a few rows per step: the base's kernels run once per step for all the runs
instead of once per run, and the LoRA layers' kernels do not multiply with the number of runs either.

Why each adapter is the one `train_lora` trains alone (tests/test_sweep.py checks it, fp32 on CPU, to 1e-5):
* rows of a batch never interact in a decoder (attention stays within a row, there are no batch statistics), and the
  loss is a sum of one term per run, sum of its answer-token cross-entropies / ITS global batch's answer tokens — so
  the gradient of run i's LoRA weights is exactly that of its own term, as alone;
* each run keeps what `train_lora` gives it: the split (`train_and_validation` with its seed), the batch order
  (`random.Random(seed)`, `endless_batches`), its total steps, its `Optimiser` (the same AdamW, schedule and clipping
  at norm 1.0 over its own tensors), its `EarlyStopping` (validation at its own cadence, its best weights restored);
* initial weights: per run `torch.manual_seed(seed)` then peft's `attach_lora`, exactly as `train_lora` does; the
  fresh A and B are copied into the sweep's layers and peft is unloaded again (the same targets, scaling and dropout
  as peft's layer: read from it, not recomputed);
* dropout: `train_lora` draws its masks from the device's default generator, seeded by `manual_seed(seed)` and left
  where peft's initialisation left it. The sweep keeps that generator state per run and swaps it in around each of
  the run's own dropout calls (the same `F.dropout` on the same shape — its rows, padded to its own longest row —
  from the same generator state), so the masks are the ones the run draws alone, whatever other runs share the
  batch (checked on CPU; on CUDA the same call draws from the CUDA generator the same way); a recomputation under
  gradient checkpointing replays the state it started from (as torch's checkpoint does for the global generator);
* rows are right-padded to the combined batch's longest row; positions past a run's own longest row come after all
  of its real tokens (causal attention: they change nothing the loss reads) and get no LoRA update;
* each adapter is saved the way `train_lora` saves it: a fresh peft adapter attached, A and B copied in,
  `save_adapter` (peft format), so `PeftModel.from_pretrained` and `evaluator/arms/lora.py` load it unchanged.
The differences are float rounding only (matrix products over a larger batch may sum in another order).
Why not peft's own mixed-adapter batches (`adapter_names=`): peft refuses them in training mode, and its adapters
share one peft config and model wrapper (one optimiser over all, one early-stopping copy) — the sweep needs each
run's optimiser, schedule, clipping, validation and weights apart.

Measurements per run (`TrainResult`): tokens, steps, epochs, losses and validation are its own. train_seconds: the
sweep's step time is split at the points where a run leaves (the device synchronised there, so each phase's time is
exact) and each phase's time is shared among the runs in it by their non-pad tokens in it; a validation's time is its
run's alone. The runs' train_seconds add up to the sweep's training time. peak_mem_mb is the sweep's (shared) peak.
padding_fraction counts a run's rows padded to the combined batch's width (the padding it really cost).

Limits (`sweep_problem`; the caller then trains with `train_lora` one adapter at a time): one device and one
process only (a base dispatched over several devices by a device_map is refused; under
`accelerate launch` DDP would wrap one module whose runs come and go: refused), no float16 weights (loss scaling is
per run: one GradScaler per optimiser over one shared backward would couple the runs' skipped steps), LoRA on
Linear-like layers only (peft's `lora.Linear`: Linear, GPT-2's Conv1D; not embeddings, convolutions or quantised
layers), and a model that carries no adapter yet. Memory: the combined batch holds up to len(runs) x batch_size rows
(4 runs x 8: 32 rows); out of memory, the step is taken again in micro-batches of half as many rows (`OomBackoff`:
gradient accumulation, the same normalisation per run), down to one row per forward.
"""

from __future__ import annotations

import functools
import math
import random
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Callable

from evaluator.config.arms import LoraArm
from evaluator.errors import UserError
from evaluator.faults import checkpoint
from evaluator.training.adapter import attach_lora, lora_target_problem, save_adapter, set_checkpointing
from evaluator.training.backoff import OomBackoff
from evaluator.training.data import Example, _make_batch, endless_batches, shares_prefix, train_and_validation
from evaluator.training.distributed import DataParallel, world_size
from evaluator.training.early_stop import EarlyStopping
from evaluator.training.loss import _answer_loss_module, loss_and_accuracy, metric_sums, uses_answer_logits
from evaluator.training.measure import Meter, StepInfo, TrainResult
from evaluator.training.optim import Optimiser
from evaluator.training.precision import mixed_precision_for, needs_grad_scaler, precision_record, tf32, weights_dtype


@dataclass
class SweepRun:
    """One adapter of the sweep: what `train_lora` takes for it (examples, seed, out_dir, val_examples)."""

    examples: list[Example]
    seed: int
    out_dir: Path
    val_examples: list[Example] | None = None


class SweepUnsupported(UserError):
    """The sweep cannot train these adapters together here; train them one at a time with `train_lora`."""


def sweep_problem(model, hp: LoraArm) -> str | None:
    """Why `train_lora_sweep` cannot train adapters of `hp` on `model` here (then train each with `train_lora`), or
    None. Layer types are checked once peft has attached (`SweepUnsupported` from `train_lora_sweep`)."""
    if world_size() > 1:
        return f"a distributed launch of {world_size()} processes (the sweep trains in one process)"
    if needs_grad_scaler(model):
        return "float16 weights (their loss scaling is per run)"
    if any(hasattr(m, "base_layer") for m in model.modules()):
        return "a model that already carries a LoRA adapter"
    if len(set(map(str, (getattr(model, "hf_device_map", None) or {}).values()))) > 1:
        return "a base dispatched over several devices by a device_map (the row masks live on one device)"
    if hp.packing:
        return "packed batches (the sweep's rows stay padded: one run's LoRA per row)"
    return None


def train_lora_sweep(
    model,
    runs: list[SweepRun],
    hp: LoraArm,
    *,
    pad_id: int,
    device: str,
    log: Callable[[str], None] | None = None,
    on_step: Callable[[int, StepInfo], bool | None] | None = None,
) -> list[tuple[Path, TrainResult]]:
    """Train one LoRA adapter per run of `runs` together over `model` (frozen, shared) and save each (peft format) to
    its out_dir; returns [(out_dir, TrainResult)] in the order of `runs`, `model` left without adapters.

    Each adapter equals what `train_lora(model, run.examples, hp, run.out_dir, seed=run.seed, val_examples=...)`
    trains alone, up to float rounding (see the module docstring). `on_step(i, StepInfo)` is called after each of
    run i's optimiser steps; returning True ends run i there. Out-of-memory retries are reported through `log`.
    Raises SweepUnsupported where `sweep_problem` (or a layer peft would not adapt as a plain Linear) says so.
    """
    import torch

    # Set up: the checks, one frozen base with every run's fresh adapter on it, each run's own data, optimiser,
    # validation and meter, and the loss over the shared model.
    why = lora_target_problem(model, hp.target_modules)  # one line, not peft's error, if the modules do not exist
    if why:
        raise UserError(why)
    why = sweep_problem(model, hp)
    if why:
        raise SweepUnsupported(f"the adapters cannot be trained as one sweep here: {why} — train them one at a time")
    if not runs:
        return []
    mp = mixed_precision_for(device, weights_dtype(model))
    dp = DataParallel(mp, cpu=str(device) == "cpu")
    on_cuda = str(device).startswith("cuda")
    trainable = [(p, p.requires_grad) for p in model.parameters()]
    rows = _Rows(hp.r)
    layers: dict = {}
    try:
        layers = _attach_adapters(model, runs, hp, rows)  # per run: manual_seed(seed), peft's fresh A and B, dropout
        for p, _ in trainable:
            p.requires_grad_(False)
        if hp.gradient_checkpointing:
            set_checkpointing(model, True)
        model.train()
        fast = uses_answer_logits(model)
        module = _answer_loss_module(model, fast)
        states = [_start_run(i, run, hp, layers, device) for i, run in enumerate(runs)]
        clock = _SharedClock(len(runs), device)
        backoff = OomBackoff(hp.batch_size * len(runs), dp, gradient_checkpointing=hp.gradient_checkpointing,
                             zero_grad=lambda: [st.optimiser.zero_grad() for st in states if st.optimiser],
                             reset_peak=states[0].meter.reset_peak, log=log)
        forward_backward = partial(_forward_backward, module, rows, pad_id, device, dp.autocast,
                                   shares_prefix(hp))  # (parts, norms, micro)
        validate = partial(_validate, dp, module, model, rows, pad_id, device, hp.batch_size)  # (state, micro)

        # Train: one combined step after another — the next global batch of every run still training, one forward
        # and one backward over all their rows, then each run's own optimiser step; a run leaves after its last
        # step, an early stop or on_step's halt.
        for st in states:
            st.meter.start()
        clock.start()
        active = list(states)
        with torch.enable_grad(), tf32(on_cuda):
            while active:
                groups = [(st, next(st.batches)) for st in active]
                parts = [(st.index, g) for st, g in groups if any(e.n_targets for e in g)]  # this step's rows
                norms = {i: sum(e.n_targets for e in g) for i, g in parts}  # each run's loss normaliser
                width = max((len(e) for _, g in parts for e in g), default=0)  # what every row is padded to
                for st, g in groups:
                    st.meter.count(g, norms.get(st.index, 0), width if st.index in norms else None)
                    clock.count(st.index, sum(len(e) for e in g))
                if parts:
                    losses, shared = backoff.run(partial(forward_backward, parts, norms),
                                                 sum(len(g) for _, g in parts), min(st.step for st in active))
                for st in active:
                    if st.index in norms:
                        st.optimiser.step()  # its own clipping (norm 1.0 over its tensors), AdamW and schedule
                        st.meter.loss(losses[st.index])
                        st.meter.shared_prefix(shared.get(st.index, 0))
                    st.optimiser.next_step()
                    st.step += 1
                checkpoint("train_step")
                left = []
                for st in active:
                    halted = on_step is not None and bool(on_step(st.index, StepInfo(
                        st.step, st.total, st.meter.tokens, st.meter.elapsed(), st.meter.last_loss)))
                    if st.early.due(st.step):
                        v_loss, v_acc = clock.charge(st.index, partial(backoff.run, partial(validate, st),
                                                                       len(st.val_ex), st.step))
                        if st.early.update(st.step, v_loss, v_acc, st.params):
                            left.append(st)
                            continue
                    if halted or st.step >= st.total:
                        left.append(st)
                if left:
                    clock.close_phase()
                    for st in left:
                        st.optimiser.zero_grad()
                        st.optimiser = None  # its AdamW state freed; the run's weights stay until the export
                    active = [st for st in active if st not in left]

        # Finish: the base's own layers back, each run's best validated weights back and saved like train_lora's,
        # the records (the rest of the base as it was: below, after an error too).
        _detach_adapters(model, layers)
        model.eval()
        out: list[tuple[Path, TrainResult]] = []
        retries = backoff.record()
        for st in states:
            st.early.restore_best(st.params, st.step)
            st.meter.seconds = clock.seconds[st.index]
            measured = st.meter.record(dp)
            size = _export(model, hp, layers, st.index, st.run.out_dir, dp)
            out.append((st.run.out_dir, TrainResult(
                adapter_dir=str(st.run.out_dir), adapter_bytes=size, steps=st.step,
                epochs=st.step / st.steps_per_epoch, n_train=len(st.train_ex), n_val=len(st.val_ex),
                train_items=len(st.train_ex), val_items=len(st.val_ex), world_size=dp.world,
                loss_path="answer-logits" if fast else "full-logits",
                **measured, **st.early.record(), **precision_record(mp, None),
                micro_batch_size=min(retries["micro_batch_size"], hp.batch_size), oom_retries=retries["oom_retries"],
            )))
    finally:  # after an error too: the caller gets its base back as it was (and may train one adapter at a time)
        if hp.gradient_checkpointing:
            set_checkpointing(model, False)
        _detach_adapters(model, layers)
        for p, flag in trainable:
            p.requires_grad_(flag)
        dp.free_memory()
    return out


# --------------------------------------------------------------------------------------------------------------------
# One run's state


@dataclass
class _RunState:
    """What `train_lora` keeps for one run, here for run `index` of the sweep."""

    index: int
    run: SweepRun
    train_ex: list[Example]
    val_ex: list[Example]
    batches: Any  # endless_batches: its global batches, in its own order
    steps_per_epoch: int
    total: int
    params: _RunParams
    optimiser: Optimiser | None
    early: EarlyStopping
    meter: Meter
    step: int = 0


class _RunParams:
    """Run i's LoRA tensors under their layers' names: what `Optimiser` and `EarlyStopping` read from a peft model."""

    def __init__(self, layers: dict, i: int) -> None:
        self._named = [(f"{n}.lora_{ab}", getattr(layer, f"lora_{ab}")[i]) for n, layer in layers.items() for ab in "AB"]

    def named_parameters(self):
        return iter(self._named)

    def parameters(self):
        return (p for _, p in self._named)


def _start_run(i: int, run: SweepRun, hp: LoraArm, layers: dict, device: str) -> _RunState:
    """Run i set up exactly as `train_lora` sets itself up: the split, the batch order, the steps, the optimiser,
    early stopping, the meter."""
    train_ex, val_ex = train_and_validation(run.examples, run.val_examples, hp, run.seed)
    rng = random.Random(run.seed)  # the batch order
    steps_per_epoch = math.ceil(len(train_ex) / hp.batch_size)
    total = hp.max_steps or max(1, math.ceil(steps_per_epoch * hp.epochs))
    params = _RunParams(layers, i)
    optimiser = Optimiser(params, hp, total, device, None, backward=lambda loss: loss.backward())
    early = EarlyStopping(len(val_ex), every=hp.eval_every or steps_per_epoch, total_steps=total, patience=hp.patience)
    batches = endless_batches(train_ex, hp.batch_size, rng, hp.group_by_length)
    return _RunState(i, run, train_ex, val_ex, batches, steps_per_epoch, total, params, optimiser, early, Meter(device))


# --------------------------------------------------------------------------------------------------------------------
# The combined step and a run's validation


def _forward_backward(module, rows: _Rows, pad_id: int, device: str, autocast: Callable, share: bool,
                      parts: list[tuple[int, list[Example]]], norms: dict[int, int], micro: int) -> dict:
    """Accumulate the gradient of every run's global batch in `parts` ([(run, its batch)], one block of rows each),
    `micro` rows per forward; returns each run's loss (device scalars) and its prefix ids not run again. The loss of
    a forward is the sum over its runs of (sum of the run's answer-token cross-entropies) / norms[run] —
    `train_lora`'s loss, one term per run.
    `share`: the leading ids every row of a forward shares run once per run (`data.shared_prefix_len`), as
    `train_lora` runs them once per micro-batch."""
    import torch.nn.functional as F

    on_cuda = str(device).startswith("cuda")
    flat = [(i, e) for i, group in parts for e in group]
    losses: dict = {}
    shared: dict[int, int] = {}
    for s in range(0, len(flat), micro):
        chunk = flat[s : s + micro]
        blocks, spans = _blocks(chunk)
        b = _make_batch([e for _, e in chunk], pad_id, pin=on_cuda, share_prefix=share).to(device, non_blocking=on_cuda)
        with autocast():  # bf16 on GPUs that support it, as train_lora's prepared module
            if b.prefix:  # the shared prefix once per run (its own LoRA), then every row after it
                p = b.prefix
                src, of = _prefix_groups(blocks, b.ids.device)
                rows.assign([(i, k, k + 1, p) for k, (i, *_) in enumerate(blocks)], b.ids.device)
                suffix = [(i, lo, hi, w - p) for i, lo, hi, w in blocks]
                logits = module.answer_logits(b.ids, b.pos, p, (src, of),
                                              on_suffix=lambda: rows.assign(suffix, b.ids.device))
            else:
                rows.assign(blocks, b.ids.device)
                logits = module.answer_logits(b.ids, b.pos)
            terms = [(i, F.cross_entropy(logits[lo:hi].float(), b.tgt[lo:hi], reduction="sum") / norms[i])
                     for i, lo, hi in spans]
        sum(t for _, t in terms).backward()
        for i, t in terms:
            losses[i] = losses.get(i, 0.0) + t.detach()
        for i, lo, hi, _ in blocks:  # each run's prefix ids not run again after its first row
            shared[i] = shared.get(i, 0) + (hi - lo - 1) * b.prefix
    return losses, shared


def _blocks(chunk: list[tuple[int, Example]]) -> tuple[list[tuple], list[tuple]]:
    """For rows [(run, example)] in run order: the row blocks [(run, first row, end row, its longest row)] the LoRA
    layers read, and the answer-target spans [(run, first, end)] of `_make_batch`'s flat targets (row by row)."""
    blocks: list[tuple] = []
    spans: list[tuple] = []
    r = t = 0
    for k, (i, e) in enumerate(chunk):
        if k == 0 or chunk[k - 1][0] != i:
            blocks.append((i, r, r, 0))
            spans.append((i, t, t))
        _, lo, _, w = blocks[-1]
        blocks[-1] = (i, lo, r + 1, max(w, len(e)))
        spans[-1] = (i, spans[-1][1], t + e.n_targets)
        r, t = r + 1, t + e.n_targets
    return blocks, spans


def _prefix_groups(blocks: list[tuple], device):
    """(src, of) for `answer_logits`: the shared prefix runs on each run's first row, every row takes its run's."""
    import torch

    src = torch.tensor([lo for _, lo, _, _ in blocks], dtype=torch.long, device=device)
    of = torch.tensor([k for k, (_, lo, hi, _) in enumerate(blocks) for _ in range(lo, hi)], dtype=torch.long,
                      device=device)
    return src, of


def _validate(dp: DataParallel, module, model, rows: _Rows, pad_id: int, device: str, batch_size: int,
              st: _RunState, micro: int) -> tuple[float, float]:
    """(loss, accuracy) of run st's adapter on its held-out items, as `train_lora` validates (batch_size items at
    a time, fewer after an out-of-memory retry): every row of each forward is the run's."""
    import torch

    model.eval()
    rows.only(st.index)
    with torch.no_grad(), dp.autocast():
        sums = metric_sums(module, st.val_ex, pad_id, device, min(micro, batch_size), pin=str(device).startswith("cuda"))
    model.train()
    return loss_and_accuracy(sums)


# --------------------------------------------------------------------------------------------------------------------
# The multi-adapter LoRA layers


class _Rows:
    """Which rows of the forward about to run belong to which run, set by the loop before each forward and read by
    every LoRA layer: `blocks` [(run, first row, end row, width)] (`width`: the run's longest row; None: to the end),
    `runs` the runs present in block order, and for more than one run `off` [rows, 1, len(runs) x r] (bool, on the
    device): True where a rank column is another run's (see `_multi_lora_class`)."""

    def __init__(self, r: int) -> None:
        self.r = r
        self.blocks: list[tuple] = []
        self.runs: list[int] = []
        self.off = None
        self.forward_id = 0  # a new one per forward: a layer called again within one is a recomputation

    def assign(self, blocks: list[tuple], device) -> None:
        import torch

        self.blocks, self.runs, self.off = blocks, list(dict.fromkeys(i for i, *_ in blocks)), None
        self.forward_id += 1
        if len(self.runs) > 1:
            off = torch.ones(blocks[-1][2], 1, len(self.runs) * self.r, dtype=torch.bool)
            for i, lo, hi, _ in blocks:
                k = self.runs.index(i)
                off[lo:hi, :, k * self.r : (k + 1) * self.r] = False
            on_cuda = str(device).startswith("cuda")
            self.off = (off.pin_memory() if on_cuda else off).to(device, non_blocking=on_cuda)

    def only(self, i: int) -> None:
        """Every row is run i's (its validation)."""
        self.assign([(i, 0, None, None)], None)


def _rng_devices() -> list:
    """The devices whose default generator a dropout may draw from: the CPU and every accelerator of this process."""
    import torch

    devices = [torch.device("cpu")]
    if torch.cuda.is_available():
        devices += [torch.device("cuda", k) for k in range(torch.cuda.device_count())]
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        devices.append(torch.device("mps"))
    return devices


def _rng_key(dev) -> str:
    return dev.type if dev.type in ("cpu", "mps") else str(dev)


def _get_rng(dev):
    import torch

    return torch.get_rng_state() if dev.type == "cpu" else getattr(torch, dev.type).get_rng_state(dev)


def _set_rng(dev, state) -> None:
    import torch

    if dev.type == "cpu":
        torch.set_rng_state(state)
    else:
        getattr(torch, dev.type).set_rng_state(state, dev)


@dataclass
class _LayerInit:
    """One run's fresh LoRA layer as peft made it: A [r, in], B [out, r], the scaling and the dropout."""

    a: Any
    b: Any
    scaling: float
    dropout: float


@dataclass
class _Streams:
    """Each run's dropout random streams: per device, the default generator's state as the run alone would have it."""

    states: list[dict[str, Any]] = field(default_factory=list)


def _attach_adapters(model, runs: list[SweepRun], hp: LoraArm, rows: _Rows) -> dict:
    """Wrap every layer peft's LoRA targets (for `hp`) in a multi-adapter layer whose adapter i starts as `train_lora`
    would start runs[i]: `torch.manual_seed(seed)`, then `attach_lora` — its fresh A and B and its scaling and dropout
    copied, the generators' states (what its dropout will draw from) kept, peft unloaded again. Returns {name: layer}."""
    import torch
    from peft.tuners.lora import Linear as PeftLoraLinear
    from peft.tuners.lora import LoraLayer

    inits: list[dict[str, _LayerInit]] = []
    streams = _Streams()
    devices = _rng_devices()
    for run in runs:
        torch.manual_seed(run.seed)  # as train_lora: the adapter's initial weights and its dropout
        peft_model = attach_lora(model, hp)
        try:
            peft_layers = {n: m for n, m in peft_model.get_base_model().named_modules() if isinstance(m, LoraLayer)}
            odd = [n for n, m in peft_layers.items()
                   if type(m) is not PeftLoraLinear or m.lora_B["default"].bias is not None or m.use_dora["default"]]
            if odd:
                raise SweepUnsupported(
                    f"the adapters cannot be trained as one sweep: LoRA layer {odd[0]} is a "
                    f"{type(peft_layers[odd[0]]).__name__} (the sweep adapts plain Linear layers) — train them one at "
                    "a time")
            streams.states.append({_rng_key(d): _get_rng(d) for d in devices})
            inits.append({n: _LayerInit(m.lora_A["default"].weight.detach().clone(),
                                        m.lora_B["default"].weight.detach().clone(), m.scaling["default"],
                                        float(getattr(m.lora_dropout["default"], "p", 0.0)))
                          for n, m in peft_layers.items()})
        finally:
            peft_model.unload()
    multi = _multi_lora_class()
    layers = {}
    for name in inits[0]:
        parent_name, _, leaf = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        layer = multi(getattr(parent, leaf), rows, streams, [init[name] for init in inits])
        setattr(parent, leaf, layer)
        layers[name] = layer
    return layers


def _detach_adapters(model, layers: dict) -> None:
    """Put the original layers back where they still hold a multi-adapter layer (the multi-adapter layers keep the
    runs' weights for the export)."""
    for name, layer in layers.items():
        parent_name, _, leaf = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        if getattr(parent, leaf) is layer:
            setattr(parent, leaf, layer.base_layer)


def _export(model, hp: LoraArm, layers: dict, i: int, out_dir: Path, dp: DataParallel) -> int:
    """Save run i's adapter as `train_lora` saves its own: a fresh peft adapter (for `hp`) attached, run i's A and B
    copied into it, `save_adapter`; peft unloaded again. Returns the folder's size in bytes."""
    import torch
    from peft.tuners.lora import LoraLayer

    with torch.random.fork_rng(devices=[]):  # peft's throw-away initialisation draws from the CPU generator
        peft_model = attach_lora(model, hp)
    try:
        with torch.no_grad():
            for name, m in peft_model.get_base_model().named_modules():
                if isinstance(m, LoraLayer):
                    m.lora_A["default"].weight.copy_(layers[name].lora_A[i])
                    m.lora_B["default"].weight.copy_(layers[name].lora_B[i])
        peft_model.eval()
        return save_adapter(peft_model, out_dir, dp)
    finally:
        peft_model.unload()


@functools.cache
def _multi_lora_class():
    """The multi-adapter LoRA layer class (built on first use: torch is imported lazily)."""
    import torch
    import torch.nn.functional as F

    class MultiLoraLinear(torch.nn.Module):
        """A frozen layer (shared) plus one LoRA update per run, each row getting its own run's
        B_i(A_i(dropout_i(x_row))) * scaling, as peft's `lora.Linear` computes it for one adapter (input cast to the
        LoRA weights' dtype, the sum cast back to the base output's dtype).

        With rows of several runs, the runs' LoRAs act as ONE wide LoRA: A = [A_i; A_j; ...] (rank runs x r), every
        row's rank columns of other runs zeroed (`_Rows.off`), B = [B_i | B_j | ...] — so a row's update is exactly
        its own run's, the gradients of each run's A and B come from its own rows only, and the layer costs a
        constant number of kernels however many runs share the batch (the extra FLOPs: runs x r instead of r,
        small next to the base layer's). Dropout is drawn block by block, each run from its own stream."""

        def __init__(self, base_layer, rows: _Rows, streams: _Streams, inits: list[_LayerInit]) -> None:
            super().__init__()
            self.base_layer = base_layer
            self.lora_A = torch.nn.ParameterList([torch.nn.Parameter(init.a) for init in inits])
            self.lora_B = torch.nn.ParameterList([torch.nn.Parameter(init.b) for init in inits])
            self.scaling, self.dropout = inits[0].scaling, inits[0].dropout  # one hp: the same for every run
            assert all((init.scaling, init.dropout, init.a.shape[0]) == (self.scaling, self.dropout, rows.r)
                       for init in inits)
            self._rows, self._streams = rows, streams
            self._replay: dict[int, tuple[int, Any]] = {}  # run -> (forward id, generator state its draw began at)

        def forward(self, x, *args, **kwargs):
            result = self.base_layer(x, *args, **kwargs)
            rows = self._rows
            if not rows.blocks:
                return result
            drop = self.training and self.dropout > 0
            xs = x.to(self.lora_A[rows.runs[0]].dtype)
            if len(rows.runs) == 1:  # one run's rows (a run alone, a validation): peft's own computation
                i = rows.runs[0]
                delta = F.linear(F.linear(self._dropout(i, xs) if drop else xs, self.lora_A[i]), self.lora_B[i])
            else:
                if x.dim() != 3:
                    raise RuntimeError(f"the sweep's LoRA layers take [rows, positions, features], not {tuple(x.shape)}")
                if drop:  # each run's block from its own stream, over its own width (zeros past it)
                    dropped = torch.zeros_like(xs)
                    for i, lo, hi, w in rows.blocks:
                        dropped[lo:hi, :w] = self._dropout(i, xs[lo:hi, :w].contiguous())
                    xs = dropped
                a = torch.cat([self.lora_A[i] for i in rows.runs])  # [runs x r, in]
                b = torch.cat([self.lora_B[i] for i in rows.runs], dim=1)  # [out, runs x r]
                delta = F.linear(F.linear(xs, a).masked_fill(rows.off, 0.0), b)
            return (result + delta * self.scaling).to(result.dtype)

        def _dropout(self, i: int, x):
            """F.dropout of run i's block drawn from run i's own stream (its state swapped into the device's default
            generator, and the outer state put back); a second call within one forward (a recomputation under
            gradient checkpointing) replays the state the first began at."""
            dev, fid = x.device, self._rows.forward_id
            seen = self._replay.get(i)
            replay = seen is not None and seen[0] == fid
            start = seen[1] if replay else self._streams.states[i][_rng_key(dev)]
            outer = _get_rng(dev)
            _set_rng(dev, start)
            try:
                out = F.dropout(x, self.dropout, training=True)
                if not replay:
                    self._streams.states[i][_rng_key(dev)] = _get_rng(dev)
                    self._replay[i] = (fid, start)
            finally:
                _set_rng(dev, outer)
            return out

    return MultiLoraLinear


# --------------------------------------------------------------------------------------------------------------------
# Time


class _SharedClock:
    """Each run's train_seconds out of the sweep's shared time (see the module docstring): phases between the points
    where runs leave (device synchronised there), each phase's time shared by the non-pad tokens each run had in it;
    a validation's time (synchronised before and after) charged to its run alone."""

    def __init__(self, n: int, device: str) -> None:
        self.device, self.on_cuda = device, str(device).startswith("cuda")
        self.seconds = [0.0] * n
        self._tokens = [0] * n
        self._t = 0.0
        self._excluded = 0.0

    def _now(self) -> float:
        if self.on_cuda:
            import torch

            torch.cuda.synchronize(self.device)
        return time.perf_counter()

    def start(self) -> None:
        self._t = self._now()

    def count(self, i: int, tokens: int) -> None:
        self._tokens[i] += tokens

    def charge(self, i: int, fn: Callable[[], Any]) -> Any:
        t0 = self._now()
        try:
            return fn()
        finally:
            dt = self._now() - t0
            self.seconds[i] += dt
            self._excluded += dt

    def close_phase(self) -> None:
        now = self._now()
        dt, total = now - self._t - self._excluded, sum(self._tokens)
        for i, n in enumerate(self._tokens):
            self.seconds[i] += dt * n / total if total else 0.0
        self._tokens = [0] * len(self._tokens)
        self._t, self._excluded = now, 0.0
