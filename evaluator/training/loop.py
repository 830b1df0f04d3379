"""LoRA fine-tuning (arm B): a lean, readable training loop on peft + accelerate.

Why a loop of our own and not `transformers.Trainer`: arm B needs exactly this and nothing else —
* loss on answer tokens only, over exactly the token ids the scorer uses, and logits computed ONLY at those
  positions (a default Trainer computes, up-casts to fp32 and back-propagates [tokens x vocab] logits for every
  token; on Qwen2.5-0.5B the 152k-row head is ~28% of the weights and the largest activation of the step);
* length-grouped batches (a default Trainer pads random batches to their longest item);
* no host<->device synchronisation per step (a default Trainer checks the loss for NaN/inf, copies batches with
  blocking copies and counts label tokens on the host every step; each stalls the GPU queue): batches are copied
  from pinned memory without blocking, losses stay on the device until an evaluation point;
* bf16 autocast on GPUs that support it, fused AdamW on CUDA, TF32 matmuls; float16 weights (GPUs without bf16)
  train with loss scaling (torch.amp.GradScaler: unscale before clipping, skip overflowed steps);
* exact measurements (train seconds, non-pad tokens, peak memory, adapter size) and a validation slice with early
  stopping that restores the best adapter weights.
`benchmarks/lora_throughput.py` measures the difference against a plain default `Trainer` on the same model and data.

The same code runs in one process and under `accelerate launch` (DDP): every process builds the same length-grouped
global batches (same seed) and takes its share `batch[rank::world]`; the loss is normalised by the answer-token count
of the whole global batch, so DDP's gradient average equals the single-process gradient. Validation losses and
metrics are reduced over processes (all take the same early-stopping decisions); only the main process saves.
`hp.batch_size` is the global batch size.

Out of GPU memory (one process): the step is taken again with half as many items per forward (gradient accumulation
over micro-batches; same global batch, same normalisation, so the same gradient up to float rounding and, with
dropout 0, the same adapter — on a GPU up to TF32/bf16 rounding, which Adam's normalised steps amplify in weights
whose gradients are near zero), down to one item per forward. Under a distributed launch the processes cannot retry
in step, so there it is an error with the fix.
"""

from __future__ import annotations

import contextlib
import math
import random
import resource
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from evaluator.config.arms import LoraArm
from evaluator.errors import UserError
from evaluator.faults import checkpoint

