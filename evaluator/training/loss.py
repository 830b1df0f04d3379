"""The answer-only loss: cross-entropy on answer tokens only, over exactly the token ids the scorer uses, with logits
computed ONLY at those positions where the architecture allows it (a default `Trainer` computes, up-casts to fp32
and back-propagates [tokens x vocab] logits for every token; on Qwen2.5-0.5B the 152k-row head is ~28% of the
weights and the largest activation of the step) — and the validation metrics (loss and all-tokens-argmax accuracy)
on the answers' own tokens, format tokens excluded."""

from __future__ import annotations

import contextlib

from evaluator.training.data import Example, _make_metric_batch
from evaluator.training.precision import weights_dtype

# Architectures whose causal-LM head is exactly `lm_head(decoder(x))` (plus Gemma-2/3's final logit soft-capping,
# applied below): for these the loss computes logits only at answer positions. Others (e.g. Granite's logit scaling,
# Cohere's logit_scale) take the full forward; the loss is the same either way (tests/test_training.py checks it).
ANSWER_LOGITS_TYPES = frozenset(
    {"llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3_text", "smollm3", "olmo", "olmo2", "phi3"}
)


def _answer_loss_module(peft_model, fast: bool, packed_plan=None):
    """The answer-only loss as a torch Module over `peft_model` (DDP wraps Modules); `fast`: logits at answer
    positions only (see `uses_answer_logits`), else the full forward, then the same positions picked out.
    `packed_plan`: how this architecture takes a custom mask (`engine.masks.packed_support`), for packed batches."""
    import torch
    import torch.nn.functional as F

    class AnswerLoss(torch.nn.Module):
        """Sum of answer-token cross-entropies / norm; a Module so DDP can wrap it (its forward runs the reducer).

        Padded rows take no attention mask: rows are RIGHT-padded and attention is causal, so a real token only ever
        attends to earlier real tokens of its own row and pad tokens cannot change any position the loss reads.
        Exact, and it lets SDPA take its mask-free causal (flash) kernel; with a padding mask transformers builds a
        4D mask and checks it on the host (a device sync) every step. A packed batch (one row, no padding) takes
        the block-diagonal mask `_packed_mask`, built on the device.
        """

        def __init__(self) -> None:
            super().__init__()
            self.peft_model = peft_model

        def forward(self, ids, pos, tgt, norm: float, prefix: int = 0, seg=None, q_pos=None):
            logits = self.answer_logits(ids, pos, prefix, seg=seg, q_pos=q_pos)
            return F.cross_entropy(logits.float(), tgt, reduction="sum") / norm

        def answer_logits(self, ids, pos, prefix: int = 0, groups=None, on_suffix=None, seg=None, q_pos=None):
            """Logits at the flat positions `pos` (of the hidden states after the prefix) only. `prefix` > 0: the
            first `prefix` ids are the same in every row; they run once and their keys/values are repeated to the
            rows (differentiably: the LoRA gradient through them is the sum over rows, as when each row runs them).
            `groups` (the sweep, whose rows belong to different adapters): (src, of), the prefix runs on rows `src`
            and row r takes the keys/values of src[of[r]]; `on_suffix()` is called between the two forwards.
            `seg`/`q_pos` (a packed batch, `data._make_batch(pack=True)`): each token's row and position in it."""
            from evaluator.engine.masks import _cache_kwarg, attention_kernels

            m = self.peft_model  # a PeftModel, or a plain model whose LoRA layers are the sweep's own
            base = m.get_base_model() if hasattr(m, "get_base_model") else m
            net = base.get_decoder() if fast else m
            kw: dict = {"attention_mask": None, "use_cache": False}
            if prefix:
                kw = {"use_cache": True, _cache_kwarg(net): _shared_prefix_cache(net, ids, prefix, groups),
                      "attention_mask": None,
                      "position_ids": torch.arange(prefix, ids.shape[1], device=ids.device).expand(ids.shape[0], -1)}
                if on_suffix is not None:
                    on_suffix()
            if seg is not None:
                kw |= {"position_ids": q_pos[None],
                       "attention_mask": _packed_mask(packed_plan, seg, q_pos, prefix, weights_dtype(base))}
            ids = ids[:, prefix:]
            # masked attention (after a prefix, or packed): flash / memory-efficient / math, not cuDNN, which plans
            # every new shape anew (engine.masks.attention_kernels)
            with attention_kernels() if prefix or seg is not None else contextlib.nullcontext():
                out = net(input_ids=ids, **kw)
            if fast:
                h = out.last_hidden_state
                # a model dispatched by a device_map: the decoder ends on its last layer's device and the head runs
                # on its own; the answer logits come back to the inputs' device (no-ops on one device)
                h = h.reshape(-1, h.shape[-1]).index_select(0, pos.to(h.device))
                logits = base.get_output_embeddings()(h)
                cap = getattr(base.config, "final_logit_softcapping", None)
                if cap:
                    logits = torch.tanh(logits / cap) * cap
                logits = logits.to(pos.device)
            else:
                logits = out.logits
                logits = logits.reshape(-1, logits.shape[-1]).index_select(0, pos)
            return logits

    return AnswerLoss()


