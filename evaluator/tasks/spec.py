"""The task file's schema (`TaskSpec`: data source, splits, fields, scoring, labels) and the loaded task: its
`Item`s (id, input, target, choices) and `Task` (train / test / demonstration pool, rendered queries, data hash)."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_serializer,
    model_validator,
)

from evaluator.config.validation import refuse_yaml_booleans

REPO_TASKS = Path(__file__).resolve().parents[2] / "tasks"


SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,79}$")


class DataSource(BaseModel):
    """Arguments for `datasets.load_dataset`: a hub id, or a builder (`json`, `csv`, `parquet`) with data_files."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    path: str = Field(description="`datasets.load_dataset` path: a hub dataset id, or a builder (json, csv, parquet) that reads data_files.")
    name: str | None = Field(None, description="Dataset configuration name (load_dataset's `name`).")
    data_files: dict[str, str | list[str]] | None = Field(None, description="Split name → a file or a list of files, relative to the task file (glob patterns allowed); needed by the local builders.")
    revision: str | None = Field(None, description="Hub dataset revision: a branch, tag or commit.")

    @field_validator("*", mode="before")
    @classmethod
    def _no_yaml_booleans(cls, v: Any, info: ValidationInfo) -> Any:
        return refuse_yaml_booleans(cls, v, info)


SPLIT_SIZES = ("train_fraction", "test_fraction", "train_size", "test_size")


