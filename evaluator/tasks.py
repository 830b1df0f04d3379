"""A task is data + a prompt + a scorer: a YAML file in `tasks/` naming a `datasets` source and its fields."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from evaluator.config import format_validation_error, load_yaml
from evaluator.errors import UserError

REPO_TASKS = Path(__file__).resolve().parents[1] / "tasks"
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,79}$")


class DataSource(BaseModel):
    """Arguments for `datasets.load_dataset`: a hub id, or a builder (`json`, `csv`, `parquet`) with data_files."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    path: str
    name: str | None = None
    data_files: dict[str, str | list[str]] | None = None  # relative to the task file
    revision: str | None = None


class TaskSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(pattern=SAFE_NAME.pattern)
    description: str = ""
    data: DataSource
    train_split: str = "train"
    test_split: str = "test"
    id_field: str | None = None
    input_field: str
    target_field: str
    kind: Literal["choice", "generate"] = "choice"
    choices: list[str] | None = None  # fixed label set for `choice` tasks
    choices_field: str | None = None  # or per-row choices
    prompt: str | None = None  # file name in prompts/ (Jinja2, rendered in a sandbox); required unless lmeval_task
    instruction: str = ""
    target_delimiter: str = " "
    fewshot_delimiter: str = "\n\n"
    instruction_delimiter: str | None = None  # after the instruction; None: fewshot_delimiter (lm-eval tasks: "")
    metric: Literal["accuracy", "exact_match"] = "accuracy"
    max_new_tokens: int = Field(default=32, ge=1)
    stop_sequences: list[str] | None = None  # generate: the answer ends at the first of these (None: fewshot_delimiter)
    # Which training items are the k demonstrations: `seeded` = one fixed permutation of the train split by the job's
    # seed, k shots take its first k (k=5 ⊂ k=32); `first_n` = the train split in file order (lm-eval's `first_n`
    # sampler). LoRA always trains on the first n training items in file order, whatever this says.
    demonstrations: Literal["seeded", "first_n"] = "seeded"
    # Why that order (set by tunecheck for `lm-eval:<task>` references: lm-eval's sampler and what tunecheck does with it).
    demonstrations_note: str | None = None
    # Set by tunecheck for `lm-eval:<task>` references (evaluator/lmeval_tasks.py): items then carry the query text
    # lm-eval's own doc_to_text rendered, and their choices, so no prompt file or choices list is involved.
    lmeval_task: str | None = None

    @model_validator(mode="after")
    def _prompt_and_choices(self) -> "TaskSpec":
        if self.lmeval_task is not None:
            return self
        if self.prompt is None:
            raise ValueError("a task needs `prompt`: a Jinja2 file name in prompts/")
        if self.kind == "choice" and not (self.choices or self.choices_field):
            raise ValueError("a choice task needs `choices` (a label list) or `choices_field`")
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
        raise UserError(f"task file {ref} does not exist — check the path")
    if not SAFE_NAME.match(ref):
        raise UserError(f"task name {ref!r} is not a plain name — use letters, digits, '_', '-' or a .yaml path")
    for d in search_dirs:
        for ext in (".yaml", ".yml"):
            if (d / f"{ref}{ext}").is_file():
                return d / f"{ref}{ext}"
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


def _resolve_data_files(spec: TaskSpec, task_dir: Path) -> dict[str, Any] | None:
    if spec.data.data_files is None:
        return None
    out: dict[str, Any] = {}
    for split, files in spec.data.data_files.items():
        names = [files] if isinstance(files, str) else files
        resolved = []
        for f in names:
            fp = (task_dir / f).resolve()
            if not fp.is_file():
                raise UserError(f"task {spec.name}: data file {fp} (split {split!r}) does not exist — fix data.data_files")
            with open(fp, "rb") as fh:  # `datasets` fails on an empty file with a bare StopIteration
                if not fh.read(4096).strip():
                    raise UserError(f"task {spec.name}: split {split!r} is empty ({fp}) — it needs at least one row")
            if spec.data.path == "json":
                _precheck_json_lines(spec, split, fp)
            resolved.append(str(fp))
        out[split] = resolved
    return out


