"""A task is data + a prompt + a scorer: a YAML file in `tasks/` naming a `datasets` source and its fields.

Loading a task checks everything that needs no model: the task file (one line per problem), each split's data files
(JSON / JSON Lines are read here, row by row, so a bad row is named by its file and line; CSV files are checked
before `datasets` reads them), every row's fields (a null id, a nested field, per-row choices that are not a list of
strings), and the prompt template, rendered on every training and test item (the rendered queries are kept on the
`Task`, so the run does not render them again).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_serializer,
    model_validator,
)

from evaluator.config.job import format_validation_error, load_yaml, refuse_yaml_booleans
from evaluator.errors import UserError

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
        from evaluator.config.job import _err

        given = [f for f in SPLIT_SIZES if getattr(self, f) is not None]
        if len(given) != 1:
            got = f"got {', '.join(given)}" if given else "got none"
            raise _err(f"give exactly one of {', '.join(SPLIT_SIZES)} ({got}) — e.g. split: {{test_fraction: 0.4, seed: 13}}")
        if self.mode == "first" and "seed" in self.model_fields_set:
            raise _err("mode: first takes the rows in file order, so a seed has no effect — remove seed or use "
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
    kind: Literal["choice", "generate"] = Field("choice", description="`choice`: the choice with the highest log-likelihood is the prediction (like lm-eval); `generate`: greedy generation, scored by exact match.")
    choices: list[str] | None = Field(None, description="The fixed label set of a choice task (at least 2, distinct); the template's `choices`.")
    choices_field: str | None = Field(None, description="Row field with each item's own choices (a list of at least 2 distinct strings), instead of `choices`.")
    prompt: str | None = Field(None, description="File name of the Jinja2 prompt template (rendered in a sandbox; see Template variables for the folders searched); required unless lmeval_task.")
    instruction: str = Field("", description="Text at the start of every prompt, before the demonstrations.")
    target_delimiter: str = Field(" ", description="Between a query and its answer (in demonstrations and before every scored answer).")
    fewshot_delimiter: str = Field("\n\n", description="After each demonstration: between demonstrations, and before the item's query.")
    instruction_delimiter: str | None = Field(None, description="After the instruction; null: fewshot_delimiter (lm-eval tasks: \"\").")
    metric: Literal["accuracy", "exact_match"] = Field("accuracy", description="Name of the reported per-item metric: accuracy (choice tasks) or exact_match (generate tasks).")
    max_new_tokens: int = Field(default=32, ge=1, description="Generate tasks: the most tokens generated per answer (greedy); also reserved when `max` sizes the prefix.")
    stop_sequences: list[str] | None = Field(None, description="Generate tasks: the answer ends at the first of these; null: at fewshot_delimiter.")
    # Which training items are the k demonstrations: `seeded` = one fixed permutation of the train split by the job's
    # seed, k shots take its first k (k=5 ⊂ k=32); `first_n` = the train split in file order (lm-eval's `first_n`
    # sampler). LoRA always trains on the first n training items in file order, whatever this says.
    demonstrations: Literal["seeded", "first_n"] = Field("seeded", description="Which training items are the k demonstrations: `seeded` = the first k of one permutation of the training split by the job's seed (k=5 ⊂ k=32); `first_n` = the first k in file order (lm-eval's first_n sampler).")
    # Why that order (set by tunecheck for `lm-eval:<task>` references: lm-eval's sampler and what tunecheck does with it).
    demonstrations_note: str | None = Field(None, description="Set by tunecheck for lm-eval:<task> references: why the demonstrations follow that order (lm-eval's sampler and what tunecheck does with it).")
    # Set by tunecheck for `lm-eval:<task>` references (evaluator/lmeval_tasks.py): items then carry the query text
    # lm-eval's own doc_to_text rendered, and their choices, so no prompt file or choices list is involved.
    lmeval_task: str | None = Field(None, description="Set by tunecheck for lm-eval:<task> references: items carry the query text lm-eval's doc_to_text rendered and their choices, so no prompt file or choices list is used.")
    # How a `choice` task picks its prediction from the per-choice log-likelihoods: `sum` = the largest summed
    # log-likelihood of the continuation (lm-eval's `acc`; favours labels of fewer tokens); `length_normalised` = the
    # largest log-likelihood per character of the scored word (lm-eval 0.4.13's `acc_norm`: loglik / len(choice),
    # the choice text without the target delimiter, in characters).
    scoring: Literal["sum", "length_normalised"] = Field("sum", description="Choice tasks: `sum` = the largest summed log-likelihood wins (lm-eval's acc); `length_normalised` = the largest log-likelihood per character of the scored word (lm-eval's acc_norm).")
    # Verbaliser: task label → the word the model reads in demonstrations, is scored on and LoRA trains on (e.g.
    # {implausible: "no", plausible: "yes"}). Targets and predictions stay the task's labels. None: the labels as is.
    labels: dict[str, str] | None = Field(None, description="Choice tasks: a verbaliser, label → the word shown in demonstrations, scored and trained on (targets and predictions stay labels); null: the labels as they are.")

    @field_validator("*", mode="before")
    @classmethod
    def _no_yaml_booleans(cls, v: Any, info: ValidationInfo) -> Any:
        return refuse_yaml_booleans(cls, v, info)

    @field_validator("labels")
    @classmethod
    def _labels_words(cls, v: dict[str, str] | None) -> dict[str, str] | None:
        from evaluator.config.job import _err

        if v is None:
            return v
        if not v:
            raise _err("is empty — map each choice to the word it is scored as, or remove `labels`")
        seen: dict[str, str] = {}
        for label, word in v.items():
            if not word.strip():
                raise _err(f"label {label!r} maps to an empty word — give every label a non-empty word", label)
            if word in seen:
                raise _err(f"labels {seen[word]!r} and {label!r} both map to {word!r} — the words must be distinct")
            seen[word] = label
        return v

    @model_validator(mode="after")
    def _scoring_and_labels(self) -> TaskSpec:
        from evaluator.config.job import _err

        if self.kind != "choice" and self.scoring != "sum":
            raise _err(f"scoring: {self.scoring} applies to choice tasks; this task is `kind: {self.kind}` — remove it", "scoring")
        if self.labels is None:
            return self
        if self.kind != "choice":
            raise _err(f"labels (a verbaliser) apply to choice tasks; this task is `kind: {self.kind}` — remove it", "labels")
        if self.lmeval_task is not None:
            raise _err("labels are not supported on lm-eval tasks — change doc_to_choice in the lm-eval task instead", "labels")
        if self.choices and not self.choices_field:
            missing = [c for c in self.choices if c not in self.labels]
            extra = [c for c in self.labels if c not in self.choices]
            if missing or extra:
                parts = ([f"missing {', '.join(map(repr, missing))}"] if missing else []) + (
                    [f"not a choice: {', '.join(map(repr, extra))}"] if extra else [])
                raise _err(f"keys must be exactly the task's choices ({', '.join(self.choices)}): {'; '.join(parts)}", "labels")
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


def find_task_file(ref: str, search_dirs: list[Path]) -> Path:
    """A task reference is a path to a YAML file or a name looked up in the tasks directories."""
    p = Path(ref).expanduser()
    if p.suffix in {".yaml", ".yml"}:
        for cand in [p, *(d / p for d in search_dirs)]:
            if cand.is_file():
                return cand
        for cand in [p, *(d / p for d in search_dirs)]:
            if cand.is_dir():
                raise UserError(f"task file {cand} is a directory, not a file — give the path of the task YAML")
        raise UserError(f"task file {ref} does not exist — check the path")
    if not SAFE_NAME.match(ref):
        raise UserError(f"task name {ref!r} is not a plain name — use letters, digits, '_', '-' or a .yaml path")
    for d in search_dirs:
        for ext in (".yaml", ".yml"):
            if (d / f"{ref}{ext}").is_file():
                return d / f"{ref}{ext}"
    for d in search_dirs:
        for ext in (".yaml", ".yml"):
            if (d / f"{ref}{ext}").is_dir():
                raise UserError(f"task file {d / f'{ref}{ext}'} is a directory, not a file — the task {ref!r} must be a YAML file")
    raise UserError(f"unknown task {ref!r} — see `tunecheck tasks` for the available ones")


def task_search_dirs(job_dir: Path | None = None) -> list[Path]:
    dirs = [Path.cwd() / "tasks"]
    if job_dir is not None:
        dirs.insert(0, job_dir)
        dirs.insert(1, job_dir / "tasks")
    dirs.append(REPO_TASKS)
    out: list[Path] = []
    for d in dirs:
        if d.resolve() not in [o.resolve() for o in out]:
            out.append(d)
    return out


def load_spec(path: Path) -> TaskSpec:
    try:
        return TaskSpec.model_validate(load_yaml(path, "task file"))
    except ValidationError as err:
        raise UserError(format_validation_error(err, str(path))) from None


COMPRESSED = (".gz", ".bz2", ".xz", ".zst", ".lz4", ".zip", ".tar")
LOCAL_BUILDERS = {"json", "csv", "parquet", "text", "arrow"}


def _data_file_list(spec: TaskSpec, task_dir: Path, split: str, files: str | list[str]) -> list[Path]:
    """One split's data files, resolved against the task folder (a glob pattern expands to its files, sorted)."""
    names = [files] if isinstance(files, str) else files
    out: list[Path] = []
    for f in names:
        fp = (task_dir / f).resolve()
        if fp.is_dir():
            raise UserError(
                f"task {spec.name}: data file {fp} (split {split!r}) is a directory, not a file — name the file(s) "
                "inside it in data.data_files (e.g. data/train.jsonl or data/*.jsonl)"
            )
        if fp.is_file():
            found = [fp]
        elif any(c in str(f) for c in "*?["):
            found = sorted(p for p in fp.parent.glob(fp.name) if p.is_file())
            if not found:
                raise UserError(f"task {spec.name}: data file pattern {f!r} (split {split!r}) matches no file in "
                                f"{fp.parent} — fix data.data_files")
        else:
            raise UserError(f"task {spec.name}: data file {fp} (split {split!r}) does not exist — fix data.data_files")
        for p in found:
            with open(p, "rb") as fh:  # `datasets` fails on an empty file with a bare StopIteration
                if not fh.read(4096).strip():
                    raise UserError(f"task {spec.name}: split {split!r} is empty ({p}) — it needs at least one row")
        out.extend(found)
    return out


