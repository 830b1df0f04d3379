"""Counting an API model's prompt tokens offline (tiktoken), in the shape `TokenizedPrompts` asks a tokenizer for —
so `shots: max`, the fit check and the zero-shot request size of an API unit are computed by the same code as for a
local model. Billing uses the responses' own usage counts; these counts only plan the prompts."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class TiktokenTokenizer:
    """A tokenizer-like wrapper of one tiktoken encoding (no special tokens: an API adds its own)."""

    model: str
    provider: str | None
    encoding: str = field(init=False)
    exact: bool = field(init=False)
    note: str = field(init=False)
    _enc: Any = field(init=False, repr=False)
    eos_token_id: None = None

    def __post_init__(self) -> None:
        from evaluator.costs.pricing import get_encoding, resolve_encoding

        # a model tiktoken does not know (a local server's, another provider's) is approximated, and says so
        choice = resolve_encoding(self.model, self.provider or "endpoint")
        self.encoding, self.exact, self.note = choice.encoding, choice.exact, choice.note
        self._enc = get_encoding(choice.encoding)

    def __call__(self, text: str | list[str], add_special_tokens: bool = True) -> dict:
        if isinstance(text, list):
            return {"input_ids": [self._enc.encode_ordinary(t) for t in text]}
        return {"input_ids": self._enc.encode_ordinary(text)}

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        return self._enc.decode(list(ids))
