"""lm-eval tasks as tunecheck tasks: `lm-eval:<task>` in a job takes docs, prompt, choices and targets from lm-eval.

A reference is `lm-eval:<name>` (a task in lm-eval's registry, or in a folder the job lists under
`lm_eval_include`) or `lm-eval:<path>.yaml` (one local lm-eval task file; its folder is the include path, so its
`include:` base files resolve). lm-eval's own `Task` object loads the data and renders every doc: the query is
`doc_to_text(doc)`, the choices `doc_to_choice(doc)`, the answer `doc_to_target(doc)`, the instruction is the task's
`description` and the delimiters are the task's. tunecheck's engine then scores those texts (one shared prefix for all
items), its LoRA arm trains on them, and `--engine lm-eval` re-scores the same texts through `simple_evaluate`.

What is taken from lm-eval, and what is tunecheck's:
* test items: the test split if the task has one, else the validation split (lm-eval's `eval_docs`);
* training items (demonstrations and LoRA data): the training split, else the few-shot split, else the validation split
  when the test split is the one evaluated; a task with none of these can only run zero-shot, without LoRA;
* demonstrations: tunecheck's seeded permutation of the training items (the same k-shot prefix for every test item,
  as for any tunecheck task), not lm-eval's per-doc sampler;
* the layout is lm-eval's (description + delimiter, k × (query + target_delimiter + answer + fewshot_delimiter),
  query); on load, tunecheck checks that its zero-shot context equals lm-eval's `fewshot_context(doc, 0)` for the
  first test doc, so a template tunecheck cannot reproduce is refused, not silently scored differently.
Supported: `multiple_choice` (accuracy) and `generate_until` (greedy, cut at the task's `until` strings, exact match
of the stripped answer). Refused, with the reason: `loglikelihood*` tasks, multiple-input tasks (Winogrande-style),
tasks with `gen_prefix`, generation tasks with answer `filter_list`s (their metric is not exact match of the
answer), groups and tags (name one task), a description that changes per doc.

Code: lm-eval task files may run Python (`!function`, `process_docs`); that is lm-eval's trust model — name only
task folders you trust.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

from evaluator.errors import UserError
from evaluator.tasks import SAFE_NAME, DataSource, Item, Task, TaskSpec

PREFIX = "lm-eval:"


def is_lmeval_ref(ref: str) -> bool:
    return ref.startswith(PREFIX)


def _quiet() -> None:
    import datasets

    from evaluator.lmeval_bridge import _quiet_lmeval

    datasets.disable_progress_bars()
    _quiet_lmeval()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _resolve_yaml(ref: str, search_dirs: list[Path]) -> Path:
    p = Path(ref).expanduser()
    for cand in [p, *(d / p for d in search_dirs)] if not p.is_absolute() else [p]:
        if cand.is_file():
            return cand.resolve()
    raise UserError(f"lm-eval task file {ref} does not exist — check the path after 'lm-eval:'")


def _task_manager(include: list[Path], defaults: bool):
    from lm_eval.tasks import TaskManager

    try:
        return TaskManager(include_path=[str(p) for p in include] or None, include_defaults=defaults)
    except Exception as exc:  # a broken YAML in an include folder
        raise UserError(f"lm-eval could not index the task folders {', '.join(map(str, include))}: {_first_line(exc)}") from None


def load_lmeval_object(ref: str, include: list[Path], search_dirs: list[Path]):
    """The lm-eval `Task` object a reference names (registry name, include-path name, or YAML file)."""
    _quiet()
    target = ref[len(PREFIX) :].strip()
    if not target:
        raise UserError("task 'lm-eval:' names no task — write lm-eval:<task name> or lm-eval:<file>.yaml")
    for d in include:
        if not d.is_dir():
            raise UserError(f"lm_eval_include folder {d} does not exist — fix lm_eval_include in the job")
    if Path(target).suffix in {".yaml", ".yml"}:
        path = _resolve_yaml(target, search_dirs)
        tm = _task_manager([path.parent, *include], defaults=False)
        spec: str = str(path)
    else:
        tm = _task_manager(include, defaults=False) if include else None
        if tm is None or target not in tm.all_tasks:
            tm = _task_manager(include, defaults=True)  # lm-eval's registry (indexing it takes a few seconds)
        if target not in tm.all_tasks:
            near = difflib.get_close_matches(target, tm.all_tasks, n=3)
            hint = f" (did you mean {', '.join(near)}?)" if near else ""
            where = f" or in {', '.join(map(str, include))}" if include else ""
            raise UserError(
                f"lm-eval task {target!r} is not in lm-eval's registry{where}{hint} — check the name, or add the folder "
                f"of its YAML to lm_eval_include"
            )
        if target in tm.all_groups or target in tm.all_tags:
            raise UserError(f"lm-eval name {target!r} is a group or tag of several tasks — name one of its tasks")
        spec = target
    try:
        loaded = tm.load([spec])
    except UserError:
        raise
    except Exception as exc:
        raise UserError(
            f"lm-eval could not load task {target!r}: {_first_line(exc)} — check its dataset is reachable (hub or local files)"
        ) from None
    tasks = loaded["tasks"]
    if len(tasks) != 1:
        raise UserError(f"lm-eval reference {target!r} expands to {len(tasks)} tasks — name one task")
    return next(iter(tasks.values()))


def _kind(obj, name: str) -> str:
    out = obj.config.output_type
    if out == "multiple_choice":
        return "choice"
    if out == "generate_until":
        return "generate"
    raise UserError(f"lm-eval task {name} has output_type {out!r}; tunecheck runs multiple_choice and generate_until tasks")


def _splits(obj, name: str) -> tuple[str, list, str | None, list]:
    """(eval split, eval docs, train split, train docs) by the rule in the module docstring."""
    cfg = obj.config
    if obj.has_test_docs():
        eval_split, eval_docs = cfg.test_split, list(obj.test_docs())
    elif obj.has_validation_docs():
        eval_split, eval_docs = cfg.validation_split, list(obj.validation_docs())
    else:
        raise UserError(f"lm-eval task {name} has neither a test nor a validation split — it has nothing to evaluate")
    if obj.has_training_docs():
        return eval_split, eval_docs, cfg.training_split, list(obj.training_docs())
    fs_split = getattr(obj.fewshot_cfg, "split", None) if cfg.fewshot_config else None
    if fs_split and fs_split != eval_split:
        return eval_split, eval_docs, fs_split, list(obj.fewshot_docs())
    if eval_split == cfg.test_split and obj.has_validation_docs():
        return eval_split, eval_docs, cfg.validation_split, list(obj.validation_docs())
    return eval_split, eval_docs, None, []


def _field_name(value: Any) -> str:
    """A readable, stable record of a doc_to_* setting (a column, a template, or a function's name)."""
    if value is None:
        return "-"
    if callable(value):
        return f"<function {getattr(value, '__name__', 'function')}>"
    return str(value)[:200]


def _item(obj, name: str, kind: str, doc: dict, split: str, i: int, *, fewshot: bool) -> Item:
    fs = obj.fewshot_cfg if fewshot and obj.config.fewshot_config else None
    query = obj.doc_to_text(doc, fs.doc_to_text) if fs is not None and fs.doc_to_text else obj.doc_to_text(doc)
    if not isinstance(query, str):
        raise UserError(f"lm-eval task {name}: doc_to_text gave {type(query).__name__}, not text — multiple-input tasks are not supported")
    target = obj.doc_to_target(doc, fs.doc_to_target) if fs is not None and fs.doc_to_target else obj.doc_to_target(doc)
    rid = f"{split}-{i}"
    if isinstance(target, list):
        if len(target) != 1:
            raise UserError(f"lm-eval task {name}: doc {rid} has {len(target)} gold answers — tasks with several golds are not supported")
        target = target[0]
    if kind == "generate":
        return Item(id=rid, input=query, target=str(target))
    choices = tuple(str(c) for c in obj.doc_to_choice(doc))
    if isinstance(target, int) or (isinstance(target, str) and target.isdigit() and target not in choices):
        idx = int(target)
        if not 0 <= idx < len(choices):
            raise UserError(f"lm-eval task {name}: doc {rid} target index {idx} is outside its {len(choices)} choices")
        target = choices[idx]
    target = str(target)
    if target not in choices:
        raise UserError(f"lm-eval task {name}: doc {rid} target {target!r} is not among its choices")
    return Item(id=rid, input=query, target=target, choices=choices)


def _description(obj, name: str, docs: list) -> str:
    desc = obj.config.description
    if not desc:
        return ""
    texts = {obj.resolve_field(d, desc) or "" for d in docs[:50]}
    if len(texts) > 1:
        raise UserError(f"lm-eval task {name}: its description changes per doc — tunecheck needs one shared instruction")
    return texts.pop()


def _delimiters(obj, name: str) -> tuple[str, str]:
    cfg = obj.config
    tgt, few = cfg.target_delimiter, cfg.fewshot_delimiter
    fs = obj.fewshot_cfg if cfg.fewshot_config else None
    for what, main, other in (("target", tgt, getattr(fs, "target_delimiter", None)), ("fewshot", few, getattr(fs, "fewshot_delimiter", None))):
        if other is not None and other != main:
            raise UserError(f"lm-eval task {name}: its few-shot {what}_delimiter differs from the task's — not supported")
    if cfg.gen_prefix or getattr(fs, "gen_prefix", None):
        raise UserError(f"lm-eval task {name} uses gen_prefix — not supported by tunecheck's prompt layout")
    return tgt, few


def task_from_lmeval(obj, ref: str) -> Task:
    """Convert an lm-eval `Task` object into a tunecheck `Task` (items carry lm-eval's rendered text)."""
    cfg = obj.config
    name = str(cfg.task)
    if getattr(obj, "multiple_input", False):
        raise UserError(f"lm-eval task {name} is a multiple-input task (one context per choice) — not supported")
    kind = _kind(obj, name)
    tgt_delim, few_delim = _delimiters(obj, name)
    eval_split, eval_docs, train_split, train_docs = _splits(obj, name)
    if not eval_docs:
        raise UserError(f"lm-eval task {name}: split {eval_split!r} is empty — it needs at least one doc")
    test = tuple(_item(obj, name, kind, d, str(eval_split), i, fewshot=False) for i, d in enumerate(eval_docs))
    train = tuple(_item(obj, name, kind, d, str(train_split), i, fewshot=True) for i, d in enumerate(train_docs))
    gen = dict(cfg.generation_kwargs or {})
    until = gen.get("until")
    stops = [until] if isinstance(until, str) else (list(until) if until else None)
    if kind == "generate" and cfg.filter_list:
        raise UserError(
            f"lm-eval task {name} post-processes answers with filters ({_field_name(cfg.filter_list)[:60]}…) — not "
            "supported: tunecheck scores the generated answer by exact match"
        )
    spec = TaskSpec(
        name=name if SAFE_NAME.match(name) else _safe(name),
        description=f"lm-eval task {name}" + (f" (version {cfg.metadata.get('version')})" if isinstance(cfg.metadata, dict) and cfg.metadata.get("version") is not None else ""),
        data=DataSource(path=str(cfg.dataset_path or "lm-eval"), name=cfg.dataset_name),
        train_split=str(train_split or "-"),
        test_split=str(eval_split),
        input_field=_field_name(cfg.doc_to_text),
        target_field=_field_name(cfg.doc_to_target),
        kind=kind,  # type: ignore[arg-type]
        instruction=_description(obj, name, eval_docs),
        target_delimiter=tgt_delim,
        fewshot_delimiter=few_delim,
        instruction_delimiter="",  # lm-eval puts the description right before the first turn
        metric="accuracy" if kind == "choice" else "exact_match",
        max_new_tokens=int(gen.get("max_gen_toks", 256)),
        stop_sequences=stops if kind == "generate" else None,
        lmeval_task=name,
    )
    yaml_path = getattr(cfg, "_yaml_path", None)
    task = Task(spec=spec, path=Path(yaml_path) if yaml_path else Path(ref[len(PREFIX) :]), train=train, test=test)
    _check_layout(obj, task, eval_docs[0])
    return task


def _safe(name: str) -> str:
    import re

    return (re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_.-") or "lmeval_task")[:80]


def _check_layout(obj, task: Task, doc: dict) -> None:
    """Our zero-shot context must be lm-eval's, character for character."""
    from evaluator.prompts import PromptBuilder

    ours = PromptBuilder(task, 0).prefix(0) + task.test[0].input
    theirs = obj.fewshot_context(doc, 0)
    if theirs != ours:
        raise UserError(
            f"lm-eval task {task.spec.lmeval_task}: its zero-shot context differs from tunecheck's layout "
            f"(lm-eval {theirs[:60]!r}… vs {ours[:60]!r}…) — not supported"
        )


def list_lmeval_tasks(include: list[Path]) -> list[tuple[str, str, str]]:
    """(name, output_type, YAML file) of every lm-eval task in `include` (indexed only: no data is loaded)."""
    _quiet()
    for d in include:
        if not d.is_dir():
            raise UserError(f"lm-eval task folder {d} does not exist — check the path")
    tm = _task_manager(include, defaults=False)
    out = []
    for name in sorted(tm.all_subtasks):
        entry = tm.task_index[name]
        cfg = entry.cfg or {}
        out.append((name, str(cfg.get("output_type", "?")), str(entry.yaml_path or "-")))
    return out


def load_lmeval_task(ref: str, include: list[Path] | None = None, search_dirs: list[Path] | None = None) -> Task:
    """`lm-eval:<name or file.yaml>` → a tunecheck Task whose items are lm-eval's rendered docs."""
    return task_from_lmeval(load_lmeval_object(ref, list(include or []), list(search_dirs or [Path.cwd()])), ref)