def _resolve_data_files(spec: TaskSpec, task_dir: Path) -> dict[str, list[Path]] | None:
    if spec.data.data_files is None:
        return None
    return {split: _data_file_list(spec, task_dir, split, files) for split, files in spec.data.data_files.items()}


def _decode(spec: TaskSpec, split: str, fp: Path) -> str:
    raw = fp.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise UserError(f"task {spec.name}: {fp} (split {split!r}) is not UTF-8 (line {line}, byte {exc.start}) — "
                        "re-encode it as UTF-8") from None
    return text.removeprefix("\ufeff")


def _unique_keys(where: str, spec: TaskSpec):
    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in pairs:
            if k in out:
                raise UserError(f"task {spec.name}: {where} has the key {k!r} twice — keep one")
            out[k] = v
        return out

    return hook


def _json_kind(v: Any) -> str:
    return {dict: "a JSON object", list: "a JSON list", str: "text", bool: "a boolean", type(None): "null"}.get(
        type(v), f"a JSON {type(v).__name__}")


def _read_json_rows(spec: TaskSpec, split: str, fp: Path) -> list[tuple[Any, str]]:
    """Rows of a JSON Lines file or of a JSON file holding one list of objects, each with where it is (file and
    line), read here rather than by `datasets` so a bad row is named by its file and line — not as a generic dataset
    build error of another split — and no type is coerced (a null id or a nested field is refused, not stringified)."""
    text = _decode(spec, split, fp)
    body = text.lstrip()
    rows: list[tuple[Any, str]] = []
    if body.startswith("["):
        dec = json.JSONDecoder(object_pairs_hook=_unique_keys(f"{fp}", spec))
        pos = len(text) - len(body) + 1
        n = 0
        while True:
            while pos < len(text) and text[pos].isspace():
                pos += 1
            if pos < len(text) and text[pos] == "]" and n == 0:
                pos += 1
                break
            line = text.count("\n", 0, pos) + 1
            try:
                obj, end = dec.raw_decode(text, pos)
            except json.JSONDecodeError as exc:
                raise UserError(f"task {spec.name}: {fp} line {exc.lineno} is not valid JSON ({exc.msg}) — fix the "
                                "file (a JSON data file holds one list of objects)") from None
            rows.append((obj, f"{fp} line {line}"))
            n += 1
            pos = end
            while pos < len(text) and text[pos].isspace():
                pos += 1
            if pos < len(text) and text[pos] == ",":
                pos += 1
                continue
            if pos < len(text) and text[pos] == "]":
                pos += 1
                break
            line = text.count("\n", 0, pos) + 1
            raise UserError(f"task {spec.name}: {fp} line {line} is not valid JSON (expected ',' or ']' after a row) "
                            "— fix the file")
        if text[pos:].strip():
            line = text.count("\n", 0, pos) + 1
            raise UserError(f"task {spec.name}: {fp} line {line}: more data after the list of rows — a .json data "
                            "file holds one list of objects; for one object per line use JSON Lines")
    else:
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            where = f"{fp} line {n}"
            try:
                obj = json.loads(line, object_pairs_hook=_unique_keys(where, spec))
            except json.JSONDecodeError as exc:
                if n == 1 or not rows:
                    try:
                        whole = json.loads(text)
                    except json.JSONDecodeError:
                        whole = None
                    if isinstance(whole, dict):
                        raise UserError(
                            f"task {spec.name}: {fp} holds one JSON object spread over several lines, not rows — write "
                            "one object per line (JSON Lines) or a list of objects"
                        ) from None
                raise UserError(f"task {spec.name}: {fp} line {n} is not valid JSON ({exc.msg}) — fix the line") from None
            rows.append((obj, where))
    for obj, where in rows:
        if not isinstance(obj, dict):
            raise UserError(f"task {spec.name}: {where} is {_json_kind(obj)}, not an object with fields — each row "
                            'must be a JSON object, e.g. {"id": "1", "text": "...", "label": "..."}')
    return rows