IGNORE = -100
# peft (0.21) calls a transformers API deprecated in 5.x on every get_peft_model / from_pretrained: not ours to fix.
warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.* is deprecated", category=FutureWarning)
# float16 training: a step the gradient scaler skips (overflow) is followed by the schedule's step by design.
warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step\\(\\)` before `optimizer.step\\(\\)`")

# Attention + MLP projections: LoRA on all linear layers is the strong default (QLoRA, Dettmers et al. 2023).
_ALL_LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
DEFAULT_TARGETS = {
    "llama": _ALL_LINEAR,
    "mistral": _ALL_LINEAR,
    "qwen2": _ALL_LINEAR,
    "qwen3": _ALL_LINEAR,
    "gemma": _ALL_LINEAR,
    "gemma2": _ALL_LINEAR,
    "gemma3_text": _ALL_LINEAR,
    "smollm3": _ALL_LINEAR,
    "olmo": _ALL_LINEAR,
    "olmo2": _ALL_LINEAR,
    "phi3": ["qkv_proj", "o_proj", "gate_up_proj", "down_proj"],
    "gpt2": ["c_attn", "c_proj", "c_fc"],
}

# Architectures whose causal-LM head is exactly `lm_head(decoder(x))` (plus Gemma-2/3's final logit soft-capping,
# applied below): for these the loss computes logits only at answer positions. Others (e.g. Granite's logit scaling,
# Cohere's logit_scale) take the full forward; the loss is the same either way (tests/test_training.py checks it).
ANSWER_LOGITS_TYPES = frozenset(
    {"llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3_text", "smollm3", "olmo", "olmo2", "phi3"}
)


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


@dataclass
class TrainResult:
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
    micro_batch_size: int = 0  # at most this many items per forward (per process); < batch_size after OOM retries
    oom_retries: int = 0  # steps (or validations) taken again with a halved micro-batch after running out of memory

    def as_dict(self) -> dict:
        return asdict(self)


def target_modules_for(model, requested: list[str] | None) -> list[str] | None:
    if requested:
        return requested
    return DEFAULT_TARGETS.get(getattr(model.config, "model_type", ""))  # None → peft's own default mapping


def _lora_adaptable(module) -> bool:
    """Module types peft's LoRA can wrap (Linear, Embedding, Conv*, GPT-2's Conv1D, MultiheadAttention)."""
    import torch

    if hasattr(module, "base_layer"):  # already a peft LoRA layer
        return True
    kinds = (torch.nn.Linear, torch.nn.Embedding, torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d, torch.nn.MultiheadAttention)
    return isinstance(module, kinds) or type(module).__name__ == "Conv1D"


def lora_target_problem(model, requested: list[str] | None) -> str | None:
    """Why LoRA cannot target `requested` (None: the architecture's default) on `model`, or None if it can.

    Matching is peft's: a target name matches a module whose full name equals it or ends with '.' + it. Every name
    the user asked for must match a module LoRA can adapt (a typo would otherwise silently change the adapter, or
    fail in peft after other arms ran); of a default set at least one must (peft's own rule)."""
    import torch

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    model_type = getattr(getattr(base, "config", None), "model_type", "") or "?"
    named = [(n, m) for n, m in base.named_modules() if n and "lora_" not in n and not n.endswith(".base_layer")]
    linear: list[str] = []
    for n, m in sorted(named, key=lambda t: isinstance(t[1], torch.nn.Embedding)):  # linear layers first
        leaf = n.rsplit(".", 1)[-1]
        if _lora_adaptable(m) and not leaf.isdigit() and leaf not in linear:
            linear.append(leaf)
    shown = ", ".join(linear[:10]) + (f" (and {len(linear) - 10} more)" if len(linear) > 10 else "")
    where = f"model {model_type} ({type(base).__name__})"
    fix = f"set arms.lora.target_modules (tunecheck train: --target-modules) to some of the layers LoRA can adapt in it: {shown or 'none found'}"
    targets = target_modules_for(base, requested)
    if targets is None:
        try:
            from peft.utils import constants as peft_constants

            peft_defaults = peft_constants.TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING
        except (ImportError, AttributeError):  # pragma: no cover - another peft layout
            peft_defaults = {}
        targets = peft_defaults.get(model_type)
        if not targets:
            return f"there are no default LoRA target modules for {where} — {fix}"
        requested = None
    targets = [targets] if isinstance(targets, str) else list(targets)

    def matches(key: str):
        return [m for n, m in named if n == key or n.endswith("." + key)]

    missing = [t for t in targets if not matches(t)]
    unsupported = [t for t in targets if matches(t) and not any(_lora_adaptable(m) for m in matches(t))]
    if requested:  # the user's own list: every name must hit something LoRA can adapt
        if missing:
            names = ", ".join(repr(t) for t in missing)
            return f"LoRA target module(s) {names} not found in {where} — {fix}"
        if unsupported:
            t = unsupported[0]
            kind = type(matches(t)[0]).__name__
            return f"LoRA target module {t!r} of {where} is a {kind}, which LoRA cannot adapt — {fix}"
        return None
    if len(missing) + len(unsupported) == len(targets):
        names = ", ".join(repr(t) for t in targets)
        return f"none of the default LoRA target modules ({names}) exist in {where} — {fix}"
    return None


# --------------------------------------------------------------------------------------------------------------------
# Data: validation split, batches, collation
# --------------------------------------------------------------------------------------------------------------------


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


def padded_tokens(examples: list[Example], batches: list[list[int]]) -> tuple[int, int]:
    """(non-pad tokens, tokens after right-padding each batch to its longest item)."""
    real = sum(len(examples[i]) for b in batches for i in b)
    padded = sum(len(b) * max(len(examples[i]) for i in b) for b in batches if b)
    return real, padded


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
    ids: object  # [b, T] long, right-padded
    pos: object  # [m] flat index (row * T + t) of the hidden state that predicts each answer token
    tgt: object  # [m] the answer token predicted there
    tokens: int  # non-pad tokens
    targets: int  # m

    def to(self, device, non_blocking: bool) -> "_Batch":
        mv = lambda t: None if t is None else t.to(device, non_blocking=non_blocking)  # noqa: E731
        return _Batch(mv(self.ids), mv(self.pos), mv(self.tgt), self.tokens, self.targets)


def _make_batch(examples: list[Example], pad_id: int, pin: bool) -> _Batch:
    """Everything the loss needs, built on the host (answer positions included) so the step needs no host sync."""
    import torch

    width = max(len(e) for e in examples)
    rows, pos, tgt, tokens = [], [], [], 0
    for r, e in enumerate(examples):
        seq = e.context_ids + e.answer_ids
        rows.append(seq + [pad_id] * (width - len(seq)))
        tokens += len(seq)
        c = len(e.context_ids)
        for j, a in enumerate(e.answer_ids):
            if c + j >= 1:
                pos.append(r * width + c + j - 1)
                tgt.append(a)
    ids = torch.tensor(rows, dtype=torch.long)
    pos_t, tgt_t = torch.tensor(pos, dtype=torch.long), torch.tensor(tgt, dtype=torch.long)
    if pin:
        ids, pos_t, tgt_t = ids.pin_memory(), pos_t.pin_memory(), tgt_t.pin_memory()
    return _Batch(ids, pos_t, tgt_t, tokens, len(pos))


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


# --------------------------------------------------------------------------------------------------------------------
# Loss
# --------------------------------------------------------------------------------------------------------------------


def _answer_loss_module(peft_model, fast: bool):
    import torch
    import torch.nn.functional as F

    class AnswerLoss(torch.nn.Module):
        """Sum of answer-token cross-entropies / norm; a Module so DDP can wrap it (its forward runs the reducer).

        No attention mask: rows are RIGHT-padded and attention is causal, so a real token only ever attends to
        earlier real tokens of its own row and pad tokens cannot change any position the loss reads. Exact, and it
        lets SDPA take its mask-free causal (flash) kernel; with a padding mask transformers builds a 4D mask and
        checks it on the host (a device sync) every step.
        """

        def __init__(self) -> None:
            super().__init__()
            self.peft_model = peft_model

        def forward(self, ids, pos, tgt, norm: float):
            return F.cross_entropy(self.answer_logits(ids, pos).float(), tgt, reduction="sum") / norm

        def answer_logits(self, ids, pos):
            """Logits at the flat positions `pos` (row * T + t) only."""
            if fast:
                base = self.peft_model.get_base_model()
                h = base.get_decoder()(input_ids=ids, attention_mask=None, use_cache=False).last_hidden_state
                h = h.reshape(-1, h.shape[-1]).index_select(0, pos)
                logits = base.get_output_embeddings()(h)
                cap = getattr(base.config, "final_logit_softcapping", None)
                if cap:
                    logits = torch.tanh(logits / cap) * cap
            else:
                logits = self.peft_model(input_ids=ids, attention_mask=None, use_cache=False).logits
                logits = logits.reshape(-1, logits.shape[-1]).index_select(0, pos)
            return logits

    return AnswerLoss()


def uses_answer_logits(model) -> bool:
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return getattr(base.config, "model_type", "") in ANSWER_LOGITS_TYPES and base.get_output_embeddings() is not None


def _metric_sums(module, examples: list[Example], pad_id: int, device, pin: bool):
    """[loss sum, answer tokens, examples all argmax-correct, examples scored] over `examples` (float64 tensor on
    `device`), on the answers' own tokens only (see `Example.metric_span`)."""
    import torch
    import torch.nn.functional as F

    sums = torch.zeros(4, dtype=torch.float64, device=device)
    if not examples:
        return sums
    b, owner, scored = _make_metric_batch(examples, pad_id, pin)
    if not b.targets:
        return sums
    b = b.to(device, non_blocking=pin)
    owner = owner.to(device, non_blocking=pin)
    logits = module.answer_logits(b.ids, b.pos).float()
    sums[0] += F.cross_entropy(logits, b.tgt, reduction="sum").double()
    sums[1] += b.targets
    wrong = torch.zeros(len(examples), device=logits.device).index_add_(0, owner, (logits.argmax(-1) != b.tgt).float())
    has = torch.zeros(len(examples), device=logits.device).index_add_(0, owner, torch.ones_like(wrong[owner]))
    sums[2] += ((wrong == 0) & (has > 0)).sum().double()
    sums[3] += scored
    return sums


def answer_metrics(model, examples: list[Example], pad_id: int, device, batch_size: int = 16) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) of `model` (a PeftModel) on examples, on the answers' own tokens only —
    what validation measures. Accuracy: the share of examples whose answer tokens are all the argmax prediction."""
    import torch

    module = _answer_loss_module(model, uses_answer_logits(model))
    sums = torch.zeros(4, dtype=torch.float64, device=device)
    with torch.no_grad():
        for s in range(0, len(examples), batch_size):
            sums += _metric_sums(module, examples[s : s + batch_size], pad_id, device, pin=False)
    return float(sums[0] / sums[1].clamp(min=1)), float(sums[2] / sums[3].clamp(min=1))


def answer_loss(model, examples: list[Example], pad_id: int, device, batch_size: int = 16) -> float:
    """Mean cross-entropy of `model` (a PeftModel) on the answers' own tokens of examples — the validation loss."""
    return answer_metrics(model, examples, pad_id, device, batch_size)[0]


# --------------------------------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------------------------------


def _peak_mem_mb(device: str) -> float:
    import torch

    if str(device).startswith("cuda"):
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB → MiB (process peak RSS)


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


def _checkpointing(model, on: bool) -> None:
    """Activation (gradient) checkpointing on/off: transformers >= 5.2x names it activation_checkpointing_*."""
    if on:
        if hasattr(model, "activation_checkpointing_enable"):
            model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    else:
        (getattr(model, "activation_checkpointing_disable", None) or model.gradient_checkpointing_disable)()


@contextlib.contextmanager
def _tf32():
    import torch

    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


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
    on_step: Callable[[int, int], bool | None] | None = None,
    log: Callable[[str], None] | None = None,
):
    """Wrap `model` with a fresh LoRA adapter, train it, save it (peft format) to out_dir. Returns (peft_model, result).

    `examples` are split into train/validation per `hp` unless `val_examples` is given. `on_step(step, tokens_seen)`
    is called after every optimizer step (progress, benchmarks); returning True ends training there (it must decide
    the same in every process). Under `accelerate launch` every process calls this with the same arguments; the
    model is moved to the process's device. Out-of-memory retries are reported through `log` (default: the
    `tunecheck` logger).
    """
    import logging

    import torch
    from peft import LoraConfig, get_peft_model

    from evaluator.engine.memory import free_memory, is_out_of_memory

    why = lora_target_problem(model, hp.target_modules)  # one line, not peft's error, if the modules do not exist
    if why:
        raise UserError(why)
    mp = mixed_precision_for(device, weights_dtype(model))
    acc = make_accelerator(mp, cpu=str(device) == "cpu")
    world, rank = acc.num_processes, acc.process_index
    if world > 1:
        device = str(acc.device)
        model.to(device)
    on_cuda = str(device).startswith("cuda")

    if val_examples is None:
        train_ex, val_ex = split_validation(examples, hp, seed)
    else:
        train_ex, val_ex = list(examples), list(val_examples)
    if not train_ex:
        raise ValueError("no training examples")

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
    scaler = None
    if needs_grad_scaler(model):
        scaler = make_grad_scaler(device)
        for p in peft_model.parameters():  # the scaler unscales float32 gradients only (peft keeps LoRA in fp32)
            if p.requires_grad and p.dtype == torch.float16:
                p.data = p.data.float()
    if hp.gradient_checkpointing:
        _checkpointing(peft_model.get_base_model(), True)
    peft_model.train()
    fast = uses_answer_logits(peft_model)
    module = acc.prepare(_answer_loss_module(peft_model, fast))  # DDP under a distributed launch; autocast for bf16
    params = [p for p in peft_model.parameters() if p.requires_grad]
    fused = True if (on_cuda or str(device).startswith("cpu")) else None  # one kernel for all LoRA tensors
    opt = torch.optim.AdamW(params, lr=hp.learning_rate, weight_decay=hp.weight_decay, fused=fused)

    steps_per_epoch = math.ceil(len(train_ex) / hp.batch_size)
    total = hp.max_steps or max(1, math.ceil(steps_per_epoch * hp.epochs))
    warmup = int(total * hp.warmup_ratio)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / max(1, warmup) if s < warmup else max(0.0, (total - s) / max(1, total - warmup))
    )
    eval_every = hp.eval_every or steps_per_epoch
    make_batches = length_grouped_batches if hp.group_by_length else random_batches
    micro = hp.batch_size  # items per forward in this process; halved after running out of GPU memory
    oom_retries = 0

    def forward_backward(shard: list[Example], weight: float, norm: float):
        """Accumulate the gradient of this process's share of a global batch, `micro` items per forward; its loss."""
        loss = 0.0
        for s in range(0, len(shard), micro):
            b = _make_batch(shard[s : s + micro], pad_id, pin=on_cuda).to(device, non_blocking=on_cuda)
            part = module(b.ids, b.pos, b.tgt, norm) * weight
            if scaler is not None:
                scaler.scale(part).backward()  # DDP's gradient all-reduce runs in this backward as well
            else:
                acc.backward(part)
            loss = loss + part.detach()
        return loss

    def retry_on_oom(fn: Callable[[], object], n_items: int):
        """fn(); after an out-of-memory error, again with half as many items per forward (down to one)."""
        nonlocal micro, oom_retries
        while True:
            try:
                return fn()
            except RuntimeError as exc:  # torch.cuda.OutOfMemoryError is a RuntimeError
                if not is_out_of_memory(exc):
                    raise
                if world > 1:
                    raise UserError(
                        f"LoRA training ran out of GPU memory in process {rank} of {world} ({min(micro, n_items)} "
                        "items per forward) — processes cannot retry in step: set lora.gradient_checkpointing: true or "
                        "a smaller lora.batch_size, or train in one process (it halves the micro-batch by itself)"
                    ) from None
            opt.zero_grad(set_to_none=True)  # the micro-batches that did run left partial gradients
            free_memory()
            if on_cuda:
                torch.cuda.reset_peak_memory_stats(device)
            micro = min(micro, n_items) // 2
            if micro < 1:
                raise UserError(
                    "LoRA training ran out of GPU memory even with one item per forward — "
                    + ("set lora.gradient_checkpointing: true, " if not hp.gradient_checkpointing else "")
                    + "use shorter prompts, a smaller dtype (e.g. dtype: bfloat16) or a GPU with more memory"
                )
            oom_retries += 1
            (log or logging.getLogger("tunecheck").warning)(
                f"LoRA training ran out of GPU memory at step {step + 1}: retrying with {micro} items per forward "
                f"(gradient accumulation keeps the global batch of {hp.batch_size})"
            )

    def validate() -> tuple[float, float]:
        """(loss, accuracy) on the held-out items, on the answers' own tokens only (format tokens excluded)."""
        where = acc.device if world > 1 else device
        sums = torch.zeros(4, dtype=torch.float64, device=where)
        inner = acc.unwrap_model(module)
        peft_model.eval()
        with torch.no_grad(), acc.autocast():
            shard = val_ex[rank::world]
            for s in range(0, len(shard), micro):
                sums += _metric_sums(inner, shard[s : s + micro], pad_id, where, pin=on_cuda)
        peft_model.train()
        sums = acc.reduce(sums, "sum") if world > 1 else sums
        return float(sums[0] / sums[1].clamp(min=1)), float(sums[2] / sums[3].clamp(min=1))

    if on_cuda:
        torch.cuda.reset_peak_memory_stats(device)
    step, tokens, answer_tokens, real, padded = 0, 0, 0, 0, 0
    step_losses: list = []  # device scalars: no sync per step
    val_curve: list[list[float]] = []
    val_acc_curve: list[list[float]] = []
    best, best_step, best_state, bad_evals, stopped, halted = math.inf, None, None, 0, False, False
    best_acc = None
    t0 = time.perf_counter()
    with torch.enable_grad(), (_tf32() if on_cuda else contextlib.nullcontext()):
        while step < total and not (stopped or halted):
            for batch in make_batches(train_ex, hp.batch_size, rng):
                if step >= total or stopped or halted:
                    break
                group = [train_ex[i] for i in batch]
                global_targets = sum(e.n_targets for e in group)
                width = max(len(e) for e in group)
                real += sum(len(e) for e in group)
                padded += len(group) * width
                shard = group[rank::world]
                weight = 1.0
                if not shard:  # fewer items than processes: join the gradient all-reduce with a zero-weight item
                    shard, weight = group[:1], 0.0
                if global_targets:
                    norm = global_targets / world
                    loss = retry_on_oom(lambda: forward_backward(shard, weight, norm), len(shard))
                    if scaler is not None:
                        scaler.unscale_(opt)  # clip the true gradients
                    torch.nn.utils.clip_grad_norm_(params, 1.0)
                    if scaler is not None:
                        scaler.step(opt)  # skipped when a gradient overflowed; the scale is then lowered
                        scaler.update()
                    else:
                        opt.step()
                    step_losses.append(loss)
                sched.step()
                opt.zero_grad(set_to_none=True)
                step += 1
                tokens += sum(len(e) for e in group)
                answer_tokens += global_targets
                checkpoint("train_step")
                if on_step is not None and on_step(step, tokens):
                    halted = True
                if val_ex and (step % eval_every == 0 or step == total):
                    v, v_acc = retry_on_oom(validate, len(val_ex[rank::world]))
                    val_curve.append([step, v])
                    val_acc_curve.append([step, v_acc])
                    if v < best - 1e-6:
                        best, best_step, bad_evals, best_acc = v, step, 0, v_acc
                        best_state = {n: p.detach().clone() for n, p in peft_model.named_parameters() if p.requires_grad}
                    else:
                        bad_evals += 1
                        if bad_evals >= hp.patience:
                            stopped = step < total
                            break
    if on_cuda:
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - t0
    if best_state is not None and best_step != step:  # restore the best validated adapter weights
        with torch.no_grad():
            for n, p in peft_model.named_parameters():
                if n in best_state:
                    p.copy_(best_state[n])
    if hp.gradient_checkpointing:
        _checkpointing(peft_model.get_base_model(), False)
    peft_model.eval()

    losses = torch.stack(step_losses).float() if step_losses else torch.zeros(0, device=device)
    if world > 1:  # each process holds world x (its share of the global mean): the mean over processes is the global loss
        losses = acc.reduce(losses.to(acc.device), "mean")
    losses = [float(x) for x in losses.cpu()]
    peak = torch.tensor([_peak_mem_mb(device)], device=acc.device if world > 1 else "cpu")
    peak = float(acc.gather(peak).max()) if world > 1 else float(peak[0])

    acc.wait_for_everyone()
    if acc.is_main_process:
        out_dir.mkdir(parents=True, exist_ok=True)
        peft_model.save_pretrained(out_dir, safe_serialization=True)
    acc.wait_for_everyone()
    size = sum(f.stat().st_size for f in out_dir.rglob("*") if f.is_file()) if out_dir.exists() else 0
    acc.free_memory()
    result = TrainResult(
        adapter_dir=str(out_dir),
        train_seconds=seconds,
        steps=step,
        epochs=step / steps_per_epoch,
        tokens_seen=tokens,
        answer_tokens_seen=answer_tokens,
        peak_mem_mb=peak,
        adapter_bytes=size,
        final_loss=sum(losses[-5:]) / max(1, len(losses[-5:])),
        loss_curve=losses[:: max(1, len(losses) // 50)],
        tokens_per_second=tokens / seconds if seconds > 0 else 0.0,
        n_train=len(train_ex),
        n_val=len(val_ex),
        train_items=len(train_ex),
        val_items=len(val_ex),
        val_curve=val_curve,
        val_accuracy_curve=val_acc_curve,
        best_step=best_step,
        best_val_loss=None if best_step is None else best,
        best_val_accuracy=None if best_step is None else best_acc,
        stopped_early=stopped,
        world_size=world,
        mixed_precision="fp16" if scaler is not None else mp,
        grad_scaler=scaler is not None,
        loss_scale=float(scaler.get_scale()) if scaler is not None else None,
        loss_path="answer-logits" if fast else "full-logits",
        padding_fraction=(padded - real) / padded if padded else 0.0,
        micro_batch_size=micro,
        oom_retries=oom_retries,
    )
    return peft_model, result
