"""A task is data + a prompt + a scorer: a YAML file in `tasks/` naming a `datasets` source and its fields.

Loading a task checks everything that needs no model: the task file (one line per problem), each split's data files
(JSON / JSON Lines are read here, row by row, so a bad row is named by its file and line; CSV files are checked
before `datasets` reads them), every row's fields (a null id, a nested field, per-row choices that are not a list of
strings), and the prompt template, rendered on every training and test item (the rendered queries are kept on the
`Task`, so the run does not render them again).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import (
    ValidationError,
)

from evaluator.config.validation import format_validation_error, load_yaml, parse_yaml
from evaluator.errors import UserError
from evaluator.tasks.data import _load_split, _split_source, _to_items, split_items
from evaluator.tasks.spec import REPO_TASKS, SAFE_NAME, Task, TaskSpec


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
        spec = TaskSpec.model_validate(load_yaml(path, "task file"))
    except ValidationError as err:
        raise UserError(format_validation_error(err, str(path))) from None
    if isinstance(spec.answer_schema, str):
        spec = spec.model_copy(update={"answer_schema": _read_schema(path, spec.answer_schema)})
    return spec


def _read_schema(task_file: Path, ref: str) -> dict:
    """`answer_schema: <file>`: the JSON Schema in a JSON or YAML file beside the task (the spec then holds its
    content, so the task fingerprint follows the schema, not its file name)."""
    from evaluator.tasks.metrics import check_schema

    where = f"task file {task_file}: field 'answer_schema'"
    file = (task_file.parent / ref).resolve()
    if not file.is_file():
        raise UserError(f"{where}: schema file {ref} not found (looked at {file}) — give a path relative to the task file")
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise UserError(f"{where}: schema file {file} is not UTF-8 text — re-save it as UTF-8") from None
    if file.suffix == ".json":
        try:
            schema = json.loads(text)
        except ValueError as err:
            raise UserError(f"{where}: schema file {file} is not valid JSON ({err})") from None
    else:
        schema = parse_yaml(text, str(file), "schema file")
    why = check_schema(schema)
    if why:
        raise UserError(f"{where}: schema file {file} {why}")
    return schema


def _check_json_targets(task: Task) -> None:
    """`metric: json_fields` compares fields of the target: every target must be a JSON object with fields."""
    from evaluator.tasks.metrics import target_fields

    if task.spec.metric != "json_fields":
        return
    for it in (*task.train, *task.test):
        if target_fields(it.target) is None:
            raise UserError(f"task {task.name}: item {it.id}: metric json_fields needs each target to be a JSON object "
                            f"with at least one field, got {it.target[:60]!r} — fix the data or use another metric")


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
    _check_json_targets(task)
    from evaluator.tasks.templates import check_prompt  # prompts imports this module

    check_prompt(task)  # renders the template on every item: any template problem is found here, before a model loads
    return task


def with_prompt_format(task: Task, prompt_format: str | None) -> Task:
    """The task with a job's `prompt_format` in its spec (so the run's config, fingerprints and adapter keys record the
    format used); the task itself when the job sets none or the same. A `system` turn the format cannot hold is one
    UserError line."""
    import dataclasses

    if prompt_format is None or prompt_format == task.spec.prompt_format:
        return task
    if prompt_format != "chat" and task.spec.system is not None:
        raise UserError(f"job prompt_format: {prompt_format}, but task {task.name} sets `system` (a chat system turn) — "
                        "remove one of them")
    spec = task.spec.model_copy(update={"prompt_format": prompt_format})
    out = dataclasses.replace(task, spec=spec)
    out.rendered.update(task.rendered)  # the queries were rendered on load; the format does not change them
    return out


def check_task_for_job(task: Task, job: Any) -> list[str]:
    """What a job asks of a loaded task that can be checked without a model (for the planner, before any model loads):
    an explicit shot count above the task's demonstration items, LoRA without training items. Returns notes for
    training sizes that collapse onto the same number of items (see `evaluator.config.effective_train_sizes`)."""
    from evaluator.config.arms import effective_train_sizes

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
