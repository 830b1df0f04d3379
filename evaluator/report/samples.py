"""Export a run's per-item results as lm-eval 0.4 samples JSONL (the files ``lm_eval --log_samples`` writes).

One file per finished unit, ``samples_<unit-id>.jsonl`` (lm-eval names its files ``samples_<task>_<date>.jsonl``;
a unit id already names task, arm, model and point), in ``<run_dir>/samples/`` unless told otherwise. Each line is
one test item, in the order of the unit's results (= the test split's order, which lm-eval calls ``doc_id``).

The record is the one ``lm_eval.evaluator.evaluate(log_samples=True)`` builds (0.4.13), keys in its order::

    doc_id, doc, target, arguments, resps, filtered_resps, filter, metrics, doc_hash, prompt_hash, target_hash, <metric>

choice task (lm-eval ``multiple_choice``)          generate task (lm-eval ``generate_until``)
  doc     {id, query, choices, target}              {id, query, target}
  target  the gold as ``doc_to_target(doc)`` gives it  the same (see below)
  arguments  one (context, target_delimiter + choice) per choice    one (context, generation kwargs)
  resps   per choice [(loglik, is_greedy)]          [[prediction]]
  filtered_resps  per choice (loglik, is_greedy)    [prediction] (lm-eval-filtered tasks: [the first filter's output])
  filter  "none"                                    "none" (lm-eval-filtered tasks: the first filter's name)
  metrics ["acc"], acc = the item's score           ["exact_match"], exact_match = the item's score

target: lm-eval logs ``task.doc_to_target(doc)`` as is and hashes ``str()`` of it. For a native tunecheck task that is
the gold label text (its ``target_field``: a task's natural lm-eval form has ``doc_to_target: <label column>``). For
an ``lm-eval:<task>`` task it is whatever that task's ``doc_to_target`` returns — an index, the text, a one-element
list: a row's ``lmeval_target`` when the results carry it, else the item's ``Item.lmeval_target`` from the task
loaded again, else (the task cannot be loaded any more) the gold text.

context = the unit's shared prefix text (``prefixes/<unit>.txt``) + the item's query — the string lm-eval builds
for the same demonstrations (see :mod:`evaluator.arms.lmeval`). The hashes are lm-eval's (sha256 of: the doc as
``json.dumps(indent=2, ensure_ascii=False)``, the first request's context, ``str(target)``). Against a bridge-run
lm-eval (``--engine lm-eval``) ``doc_hash`` differs because the doc is ours (lm-eval's holds the bridge's columns),
and ``target``/``target_hash`` because the bridge's task file scores with ``doc_to_target: label`` (the index).

:func:`unit_samples` returns the records as ``simple_evaluate`` returns them in ``results["samples"]`` (tuples, the
raw target); :func:`jsonl_record` turns one into the line lm-eval's ``EvaluationTracker.save_results_samples``
writes (arguments as ``{"gen_args_i": {"arg_j": ...}}``, resps and filtered_resps stringified by
``sanitize_list``, target as a string). :func:`export_samples` writes the files (atomically).

What the stored rows may lack: per-item choices (``choices_field`` tasks and ``lm-eval:<task>`` tasks; a fixed
``choices`` list is in the task spec in ``config.json``) and an lm-eval task's raw target (``lmeval_target``). A row
that carries them is used as is; otherwise the
task is loaded again from the file (or lm-eval task) named in ``config.json`` and the item looked up by id — a
UserError when that is no longer possible. Likewise a row without its ``query`` or a unit without its prefix file is
rebuilt from the task.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from evaluator.errors import UserError
from evaluator.store.files import atomic_write_text, safe_name
from evaluator.store.records import read_results
from evaluator.store.run_store import RunStore

__all__ = [
    "SAMPLE_KEYS",
    "ExportResult",
    "doc_hash",
    "export_samples",
    "jsonl_record",
    "jsonl_text",
    "samples_file_name",
    "unit_samples",
]

SAMPLE_KEYS = (
    "doc_id", "doc", "target", "arguments", "resps", "filtered_resps", "filter", "metrics",
    "doc_hash", "prompt_hash", "target_hash",
)
METRIC_NAMES = {"choice": "acc", "generate": "exact_match"}
FILTER = "none"  # lm-eval's default filter (take the first response)
DEFAULT_MAX_GEN_TOKS = 32  # TaskSpec.max_new_tokens' default


# --------------------------------------------------------------------------------------------------------------------
# lm-eval's helpers (lm_eval.utils); the local copies are used only where lm-eval is missing and are tested equal
# --------------------------------------------------------------------------------------------------------------------


def _hash_string(string: str) -> str:
    return hashlib.sha256(string.encode("utf-8")).hexdigest()


def _handle_non_serializable(o: Any) -> Any:
    try:
        import numpy as np

        if isinstance(o, np.bool_):
            return bool(o)
        if isinstance(o, np.integer):
            return int(o)
        if isinstance(o, np.floating):
            return float(o)
    except ImportError:  # pragma: no cover
        pass
    if isinstance(o, set):
        return list(o)
    return str(o)


def _sanitize_list(sub: Any) -> Any:
    if isinstance(sub, list):
        return [_sanitize_list(item) for item in sub]
    if isinstance(sub, tuple):
        return tuple(_sanitize_list(item) for item in sub)
    return str(sub)


try:  # the real ones, so the hashes and the JSONL stay lm-eval's even if lm-eval changes them
    from lm_eval.utils import handle_non_serializable, hash_string, sanitize_list
except ImportError:  # pragma: no cover - lm-eval is a dependency; kept for a stripped install
    hash_string, handle_non_serializable, sanitize_list = _hash_string, _handle_non_serializable, _sanitize_list


def _gen_kwargs(until: str | list[str], max_gen_toks: int) -> dict[str, Any]:
    """lm-eval's default ``generation_kwargs`` (lm_eval.defaults.default_gen_kwargs) with our stop and length."""
    try:
        from lm_eval.defaults import default_gen_kwargs

        return default_gen_kwargs(until, max_gen_toks)
    except ImportError:  # pragma: no cover
        return {"temperature": 0.0, "do_sample": False, "max_gen_toks": max_gen_toks, "until": [until] if isinstance(until, str) else until}