def _precheck_json_lines(spec: TaskSpec, split: str, fp: Path) -> None:
    """Name the file, line and field for the problems `datasets` reports only as a generic build error."""
    raw = fp.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(f"task {spec.name}: {fp} (split {split!r}) is not UTF-8 (byte {exc.start}) — re-encode it as UTF-8") from None
    if text.lstrip().startswith("["):
        return  # a JSON array, not JSON Lines: left to `datasets`
    needed = [f for f in (spec.input_field, spec.target_field, spec.choices_field) if f]
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UserError(f"task {spec.name}: {fp} line {n} is not valid JSON ({exc.msg}) — fix the line") from None
        missing = [f for f in needed if not isinstance(row, dict) or row.get(f) is None]
        if missing:
            raise UserError(f"task {spec.name}: {fp} line {n} (split {split!r}) has no field {missing[0]!r} — fix the data or the task's field names")


def _load_split(spec: TaskSpec, task_dir: Path, split: str) -> list[dict[str, Any]]:
    import datasets

    data_files = _resolve_data_files(spec, task_dir)
    if data_files is not None and split not in data_files:
        raise UserError(f"task {spec.name}: split {split!r} is not in data.data_files ({', '.join(data_files)})")
    datasets.disable_progress_bars()
    try:
        ds = datasets.load_dataset(
            spec.data.path, name=spec.data.name, data_files=data_files, split=split, revision=spec.data.revision
        )
    except UserError:
        raise
    except UnicodeDecodeError:
        raise UserError(f"task {spec.name}: data for split {split!r} is not UTF-8 — re-encode the file") from None
    except Exception as exc:  # datasets raises many types; the user needs one line
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"task {spec.name}: cannot load split {split!r} from {spec.data.path}: {first}") from None
    return [dict(r) for r in ds]


def _to_items(spec: TaskSpec, rows: list[dict[str, Any]], split: str) -> tuple[Item, ...]:
    if not rows:
        raise UserError(f"task {spec.name}: split {split!r} is empty — it needs at least one row")
    items: list[Item] = []
    seen: set[str] = set()
    for i, row in enumerate(rows):
        rid = str(row[spec.id_field]) if spec.id_field and spec.id_field in row else f"{split}-{i}"
        for field in (spec.input_field, spec.target_field, spec.choices_field):
            if field and row.get(field) is None:
                raise UserError(f"task {spec.name}: row {rid} of split {split!r} has no field {field!r} — fix the data or the task's field names")
        if rid in seen:
            raise UserError(f"task {spec.name}: duplicate id {rid!r} in split {split!r} — ids must be unique")
        seen.add(rid)
        choices = tuple(str(c) for c in (row[spec.choices_field] if spec.choices_field else spec.choices or ()))
        target = str(row[spec.target_field])
        if spec.kind == "choice" and target not in choices:
            raise UserError(f"task {spec.name}: row {rid} target {target!r} is not among the choices — fix the data or `choices`")
        items.append(Item(id=rid, input=str(row[spec.input_field]), target=target, choices=choices))
    return tuple(items)


def load_task(ref: str, search_dirs: list[Path] | None = None, lmeval_include: list[Path] | None = None) -> Task:
    """A task by name or YAML path, or `lm-eval:<task>` (lm-eval's registry / `lmeval_include` folders / a YAML file)."""
    if ref.startswith("lm-eval:"):
        from evaluator.lmeval_tasks import load_lmeval_task

        return load_lmeval_task(ref, lmeval_include, search_dirs)
    path = find_task_file(ref, search_dirs or task_search_dirs())
    spec = load_spec(path)
    train = _to_items(spec, _load_split(spec, path.parent, spec.train_split), spec.train_split)
    test = _to_items(spec, _load_split(spec, path.parent, spec.test_split), spec.test_split)
    return Task(spec=spec, path=path, train=train, test=test)


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
