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
* demonstrations follow the task's `fewshot_config.sampler`. `first_n`: the first k of lm-eval's own few-shot docs
  (`fewshot_docs()`: the few-shot split, else `fewshot_config.samples`, else the training split, else validation) in
  file order — the prefix lm-eval builds, checked on load against its `fewshot_context(doc, 2)`; the spec says
  `demonstrations: first_n` (when those docs are not the training items, they are `Task.fewshot` and LoRA still
  trains on the training items). When the few-shot split is the test split — or neither is set — lm-eval drops a
  few-shot doc equal to the test doc from that doc's prefix; a few-shot doc equal to a test doc is named in the note
  and warned about. lm-eval's default sampler draws other demonstrations for every test doc
  (`random.Random(fewshot seed).sample` per doc), which no shared prefix can reproduce: tunecheck then keeps its own
  seeded permutation of the training items (one k-shot prefix for all items, as for any tunecheck task), records
  `demonstrations: seeded` and the reason in `demonstrations_note`, and logs one warning. So does a `first_n` task
  whose few-shot docs are the evaluated split itself (no shared prefix of lm-eval's is leak-free there);
* `target` per test item: the answer text (what is scored), and, as `Item.lmeval_target`, the raw `doc_to_target(doc)`
  lm-eval logs in its samples (an index, the text, …);
* the layout is lm-eval's (description + delimiter, k × (query + target_delimiter + answer + fewshot_delimiter),
  query); on load, tunecheck checks that its zero-shot context (and a `first_n` 2-shot one) equals lm-eval's
  `fewshot_context(doc, k)` for the first test doc, so a template tunecheck cannot reproduce is refused, not silently scored differently.
Supported: `multiple_choice` (accuracy) and `generate_until` (greedy, cut at the task's `until` strings, exact match
of the stripped answer). Refused, with the reason: `loglikelihood*` tasks, multiple-input tasks (Winogrande-style),
tasks with `gen_prefix`, generation tasks with answer `filter_list`s (their metric is not exact match of the
answer), groups and tags (name one task), a description that changes per doc.

