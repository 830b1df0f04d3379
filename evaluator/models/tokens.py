"""Tokenizer facts shared by loading and the zoo: the largest token id a tokenizer can produce."""

from __future__ import annotations


def tokenizer_max_id(tokenizer) -> int:
    """The largest token id the tokenizer produces for text we feed the model: its base vocabulary (what the
    tokenization model emits for any text), the non-special added tokens (matched in text), and the special tokens the
    prompts and batches use (bos, eos, pad). Special tokens nothing here inserts (e.g. an unk a byte-level BPE never
    emits) are left out."""
    ids: list[int] = []
    backend = getattr(tokenizer, "backend_tokenizer", None)
    try:
        base = backend.get_vocab(with_added_tokens=False) if backend is not None else tokenizer.get_vocab()
        ids.append(max(base.values(), default=-1))
    except Exception:  # noqa: BLE001 - a tokenizer without a vocabulary to list: its length is the best bound
        ids.append(len(tokenizer) - 1)
    decoder = getattr(tokenizer, "added_tokens_decoder", None) or {}
    ids += [int(i) for i, t in decoder.items() if not getattr(t, "special", False)]
    ids += [i for i in (tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id) if isinstance(i, int)]
    return max(ids)