def _csv_lines(spec: TaskSpec, split: str, fp: Path) -> list[str]:
    """Check a CSV file the way pandas will read it (header, then rows of at most as many fields), naming the file and
    line of a bad row — `datasets` reports it as a generic build error, logged twice. Returns where each row is."""
    import csv
    import io

    text = _decode(spec, split, fp)
    reader = csv.reader(io.StringIO(text))
    header: list[str] | None = None
    where: list[str] = []
    try:
        for row in reader:
            if not row or not any(c.strip() for c in row):
                continue
            if header is None:
                header = row
                needed = [f for f in (spec.id_field, spec.input_field, spec.target_field, spec.choices_field) if f]
                missing = [f for f in needed if f not in header]
                if missing:
                    raise UserError(f"task {spec.name}: {fp} (split {split!r}) has no column {missing[0]!r} (its "
                                    f"header: {', '.join(header)}) — fix the header or the task's field names")
                continue
            if len(row) > len(header):
                raise UserError(f"task {spec.name}: {fp} line {reader.line_num} has {len(row)} fields but the header "
                                f"has {len(header)} — quote fields that contain commas (\"a, b\")")
            where.append(f"{fp} line {reader.line_num}")
    except csv.Error as exc:
        raise UserError(f"task {spec.name}: {fp} line {reader.line_num} is not valid CSV ({exc}) — fix the line") from None
    return where