Code: lm-eval task files may run Python (`!function`, `process_docs`); that is lm-eval's trust model — name only
task folders you trust.
"""

from __future__ import annotations

import difflib
import json
import logging
from pathlib import Path
from typing import Any

from evaluator.errors import UserError
from evaluator.tasks.load import SAFE_NAME, DataSource, Item, Task, TaskSpec

PREFIX = "lm-eval:"


def is_lmeval_ref(ref: str) -> bool:
    return ref.startswith(PREFIX)


def _quiet() -> None:
    import datasets

    from evaluator.arms.lmeval import _quiet_lmeval

    datasets.disable_progress_bars()
    _quiet_lmeval()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _resolve_yaml(ref: str, search_dirs: list[Path]) -> Path:
    p = Path(ref).expanduser()
    cands = [p, *(d / p for d in search_dirs)] if not p.is_absolute() else [p]
    for cand in cands:
        if cand.is_file():
            return cand.resolve()
    for cand in cands:
        if cand.is_dir():
            raise UserError(f"lm-eval task file {cand} is a directory, not a file — give the task's YAML file after "
                            "'lm-eval:', or list the folder under lm_eval_include and name the task")
    raise UserError(f"lm-eval task file {ref} does not exist — check the path after 'lm-eval:'")


def yaml_problem(path: Path) -> str | None:
    """Why an lm-eval task YAML cannot be parsed (one line with its line number), or None. Syntax only: lm-eval's own
    tags (`!function`) need no constructor to be composed."""
    import yaml

    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        return f"lm-eval task file {path} is not UTF-8 text — re-save it as UTF-8"
    except OSError as exc:
        return f"lm-eval task file {path} cannot be read ({exc.strerror or exc})"
    try:
        yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        return f"lm-eval task file {path}{where} is not valid YAML ({getattr(exc, 'problem', None) or exc}) — fix the file"
    return None


def _included(path: Path) -> list[Path]:
    """The files an lm-eval task YAML names under `include:` (relative to its folder), if any."""
    import yaml

    try:
        node = yaml.compose(path.read_text(encoding="utf-8"), Loader=yaml.SafeLoader)
    except Exception:  # noqa: BLE001 - unreadable: yaml_problem reports it
        return []
    out = []
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            if getattr(k, "value", None) == "include" and isinstance(v, yaml.ScalarNode):
                inc = Path(v.value).expanduser()
                out.append(inc if inc.is_absolute() else path.parent / inc)
    return out


def check_yaml_files(path: Path, depth: int = 0) -> None:
    """A task YAML and the base files it includes parse as YAML: else one UserError line naming the file and line
    (lm-eval would otherwise fail, or skip the file, with a message about the dataset or the task's name)."""
    problem = yaml_problem(path)
    if problem:
        raise UserError(problem)
    if depth < 8:
        for inc in _included(path):
            if inc.is_file():
                check_yaml_files(inc, depth + 1)


def _broken_yaml_in(include: list[Path]) -> str | None:
    """The first task YAML in the include folders that does not parse (lm-eval skips such a file while indexing)."""
    for d in include:
        for f in sorted([*d.rglob("*.yaml"), *d.rglob("*.yml")]):
            problem = yaml_problem(f)
            if problem:
                return problem
    return None


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
    if ("/" in target or "\\" in target) and Path(target).expanduser().is_dir():
        raise UserError(f"lm-eval reference {target} is a directory — list it under lm_eval_include and write "
                        "lm-eval:<task name>, or name one YAML file: lm-eval:<file>.yaml")
    if Path(target).suffix in {".yaml", ".yml"}:
        path = _resolve_yaml(target, search_dirs)
        check_yaml_files(path)
        tm = _task_manager([path.parent, *include], defaults=False)
        spec: str = str(path)
    else:
        tm = _task_manager(include, defaults=False) if include else None
        if tm is not None and target not in tm.all_tasks:
            broken = _broken_yaml_in(include)
            if broken:  # lm-eval skipped it while indexing: that is why the name is not found
                raise UserError(f"{broken} (lm-eval skips a task file it cannot parse, so task {target!r} was not found)")
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
        entry = tm.task_index.get(target) if hasattr(tm, "task_index") else None
        yaml_path = getattr(entry, "yaml_path", None)
        if yaml_path and Path(str(yaml_path)).is_file():
            check_yaml_files(Path(str(yaml_path)))
        spec = target
    try:
        loaded = tm.load([spec])
    except UserError:
        raise
    except Exception as exc:
        import yaml

        if isinstance(exc, yaml.YAMLError):
            mark = getattr(exc, "problem_mark", None)
            where = f" line {mark.line + 1}" if mark else ""
            raise UserError(f"lm-eval task {target!r}: a task YAML{where} is not valid YAML "
                            f"({getattr(exc, 'problem', None) or _first_line(exc)}) — fix the file") from None
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


def _sampler_name(obj) -> str:
    """The task's `fewshot_config.sampler` as a name: "default", "first_n", or a custom class's name."""
    fs = obj.fewshot_cfg if obj.config.fewshot_config else None
    sampler = getattr(fs, "sampler", "default") if fs is not None else "default"
    if isinstance(sampler, str):
        return sampler
    from lm_eval.api import samplers

    if sampler is samplers.FirstNSampler:
        return "first_n"
    return getattr(sampler, "__name__", str(sampler))


def _fewshot_source(obj) -> str | None:
    """The split lm-eval's `fewshot_docs()` reads (0.4.13: few-shot split, else `fewshot_config.samples` → None,
    else training, else validation, else test)."""
    cfg = obj.config
    fs = obj.fewshot_cfg if cfg.fewshot_config else None
    if getattr(fs, "split", None) is not None:
        return str(fs.split)
    if getattr(fs, "samples", None) is not None:
        return None
    if obj.has_training_docs():
        return str(cfg.training_split)
    if obj.has_validation_docs():
        return str(cfg.validation_split)
    return str(cfg.test_split)


def _doc_key(doc: Any) -> str:
    return json.dumps(doc, sort_keys=True, default=str, ensure_ascii=False)


def _demonstrations(obj, name: str, kind: str, eval_split: str, eval_docs: list, train_split: str | None, train_docs: list):
    """(demonstrations, demonstrations_note, few-shot pool items or None = the training items, warn?) by lm-eval's sampler."""
    sampler = _sampler_name(obj)
    ours = f"the training items (split {train_split!r})" if train_split else "the training items (none: zero-shot only)"
    if sampler != "first_n":
        return "seeded", (
            f"lm-eval's {sampler!r} few-shot sampler draws different demonstrations for every test doc (seeded by "
            f"lm-eval's fewshot seed); one shared prefix cannot reproduce that, so tunecheck uses its own seeded "
            f"permutation of {ours}, the same k for every item: at k > 0 scores are not lm-eval's (fewshot_config: "
            "{sampler: first_n} in the task gives lm-eval's prefix exactly)"
        ), None, True
    cfg = obj.config
    src = _fewshot_source(obj)
    where = f"its few-shot docs (split {src!r})" if src else "its few-shot docs (fewshot_config.samples)"
    if src is not None and src == str(eval_split):
        return "seeded", (
            f"lm-eval's first_n sampler takes the demonstrations from the evaluated split {src!r} itself (a test doc is "
            f"dropped from its own prefix when that split is named as the few-shot split, else it can be its own "
            f"demonstration), so no shared, leak-free prefix is lm-eval's; tunecheck uses its own seeded permutation of "
            f"{ours}, the same k for every item: at k > 0 scores are not lm-eval's"
        ), None, True
    pool_docs = [dict(d) for d in obj.fewshot_docs()]
    note = f"lm-eval's first_n sampler: the first k of {where} in file order — the prefix lm-eval builds for every test doc"
    warn = False
    fs = obj.fewshot_cfg if cfg.fewshot_config else None
    if getattr(fs, "split", None) == cfg.test_split:  # lm-eval then removes docs equal to the test doc from the pool
        keys = {_doc_key(d) for d in eval_docs}
        clash = next((j for j, d in enumerate(pool_docs) if _doc_key(d) in keys), None)
        if clash is not None:
            note += (
                f"; but few-shot doc {clash} equals a test doc, which lm-eval drops from that doc's own prefix: for "
                f"k > {clash} that item's lm-eval prefix differs from the shared one"
            )
            warn = True
    if pool_docs == [dict(d) for d in train_docs]:
        return "first_n", note, None, warn
    pool = tuple(_item(obj, name, kind, d, src or "fewshot", i, fewshot=True) for i, d in enumerate(pool_docs))
    if train_docs:
        note += f" (LoRA still trains on {ours})"
    return "first_n", note, pool, warn


def _field_name(value: Any) -> str:
    """A readable, stable record of a doc_to_* setting (a column, a template, or a function's name)."""
    if value is None:
        return "-"
    if callable(value):
        return f"<function {getattr(value, '__name__', 'function')}>"
    return str(value)[:200]


def _jsonable(value: Any) -> Any:
    """A doc_to_target value as JSON keeps it, so that `str()` of it (lm-eval's logged target) does not change."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    from lm_eval.utils import handle_non_serializable  # numpy scalars → int/float, anything else → str

    return handle_non_serializable(value)


def _item(obj, name: str, kind: str, doc: dict, split: str, i: int, *, fewshot: bool) -> Item:
    fs = obj.fewshot_cfg if fewshot and obj.config.fewshot_config else None
    query = obj.doc_to_text(doc, fs.doc_to_text) if fs is not None and fs.doc_to_text else obj.doc_to_text(doc)
    if not isinstance(query, str):
        raise UserError(f"lm-eval task {name}: doc_to_text gave {type(query).__name__}, not text — multiple-input tasks are not supported")
    target = obj.doc_to_target(doc, fs.doc_to_target) if fs is not None and fs.doc_to_target else obj.doc_to_target(doc)
    raw = None if fewshot else _jsonable(target)  # what lm-eval logs for a test doc
    rid = f"{split}-{i}"
    if isinstance(target, list):
        if len(target) != 1:
            raise UserError(f"lm-eval task {name}: doc {rid} has {len(target)} gold answers — tasks with several golds are not supported")
        target = target[0]
    if kind == "generate":
        return Item(id=rid, input=query, target=str(target), lmeval_target=raw)
    choice_field = fs.doc_to_choice if fs is not None and fs.doc_to_choice else None  # as lm-eval renders demonstrations
    choices = tuple(str(c) for c in (obj.doc_to_choice(doc, choice_field) if choice_field else obj.doc_to_choice(doc)))
    if isinstance(target, int) or (isinstance(target, str) and target.isdigit() and target not in choices):
        idx = int(target)
        if not 0 <= idx < len(choices):
            raise UserError(f"lm-eval task {name}: doc {rid} target index {idx} is outside its {len(choices)} choices")
        target = choices[idx]
    target = str(target)
    if target not in choices:
        raise UserError(f"lm-eval task {name}: doc {rid} target {target!r} is not among its choices")
    return Item(id=rid, input=query, target=target, choices=choices, lmeval_target=raw)


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
    order, note, pool, warn = _demonstrations(obj, name, kind, str(eval_split), eval_docs, train_split, train_docs)
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
        demonstrations=order,  # type: ignore[arg-type]
        demonstrations_note=note,
        lmeval_task=name,
    )
    yaml_path = getattr(cfg, "_yaml_path", None)
    task = Task(spec=spec, path=Path(yaml_path) if yaml_path else Path(ref[len(PREFIX) :]), train=train, test=test, fewshot=pool)
    _check_layout(obj, task, eval_docs[0], fewshot=order == "first_n" and not warn)
    if warn:
        logging.getLogger("tunecheck").warning(f"lm-eval task {name}: demonstrations {order}: {note}")
    return task


def _safe(name: str) -> str:
    import re

    return (re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_.-") or "lmeval_task")[:80]


def _check_layout(obj, task: Task, doc: dict, *, fewshot: bool = False) -> None:
    """Our zero-shot context must be lm-eval's, character for character; with `fewshot` (first_n demonstrations),
    so must our few-shot context (k = 2, or fewer when there are fewer few-shot docs)."""
    from evaluator.prompts.builder import PromptBuilder

    builder = PromptBuilder(task, 0)
    ks = [0]
    if fewshot and task.demo_pool:
        ks.append(min(2, len(task.demo_pool)))
    for k in ks:
        ours = builder.prefix(k) + task.test[0].input
        theirs = obj.fewshot_context(doc, k)
        if theirs != ours:
            what = "zero-shot context" if k == 0 else f"{k}-shot context (first_n sampler)"
            raise UserError(
                f"lm-eval task {task.spec.lmeval_task}: its {what} differs from tunecheck's layout "
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