class SplitSpec(BaseModel):
    """`split:` in a task: the training and test items carved out of ONE data split (e.g. `data_files: {all: x.jsonl}`).

    Exactly one of `train_fraction` / `test_fraction` (0 < f < 1, the count rounded half up) or `train_size` /
    `test_size` (items) says how many; `mode: seeded` (default) draws the test items by a seeded permutation
    (`seed`, default 0), `mode: first` keeps file order — the first rows train, the rest test. Either way both parts
    keep file order and item ids are those of the divided split (`<source>-<row>` without an id field)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    source: str | None = Field(None, description="The data split to divide; null: the only key of data.data_files.")
    train_fraction: float | None = Field(default=None, gt=0, lt=1, description="Share of the rows that train (the count rounded half up); give exactly one of the four sizes.")
    test_fraction: float | None = Field(default=None, gt=0, lt=1, description="Share of the rows that test (the count rounded half up); give exactly one of the four sizes.")
    train_size: int | None = Field(default=None, ge=1, description="Number of rows that train; give exactly one of the four sizes.")
    test_size: int | None = Field(default=None, ge=1, description="Number of rows that test; give exactly one of the four sizes.")
    mode: Literal["seeded", "first"] = Field("seeded", description="`seeded`: the test rows are drawn by a seeded permutation; `first`: file order, the first rows train and the rest test (both parts keep file order).")
    seed: int = Field(0, description="Seed of the `seeded` draw (not allowed with mode: first).")

    @field_validator("*", mode="before")
    @classmethod
    def _no_yaml_booleans(cls, v: Any, info: ValidationInfo) -> Any:
        return refuse_yaml_booleans(cls, v, info)

    @model_validator(mode="after")
    def _one_size(self) -> SplitSpec:
        from evaluator.config.validation import field_error

        given = [f for f in SPLIT_SIZES if getattr(self, f) is not None]
        if len(given) != 1:
            got = f"got {', '.join(given)}" if given else "got none"
            raise field_error(f"give exactly one of {', '.join(SPLIT_SIZES)} ({got}) — e.g. split: {{test_fraction: 0.4, seed: 13}}")
        if self.mode == "first" and "seed" in self.model_fields_set:
            raise field_error("mode: first takes the rows in file order, so a seed has no effect — remove seed or use "
                       "mode: seeded", "seed")
        return self

    @property
    def how_many(self) -> tuple[str, float | int]:
        """(the size field given, its value)."""
        name = next(f for f in SPLIT_SIZES if getattr(self, f) is not None)
        return name, getattr(self, name)


class TaskSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(pattern=SAFE_NAME.pattern, description="Task name (letters, digits, `_`, `.`, `-`; at most 80 characters), used in unit ids and adapter folders.")
    description: str = Field("", description="One line shown by `tunecheck tasks`.")
    data: DataSource = Field(description="Where the items come from: the arguments of `datasets.load_dataset`.")
    train_split: str = Field("train", description="Split that demonstrations and LoRA training items come from.")
    test_split: str = Field("test", description="Split of the test items (a job's `limit` takes its first N).")
    # Carve train and test out of one data split (see SplitSpec); train_split / test_split then only name the parts.
    # Left out of dumps when not set, so other tasks keep the spec (and fingerprint) they had before it existed.
    split: SplitSpec | None = Field(default=None, exclude_if=lambda v: v is None, description="Carve the training and test items out of ONE data split (e.g. `data_files: {all: x.jsonl}`); train_split / test_split then only name the two parts.")
    id_field: str | None = Field(None, description="Row field with each item's unique id (the template's `id`); null: <split>-<row index>.")
    input_field: str = Field(description="Row field with the input text (the template's `input`).")
    target_field: str = Field(description="Row field with the reference answer; for a choice task, one of the choices.")
    kind: Literal["choice", "generate"] = Field("choice", description="`choice`: the choice with the highest log-likelihood is the prediction (like lm-eval); `generate`: greedy generation, scored by the task's `metric` (default exact match).")
    choices: list[str] | None = Field(None, description="The fixed label set of a choice task (at least 2, distinct); the template's `choices`.")
    choices_field: str | None = Field(None, description="Row field with each item's own choices (a list of at least 2 distinct strings), instead of `choices`.")
    prompt: str | None = Field(None, description="File name of the Jinja2 prompt template (rendered in a sandbox; see Template variables for the folders searched); required unless lmeval_task.")
    instruction: str = Field("", description="Text at the start of every prompt, before the demonstrations.")
    target_delimiter: str = Field(" ", description="Between a query and its answer (in demonstrations and before every scored answer).")
    fewshot_delimiter: str = Field("\n\n", description="After each demonstration: between demonstrations, and before the item's query.")
    instruction_delimiter: str | None = Field(None, description="After the instruction; null: fewshot_delimiter (lm-eval tasks: \"\").")
    metric: Literal["accuracy", "exact_match", "f1", "regex", "json_valid", "json_schema", "json_fields"] = Field("accuracy", description="Name of the reported per-item metric: accuracy (choice tasks); for generate tasks exact_match (the stripped answer equals the target), f1 (SQuAD token F1: lower case, no punctuation or articles, whitespace tokens), regex (the named group `answer` of `answer_regex`'s first match, or the whole match, by exact match; no match scores 0), json_valid (the answer parses as JSON), json_schema (it validates against `answer_schema`) or json_fields (the share of the target JSON object's fields the answer's JSON object reproduces exactly). Scores in [0, 1]; non-0/1 scores get bootstrap intervals.")
    answer_regex: str | None = Field(None, exclude_if=lambda v: v is None, description="metric: regex — the Python regular expression searched in the answer; its named group `answer` (if any) or the whole first match is compared with the target.")
    answer_schema: dict[str, Any] | str | None = Field(None, exclude_if=lambda v: v is None, description="metric: json_schema — the JSON Schema answers must validate against: inline (a mapping), or a JSON / YAML file path relative to the task file.")
    max_new_tokens: int = Field(default=32, ge=1, description="Generate tasks: the most tokens generated per answer (greedy); also reserved when `max` sizes the prefix.")
    stop_sequences: list[str] | None = Field(None, description="Generate tasks: the answer ends at the first of these; null: at fewshot_delimiter.")
    # Which training items are the k demonstrations: `seeded` = one fixed permutation of the train split by the job's
    # seed, k shots take its first k (k=5 ⊂ k=32); `first_n` = the train split in file order (lm-eval's `first_n`
    # sampler). LoRA always trains on the first n training items in file order, whatever this says.
    demonstrations: Literal["seeded", "first_n"] = Field("seeded", description="Which training items are the k demonstrations: `seeded` = the first k of one permutation of the training split by the job's seed (k=5 ⊂ k=32); `first_n` = the first k in file order (lm-eval's first_n sampler).")
    # Why that order (set by tunecheck for `lm-eval:<task>` references: lm-eval's sampler and what tunecheck does with it).
    demonstrations_note: str | None = Field(None, description="Set by tunecheck for lm-eval:<task> references: why the demonstrations follow that order (lm-eval's sampler and what tunecheck does with it).")
    # Set by tunecheck for `lm-eval:<task>` references (evaluator/tasks/lmeval.py): items then carry the query text
    # lm-eval's own doc_to_text rendered, and their choices, so no prompt file or choices list is involved.
    lmeval_task: str | None = Field(None, description="Set by tunecheck for lm-eval:<task> references: items carry the query text lm-eval's doc_to_text rendered and their choices, so no prompt file or choices list is used.")
    # Set by tunecheck for lm-eval generate_until tasks that lm-eval scores with its own answer filters and/or metric
    # kwargs (evaluator/tasks/lmeval_scoring.py). Left out of dumps when not set, so other tasks keep the spec
    # (and fingerprint) they had before these fields existed.
    lmeval_filters: list[dict[str, Any]] | None = Field(None, exclude_if=lambda v: v is None, description="Set by tunecheck for lm-eval generate_until tasks with a `filter_list`: lm-eval's answer filters as plain JSON, in the task's order — [{name, filter: [{function, ...its kwargs}]}]. lm-eval reports one score per filter; tunecheck scores the FIRST filter's output (its name is stored in every result row as `filter`, the filtered answer as `filtered`).")
    lmeval_metric: dict[str, Any] | None = Field(None, exclude_if=lambda v: v is None, description="Set by tunecheck for lm-eval generate_until tasks with a `filter_list` or `exact_match` kwargs: the task scores each answer as lm-eval does — the generation cut at `until` (not stripped), through the first of `lmeval_filters` (none: lm-eval's take_first), by lm-eval's own metric function — {metric: exact_match, kwargs: {ignore_case, ignore_punctuation, regexes_to_ignore, …}, aggregation: mean, gold: target (doc_to_target as text) | choice (doc_to_choice(doc)[doc_to_target]) | targets (a list of golds: any match scores 1)}. `metric` stays exact_match.")
    # How a `choice` task picks its prediction from the per-choice log-likelihoods: `sum` = the largest summed
    # log-likelihood of the continuation (lm-eval's `acc`; favours labels of fewer tokens); `length_normalised` = the
    # largest log-likelihood per character of the scored word (lm-eval 0.4.13's `acc_norm`: loglik / len(choice),
    # the choice text without the target delimiter, in characters).
    scoring: Literal["sum", "length_normalised"] = Field("sum", description="Choice tasks: `sum` = the largest summed log-likelihood wins (lm-eval's acc); `length_normalised` = the largest log-likelihood per character of the scored word (lm-eval's acc_norm).")
    # Verbaliser: task label → the word the model reads in demonstrations, is scored on and LoRA trains on (e.g.
    # {implausible: "no", plausible: "yes"}). Targets and predictions stay the task's labels. None: the labels as is.
    labels: dict[str, str] | None = Field(None, description="Choice tasks: a verbaliser, label → the word shown in demonstrations, scored and trained on (targets and predictions stay labels); null: the labels as they are.")
    # Chat format (lm-eval's --apply_chat_template [--fewshot_as_multiturn] [--system_instruction]): the prompt is the
    # model's chat template over messages (evaluator/tasks/layout.py). Defaults are left out of dumps, so raw tasks keep
    # the spec (and fingerprint) they had before these fields existed; a job's `prompt_format` overrides the first.
    prompt_format: Literal["raw", "chat"] = Field("raw", exclude_if=lambda v: v == "raw", description="`raw`: the prompt is plain text (instruction, demonstrations, query); `chat`: rendered with the model's chat template, as lm-eval's apply_chat_template — the system turn (`system`, then the instruction), the demonstrations, the query as the last user turn with the generation prompt, the answer as the assistant's reply (no target delimiter). A model without a chat template is refused; a job's `prompt_format` overrides this for all its tasks.")
    fewshot_as_multiturn: bool = Field(True, exclude_if=lambda v: v is True, description="Chat format: each demonstration is a user turn (its query) and an assistant turn (its answer), as lm-eval's fewshot_as_multiturn; false: all demonstrations and the query in one user turn, laid out as the raw prompt (delimiters included).")
    system: str | None = Field(None, exclude_if=lambda v: v is None, description="Chat format: a system instruction put before the task's instruction in the system turn, joined by fewshot_delimiter (lm-eval's system_instruction); null: the system turn is the instruction alone (none when it is empty; the template may add its own). Where the template rejects a system turn, lm-eval leaves it out, and so does tunecheck (with a warning).")

    @field_validator("*", mode="before")
    @classmethod
    def _no_yaml_booleans(cls, v: Any, info: ValidationInfo) -> Any:
        return refuse_yaml_booleans(cls, v, info)

    @field_validator("labels")
    @classmethod
    def _labels_words(cls, v: dict[str, str] | None) -> dict[str, str] | None:
        from evaluator.config.validation import field_error

        if v is None:
            return v
        if not v:
            raise field_error("is empty — map each choice to the word it is scored as, or remove `labels`")
        seen: dict[str, str] = {}
        for label, word in v.items():
            if not word.strip():
                raise field_error(f"label {label!r} maps to an empty word — give every label a non-empty word", label)
            if word in seen:
                raise field_error(f"labels {seen[word]!r} and {label!r} both map to {word!r} — the words must be distinct")
            seen[word] = label
        return v

    @field_validator("answer_regex")
    @classmethod
    def _regex_compiles(cls, v: str | None) -> str | None:
        from evaluator.config.validation import field_error

        if v is not None:
            try:
                re.compile(v)
            except re.error as err:
                raise field_error(f"is not a valid regular expression: {err}") from None
        return v

    @field_validator("answer_schema")
    @classmethod
    def _schema_is_a_schema(cls, v: dict | str | None) -> dict | str | None:
        from evaluator.config.validation import field_error
        from evaluator.tasks.metrics import check_schema

        if isinstance(v, str) and not v.strip():
            raise field_error("is empty — give an inline JSON Schema or a file path relative to the task")
        why = check_schema(v) if isinstance(v, dict) else None
        if why:
            raise field_error(why)
        return v

    @model_validator(mode="after")
    def _metric_fields(self) -> TaskSpec:
        """A metric's own field is given exactly when that metric is used; free-form metrics need a generate task."""
        from evaluator.config.validation import field_error
        from evaluator.tasks.metrics import GENERATE_METRICS

        if self.kind == "choice" and self.metric in GENERATE_METRICS and self.metric != "exact_match":
            raise field_error(f"{self.metric} scores generated answers; this task is `kind: choice` (scored by "
                              "accuracy) — set kind: generate or metric: accuracy", "metric")
        for metric, name, example in (("regex", "answer_regex", 'answer_regex: "answer is (?P<answer>\\w+)"'),
                                      ("json_schema", "answer_schema", "answer_schema: {type: object, required: [name]}")):
            given = getattr(self, name) is not None
            if self.metric == metric and not given:
                raise field_error(f"metric: {metric} needs `{name}` — e.g. {example}", "metric")
            if given and self.metric != metric:
                raise field_error(f"is used by metric: {metric} only; this task is `metric: {self.metric}` — remove it "
                                  f"or set metric: {metric}", name)
        return self

    @model_validator(mode="after")
    def _lmeval_scoring(self) -> TaskSpec:
        """lm-eval's filters and metric score the generated answers of an lm-eval generate task, by exact_match."""
        from evaluator.config.validation import field_error

        given = [f for f in ("lmeval_filters", "lmeval_metric") if getattr(self, f) is not None]
        if not given:
            return self
        if self.lmeval_task is None or self.kind != "generate" or self.metric != "exact_match":
            raise field_error("is set by tunecheck for lm-eval generate_until tasks (lmeval_task, kind: generate, "
                              "metric: exact_match) — remove it", given[0])
        if self.lmeval_metric is None:
            raise field_error("lm-eval's filters need lmeval_metric (the metric that scores their output)", "lmeval_filters")
        return self

    @model_validator(mode="after")
    def _system_needs_chat(self) -> TaskSpec:
        """`system` is the chat system turn; a raw prompt has no place for it, and ignoring it would hide that."""
        from evaluator.config.validation import field_error

        if self.system is not None and self.prompt_format != "chat":
            raise field_error("is the system turn of chat prompts; this task is `prompt_format: raw` — set "
                              "prompt_format: chat or remove system", "system")
        return self

    @model_validator(mode="after")
    def _scoring_and_labels(self) -> TaskSpec:
        from evaluator.config.validation import field_error

        if self.kind != "choice" and self.scoring != "sum":
            raise field_error(f"scoring: {self.scoring} applies to choice tasks; this task is `kind: {self.kind}` — remove it", "scoring")
        if self.labels is None:
            return self
        if self.kind != "choice":
            raise field_error(f"labels (a verbaliser) apply to choice tasks; this task is `kind: {self.kind}` — remove it", "labels")
        if self.lmeval_task is not None:
            raise field_error("labels are not supported on lm-eval tasks — change doc_to_choice in the lm-eval task instead", "labels")
        if self.choices and not self.choices_field:
            missing = [c for c in self.choices if c not in self.labels]
            extra = [c for c in self.labels if c not in self.choices]
            if missing or extra:
                parts = ([f"missing {', '.join(map(repr, missing))}"] if missing else []) + (
                    [f"not a choice: {', '.join(map(repr, extra))}"] if extra else [])
                raise field_error(f"keys must be exactly the task's choices ({', '.join(self.choices)}): {'; '.join(parts)}", "labels")
        return self

    @model_serializer(mode="wrap")
    def _omit_default_scoring(self, handler):
        """`scoring: sum` and no `labels` are left out of dumps, so tasks that do not use them keep the spec (and the
        task fingerprint, see evaluator/identity.py) they had before these fields existed."""
        out = handler(self)
        if isinstance(out, dict):
            if out.get("scoring") == "sum":
                out.pop("scoring")
            if "labels" in out and out["labels"] is None:
                out.pop("labels")
        return out

    @field_validator("choices")
    @classmethod
    def _distinct_choices(cls, v: list[str] | None) -> list[str] | None:
        for i, c in enumerate(v or []):
            if c in v[:i]:
                raise ValueError(f"choice {c!r} is listed twice — choices must be distinct")
        return v

    @model_validator(mode="after")
    def _prompt_and_choices(self) -> TaskSpec:
        if self.lmeval_task is not None:
            return self
        if self.prompt is None:
            raise ValueError("a task needs `prompt`: a Jinja2 file name in prompts/")
        if self.kind == "choice" and not (self.choices or self.choices_field):
            raise ValueError("a choice task needs `choices` (a label list) or `choices_field`")
        if self.kind == "choice" and self.choices and not self.choices_field and len(self.choices) < 2:
            raise ValueError("a choice task needs at least 2 choices")
        return self

    @property
    def stops(self) -> list[str]:
        """Where a generated answer ends."""
        return [s for s in (self.stop_sequences if self.stop_sequences is not None else [self.fewshot_delimiter]) if s]

    @property
    def prerendered(self) -> bool:
        """Items hold their finished query text (lm-eval tasks); otherwise the prompt template renders them."""
        return self.lmeval_task is not None