def _cause_line(exc: BaseException) -> str:
    """The most specific first line of an exception chain (`datasets` wraps the real cause in a generic error)."""
    seen = []
    e: BaseException | None = exc
    while e is not None and e not in seen:
        seen.append(e)
        e = e.__cause__ or e.__context__
    for e in reversed(seen):
        text = str(e).strip()
        if text and "An error occurred while generating the dataset" not in text:
            return text.splitlines()[0]
    return type(exc).__name__


@contextlib.contextmanager
def _quiet_datasets():
    """`datasets` logs a failed file read at ERROR level (and pandas warns) before raising: one line is ours to print."""
    import warnings

    loggers = [logging.getLogger(n) for n in ("datasets", "fsspec", "huggingface_hub")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL + 1)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, lv in zip(loggers, levels):
            lg.setLevel(lv)


def _load_split(spec: TaskSpec, task_dir: Path, split: str) -> list[tuple[dict[str, Any], str]]:
    """The rows of one split, each with where it is (file and line when known), reading only that split's files."""
    import datasets

    data_files = _resolve_data_files(spec, task_dir)
    if data_files is not None and split not in data_files:
        raise UserError(f"task {spec.name}: split {split!r} is not in data.data_files ({', '.join(data_files)})")
    if data_files is None and spec.data.path in LOCAL_BUILDERS:
        raise UserError(f"task {spec.name}: data.path {spec.data.path!r} reads local files — give data.data_files "
                        f"(split name → file, relative to the task file)")
    files = data_files[split] if data_files is not None else None
    if spec.data.path == "json" and files and not any(str(f).endswith(COMPRESSED) for f in files):
        return [r for f in files for r in _read_json_rows(spec, split, f)]
    where: list[str] | None = None
    if spec.data.path == "csv" and files and not any(str(f).endswith(COMPRESSED) for f in files):
        where = [w for f in files for w in _csv_lines(spec, split, f)]
    datasets.disable_progress_bars()
    try:
        with _quiet_datasets():
            ds = datasets.load_dataset(
                spec.data.path, name=spec.data.name, data_files={split: [str(f) for f in files]} if files else None,
                split=split, revision=spec.data.revision,
            )
    except UserError:
        raise
    except UnicodeDecodeError:
        raise UserError(f"task {spec.name}: data for split {split!r} is not UTF-8 — re-encode the file") from None
    except Exception as exc:  # noqa: BLE001 - datasets raises many types; the user needs one line
        src = ", ".join(str(f) for f in files) if files else spec.data.path
        raise UserError(f"task {spec.name}: cannot load split {split!r} from {src}: {_cause_line(exc)}") from None
    rows = [dict(r) for r in ds]
    if where is None or len(where) != len(rows):
        where = [f"row {i} of split {split!r}" for i in range(len(rows))]
    return list(zip(rows, where))


