"""The LoRA training loop (arm B), `train_lora`, told top to bottom: set up (processes, data, a fresh adapter, the
optimiser), then for each global batch forward/backward on this process's share (halving the micro-batch after an
out-of-memory error), an optimiser step, validation with early stopping when due, and the measurements — then the
best adapter saved and a `TrainResult`. The parts it calls live beside it: `data`, `loss`, `adapter`, `precision`,
`optim`, `distributed`, `backoff`, `early_stop`, `measure` (the package docstring says why a loop of our own)."""

from __future__ import annotations

import logging
import math
import random
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from evaluator.config.arms import LoraArm
from evaluator.errors import UserError
from evaluator.faults import checkpoint
from evaluator.training.adapter import attach_lora, lora_target_problem, save_adapter, set_checkpointing
from evaluator.training.backoff import OomBackoff
from evaluator.training.data import Example, _make_batch, endless_batches, shares_prefix, train_and_validation
from evaluator.training.distributed import DataParallel
from evaluator.training.early_stop import EarlyStopping
from evaluator.training.loss import _answer_loss_module, loss_and_accuracy, metric_sums, uses_answer_logits
from evaluator.training.measure import Meter, StepInfo, TrainResult
from evaluator.training.optim import Optimiser
from evaluator.training.precision import loss_scaler, mixed_precision_for, precision_record, tf32, weights_dtype

if TYPE_CHECKING:
    import torch


def train_lora(
    model,
    examples: list[Example],
    hp: LoraArm,
    out_dir: Path,
    *,
    seed: int,
    pad_id: int,
    device: str,
    val_examples: list[Example] | None = None,
    on_step: Callable[[StepInfo], bool | None] | None = None,
    log: Callable[[str], None] | None = None,
) -> tuple[Any, TrainResult]:
    """Wrap `model` with a fresh LoRA adapter, train it, save it (peft format) to out_dir. Returns (peft_model, result).

    `examples` are split into train/validation per `hp` unless `val_examples` is given. `on_step(StepInfo)`
    is called after every optimizer step (progress, benchmarks); returning True ends training there (it must decide
    the same in every process). Under `accelerate launch` every process calls this with the same arguments; the
    model is moved to the process's device. Out-of-memory retries are reported through `log` (default: the
    `tunecheck` logger).
    """
    import torch

    # Set up: the targets checked, the processes joined, the data split, a fresh adapter, the optimiser.
    why = lora_target_problem(model, hp.target_modules)  # one line, not peft's error, if the modules do not exist
    if why:
        raise UserError(why)
    mp = mixed_precision_for(device, weights_dtype(model))
    dp = DataParallel(mp, cpu=str(device) == "cpu")
    device = dp.place(model, device)
    train_ex, val_ex = train_and_validation(examples, val_examples, hp, seed)
    torch.manual_seed(seed)  # the adapter's initial weights and its dropout
    rng = random.Random(seed)  # the batch order
    peft_model = attach_lora(model, hp)
    scaler = loss_scaler(model, peft_model, device)  # float16 weights only
    if hp.gradient_checkpointing:
        set_checkpointing(peft_model.get_base_model(), True)
    peft_model.train()
    fast = uses_answer_logits(peft_model)
    plan = _packing_plan(peft_model, hp, log)
    module = dp.prepare(_answer_loss_module(peft_model, fast, plan))  # DDP under a distributed launch; bf16 autocast
    steps_per_epoch = math.ceil(len(train_ex) / hp.batch_size)
    total = hp.max_steps or max(1, math.ceil(steps_per_epoch * hp.epochs))
    optimiser = Optimiser(peft_model, hp, total, device, scaler, backward=dp.backward)
    early = EarlyStopping(len(val_ex), every=hp.eval_every or steps_per_epoch, total_steps=total, patience=hp.patience)
    meter = Meter(device)
    backoff = OomBackoff(hp.batch_size, dp, gradient_checkpointing=hp.gradient_checkpointing,
                         zero_grad=optimiser.zero_grad, reset_peak=meter.reset_peak, log=log)
    forward_backward = partial(_forward_backward, module, optimiser, meter, pad_id, device, shares_prefix(hp),
                               plan is not None)  # (shard, weight, norm, micro)
    val_shard = dp.share(val_ex)
    validate = partial(_validate, dp, module, peft_model, val_shard, pad_id, device)  # (micro)
    batches = endless_batches(train_ex, hp.batch_size, rng, hp.group_by_length)

    # Train: one global batch per step, until the last step, an early stop or on_step's halt.
    meter.start()
    step = 0
    with torch.enable_grad(), tf32(str(device).startswith("cuda")):
        while step < total:
            group = next(batches)
            targets = sum(e.n_targets for e in group)  # of the whole global batch: the loss's normaliser
            meter.count(group, targets, packed=plan is not None)
            shard, weight = dp.shard(group)
            if targets:
                norm = targets / dp.world
                loss = backoff.run(lambda micro: forward_backward(shard, weight, norm, micro), len(shard), step)
                optimiser.step()
                meter.loss(loss)
            optimiser.next_step()
            step += 1
            checkpoint("train_step")
            halted = on_step is not None and bool(on_step(StepInfo(step, total, meter.tokens, meter.elapsed(),
                                                                   meter.last_loss)))
            if early.due(step):
                v_loss, v_acc = backoff.run(validate, len(val_shard), step)
                if early.update(step, v_loss, v_acc, peft_model):
                    break
            if halted:
                break
    meter.stop()

    # Finish: the best validated weights back, the adapter saved, the record.
    early.restore_best(peft_model, step)
    if hp.gradient_checkpointing:
        set_checkpointing(peft_model.get_base_model(), False)
    peft_model.eval()
    measured = meter.record(dp)
    size = save_adapter(peft_model, out_dir, dp)
    dp.free_memory()
    result = TrainResult(
        adapter_dir=str(out_dir), adapter_bytes=size, steps=step, epochs=step / steps_per_epoch,
        n_train=len(train_ex), n_val=len(val_ex), train_items=len(train_ex), val_items=len(val_ex), world_size=dp.world,
        loss_path="answer-logits" if fast else "full-logits",
        **measured, **early.record(), **precision_record(mp, scaler), **backoff.record(),
    )
    return peft_model, result