@dataclass(frozen=True)
class Item:
    id: str
    input: str
    target: str
    choices: tuple[str, ...] = ()
    # lm-eval tasks: the test doc's gold exactly as lm-eval's `doc_to_target(doc)` gives it (an index, the label text,
    # a one-element list…), made JSON-safe — what lm-eval logs as a sample's `target` and hashes as `target_hash`.
    # None for native tasks, whose target is the label text. Not part of equality, hashing or `Task.data_hash`.
    lmeval_target: Any = field(default=None, compare=False, hash=False)
    # lm-eval tasks scored through lm-eval's answer filters (`TaskSpec.lmeval_filters`): the test doc as lm-eval's
    # filters receive it (some read it, e.g. `multi_choice_regex` its `choices`). None otherwise. Not part of
    # equality, hashing or `Task.data_hash`.
    lmeval_doc: Any = field(default=None, compare=False, hash=False, repr=False)


@dataclass(frozen=True)
class Task:
    spec: TaskSpec
    path: Path
    train: tuple[Item, ...]
    test: tuple[Item, ...]
    # The pool demonstrations are drawn from when it is not `train` (lm-eval tasks with the `first_n` sampler whose
    # few-shot docs are another split than the training data); None: `train`.
    fewshot: tuple[Item, ...] | None = None
    # Each item's rendered query (prompt template), filled when the task is loaded (evaluator.prompts.check_prompt)
    # and read by PromptBuilder.query, so the run never renders an item twice. Not part of equality or hashing.
    rendered: dict = field(default_factory=dict, init=False, repr=False, compare=False, hash=False)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def demo_pool(self) -> tuple[Item, ...]:
        """The items demonstrations come from (in file order; `PromptBuilder.demos` orders them)."""
        return self.train if self.fewshot is None else self.fewshot

    def data_hash(self, items: tuple[Item, ...] | list[Item]) -> str:
        """Content hash of items, so adapters are keyed by exactly the data they saw."""
        h = hashlib.sha256()
        for it in items:
            h.update(json.dumps([it.id, it.input, it.target], ensure_ascii=False).encode())
        return h.hexdigest()[:16]