SCALARS = (str, int, float)


def _scalar(spec: TaskSpec, where: str, field_name: str, what: str, value: Any) -> str:
    """A field's value as text: text, a number or a boolean (as `datasets` gave them); a nested value is refused."""
    if isinstance(value, (dict, list, tuple)):
        raise UserError(
            f"task {spec.name}: {where}: field {field_name!r} ({what}) is {_json_kind(value)}, not text — tunecheck "
            "reads top-level text fields: flatten the data or point the task at a text field"
        )
    if not isinstance(value, SCALARS):  # bool is an int
        raise UserError(f"task {spec.name}: {where}: field {field_name!r} ({what}) is {type(value).__name__}, not "
                        "text — fix the data")
    return str(value)


def _row_choices(spec: TaskSpec, where: str, value: Any) -> tuple[str, ...]:
    f = spec.choices_field
    if not isinstance(value, (list, tuple)):
        raise UserError(
            f"task {spec.name}: {where}: choices field {f!r} is {_json_kind(value)} ({str(value)[:40]!r}), not a list "
            f'of strings — write it as a list, e.g. ["yes", "no"]'
        )
    for j, c in enumerate(value):
        if not isinstance(c, str):
            raise UserError(f"task {spec.name}: {where}: choice {j} in {f!r} is {_json_kind(c)} ({c!r}), not a string "
                            '— write every choice as a string, e.g. "1"')
    if len(value) < 2:
        raise UserError(f"task {spec.name}: {where}: choices field {f!r} has {len(value)} choice(s) — a choice task "
                        "needs at least 2")
    if len(set(value)) != len(value):
        dup = next(c for j, c in enumerate(value) if c in value[:j])
        raise UserError(f"task {spec.name}: {where}: choice {dup!r} is listed twice in {f!r} — choices must be distinct")
    return tuple(value)