def doc_hash(doc: dict[str, Any]) -> str:
    return hash_string(json.dumps(doc, indent=2, default=handle_non_serializable, ensure_ascii=False))


# --------------------------------------------------------------------------------------------------------------------
# Reading a unit
# --------------------------------------------------------------------------------------------------------------------


def _read_rows(path: Path, fix: str = "delete it to recompute that unit") -> list[dict[str, Any]]:
    """Per-item rows in file order, read-only: a torn last line is ignored, a repeated item keeps its last row; a
    damaged line elsewhere (not JSON, no item_id, no numeric score) is a UserError naming the file and line."""
    if not path.exists():
        raise UserError(f"{path} is missing although its unit is finished — the run dir is damaged; rerun the job")
    return list(read_results(path, fix)[0].values())


@dataclass
class _TaskInfo:
    """What a unit's records need from the task: spec (config.json) and, lazily, the task data and prompts."""

    name: str
    spec: dict[str, Any]
    path: str | None
    seed: int
    _task: Any = None
    _by_id: dict[str, Any] | None = None

    @property
    def kind(self) -> str:
        return self.spec.get("kind", "choice")

    def task(self, why: str):
        if self._task is None:
            from evaluator.tasks.load import load_task

            ref = self.path
            lmeval = self.spec.get("lmeval_task")
            if lmeval:  # an `lm-eval:<task>` task: reload it the way the job named it (a task file, else by name)
                ref = f"lm-eval:{self.path}" if self.path and Path(self.path).suffix in {".yaml", ".yml"} else f"lm-eval:{lmeval}"
            if not ref:
                raise UserError(f"task {self.name}: {why}, and config.json records no task file to read them from")
            try:
                self._task = load_task(ref)
            except UserError as exc:
                raise UserError(f"task {self.name}: {why}, and its task file cannot be read: {exc}") from None
        return self._task

    def item(self, item_id: str, why: str):
        if self._by_id is None:
            t = self.task(why)
            self._by_id = {it.id: it for it in t.test}
        it = self._by_id.get(item_id)
        if it is None:
            raise UserError(f"task {self.name}: item {item_id} is not in {self.path} any more ({why}) — the data changed since the run")
        return it

    def builder(self, why: str):
        from evaluator.tasks.layout import PromptBuilder

        return PromptBuilder(self.task(why), self.seed)


