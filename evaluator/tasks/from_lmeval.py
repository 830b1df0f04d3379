"""An lm-eval task object turned into a tunecheck `Task`: splits, few-shot sampler, demonstrations, items and the
check that our zero-shot (and first_n few-shot) context equals lm-eval's character for character."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from evaluator.errors import UserError
from evaluator.tasks.spec import SAFE_NAME, DataSource, Item, Task, TaskSpec


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


def _item(obj, name: str, kind: str, doc: dict, split: str, i: int, *, fewshot: bool, keep_doc: bool = False) -> Item:
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
    choice_field = fs.doc_to_choice if fs is not None and fs.doc_to_choice else None  # as lm-eval renders demonstrations
    if kind == "generate":
        if obj.config.doc_to_choice is not None and isinstance(target, int):  # lm-eval's gold: choices[target]
            options = obj.doc_to_choice(doc, choice_field) if choice_field else obj.doc_to_choice(doc)
            if not 0 <= target < len(options):
                raise UserError(f"lm-eval task {name}: doc {rid} target index {target} is outside its {len(options)} choices")
            target = options[target]
        return Item(id=rid, input=query, target=str(target), lmeval_target=raw, lmeval_doc=None if fewshot or not keep_doc else doc)
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
    gen = dict(cfg.generation_kwargs or {})
    until = gen.get("until")
    stops = [until] if isinstance(until, str) else (list(until) if until else None)
    filters = _lmeval_filters(obj, name) if kind == "generate" else None
    scoring = _lmeval_metric(obj, name, filters) if kind == "generate" else None
    keep = filters is not None  # lm-eval's filters receive the doc (multi_choice_regex reads its choices)
    test = tuple(_item(obj, name, kind, d, str(eval_split), i, fewshot=False, keep_doc=keep) for i, d in enumerate(eval_docs))
    train = tuple(_item(obj, name, kind, d, str(train_split), i, fewshot=True) for i, d in enumerate(train_docs))
    order, note, pool, warn = _demonstrations(obj, name, kind, str(eval_split), eval_docs, train_split, train_docs)
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
        lmeval_filters=filters,
        lmeval_metric=scoring,
    )
    yaml_path = getattr(cfg, "_yaml_path", None)
    task = Task(spec=spec, path=Path(yaml_path) if yaml_path else Path(ref[len(PREFIX) :]), train=train, test=test, fewshot=pool)
    _check_layout(obj, task, eval_docs[0], fewshot=order == "first_n" and not warn)
    if scoring is not None:
        _check_scoring(task)
    if warn:
        logging.getLogger("tunecheck").warning(f"lm-eval task {name}: demonstrations {order}: {note}")
    return task


PREFIX = "lm-eval:"


def _safe(name: str) -> str:
    import re

    return (re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_.-") or "lmeval_task")[:80]


def _check_layout(obj, task: Task, doc: dict, *, fewshot: bool = False) -> None:
    """Our zero-shot context must be lm-eval's, character for character; with `fewshot` (first_n demonstrations),
    so must our few-shot context (k = 2, or fewer when there are fewer few-shot docs)."""
    from evaluator.tasks.layout import PromptBuilder

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


# --------------------------------------------------------------------------------------------------------------------
# lm-eval's scoring of generate_until answers: filter_list and metric_list as plain JSON
# --------------------------------------------------------------------------------------------------------------------

_METRIC_KEYS = ("metric", "aggregation", "higher_is_better", "hf_evaluate")  # lm-eval's; the rest are the metric's kwargs


def _plain(value: Any) -> bool:
    """JSON data (what a spec can record and rebuild), not Python code or objects."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return True
    if isinstance(value, (list, tuple)):
        return all(_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    return False


def _lmeval_filters(obj, name: str) -> list[dict] | None:
    """The task's `filter_list` as plain JSON ([{name, filter: [{function, ...kwargs}]}]), or None without one. A
    filter tunecheck cannot rebuild from lm-eval's registry by name (a `!function`, a custom `filter_fn`) is refused."""
    flist = obj.config.filter_list
    if not flist:
        return None
    if not isinstance(flist, (list, tuple)):
        raise UserError(f"lm-eval task {name}: its filter_list is {type(flist).__name__}, not a list of filters — not supported")
    out = []
    for i, f in enumerate(flist):
        fname = f.get("name") if isinstance(f, dict) else None
        steps = f.get("filter") if isinstance(f, dict) else None
        label = repr(fname) if isinstance(fname, str) else f"#{i + 1}"
        if not isinstance(fname, str) or not isinstance(steps, (list, tuple)) or not steps:
            raise UserError(f"lm-eval task {name}: filter {label} is not {{name: ..., filter: [steps]}} — not supported")
        clean = []
        for step in steps:
            if not isinstance(step, dict) or "function" not in step:
                raise UserError(f"lm-eval task {name}: filter {label} has a step without `function` — not supported")
            for key, value in step.items():
                if not _plain(value):
                    raise UserError(
                        f"lm-eval task {name}: filter {label} runs Python code ({key}: {_field_name(value)}) — not "
                        "supported: tunecheck rebuilds a task's filters from lm-eval's filter registry by name "
                        "(regex, take_first, …), so a custom !function filter cannot be reproduced"
                    )
            clean.append(json.loads(json.dumps(step)))
        out.append({"name": fname, "filter": clean})
    return out


def _lmeval_metric(obj, name: str, filters: list[dict] | None) -> dict | None:
    """How lm-eval scores the task's answers (`TaskSpec.lmeval_metric`), or None: tunecheck's own exact match of the
    stripped answer (a task with neither filters nor exact_match kwargs, as before lm-eval's scoring was reproduced)."""
    cfg = obj.config
    entries = cfg.metric_list
    if entries is None:  # lm-eval's default for generate_until: exact_match, no kwargs
        entry: dict = {"metric": "exact_match"}
    else:
        found = [e for e in entries if isinstance(e, dict) and e.get("metric") == "exact_match"]
        if not found:
            if filters is None:
                return None
            names = ", ".join(_field_name(e.get("metric")) if isinstance(e, dict) else "?" for e in entries) or "none"
            raise UserError(f"lm-eval task {name} scores its filtered answers by {names} — not supported: tunecheck "
                            "reproduces lm-eval's exact_match only")
        entry = found[0]
    kwargs = {k: v for k, v in entry.items() if k not in _METRIC_KEYS}
    if filters is None and not kwargs:
        return None
    if cfg.process_results is not None:
        raise UserError(f"lm-eval task {name} scores answers with its own process_results function — not supported")
    if entry.get("hf_evaluate"):
        raise UserError(f"lm-eval task {name}: its exact_match is Hugging Face evaluate's (hf_evaluate: true) — not "
                        "supported: tunecheck uses lm-eval's own exact_match")
    agg = entry.get("aggregation", "mean")
    if agg != "mean":
        raise UserError(f"lm-eval task {name}: its exact_match aggregation is {_field_name(agg)}, not mean — not supported")
    bad = next((k for k, v in kwargs.items() if not _plain(v)), None)
    if bad is not None:
        raise UserError(f"lm-eval task {name}: its exact_match argument {bad} is Python code "
                        f"({_field_name(kwargs[bad])}) — not supported")
    gold = "choice" if cfg.doc_to_choice is not None else "targets" if getattr(obj, "multiple_target", 0) else "target"
    return {"metric": "exact_match", "kwargs": json.loads(json.dumps(kwargs)), "aggregation": "mean", "gold": gold}


def _check_scoring(task: Task) -> None:
    """lm-eval's filters and metric, rebuilt from the spec, run on the first test item (an empty answer): a filter
    lm-eval lacks, a kwarg it rejects, or a filter that does not end in one answer text fails here, on load."""
    from evaluator.tasks.lmeval_scoring import lmeval_scorer

    scorer = lmeval_scorer(task.spec)
    result, _ = scorer.item("", task.test[0])
    if not isinstance(result, str):
        raise UserError(
            f"lm-eval task {task.spec.lmeval_task}: filter {scorer.filter_name!r} gives {type(result).__name__}, not "
            "one answer text — not supported (end the filter with take_first)"
        )