def _to_items(spec: TaskSpec, rows: list[tuple[dict[str, Any], str]], split: str) -> tuple[Item, ...]:
    if not rows:
        raise UserError(f"task {spec.name}: split {split!r} is empty — it needs at least one row")
    items: list[Item] = []
    seen: dict[str, str] = {}
    for i, (row, where) in enumerate(rows):
        place = where if "split" in where else f"{where} (split {split!r})"
        if spec.id_field:
            if spec.id_field not in row:
                raise UserError(f"task {spec.name}: {place} has no id field {spec.id_field!r} — give every row an id, "
                                "or remove id_field from the task")
            rid_value = row[spec.id_field]
            if rid_value is None:
                raise UserError(f"task {spec.name}: {place}: its id {spec.id_field!r} is null — give every row an id")
            if isinstance(rid_value, bool):
                raise UserError(f"task {spec.name}: {place}: its id {spec.id_field!r} is a boolean — use text or a number")
            rid = _scalar(spec, place, spec.id_field, "the id", rid_value)
        else:
            rid = f"{split}-{i}"
        for fld in (spec.input_field, spec.target_field, spec.choices_field):
            if fld and row.get(fld) is None:
                raise UserError(f"task {spec.name}: {place} has no field {fld!r} (row {rid}) — fix the data or the "
                                "task's field names")
        if rid in seen:
            raise UserError(f"task {spec.name}: duplicate id {rid!r} in split {split!r} ({seen[rid]} and {where}) — "
                            "ids must be unique")
        seen[rid] = where
        text = _scalar(spec, place, spec.input_field, "the input", row[spec.input_field])
        target = _scalar(spec, place, spec.target_field, "the target", row[spec.target_field])
        choices = _row_choices(spec, place, row[spec.choices_field]) if spec.choices_field else tuple(spec.choices or ())
        if spec.kind == "choice" and target not in choices:
            raise UserError(f"task {spec.name}: row {rid} ({where}) target {target!r} is not among the choices — fix "
                            "the data or `choices`")
        items.append(Item(id=rid, input=text, target=target, choices=choices))
    return tuple(items)


def _split_source(spec: TaskSpec) -> str:
    """The one data split `split:` divides: `split.source`, else the only key of data.data_files."""
    sp, files = spec.split, spec.data.data_files
    if sp.source is not None:
        if files is not None and sp.source not in files:
            raise UserError(f"task {spec.name}: split.source {sp.source!r} is not in data.data_files "
                            f"({', '.join(files)}) — name one of them")
        return sp.source
    if files is None:
        raise UserError(f"task {spec.name}: split.source is needed without data.data_files — name the data split to "
                        "divide (e.g. split: {source: train, test_fraction: 0.4})")
    if len(files) != 1:
        raise UserError(f"task {spec.name}: split divides one data split but data.data_files has {len(files)} "
                        f"({', '.join(files)}) — set split.source to the one to divide, or remove split")
    return next(iter(files))


