"""Randomly initialised models of real architectures, for speed benchmarks on machines without the hub.

Throughput does not depend on weight values, so Qwen2.5-0.5B's exact shapes with random weights measure what the
real model would; the tokenizer is any local one whose ids fit the vocabulary (e.g. the smollm2-135m conversion).
"""

from __future__ import annotations

# Qwen2.5-0.5B's config.json (Qwen/Qwen2.5-0.5B), hard-coded so no download is needed.
QWEN25_05B = dict(
    hidden_size=896,
    num_hidden_layers=24,
    num_attention_heads=14,
    num_key_value_heads=2,
    intermediate_size=4864,
    vocab_size=151936,
    rope_parameters={"rope_type": "default", "rope_theta": 1_000_000.0},
    max_position_embeddings=32768,
    tie_word_embeddings=True,
    rms_norm_eps=1e-6,
    use_sliding_window=False,
    hidden_act="silu",
    attention_dropout=0.0,
)


def random_qwen25_05b(tokenizer, device, dtype, *, seed: int = 0, num_layers: int | None = None):
    """A Qwen2ForCausalLM with Qwen2.5-0.5B's shapes (optionally fewer layers), random weights, eval mode, sdpa."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    if len(tokenizer) > QWEN25_05B["vocab_size"]:
        raise SystemExit(f"tokenizer has {len(tokenizer)} ids > the model's vocabulary {QWEN25_05B['vocab_size']}")
    spec = dict(QWEN25_05B)
    if num_layers:
        spec["num_hidden_layers"] = num_layers
    cfg = Qwen2Config(
        **spec, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id
    )
    torch.manual_seed(seed)
    with torch.device(device):
        model = Qwen2ForCausalLM._from_config(cfg, dtype=dtype, attn_implementation="sdpa")
    return model.eval()