def _packed_mask(plan, seg, q_pos, prefix: int, dtype):
    """The mask of a packed batch over `prefix` cached ids: a token sees the prefix and the earlier tokens of its own
    row, nothing else — the block-diagonal causal mask, so the packed forward computes what padded rows compute.
    Sliding windows and the kernel's format come from `plan` (as the scorer renders its masks)."""
    import torch

    from evaluator.engine.masks import _render_mask

    kv_seg = torch.cat([seg.new_full((prefix,), -1), seg])
    kv_pos = torch.cat([torch.arange(prefix, device=seg.device), q_pos])
    allowed = ((kv_seg[None, :] == seg[:, None]) & (kv_pos[None, :] <= q_pos[:, None])) | (kv_seg[None, :] < 0)
    return _render_mask(plan, allowed, q_pos, kv_pos, dtype)


def _shared_prefix_cache(net, ids, prefix: int, groups=None):
    """Keys/values of the first `prefix` ids of row 0 (every row's), computed with grad and repeated to every row;
    with `groups` (src, of): of rows `src`, row r taking src[of[r]]'s.
    Full-length layers (a cache without the config): sliding windows are then the model's masks' job, as without a
    cache. Checked, because a model that drops the cache (gradient checkpointing in training) would be silently
    wrong."""
    from transformers import DynamicCache

    from evaluator.engine.masks import _cache_kwarg

    cache = DynamicCache()
    head = ids[:1, :prefix] if groups is None else ids[:, :prefix].index_select(0, groups[0])
    net(input_ids=head, attention_mask=None, use_cache=True, **{_cache_kwarg(net): cache})
    if cache.get_seq_length() != prefix:
        raise RuntimeError(f"the shared-prefix forward kept {cache.get_seq_length()} of {prefix} positions")
    if groups is None:
        cache.batch_repeat_interleave(ids.shape[0])
    else:
        cache.batch_select_indices(groups[1])
    return cache


def uses_answer_logits(model) -> bool:
    """Whether the loss may compute logits at answer positions only: the head is a plain output embedding over the
    decoder's last hidden state (`ANSWER_LOGITS_TYPES`)."""
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


def metric_sums(module, examples: list[Example], pad_id: int, device, batch_size: int, pin: bool):
    """`_metric_sums` over `examples`, `batch_size` at a time (sums, so they add across batches and processes)."""
    import torch

    sums = torch.zeros(4, dtype=torch.float64, device=device)
    for s in range(0, len(examples), batch_size):
        sums += _metric_sums(module, examples[s : s + batch_size], pad_id, device, pin=pin)
    return sums


def loss_and_accuracy(sums) -> tuple[float, float]:
    """(mean answer-token loss, share of examples all argmax-correct) from `metric_sums`."""
    return float(sums[0] / sums[1].clamp(min=1)), float(sums[2] / sums[3].clamp(min=1))


def answer_metrics(model, examples: list[Example], pad_id: int, device, batch_size: int = 16) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) of `model` (a PeftModel) on examples, on the answers' own tokens only —
    what validation measures. Accuracy: the share of examples whose answer tokens are all the argmax prediction."""
    import torch

    module = _answer_loss_module(model, uses_answer_logits(model))
    with torch.no_grad():
        sums = metric_sums(module, examples, pad_id, device, batch_size, pin=False)
    return loss_and_accuracy(sums)


def answer_loss(model, examples: list[Example], pad_id: int, device, batch_size: int = 16) -> float:
    """Mean cross-entropy of `model` (a PeftModel) on the answers' own tokens of examples — the validation loss."""
    return answer_metrics(model, examples, pad_id, device, batch_size)[0]