def _task_info(config: dict[str, Any], task: str, run_dir: Path) -> _TaskInfo:
    entry = (config.get("tasks") or {}).get(task)
    if not isinstance(entry, dict) or not isinstance(entry.get("spec"), dict):
        raise UserError(
            f"{run_dir / 'config.json'} records no spec for task {task!r} (its delimiters and choices) — "
            "the run was written by an older tunecheck; rerun the job to export samples"
        )
    seed = (config.get("job") or {}).get("seed", 1234)
    return _TaskInfo(task, entry["spec"], entry.get("path"), int(seed))


def _read_prefix(store: RunStore, unit_id: str, info: _TaskInfo, shots: int) -> str:
    path = store.root / "prefixes" / f"{safe_name(unit_id)}.txt"
    try:
        return path.read_bytes().decode("utf-8")  # bytes: no newline translation, the text exactly as written
    except FileNotFoundError:
        return info.builder(f"unit {unit_id} has no prefix file").prefix(shots)
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path} is unreadable ({type(exc).__name__}) — delete it and rerun the unit") from None


def _choices(row: dict[str, Any], info: _TaskInfo) -> list[str]:
    if row.get("choices"):  # rows may carry their choices
        return [str(c) for c in row["choices"]]
    if info.spec.get("choices_field") or info.spec.get("lmeval_task") or not info.spec.get("choices"):
        # per-item choices (choices_field, lm-eval tasks): not stored in the rows, read from the task data
        return list(info.item(str(row["item_id"]), "per-item choices are not stored in the results").choices)
    return [str(c) for c in info.spec["choices"]]


def _logged_target(row: dict[str, Any], info: _TaskInfo) -> Any:
    """The sample's ``target`` as lm-eval logs it (see the module docstring): lm-eval's raw doc_to_target, or the text."""
    if row.get("lmeval_target") is not None:
        return row["lmeval_target"]
    text = str(row["target"])
    if info.spec.get("lmeval_task"):
        try:
            raw = info.item(str(row["item_id"]), "lm-eval's raw targets are not stored in the results").lmeval_target
        except UserError:  # the task is gone: the text (right for the usual `doc_to_target: "{{label}}"`)
            return text
        if raw is not None:
            return raw
    return text


# --------------------------------------------------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------------------------------------------------


def _choice_sample(i: int, row: dict[str, Any], context: str, query: str, info: _TaskInfo, unit_id: str) -> dict[str, Any]:
    choices = _choices(row, info)
    target_text = str(row["target"])
    if target_text not in choices:
        raise UserError(f"unit {unit_id}: item {row['item_id']} target {target_text!r} is not among its choices")
    loglik, greedy = row.get("loglik"), row.get("is_greedy")
    if not isinstance(loglik, list) or not isinstance(greedy, list) or not len(loglik) == len(greedy) == len(choices):
        raise UserError(
            f"unit {unit_id}: item {row['item_id']} has {len(loglik or [])} log-likelihoods for {len(choices)} choices — "
            "the results do not match the task; rerun the unit"
        )
    target = _logged_target(row, info)
    # lm-eval under a chat template: the continuation is the choice alone (the context ends in the generation prompt)
    delim = "" if info.spec.get("prompt_format") == "chat" else info.spec.get("target_delimiter", " ")
    doc = {"id": str(row["item_id"]), "query": query, "choices": choices, "target": target_text}
    pairs = [(float(ll), bool(g)) for ll, g in zip(loglik, greedy)]
    return {
        "doc_id": i,
        "doc": doc,
        "target": target,
        "arguments": [(context, delim + c) for c in choices],
        "resps": [[p] for p in pairs],
        "filtered_resps": pairs,
        "filter": FILTER,
        "metrics": [METRIC_NAMES["choice"]],
        "doc_hash": doc_hash(doc),
        "prompt_hash": hash_string(context),
        "target_hash": hash_string(str(target)),
        METRIC_NAMES["choice"]: float(row["score"]),
    }


