"""LoRA fine-tuning (arm B): a lean, readable training loop on peft.

Why a loop and not `Trainer`: we need loss on answer tokens only over exactly the same token ids the scorer uses,
length-grouped batches, exact measurements (train seconds, tokens seen, peak memory) and nothing else; a loop
of ~60 lines says all of that plainly and has no hidden defaults.
"""

from __future__ import annotations

import math
import random
import resource
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from evaluator.config import LoraArm
from evaluator.faults import checkpoint

IGNORE = -100

# Attention + MLP projections: LoRA on all linear layers is the strong default (QLoRA, Dettmers et al. 2023).
DEFAULT_TARGETS = {
    "llama": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "mistral": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "qwen2": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "qwen3": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "gemma": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "gemma2": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "gemma3_text": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "phi3": ["qkv_proj", "o_proj", "gate_up_proj", "down_proj"],
    "gpt2": ["c_attn", "c_proj", "c_fc"],
}


@dataclass(frozen=True)
class Example:
    """One training sequence: context ids (no loss) followed by answer ids (loss)."""

    context_ids: list[int]
    answer_ids: list[int]


@dataclass
class TrainResult:
    adapter_dir: str
    train_seconds: float
    steps: int
    epochs: float
    tokens_seen: int
    answer_tokens_seen: int
    peak_mem_mb: float
    adapter_bytes: int
    final_loss: float
    loss_curve: list[float]

    def as_dict(self) -> dict:
        return asdict(self)


def target_modules_for(model, requested: list[str] | None) -> list[str] | None:
    if requested:
        return requested
    return DEFAULT_TARGETS.get(getattr(model.config, "model_type", ""))  # None → peft's own default mapping


def length_grouped_batches(examples: list[Example], batch_size: int, rng: random.Random) -> list[list[int]]:
    """Shuffle, then sort within mega-batches of 50 batches by length: little padding, still random order."""
    idx = list(range(len(examples)))
    rng.shuffle(idx)
    mega = batch_size * 50
    batches: list[list[int]] = []
    for start in range(0, len(idx), mega):
        chunk = sorted(idx[start : start + mega], key=lambda i: -len(examples[i].context_ids) - len(examples[i].answer_ids))
        batches += [chunk[j : j + batch_size] for j in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches


def collate(examples: list[Example], pad_id: int, device):
    import torch

    width = max(len(e.context_ids) + len(e.answer_ids) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for r, e in enumerate(examples):
        seq = e.context_ids + e.answer_ids
        ids[r, : len(seq)] = torch.tensor(seq)
        labels[r, len(e.context_ids) : len(seq)] = torch.tensor(e.answer_ids)
        mask[r, : len(seq)] = 1
    return ids.to(device), labels.to(device), mask.to(device)


def _peak_mem_mb(device: str) -> float:
    import torch

    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB → MiB (process peak RSS)


def train_lora(model, examples: list[Example], hp: LoraArm, out_dir: Path, *, seed: int, pad_id: int, device: str):
    """Wrap `model` with a fresh LoRA adapter, train it, save it (peft format) to out_dir. Returns (peft_model, result)."""
    import torch
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    rng = random.Random(seed)
    cfg = LoraConfig(
        r=hp.r,
        lora_alpha=hp.alpha,
        lora_dropout=hp.dropout,
        target_modules=target_modules_for(model, hp.target_modules),
        task_type="CAUSAL_LM",
    )
    peft_model = get_peft_model(model, cfg)
    peft_model.train()
    params = [p for p in peft_model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=hp.learning_rate, weight_decay=hp.weight_decay)

    steps_per_epoch = math.ceil(len(examples) / hp.batch_size)
    total = hp.max_steps or max(1, math.ceil(steps_per_epoch * hp.epochs))
    warmup = int(total * hp.warmup_ratio)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / max(1, warmup) if s < warmup else max(0.0, (total - s) / max(1, total - warmup))
    )
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    use_autocast = device.startswith("cuda") and next(model.parameters()).dtype == torch.float32

    t0 = time.perf_counter()
    step, tokens, answer_tokens, losses = 0, 0, 0, []
    with torch.enable_grad():
        while step < total:
            for batch in length_grouped_batches(examples, hp.batch_size, rng):
                if step >= total:
                    break
                ids, labels, mask = collate([examples[i] for i in batch], pad_id, device)
                with torch.autocast("cuda", dtype=torch.bfloat16, enabled=use_autocast):
                    loss = peft_model(input_ids=ids, attention_mask=mask, labels=labels).loss
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                opt.step()
                sched.step()
                opt.zero_grad(set_to_none=True)
                step += 1
                tokens += int(mask.sum())
                answer_tokens += int((labels != IGNORE).sum())
                losses.append(float(loss.detach()))
                checkpoint("train_step")
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    peft_model.eval()

    out_dir.mkdir(parents=True, exist_ok=True)
    peft_model.save_pretrained(out_dir, safe_serialization=True)
    size = sum(f.stat().st_size for f in out_dir.rglob("*") if f.is_file())
    result = TrainResult(
        adapter_dir=str(out_dir),
        train_seconds=seconds,
        steps=step,
        epochs=step / steps_per_epoch,
        tokens_seen=tokens,
        answer_tokens_seen=answer_tokens,
        peak_mem_mb=_peak_mem_mb(device),
        adapter_bytes=size,
        final_loss=sum(losses[-5:]) / max(1, len(losses[-5:])),
        loss_curve=losses[:: max(1, len(losses) // 50)],
    )
    return peft_model, result
