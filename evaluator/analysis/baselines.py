"""What an option must beat, and degenerate answers.

Pure Python; no model code.

- :func:`baselines` — chance level (1/|choices|) and the majority class of the training split; the *bar* an
  option's quality must clear to mean anything is the larger of the two.
- :func:`at_chance` — True when an option's confidence interval does not clear that bar.
- :func:`answer_spread` — how concentrated an option's predictions are; a model answering (nearly) the same label
  for every item is flagged ``constant``: its accuracy is just that label's share of the test set.

Empty inputs never raise: no training targets → no majority class (``majority_label`` / ``majority_rate`` None);
no predictions → an empty, non-constant spread (``top_answer`` "", ``top_share`` 0.0).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Sequence

__all__ = ["Baselines", "baselines", "at_chance", "AnswerSpread", "answer_spread"]

#: Shares compare with this slack, so that 27 of 30 (0.9 in exact arithmetic) counts as reaching 0.9.
_EPS = 1e-9


@dataclass(frozen=True)
class Baselines:
    """``chance``: 1/|choices| (None for free-form tasks). ``majority_label``: most common target in the training
    split (ties: first in sorted order); ``majority_rate``: its share of that split (both None when it is empty).
    ``bar``: ``max(chance, majority_rate)`` over those present (0.0 when both are None). ``how``: one sentence."""

    chance: float | None
    majority_label: str | None
    majority_rate: float | None
    bar: float
    how: str

    def as_dict(self) -> dict:
        return {"chance": self.chance, "majority_label": self.majority_label, "majority_rate": self.majority_rate,
                "bar": self.bar, "how": self.how}


def _ranked(values: Sequence) -> list[tuple]:
    """(value, count), most common first; ties in sorted order of the value (as text)."""
    return sorted(Counter(values).items(), key=lambda kv: (-kv[1], str(kv[0])))


def baselines(n_choices: int | None, train_targets: Sequence[str]) -> Baselines:
    """Chance and majority-class baselines.

    ``n_choices``: number of answer choices for multiple-choice / classification tasks, None for free-form ones
    (ValueError if < 1). ``train_targets``: the training split's targets (may be empty).
    """
    if n_choices is not None:
        if isinstance(n_choices, bool) or int(n_choices) != n_choices or n_choices < 1:
            raise ValueError(f"n_choices must be a positive integer or None, got {n_choices!r}")
        n_choices = int(n_choices)
    chance = 1.0 / n_choices if n_choices else None
    targets = list(train_targets)
    if targets:
        label, count = _ranked(targets)[0]
        rate = count / len(targets)
    else:
        label, count, rate = None, 0, None

    present = [v for v in (chance, rate) if v is not None]
    bar = max(present) if present else 0.0

    chance_txt = f"chance 1/{n_choices} = {chance:.3f}" if chance is not None else "no chance level (free-form task)"
    if label is not None:
        maj_txt = f"majority class '{label}' is {rate:.0%} of {len(targets):,} training items"
        if count == len(targets):
            maj_txt += " (every training item)"
    else:
        maj_txt = "no training targets, so no majority class"
    how = f"{chance_txt}; {maj_txt}" + ("" if present else "; bar 0.0")
    return Baselines(chance, label, rate, bar, how)


def at_chance(ci_low: float, b: Baselines) -> bool:
    """True when the option's interval does not clear the bar: ``ci_low <= b.bar``.

    A missing or non-finite ``ci_low`` (e.g. NaN from zero items) cannot clear anything: True.
    """
    if ci_low is None or not math.isfinite(ci_low):
        return True
    return ci_low <= b.bar


@dataclass(frozen=True)
class AnswerSpread:
    """``top_answer`` / ``top_share``: the most common prediction (ties: first in sorted order) and its share.
    ``counts``: answer -> count, most common first. ``constant``: ``top_share >= threshold``. ``statement``: a
    sentence when constant, else None. With no predictions: ``""``, 0.0, ``{}``, False, None."""

    top_answer: str
    top_share: float
    counts: dict[str, int]
    constant: bool
    statement: str | None

    def as_dict(self) -> dict:
        return {"top_answer": self.top_answer, "top_share": self.top_share, "counts": dict(self.counts),
                "constant": self.constant, "statement": self.statement}


def answer_spread(predictions: Sequence[str], threshold: float = 0.9, *, max_listed: int = 5) -> AnswerSpread:
    """How concentrated the predictions are; ``constant`` when one answer makes up at least ``threshold`` of them.

    The statement lists the ``max_listed`` most common answers, e.g. "answers 'book_restaurant' for 57 of 60 items
    (95%): book_restaurant 57, play_music 3". ValueError unless 0 < threshold <= 1.
    """
    if not 0 < threshold <= 1:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    preds = list(predictions)
    if not preds:
        return AnswerSpread("", 0.0, {}, False, None)
    ranked = _ranked(preds)
    counts = {ans: c for ans, c in ranked}
    top, top_count = ranked[0]
    share = top_count / len(preds)
    constant = share >= threshold - _EPS
    statement = None
    if constant:
        listed = ", ".join(f"{a} {c}" for a, c in ranked[:max_listed])
        if len(ranked) > max_listed:
            rest = sum(c for _, c in ranked[max_listed:])
            listed += f", {len(ranked) - max_listed} other answers {rest}"
        statement = f"answers '{top}' for {top_count} of {len(preds)} items ({share:.0%}): {listed}"
    return AnswerSpread(top, share, counts, constant, statement)
