"""Build tiny random causal LMs and a BPE tokenizer trained on the SNIPS task text (offline, seconds)."""

from __future__ import annotations

import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _corpus() -> list[str]:
    lines: list[str] = []
    for path in sorted((REPO / "tasks" / "data").glob("snips_*.jsonl")):  # the fixtures' tokenizer: SNIPS text only
        for line in path.read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            lines.append(f"Utterance: {row['text']}\nIntent: {row['label']}")
    if not lines:  # keeps the fixtures usable before any task data exists
        lines = ["Utterance: play some music\nIntent: PlayMusic", "Utterance: will it rain\nIntent: GetWeather"]
    return lines


def build_tokenizer(out: Path) -> Path:
    """A byte-level BPE (vocab 512) with BOS/EOS/PAD, saved as a transformers tokenizer folder."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=512,
        special_tokens=["<pad>", "<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(_corpus(), trainer=trainer)
    bos = tok.token_to_id("<s>")
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", bos)])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>", model_max_length=2048
    )
    fast.save_pretrained(out)
    return out


def build_tiny_model(out: Path, arch: str, tokenizer_dir: Path, seed: int = 0, initializer_range: float = 0.02) -> Path:
    """A 2-layer random model of the given architecture family, saved (safetensors) with the tokenizer. A larger
    `initializer_range` (e.g. 0.2) gives answers that differ from prompt to prompt (at 0.02 they are constant)."""
    import torch
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    common = dict(
        vocab_size=len(tok),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        tie_word_embeddings=True,
        initializer_range=initializer_range,
    )
    torch.manual_seed(seed)
    if arch == "llama":
        from transformers import LlamaConfig, LlamaForCausalLM

        model = LlamaForCausalLM(LlamaConfig(**common))
    elif arch == "qwen2":
        from transformers import Qwen2Config, Qwen2ForCausalLM

        model = Qwen2ForCausalLM(Qwen2Config(**common))
    elif arch == "gemma3":
        from transformers import Gemma3ForCausalLM, Gemma3TextConfig

        cfg = Gemma3TextConfig(
            **common,
            head_dim=16,
            sliding_window=32,  # small window so tests exercise sliding-window layers on short prompts
            layer_types=["sliding_attention", "full_attention"],
        )
        model = Gemma3ForCausalLM(cfg)
    else:
        raise ValueError(arch)
    model.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    return out


def sdpa_model(path):
    """A tiny model folder loaded as the training tests use it (sdpa attention, its saved dtype)."""
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path, attn_implementation="sdpa")


def adapter_weights(folder: Path) -> dict:
    """The tensors of a saved peft adapter folder."""
    from safetensors.torch import load_file

    return load_file(str(folder / "adapter_model.safetensors"))
