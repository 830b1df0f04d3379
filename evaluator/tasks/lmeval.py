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
Supported: `multiple_choice` (accuracy) and `generate_until` (greedy, cut at the task's `until` strings). A
`generate_until` task with neither a `filter_list` nor `exact_match` kwargs is scored by tunecheck's exact match of the
stripped answer (as before). One with a `filter_list`, or with kwargs on its `exact_match` (ignore_case,
ignore_punctuation, regexes_to_ignore, …), is scored as lm-eval scores it (evaluator/tasks/lmeval_scoring.py): the
response as lm-eval's HF backend returns it (decoded, cut at `until`, not stripped) goes through lm-eval's own filter
pipeline (`build_filter_ensemble` from its filter registry: regex, take_first, multi_choice_regex, …; with the test doc, which some filters read), then
lm-eval's registered `exact_match` with the task's kwargs against lm-eval's gold (`doc_to_target`, or
`doc_to_choice(doc)[doc_to_target]`). lm-eval reports one score per filter; tunecheck scores the FIRST filter of the
`filter_list` (the spec records all of them, `lmeval_filters`, and the metric, `lmeval_metric`; each result row keeps
the response as `prediction`, the filter's name as `filter` and its output as `filtered`). The task's `metric` stays
`exact_match` (the name lm-eval reports, `exact_match,<filter>`). The filters and metric are rebuilt and run once on
load, so a problem shows there.
Refused, with the reason: `loglikelihood*` tasks, multiple-input tasks (Winogrande-style), tasks with `gen_prefix`,
filters tunecheck cannot rebuild from lm-eval's registry by name (a `!function` filter or a custom `filter_fn`; one
line naming the task and filter), filters whose output is not one answer text (no take_first), filtered tasks whose
metric_list has no `exact_match` (or an exact_match with hf_evaluate, a non-mean aggregation, or a `process_results`
function), groups and tags (name one task), a description that changes per doc. (`--engine lm-eval` runs choice
tasks only; it refuses generate tasks, filtered or not.)

Code: lm-eval task files may run Python (`!function`, `process_docs`); that is lm-eval's trust model — name only
task folders you trust.
"""

from __future__ import annotations

import difflib
import logging
from pathlib import Path

from evaluator.errors import UserError
from evaluator.tasks.from_lmeval import PREFIX, task_from_lmeval
from evaluator.tasks.spec import Task


def is_lmeval_ref(ref: str) -> bool:
    return ref.startswith(PREFIX)


def _quiet() -> None:
    import datasets


    datasets.disable_progress_bars()
    quiet_lmeval()


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
        if isinstance(exc, KeyError) and exc.args and "filter" in str(exc.args[0]).lower():  # filter_list: a name
            text = " ".join(str(exc.args[0]).split())  # lm-eval's filter registry does not know
            raise UserError(f"lm-eval could not load task {target!r}: {text} — check the task's filter_list") from None
        raise UserError(
            f"lm-eval could not load task {target!r}: {_first_line(exc)} — check its dataset is reachable (hub or local files)"
        ) from None
    tasks = loaded["tasks"]
    if len(tasks) != 1:
        raise UserError(f"lm-eval reference {target!r} expands to {len(tasks)} tasks — name one task")
    return next(iter(tasks.values()))


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


def quiet_lmeval() -> None:
    for name in ("lm_eval", "lm-eval"):
        logging.getLogger(name).setLevel(logging.ERROR)