def _generate_sample(i: int, row: dict[str, Any], context: str, query: str, info: _TaskInfo) -> dict[str, Any]:
    # the task's own free-form metric (f1, regex, json_*) names the score; exact match otherwise, as lm-eval names it
    metric = str(info.spec.get("metric") or "")
    metric = metric if metric not in ("", "accuracy", "exact_match") else METRIC_NAMES["generate"]
    target = _logged_target(row, info)
    pred = str(row.get("prediction", ""))
    doc = {"id": str(row["item_id"]), "query": query, "target": str(row["target"])}
    stops = info.spec.get("stop_sequences")
    until = stops if stops is not None else info.spec.get("fewshot_delimiter", "\n\n")
    gen = _gen_kwargs(until, int(info.spec.get("max_new_tokens", DEFAULT_MAX_GEN_TOKS)))
    return {
        "doc_id": i,
        "doc": doc,
        "target": target,
        "arguments": [(context, gen)],
        "resps": [[pred]],
        "filtered_resps": [row.get("filtered", pred)],  # lm-eval-filtered tasks: the first filter's output
        "filter": row.get("filter", FILTER),
        "metrics": [metric],
        "doc_hash": doc_hash(doc),
        "prompt_hash": hash_string(context),
        "target_hash": hash_string(str(target)),
        metric: float(row["score"]),
    }


def not_exportable(record: dict[str, Any]) -> str | None:
    """Why a unit has no lm-eval samples, or None: a choice unit asked of an API model without full per-choice
    log-likelihoods (a matched answer, or labels outside the top log-probabilities) has nothing for `resps`."""
    api = record.get("api") if isinstance(record.get("api"), dict) else {}
    method = api.get("scoring_method")
    if record.get("engine") == "api" and method in ("generate_match", "top_logprobs"):
        return (f"scored over an API by {method} — lm-eval samples of a choice task carry a log-likelihood for every "
                "choice, which this unit does not have")
    return None


def _unit_samples(store: RunStore, config: dict[str, Any], record: dict[str, Any], infos: dict[str, _TaskInfo]) -> list[dict[str, Any]]:
    unit_id = str(record.get("unit"))
    why = not_exportable(record)
    if why:
        raise UserError(f"unit {unit_id}: {why}")
    task = str(record.get("task"))
    if task not in infos:
        infos[task] = _task_info(config, task, store.root)
    info = infos[task]
    if info.kind not in METRIC_NAMES:
        raise UserError(f"task {task}: kind {info.kind!r} cannot be exported as lm-eval samples")
    shots = int((record.get("point") or {}).get("shots") or 0)
    prefix = _read_prefix(store, unit_id, info, shots)
    samples = []
    for i, row in enumerate(_read_rows(store.results_path(unit_id), store.results_fix(unit_id))):
        query = row.get("query")
        if query is None:
            it = info.item(str(row["item_id"]), "the results do not store the query")
            query = info.builder("the results do not store the query").query(it)
        context = prefix + query
        if info.kind == "choice":
            samples.append(_choice_sample(i, row, context, query, info, unit_id))
        else:
            samples.append(_generate_sample(i, row, context, query, info))
    return samples


