"""Training data: the `Example` (context ids, then answer ids), the seeded validation split, global batches (shuffled,
or length-grouped so little is padding), and the tensors a step feeds the loss — built on the host, answer positions
included, so that a step needs no host<->device synchronisation."""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from typing import Iterator

from evaluator.config.arms import LoraArm

IGNORE = -100


@dataclass(frozen=True)
class Example:
    """One training sequence: context ids (no loss) followed by answer ids (loss).

    `format_head` / `format_tail`: how many of the answer ids at its start (the target delimiter tokenised on its own)
    and end (an EOS) are format, not the answer itself. Training puts its loss on every answer id; the validation
    loss and accuracy read only the answer's own tokens, so tokens every item shares cannot make a chance-level
    adapter look good."""

    context_ids: list[int]
    answer_ids: list[int]
    format_head: int = 0
    format_tail: int = 0

    def __len__(self) -> int:
        return len(self.context_ids) + len(self.answer_ids)

    @property
    def n_targets(self) -> int:
        """Answer tokens that get a loss (the first token has no predecessor when the context is empty)."""
        return len(self.answer_ids) - (0 if self.context_ids else 1)

    def metric_span(self) -> range:
        """Indices into answer_ids the validation metrics read: the answer's own tokens (all answer ids when the
        format counts would leave none), without a first token that has no predecessor."""
        lo, hi = self.format_head, len(self.answer_ids) - self.format_tail
        if lo >= hi:
            lo, hi = 0, len(self.answer_ids)
        return range(max(lo, 0 if self.context_ids else 1), hi)


# --------------------------------------------------------------------------------------------------------------------
# Validation split


def split_validation(examples: list[Example], hp: LoraArm, seed: int) -> tuple[list[Example], list[Example]]:
    """Hold out a seeded slice for validation: val_fraction of n (at least 8) when n >= 40; none for small n."""
    n = len(examples)
    if hp.val_fraction <= 0 or n < 40:
        return list(examples), []
    n_val = max(8, round(n * hp.val_fraction))
    idx = list(range(n))
    random.Random(seed + 1).shuffle(idx)
    val = set(idx[:n_val])
    return [e for i, e in enumerate(examples) if i not in val], [e for i, e in enumerate(examples) if i in val]


def train_and_validation(
    examples: list[Example], val_examples: list[Example] | None, hp: LoraArm, seed: int
) -> tuple[list[Example], list[Example]]:
    """(training, validation) items: `val_examples` when the caller chose them, else the seeded split of `examples`.
    No training item is an error here rather than a division by zero later."""
    if val_examples is None:
        train_ex, val_ex = split_validation(examples, hp, seed)
    else:
        train_ex, val_ex = list(examples), list(val_examples)
    if not train_ex:
        raise ValueError("no training examples")
    return train_ex, val_ex


# --------------------------------------------------------------------------------------------------------------------
# Global batches (lists of indices into the examples)


