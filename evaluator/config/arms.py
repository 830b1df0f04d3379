"""The arms of a job: prompting (A) shots and caps, LoRA (B) hyper-parameters and train sizes, the newer base (C);
and how train sizes resolve against a task's training split (so tasks can check a job without the rest of it)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BeforeValidator,
    Field,
    field_validator,
)

from evaluator.config.validation import _Strict, field_error


def _word(v: Any, word: str, what: str) -> Any:
    """`max` / `all` in another case, or text that is neither a number nor the word: one clear message."""
    if not isinstance(v, str):
        return v
    s = v.strip()
    if s == word:
        return s
    if s.lower() == word:
        raise field_error(f"{v!r}: use '{word}' (lower case)")
    try:
        return int(s)
    except ValueError:
        raise field_error(f"{v!r} is not {what} — write a number or '{word}'") from None


Shots = Annotated[int | Literal["max"], BeforeValidator(lambda v: _word(v, "max", "a shot count"))]


TrainSize = Annotated[Annotated[int, Field(ge=1)] | Literal["all"], BeforeValidator(lambda v: _word(v, "all", "a training size"))]


def _no_repeats(values: list | None, what: str) -> None:
    seen: list = []
    for i, v in enumerate(values or []):
        if v in seen:
            raise field_error(f"{v!r} is listed twice — {what} must be distinct (each is one unit of the run); remove the repeat", i)
        seen.append(v)


def _check_shots(v: list) -> list:
    if not v:
        raise field_error("needs at least one shot count, e.g. [0, 5, max]")
    for i, k in enumerate(v):
        if isinstance(k, int) and k < 0:
            raise field_error(f"shot count {k} is negative; use 0, a positive number or 'max'", i)
    _no_repeats(v, "shot counts")
    return v


class PromptingArm(_Strict):
    """Arm A (and C by default): k fixed demonstrations in one shared prefix, for each k."""

    shots: list[Shots] = Field(default_factory=lambda: [0, 5], description="Shot counts k to sweep, one unit each; `max` = the largest k whose prefix + longest item and answer fit the context window, by token count (never truncated).")
    max_shots: Annotated[int, Field(ge=1)] = Field(256, description="Cap on the k that `max` resolves to, so `max` stays bounded on huge context windows.")

    @field_validator("shots")
    @classmethod
    def _shots(cls, v: list[Shots]) -> list[Shots]:
        return _check_shots(v)


class LoraArm(_Strict):
    """Arm B: one LoRA adapter per training size n, trained on the first n training items."""

    enabled: bool = Field(True, description="Run arm B (LoRA adapters); false: no training, arms A and C only.")
    train_sizes: list[TrainSize] = Field(default_factory=lambda: [64], description="Training sizes n to sweep (the learning curve), one adapter each, trained on the first n training items in file order; `all` = the whole training split (sizes above it collapse onto it).")
    r: Annotated[int, Field(ge=1)] = Field(8, description="LoRA rank.")
    alpha: Annotated[float, Field(gt=0)] = Field(16.0, description="LoRA alpha: the adapter update is scaled by alpha / r.")
    dropout: Annotated[float, Field(ge=0, lt=1)] = Field(0.05, description="Dropout on the LoRA layers' input during training.")
    target_modules: list[str] | None = Field(None, description="Module names LoRA adapts (e.g. [q_proj, v_proj]); null: every attention and MLP projection of the architecture; checked right after the base loads.")
    learning_rate: Annotated[float, Field(gt=0)] = Field(1e-3, description="Peak AdamW learning rate (linear warm-up, then linear decay to 0).")
    epochs: Annotated[float, Field(gt=0)] = Field(2.0, description="Passes over the n training items (fractions allowed); max_steps, when set, overrides it.")
    max_steps: Annotated[int, Field(ge=1)] | None = Field(None, description="Optimizer steps to train for; null: as many as `epochs` gives.")
    batch_size: Annotated[int, Field(ge=1)] = Field(8, description="Global batch size, split across processes under `accelerate launch` (out of GPU memory: smaller micro-batches with gradient accumulation).")
    warmup_ratio: Annotated[float, Field(ge=0, lt=1)] = Field(0.1, description="Share of the training steps with a linear learning-rate warm-up.")
    weight_decay: Annotated[float, Field(ge=0)] = Field(0.0, description="AdamW weight decay.")
    eval_shots: list[Annotated[int, Field(ge=0)]] = Field(default_factory=lambda: [0], description="Shot counts every adapter is evaluated at, one unit each (0 = zero-shot, as it was trained).")
    # Validation and early stopping: hold out val_fraction of the n items (at least 8) when n >= 40 (none for small
    # n); evaluate the answer-token loss every `eval_every` steps (None: once per epoch); stop after `patience`
    # evaluations without improvement and keep the best adapter weights.
    val_fraction: Annotated[float, Field(ge=0, lt=0.5)] = Field(0.1, description="Share of the n training items held out for validation and early stopping (at least 8 items, only when n >= 40; 0 = no validation).")
    eval_every: Annotated[int, Field(ge=1)] | None = Field(None, description="Evaluate the validation loss (answer tokens) every N optimizer steps; null: once per epoch.")
    patience: Annotated[int, Field(ge=1)] = Field(2, description="Stop after this many validations without improvement; the best adapter weights are kept.")
    gradient_checkpointing: bool = Field(False, description="Recompute activations in the backward pass: less activation memory for more compute (long prompts, big models).")
    group_by_length: bool = Field(True, description="Length-grouped batches (less padding); false: plain shuffled batches, padded to the longest.")
    packing: bool = Field(False, description="Padding-free batches: a micro-batch's rows side by side in one row with a block-diagonal causal mask (each token sees its own row only), the same loss and gradients as padded rows. Pays where padding is large (group_by_length false, lengths that vary widely); with length grouping the padding is already under 2% and the packed row's larger attention costs more (see benchmarks/RESULTS.md). Needs sdpa or eager attention on a verified architecture, else it is off with a note; not in the sweep (its adapters then train one at a time).")
    sweep: Literal["auto", "on", "off"] = Field("auto", description="Train the learning curve's adapters (one per training size) together in one job over the one base: every step one forward for the rows of all sizes still training, each adapter with its own weights, optimiser, schedule and early stopping, equal to the adapter trained alone. auto: on a CUDA GPU (where a small-n adapter alone leaves the device idle), off on a CPU (measured: no faster, one batch already fills the cores; more memory); on: wherever it can (one process, no float16 weights).")
    shared_prefix: bool = Field(True, description="Run the leading ids every row of a micro-batch shares (the instruction, fixed demonstrations) once for the batch, not once per row: the same loss and gradients for fewer tokens (LoRA dropout on those ids is then drawn once per batch, not per row); false: each row runs its whole sequence. Not used with gradient_checkpointing.")

    @field_validator("train_sizes")
    @classmethod
    def _sizes(cls, v: list) -> list:
        if not v:
            raise field_error("needs at least one training size, e.g. [16, 64, all]")
        _no_repeats(v, "training sizes")
        return v

    @field_validator("eval_shots")
    @classmethod
    def _eval_shots(cls, v: list) -> list:
        if not v:
            raise field_error("needs at least one shot count, e.g. [0]")
        _no_repeats(v, "shot counts")
        return v


def effective_train_sizes(train_sizes: list[int | str], n_train: int, task: str = "the task") -> tuple[list[int], list[str]]:
    """The distinct numbers of training items `train_sizes` trains on once the training split has `n_train` items
    (`all` and every size above `n_train` are `n_train`), in the job's order, and one note per size that collapsed
    onto an earlier one — so the planner plans each adapter once (a unit planned twice never finishes)."""
    out: list[int] = []
    notes: list[str] = []
    first: dict[int, int | str] = {}
    for n in train_sizes:
        eff = n_train if n == "all" else min(int(n), n_train)
        if eff in first:
            notes.append(
                f"arms.lora.train_sizes: {n!r} trains on the same {eff} items of {task} as {first[eff]!r} (its training "
                f"split has {n_train} items) — planned once"
            )
            continue
        first[eff] = n
        out.append(eff)
    return out, notes


def dedupe_units_note(units: list) -> tuple[list, list[str]]:
    """`units` without repeats of the same unit id (the first is kept, in order), and one note per dropped unit."""
    kept, seen, notes = [], set(), []
    for u in units:
        uid = getattr(u, "id", u)
        if uid in seen:
            notes.append(f"unit {uid} was planned twice (two settings give the same unit) — planned once")
            continue
        seen.add(uid)
        kept.append(u)
    return kept, notes


class NewerArm(_Strict):
    """Arm C: each newer base with a prompting sweep (default: the same shots as arm A)."""

    shots: list[Shots] | None = Field(None, description="Shot counts for every newer base (arm C), as in arms.prompting.shots; null: the same as arms.prompting.shots.")

    @field_validator("shots")
    @classmethod
    def _shots(cls, v: list[Shots] | None) -> list[Shots] | None:
        return None if v is None else _check_shots(v)


class Arms(_Strict):
    prompting: PromptingArm = Field(default_factory=PromptingArm, description="Arm A: the base model prompted with k demonstrations in one shared prefix.")
    lora: LoraArm = Field(default_factory=LoraArm, description="Arm B: LoRA fine-tunes (peft) of the base, loss on answer tokens only.")
    newer: NewerArm = Field(default_factory=NewerArm, description="Arm C: the newer base model(s) (job `newer`), prompted like arm A.")