def split_items(spec: TaskSpec, items: tuple[Item, ...]) -> tuple[tuple[Item, ...], tuple[Item, ...]]:
    """(train, test) of one split's items by `spec.split` (see SplitSpec); both keep file order. A size that would
    leave either part empty is one UserError line naming the field."""
    import math
    import random

    sp = spec.split
    field_name, value = sp.how_many
    n = len(items)
    count = math.floor(n * value + 0.5) if field_name.endswith("fraction") else int(value)
    side = field_name.split("_")[0]
    if not 1 <= count <= n - 1:
        other = "test" if side == "train" else "train"
        what = f"gives no {side} items" if count < 1 else f"leaves {max(0, n - count)} {other} items"
        raise UserError(f"task {spec.name}: split.{field_name} {value} of {n} rows "
                        f"{what} — both parts need at least one item ("
                        + (f"1 to {n - 1} {side} items)" if n >= 2 else "the data needs at least 2 rows)"))
    n_test = count if side == "test" else n - count
    if sp.mode == "first":
        return items[: n - n_test], items[n - n_test :]
    order = list(range(n))
    random.Random(sp.seed).shuffle(order)
    held = set(order[:n_test])
    return (tuple(it for i, it in enumerate(items) if i not in held), tuple(it for i, it in enumerate(items) if i in held))


def load_task(ref: str, search_dirs: list[Path] | None = None, lmeval_include: list[Path] | None = None) -> Task:
    """A task by name or YAML path, or `lm-eval:<task>` (lm-eval's registry / `lmeval_include` folders / a YAML file)."""
    if ref.startswith("lm-eval:"):
        from evaluator.tasks.lmeval import load_lmeval_task

        return load_lmeval_task(ref, lmeval_include, search_dirs)
    path = find_task_file(ref, search_dirs or task_search_dirs())
    spec = load_spec(path)
    if spec.split is None:
        train = _to_items(spec, _load_split(spec, path.parent, spec.train_split), spec.train_split)
        test = _to_items(spec, _load_split(spec, path.parent, spec.test_split), spec.test_split)
    else:
        source = _split_source(spec)
        train, test = split_items(spec, _to_items(spec, _load_split(spec, path.parent, source), source))
    task = Task(spec=spec, path=path, train=train, test=test)
    from evaluator.prompts.builder import check_prompt  # prompts imports this module

    check_prompt(task)  # renders the template on every item: any template problem is found here, before a model loads
    return task


def check_task_for_job(task: Task, job: Any) -> list[str]:
    """What a job asks of a loaded task that can be checked without a model (for the planner, before any model loads):
    an explicit shot count above the task's demonstration items, LoRA without training items. Returns notes for
    training sizes that collapse onto the same number of items (see `evaluator.config.effective_train_sizes`)."""
    from evaluator.config.job import effective_train_sizes

    pool = len(task.demo_pool)
    lora = job.arms.lora
    asks = [("arms.prompting.shots", job.arms.prompting.shots)]
    if job.newer:
        asks.append(("arms.newer.shots" if job.arms.newer.shots else "arms.prompting.shots (arm C)", job.newer_shots()))
    if lora.enabled:
        asks.append(("arms.lora.eval_shots", lora.eval_shots))
    for where, shots in asks:
        for k in shots:
            if k != "max" and int(k) > pool:
                raise UserError(f"{where}: shots={k} but task {task.name} has only {pool} demonstration items — lower "
                                "it or use max")
    if not lora.enabled:
        return []
    if not task.train:
        raise UserError(f"task {task.name} has no training items, so the LoRA arm cannot train — set arms.lora.enabled: false")
    return effective_train_sizes(list(lora.train_sizes), len(task.train), task.name)[1]


def list_tasks(search_dirs: list[Path] | None = None) -> list[tuple[Path, TaskSpec | None, str]]:
    """Every task file found, with its spec (or the one-line problem if it does not load)."""
    out = []
    seen: set[str] = set()
    for d in search_dirs or task_search_dirs():
        for p in sorted([*d.glob("*.yaml"), *d.glob("*.yml")]):
            if p.stem in seen:
                continue
            seen.add(p.stem)
            try:
                out.append((p, load_spec(p), ""))
            except UserError as err:
                out.append((p, None, str(err)))
    return out
