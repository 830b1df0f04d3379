"""Mask planning for packed scoring: which attention implementations accept a custom 4-D mask (or packed
positions), and the block mask that lets all choices of an item share one forward pass over the cached prefix."""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import torch

# Architectures whose modelling code (transformers 5.17 and 5.24) builds its masks with masking_utils and passes a
# precomputed 4D mask / dict through unchanged. Dict form: one mask per entry of ``config.layer_types``.
_DICT_MASK_TYPES = frozenset({"qwen2", "qwen3", "gemma2", "gemma3_text", "smollm3", "ministral", "cohere2"})


# Single mask for all layers; for these, a non-None ``config.sliding_window`` applies to every layer.
_SINGLE_WINDOW_TYPES = frozenset({"mistral", "phi3", "starcoder2"})


_SINGLE_FULL_TYPES = frozenset({"llama", "olmo", "olmo2", "granite"})


PACKED_MODEL_TYPES = _DICT_MASK_TYPES | _SINGLE_WINDOW_TYPES | _SINGLE_FULL_TYPES


_MASKABLE_ATTN = frozenset({"sdpa", "eager"})  # flash / flex kernels ignore a custom 4D mask


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The transformers model under a peft wrapper (for config / signature checks; forwards still go via the wrapper
    so adapters are applied)."""
    try:
        from peft import PeftModel
    except ImportError:  # peft is optional for base-model evaluation
        return model
    return model.get_base_model() if isinstance(model, PeftModel) else model


def _forward_params(model: torch.nn.Module) -> set[str]:
    return set(inspect.signature(_unwrap(model).forward).parameters)


def _cache_kwarg(model: torch.nn.Module) -> str:
    """transformers renamed ``past_key_values`` to ``cache`` (5.2x, old name deprecated): use whichever it declares."""
    return "cache" if "cache" in _forward_params(model) else "past_key_values"


def _model_device(model: torch.nn.Module) -> torch.device:
    """Where input ids go: the input embeddings' device (a model dispatched by a device_map spans several devices;
    accelerate's hooks carry activations, masks and positions to each layer, and the logits back to this device)."""
    from evaluator.models.load import input_device

    return input_device(model)


def _index_device(model: torch.nn.Module, device: torch.device) -> torch.device:
    """Where index tensors that the model applies to its last hidden states (`logits_to_keep`) must be: the inputs'
    device, or the CPU for a model spread over several devices — its last layers may sit on another GPU than its
    inputs, and a CPU index works on any device (a tensor on another GPU does not)."""
    base = _unwrap(model)
    placed = set(map(str, (getattr(base, "hf_device_map", None) or {}).values()))
    return torch.device("cpu") if len(placed) > 1 else device


def _model_dtype(model: torch.nn.Module) -> torch.dtype:
    for p in model.parameters():
        if p.is_floating_point():
            return p.dtype
    return torch.float32


@dataclass(frozen=True)
class _MaskPlan:
    """How to hand a custom mask to this architecture."""

    layers: tuple[tuple[str, int | None], ...]  # (mask key, sliding window or None) per distinct layer type
    as_dict: bool  # pass {"full_attention": ..., "sliding_attention": ...} instead of one tensor
    boolean: bool  # sdpa wants bool; eager wants an additive float mask


def packed_support(model: torch.nn.Module) -> tuple[_MaskPlan | None, str]:
    """Whether the packed tree-mask path is exact for this model; returns (plan, reason-if-not)."""
    base = _unwrap(model)
    peft_config = getattr(model, "active_peft_config", None)
    if base is not model and getattr(peft_config, "is_prompt_learning", False):
        return None, "peft prompt-learning adapters inject their own past key values"
    config = base.config
    model_type = getattr(config, "model_type", None)
    if model_type not in PACKED_MODEL_TYPES:
        return None, f"model_type {model_type!r} is not in the verified packed allow-list"
    attn = getattr(config, "_attn_implementation", None)
    if attn not in _MASKABLE_ATTN:
        return None, f"attn_implementation {attn!r} ignores custom masks (need 'sdpa' or 'eager')"
    if getattr(config, "use_bidirectional_attention", False):
        return None, "bidirectional attention is not a causal LM"
    if model_type in _DICT_MASK_TYPES:
        layer_types = getattr(config, "layer_types", None)
        if not layer_types:
            return None, "config has no layer_types"
        layers = []
        for kind in sorted(set(layer_types)):
            if kind == "full_attention":
                layers.append((kind, None))
            elif kind == "sliding_attention" and getattr(config, "sliding_window", None):
                layers.append((kind, int(config.sliding_window)))
            else:
                return None, f"unsupported layer type {kind!r}"
        plan_layers, as_dict = tuple(layers), True
    else:
        window = getattr(config, "sliding_window", None) if model_type in _SINGLE_WINDOW_TYPES else None
        plan_layers, as_dict = (("all", int(window) if window else None),), False
    return _MaskPlan(plan_layers, as_dict, boolean=(attn == "sdpa")), ""


def _render_mask(
    plan: _MaskPlan, allowed: torch.Tensor, q_pos: torch.Tensor, kv_pos: torch.Tensor, dtype: torch.dtype
) -> torch.Tensor | dict[str, torch.Tensor]:
    """Turn a [q, kv] visibility matrix into what the model's attention expects (4D; dict for hybrid models).

    The sliding-window condition matches ``masking_utils.sliding_window_overlay``: ``kv_pos > q_pos - window``.
    """
    out: dict[str, torch.Tensor] = {}
    for key, window in plan.layers:
        m = allowed if window is None else allowed & (kv_pos[None, :] > q_pos[:, None] - window)
        m = m[None, None]
        if not plan.boolean:
            zero = torch.zeros((), dtype=dtype, device=m.device)
            m = torch.where(m, zero, torch.finfo(dtype).min)
        out[key] = m
    return out if plan.as_dict else out["all"]


def attention_kernels():
    """SDPA backends for the scorer's forwards: flash, memory-efficient or math, not cuDNN.

    Packed batches carry an explicit 4-D mask, and torch 2.11 on H100/B200 sends masked SDPA to cuDNN first, which
    builds an execution plan for every new (query, key) shape: ~0.4 s each (pytorch and FunASR issue threads report
    the same). Each chunk of items has its own length: on an H100 at k=256, 100 items took 0.15 s with warm shapes
    (benchmarks/profile_packed.py) but 1.4 s in benchmarks/many_shot.py, where the shapes were new. The
    memory-efficient kernel takes the same masks with no per-shape plan (its GPU timing is still to be measured).
    """
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH])
