"""Converting a zoo model's GGUF weights to a transformers folder (safetensors), de-quantised, checked complete."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from evaluator.models.zoo.fetch import _first_line, _Reporter
from evaluator.models.zoo.registry import ZooError, ZooModel

_CHECK_TEXT = "Utterance: play some jazz\nIntent: play_music"


def _gguf_kwargs() -> dict[str, Any]:
    """Ask transformers to dequantise fully (it may otherwise keep packed GGUF blocks, which cannot be saved)."""
    kwargs: dict[str, Any] = {}
    try:
        import torch
        from transformers.utils.quantization_config import GgufConfig  # transformers >= 5.x

        kwargs["quantization_config"] = GgufConfig(dequantize=True)
        kwargs["dtype"] = torch.float32
    except Exception:
        pass
    return kwargs


def _strip_quantizer(model: Any) -> None:
    """After a dequantising load, make sure nothing marks the model as quantized (so it saves as plain weights)."""
    hq = getattr(model, "hf_quantizer", None)
    if hq is not None:
        packed = [n for n, m in model.named_modules() if type(m).__name__.lower().startswith("gguf")]
        if packed:
            raise ZooError(
                f"transformers kept {len(packed)} GGUF-packed layers that cannot be saved: upgrade or downgrade "
                "transformers, or uninstall the `kernels` package, then retry"
            )
        hq.remove_quantization_config(model)
    if hasattr(model.config, "quantization_config"):
        with contextlib.suppress(AttributeError):
            del model.config.quantization_config


def _check_complete(model: ZooModel, info: dict[str, Any], what: str) -> None:
    """A conversion must carry every tensor: none missing (left randomly initialised), unexpected or reshaped.

    Tied weights (lm_head with tie_word_embeddings) are not reported as missing by transformers."""
    problems = {
        "missing": sorted(info.get("missing_keys") or ()),
        "unexpected": sorted(info.get("unexpected_keys") or ()),
        "shape-mismatched": sorted(str(k[0]) for k in info.get("mismatched_keys") or ()),
    }
    bad = [(kind, keys) for kind, keys in problems.items() if keys]
    if bad or info.get("error_msgs"):
        detail = "; ".join(f"{len(keys)} {kind} tensor(s): {', '.join(keys[:3])}" for kind, keys in bad) or _first_line(
            str(info["error_msgs"][0])
        )
        raise ZooError(
            f"loading {what} for {model.name} left weights unset ({detail}): the conversion would score random "
            "weights — upgrade or downgrade transformers and gguf, then retry"
        )


def _convert(model: ZooModel, gguf_path: Path, out: Path, rep: _Reporter) -> dict[str, Any]:
    """GGUF → HF folder ``out``. Returns facts for the marker (tokenizer checks, dtype, parameters)."""
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gdir, gname = str(gguf_path.parent), gguf_path.name
    facts: dict[str, Any] = {}
    with rep.step(f"converting {gname} to a float32 Hugging Face folder (transformers {transformers.__version__})"):
        try:
            tok = AutoTokenizer.from_pretrained(gdir, gguf_file=gname)
            lm, info = AutoModelForCausalLM.from_pretrained(
                gdir, gguf_file=gname, output_loading_info=True, **_gguf_kwargs()
            )
        except ImportError as exc:
            raise ZooError(
                f"transformers cannot read GGUF files here ({_first_line(str(exc))}): pip install 'gguf>=0.10'"
            ) from None
        _check_complete(model, info, f"the GGUF {gname}")
        _strip_quantizer(lm)
        lm.eval()
        lm.save_pretrained(out, safe_serialization=True)
        tok.save_pretrained(out)

    # Check what came out: reload from the folder, compare logits, exercise the tokenizer.
    with rep.step("checking the converted folder"):
        tok2 = AutoTokenizer.from_pretrained(str(out))
        lm2, info2 = AutoModelForCausalLM.from_pretrained(str(out), output_loading_info=True)
        _check_complete(model, info2, f"the converted folder {out.name}")
        from evaluator.models.tokens import tokenizer_max_id

        emb_rows = lm2.get_input_embeddings().num_embeddings
        if tokenizer_max_id(tok2) >= emb_rows:
            raise ZooError(
                f"the converted {model.name} tokenizer produces token ids up to {tokenizer_max_id(tok2)} but the model "
                f"has only {emb_rows} embedding rows: report this with your transformers version "
                f"({transformers.__version__})"
            )
        ids = tok2(_CHECK_TEXT, return_tensors="pt").input_ids
        with torch.no_grad():
            a = lm(ids).logits
            b = lm2(ids).logits
        if not torch.isfinite(b).all():
            raise ZooError(f"the converted {model.name} gives non-finite logits: delete {out.parent} and retry")
        diff = float((a - b).abs().max())
        if diff > 1e-3:
            raise ZooError(
                f"the converted {model.name} differs from the GGUF load (max |Δlogit| {diff:.2g}): report this "
                f"with your transformers version ({transformers.__version__})"
            )
        plain = tok2(_CHECK_TEXT, add_special_tokens=False).input_ids
        roundtrip = tok2.decode(plain) == _CHECK_TEXT
        if not roundtrip:
            raise ZooError(
                f"the converted {model.name} tokenizer does not round-trip text ({tok2.decode(plain)!r}): report "
                f"this with your transformers version ({transformers.__version__})"
            )
        if tok2.eos_token is None:
            raise ZooError(f"the converted {model.name} tokenizer has no eos token: report this")
        with_special = tok2(_CHECK_TEXT).input_ids
        facts.update(
            dtype=str(lm2.dtype).replace("torch.", ""),
            parameters=int(sum(p.numel() for p in lm2.parameters())),
            architecture=type(lm2).__name__,
            model_type=lm2.config.model_type,
            vocab_size=int(getattr(lm2.config, "vocab_size", 0) or len(tok2)),
            max_position_embeddings=getattr(lm2.config, "max_position_embeddings", None),
            reload_max_abs_logit_diff=diff,
            tokenizer=dict(
                cls=type(tok2).__name__,
                roundtrip=roundtrip,
                bos_token=tok2.bos_token,
                eos_token=tok2.eos_token,
                pad_token=tok2.pad_token,
                unk_token=tok2.unk_token,
                adds_bos=bool(tok2.bos_token_id is not None and with_special[:1] == [tok2.bos_token_id]),
                adds_eos=bool(tok2.eos_token_id is not None and with_special[-1:] == [tok2.eos_token_id]),
                chat_template=bool(getattr(tok2, "chat_template", None)),
            ),
            generation_config=(out / "generation_config.json").is_file(),
        )
        del lm, lm2
    return facts
