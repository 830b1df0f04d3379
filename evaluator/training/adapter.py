"""The LoRA adapter on its frozen base: which modules it targets (per-architecture defaults, and a one-line reason when
a requested or default set cannot be adapted, found before any training), attaching a fresh adapter with peft,
activation checkpointing on the base under it, and saving it in peft's format (main process only)."""

from __future__ import annotations

import contextlib
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from evaluator.config.arms import LoraArm

if TYPE_CHECKING:
    from evaluator.training.distributed import DataParallel

# peft (0.21) calls a transformers API deprecated in 5.x on every get_peft_model / from_pretrained: not ours to fix.
warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.* is deprecated", category=FutureWarning)

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


def target_modules_for(model, requested: list[str] | None) -> list[str] | None:
    """The modules LoRA adapts: the user's list, else ours for the architecture, else None (peft's own defaults)."""
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


def attach_lora(model, hp: LoraArm):
    """`model` wrapped (in place, by peft) with a fresh LoRA adapter per `hp`; its initial weights draw on torch's
    global RNG, so the caller seeds that first."""
    from peft import LoraConfig, get_peft_model

    cfg = LoraConfig(
        r=hp.r,
        lora_alpha=hp.alpha,
        lora_dropout=hp.dropout,
        target_modules=target_modules_for(model, hp.target_modules),
        task_type="CAUSAL_LM",
    )
    with _offloaded_stand_ins(model):
        return get_peft_model(model, cfg)


@contextlib.contextmanager
def _offloaded_stand_ins(model):
    """On a model dispatched with cpu / disk offload (device_map), accelerate keeps an offloaded layer's weights aside
    and leaves `meta` tensors in the module until each forward; peft puts new LoRA weights on the device of the base
    weight, so there they would be created on `meta` (no values, no gradients). While peft attaches, each such weight
    is a zero-memory stand-in of its shape and dtype on the layer's execution device (an expanded one-element
    tensor), so the LoRA weights are created — with the same initial values as on one device — where the layer runs;
    the meta weights (with what peft set: requires_grad) are put back afterwards."""
    import torch

    from evaluator.models.load import execution_device

    swapped = []
    for module in model.modules():
        hook = getattr(module, "_hf_hook", None)
        hooks = getattr(hook, "hooks", None) or ([hook] if hook is not None else [])
        dev = execution_device(module)
        if dev is None or not any(getattr(h, "offload", False) for h in hooks):
            continue
        for name, p in list(module.named_parameters(recurse=False)):
            if p.device.type == "meta":
                stand_in = torch.nn.Parameter(torch.empty((), dtype=p.dtype, device=dev).expand(p.shape),
                                              requires_grad=p.requires_grad)
                module._parameters[name] = stand_in
                swapped.append((module, name, p, stand_in))
    try:
        yield
    finally:
        for module, name, p, stand_in in swapped:
            p.requires_grad_(stand_in.requires_grad)
            module._parameters[name] = p


def set_checkpointing(model, on: bool) -> None:
    """Activation (gradient) checkpointing on/off: transformers >= 5.2x names it activation_checkpointing_*."""
    if on:
        if hasattr(model, "activation_checkpointing_enable"):
            model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    else:
        (getattr(model, "activation_checkpointing_disable", None) or model.gradient_checkpointing_disable)()


def save_adapter(peft_model, out_dir: Path, dp: DataParallel) -> int:
    """Save the adapter (peft format, safetensors) from the main process, with every process waiting for it;
    returns the saved folder's size in bytes (0 if nothing was saved)."""
    dp.wait_for_everyone()
    if dp.is_main_process:
        out_dir.mkdir(parents=True, exist_ok=True)
        peft_model.save_pretrained(out_dir, safe_serialization=True)
    dp.wait_for_everyone()
    return sum(f.stat().st_size for f in out_dir.rglob("*") if f.is_file()) if out_dir.exists() else 0