def unit_samples(run_dir: Path | str, unit_id: str) -> list[dict[str, Any]]:
    """lm-eval sample records of one finished unit, as ``simple_evaluate(log_samples=True)["samples"][task]`` holds them.

    Reads the run dir only. UserError when it is not a run dir, the unit is unknown or unfinished, or the stored
    results cannot be turned into prompts (see the module docstring).
    """
    store = RunStore.open(Path(run_dir))
    if not store.is_done(unit_id):
        planned = store.config.get("units") or []
        if unit_id in planned or store.results_path(unit_id).exists():
            raise UserError(f"unit {unit_id} is not finished — run the job again to finish it")
        raise UserError(f"unknown unit {unit_id!r} in {store.root}")
    return _unit_samples(store, store.config, store.read_unit(store.unit_path(unit_id), measurements=False), {})


def jsonl_record(sample: dict[str, Any]) -> dict[str, Any]:
    """One sample as lm-eval's ``EvaluationTracker.save_results_samples`` writes it (a new dict; input untouched)."""
    out = dict(sample)
    out["arguments"] = {
        f"gen_args_{i}": {f"arg_{j}": a for j, a in enumerate(args)} for i, args in enumerate(sample["arguments"])
    }
    out["resps"] = sanitize_list(sample["resps"])
    out["filtered_resps"] = sanitize_list(sample["filtered_resps"])
    out["target"] = str(sample["target"])
    return out


def jsonl_text(samples: Iterable[dict[str, Any]]) -> str:
    return "".join(
        json.dumps(jsonl_record(s), default=handle_non_serializable, ensure_ascii=False) + "\n" for s in samples
    )


def samples_file_name(unit_id: str) -> str:
    return f"samples_{safe_name(unit_id)}.jsonl"


# --------------------------------------------------------------------------------------------------------------------
# Export
# --------------------------------------------------------------------------------------------------------------------


@dataclass
class ExportResult:
    out_dir: Path
    written: list[Path] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (unit id, why)


def export_samples(
    run_dir: Path | str,
    out_dir: Path | str | None = None,
    units: Iterable[str] | None = None,
    *,
    log: Callable[[str], None] | None = None,
) -> ExportResult:
    """Write ``samples_<unit>.jsonl`` for each finished unit (or each of ``units``) into ``out_dir``.

    Default ``out_dir``: ``<run_dir>/samples``. Unfinished units are skipped (listed in ``skipped`` and passed to
    ``log``); an id that is no unit of the run is a UserError. Every file is written atomically and only after all
    requested units were turned into records, so a failing unit leaves no half-written export.
    """
    store = RunStore.open(Path(run_dir))
    config = store.config
    target_dir = Path(out_dir) if out_dir is not None else store.root / "samples"
    records = {str(r.get("unit")): r for r in store.units(measurements=False)}
    planned = [str(u) for u in (config.get("units") or [])]
    known = list(dict.fromkeys([*planned, *sorted(records)]))
    if units is None:
        wanted = known
    else:
        wanted = list(dict.fromkeys(units))
        unknown = [u for u in wanted if u not in records and u not in planned]
        if unknown:
            raise UserError(
                f"unknown unit {unknown[0]!r} in {store.root} — its units are: {', '.join(known) or 'none'}"
            )
    res = ExportResult(target_dir)
    infos: dict[str, _TaskInfo] = {}
    texts: list[tuple[Path, str]] = []
    for uid in wanted:
        rec = records.get(uid)
        if rec is None:
            why = "unfinished (no units/ record) — run the job again to finish it"
            res.skipped.append((uid, why))
            if log:
                log(f"skip {uid}: {why}")
            continue
        why = not_exportable(rec)
        if why:
            res.skipped.append((uid, why))
            if log:
                log(f"skip {uid}: {why}")
            continue
        samples = _unit_samples(store, config, rec, infos)
        texts.append((target_dir / samples_file_name(uid), jsonl_text(samples)))
    for path, text in texts:
        try:
            atomic_write_text(path, text)
        except OSError as exc:
            raise UserError(f"cannot write {path} ({exc.strerror or type(exc).__name__}) — pass a writable --out folder") from None
        res.written.append(path)
    return res