def length_grouped_batches(examples: list[Example], batch_size: int, rng: random.Random) -> list[list[int]]:
    """Shuffle, then sort within mega-batches of 50 batches by length: little padding, still random order."""
    idx = list(range(len(examples)))
    rng.shuffle(idx)
    mega = batch_size * 50
    batches: list[list[int]] = []
    for start in range(0, len(idx), mega):
        chunk = sorted(idx[start : start + mega], key=lambda i: -len(examples[i]))
        batches += [chunk[j : j + batch_size] for j in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches


def random_batches(examples: list[Example], batch_size: int, rng: random.Random) -> list[list[int]]:
    """Plain shuffled batches (what a default DataLoader does)."""
    idx = list(range(len(examples)))
    rng.shuffle(idx)
    return [idx[j : j + batch_size] for j in range(0, len(idx), batch_size)]


def endless_batches(
    examples: list[Example], batch_size: int, rng: random.Random, group_by_length: bool
) -> Iterator[list[Example]]:
    """Global batches of examples, epoch after epoch: each epoch is shuffled afresh from `rng`, and only when the
    previous one is used up (so the rng is consumed exactly as an epoch loop would)."""
    make = length_grouped_batches if group_by_length else random_batches
    while True:
        for batch in make(examples, batch_size, rng):
            yield [examples[i] for i in batch]


def padded_tokens(examples: list[Example], batches: list[list[int]]) -> tuple[int, int]:
    """(non-pad tokens, tokens after right-padding each batch to its longest item)."""
    real = sum(len(examples[i]) for b in batches for i in b)
    padded = sum(len(b) * max(len(examples[i]) for i in b) for b in batches if b)
    return real, padded


# --------------------------------------------------------------------------------------------------------------------
# Tensors


def collate(examples: list[Example], pad_id: int, device=None):
    """Right-padded (input_ids, labels, attention_mask); labels are IGNORE except on answer tokens."""
    import torch

    width = max(len(e) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for r, e in enumerate(examples):
        seq = e.context_ids + e.answer_ids
        ids[r, : len(seq)] = torch.tensor(seq)
        labels[r, len(e.context_ids) : len(seq)] = torch.tensor(e.answer_ids)
        mask[r, : len(seq)] = 1
    if device is not None:
        ids, labels, mask = ids.to(device), labels.to(device), mask.to(device)
    return ids, labels, mask


@dataclass
class _Batch:
    ids: object  # [b, T] long, right-padded; packed: [1, prefix + S], every row's tokens after the prefix in a row
    pos: object  # [m] flat index of the hidden state (after the prefix) that predicts each answer token
    tgt: object  # [m] the answer token predicted there
    tokens: int  # non-pad tokens
    targets: int  # m
    prefix: int = 0  # leading ids every row shares, run once for the batch (`shared_prefix_len`); 0: none
    seg: object = None  # packed: [S] the row each packed token belongs to (None: padded rows)
    q_pos: object = None  # packed: [S] each packed token's position in its own row

    def to(self, device, non_blocking: bool) -> "_Batch":
        mv = lambda t: None if t is None else t.to(device, non_blocking=non_blocking)  # noqa: E731
        return _Batch(mv(self.ids), mv(self.pos), mv(self.tgt), self.tokens, self.targets, self.prefix,
                      mv(self.seg), mv(self.q_pos))


MIN_SHARED_PREFIX = 8  # a shorter common prefix saves little and still costs a second forward


def shared_prefix_len(examples: list[Example]) -> int:
    """How many leading ids every example shares and no loss reads (the instruction, a fixed demonstration block):
    the training forward runs them once for the batch instead of once per row. At most the shortest context minus
    one, so every predicting position lies after it; 0 for one row or a prefix under `MIN_SHARED_PREFIX` ids."""
    if len(examples) < 2:
        return 0
    limit = min(len(e.context_ids) for e in examples) - 1
    n = min(len(os.path.commonprefix([e.context_ids for e in examples])), limit)  # of the lexicographic min and max
    return n if n >= MIN_SHARED_PREFIX else 0


def shares_prefix(hp: LoraArm) -> bool:
    """Whether training runs each micro-batch's shared prefix once (`lora.shared_prefix`): not under gradient
    checkpointing, whose recomputed forward keeps no cache."""
    return hp.shared_prefix and not hp.gradient_checkpointing


def _make_batch(examples: list[Example], pad_id: int, pin: bool, share_prefix: bool = False,
                pack: bool = False) -> _Batch:
    """Everything the loss needs, built on the host (answer positions included) so the step needs no host sync.
    `share_prefix`: find the ids every row shares (`shared_prefix_len`); positions then index the hidden states
    after them. `pack`: no padding — the rows' tokens after the prefix side by side in one row, with each token's row
    (`seg`) and position in it (`q_pos`) for the block-diagonal mask (`loss._packed_mask`)."""
    import torch

    width = max(len(e) for e in examples)
    prefix = shared_prefix_len(examples) if share_prefix else 0
    rows, pos, tgt, seg, q_pos, tokens, offset = [], [], [], [], [], 0, 0
    for r, e in enumerate(examples):
        seq = e.context_ids + e.answer_ids
        tokens += len(seq)
        start = offset if pack else r * (width - prefix)  # where this row's hidden states (after the prefix) begin
        if pack:
            rows += seq[prefix:]
            seg += [r] * (len(seq) - prefix)
            q_pos += range(prefix, len(seq))
            offset += len(seq) - prefix
        else:
            rows.append(seq + [pad_id] * (width - len(seq)))
        c = len(e.context_ids)
        for j, a in enumerate(e.answer_ids):
            if c + j >= 1:
                pos.append(start + c + j - 1 - prefix)
                tgt.append(a)
    if pack:
        rows = [examples[0].context_ids[:prefix] + rows]
    ids = torch.tensor(rows, dtype=torch.long)
    extra = [torch.tensor(x, dtype=torch.long) for x in (pos, tgt)] + (
        [torch.tensor(seg, dtype=torch.long), torch.tensor(q_pos, dtype=torch.long)] if pack else [])
    if pin:
        ids, extra = ids.pin_memory(), [t.pin_memory() for t in extra]
    pos_t, tgt_t, *packed = extra
    return _Batch(ids, pos_t, tgt_t, tokens, len(pos), prefix, *(packed or [None, None]))


def _make_metric_batch(examples: list[Example], pad_id: int, pin: bool):
    """A validation batch: positions of the answers' own tokens only (`Example.metric_span`), and for each the row
    (example) it belongs to, for the per-example accuracy. Returns (_Batch, rows tensor, examples with a target)."""
    import torch

    width = max(len(e) for e in examples)
    rows, pos, tgt, owner, tokens, scored = [], [], [], [], 0, 0
    for r, e in enumerate(examples):
        seq = e.context_ids + e.answer_ids
        rows.append(seq + [pad_id] * (width - len(seq)))
        tokens += len(seq)
        c = len(e.context_ids)
        span = e.metric_span()
        scored += bool(len(span))
        for j in span:
            pos.append(r * width + c + j - 1)
            tgt.append(e.answer_ids[j])
            owner.append(r)
    ids = torch.tensor(rows, dtype=torch.long)
    pos_t, tgt_t, own_t = (torch.tensor(x, dtype=torch.long) for x in (pos, tgt, owner))
    if pin:
        ids, pos_t, tgt_t, own_t = ids.pin_memory(), pos_t.pin_memory(), tgt_t.pin_memory(), own_t.pin_memory()
    return _Batch(ids, pos_t, tgt_t, tokens, len(pos)), own_t, scored