def _packing_plan(peft_model, hp: LoraArm, log: Callable[[str], None] | None):
    """How packed batches are masked on this model (`engine.masks.packed_support`) when `hp.packing` asks for them;
    None: padded rows (not asked, or the architecture / attention kernel takes no custom mask: said through `log`)."""
    if not hp.packing:
        return None
    from evaluator.engine.masks import packed_support

    plan, why = packed_support(peft_model)
    if plan is None:
        (log or logging.getLogger("tunecheck").warning)(f"packing off, padded batches instead: {why}")
    return plan


def _forward_backward(module, optimiser: Optimiser, meter: Meter, pad_id: int, device: str, share: bool, pack: bool,
                      shard: list[Example], weight: float, norm: float, micro: int) -> torch.Tensor:
    """Accumulate the gradient of this process's share of a global batch, `micro` items per forward; returns its loss
    (a device scalar). `norm`: the global batch's answer tokens / processes, so DDP's average is the global mean.
    `share`: each micro-batch's common leading ids run once (`data.shared_prefix_len`); `pack`: its rows packed
    into one, without padding."""
    on_cuda = str(device).startswith("cuda")
    loss, shared = 0.0, 0
    for s in range(0, len(shard), micro):
        chunk = shard[s : s + micro]
        b = _make_batch(chunk, pad_id, pin=on_cuda, share_prefix=share, pack=pack).to(device, non_blocking=on_cuda)
        part = module(b.ids, b.pos, b.tgt, norm, b.prefix, b.seg, b.q_pos) * weight
        optimiser.backward(part)  # DDP's gradient all-reduce runs in this backward
        loss = loss + part.detach()
        shared += (len(chunk) - 1) * b.prefix  # prefix ids not run again after the first row
    meter.shared_prefix(shared)  # counted once the whole step succeeded (an out-of-memory retry runs it again)
    return loss


def _validate(
    dp: DataParallel, module, peft_model, shard: list[Example], pad_id: int, device: str, micro: int
) -> tuple[float, float]:
    """(loss, accuracy) on the held-out items, on the answers' own tokens only (format tokens excluded), summed over
    processes so that every process takes the same early-stopping decision."""
    import torch

    peft_model.eval()
    with torch.no_grad(), dp.autocast():
        sums = metric_sums(dp.unwrap(module), shard, pad_id, device, micro, pin=str(device).startswith("cuda"))
    peft_model.train()
    return loss_and_accuracy(dp.sum(sums))
