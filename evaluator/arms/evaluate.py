"""The three arms as units of work, and how one unit is evaluated on a model.

A unit is one point of one arm on one task: (A, base, k), (B, base, n, eval k), (C, newer, k). Each unit writes
per-item results as it goes and one record when it finishes (see store.py), so runs resume unit by unit and
item by item.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass
from typing import Callable

from evaluator.analysis.estimates import estimate
from evaluator.arms.rows import accuracy_scores, choice_rows, generate_rows
from evaluator.errors import UserError
from evaluator.prompts.tokenized import TokenizedPrompts
from evaluator.store.run_store import RunStore
from evaluator.tasks.spec import Item, Task

ARM_NAMES = {"A": "prompting (base)", "B": "LoRA (base)", "C": "prompting (newer base)"}
CHUNK_ITEMS = 16  # items scored between two appends to the results file


@dataclass(frozen=True)
class Unit:
    task: str
    arm: str  # "A" | "B" | "C"
    model: str  # the model spec as written in the job
    model_slug: str
    shots: int | str  # requested k (int or "max"); for B the eval shots
    train_size: int | str | None = None  # B only: n or "all"

    @property
    def id(self) -> str:
        n = f"__n{self.train_size}" if self.arm == "B" else ""
        return f"{self.task}__{self.arm}__{self.model_slug}{n}__k{self.shots}"


class ShotsHow(str):
    """How a unit's k was chosen (the text stored as `point.shots_how`); for `max` it also carries `max_limit`, the
    limit that bound k (see `resolve_shots`), which the unit record stores as `point.max_limit`."""

    max_limit: dict | None = None


def resolve_shots(unit_shots: int | str, tp: TokenizedPrompts, items, context: int, cap: int) -> tuple[int, str]:
    """The k to use and how it was chosen; an explicit k that does not fit is an error, never truncation.

    For `max` the text names the binding limit — the context window, the `max_shots` cap or the size of the
    demonstration pool — and the k the context alone would allow; the returned text's `max_limit` holds the same as
    {"binding": "context" | "max_shots" | "demonstrations", "k_context", "cap", "pool", "context"}."""
    need_after_prefix = tp.longest_request(items, 1 if unit_shots == "max" else int(unit_shots))
    if unit_shots == "max":
        lim = tp.max_shots_limits(context, items, cap)
        k = lim["k"]
        if k < 0:
            raise UserError(f"even the zero-shot prompt does not fit the {context}-token context window")
        pool, kc = lim["pool"], lim["k_context"]
        if lim["binding"] == "max_shots":
            why = (f"limited by the max_shots cap (the {context}-token context would fit k={kc}; "
                   f"{pool} demonstrations)")
        elif lim["binding"] == "demonstrations":
            why = (f"limited by the demonstration pool (all {pool} demonstrations fit the {context}-token context; "
                   f"max_shots cap {cap})")
        else:
            why = f"limited by the {context}-token context window (max_shots cap {cap}; {pool} demonstrations)"
        how = ShotsHow(f"{why}; largest k with prefix + longest item and answer ({need_after_prefix} tokens) "
                       f"<= {context} tokens")
        how.max_limit = {"binding": lim["binding"], "k_context": kc, "cap": cap, "pool": pool, "context": context}
        return k, how
    k = int(unit_shots)
    pool = tp.builder.task.demo_pool
    if k > len(pool):
        raise UserError(f"shots={k} but task {tp.builder.task.name} has only {len(pool)} demonstration items — lower it or use max")
    total = len(tp.prefix_ids(k)) + need_after_prefix
    if total > context:
        raise UserError(
            f"shots={k} does not fit: prompt needs {total} tokens > the model's {context}-token context window — use fewer shots or 'max'"
        )
    return k, "explicit"


def evaluate_unit(
    unit: Unit,
    task: Task,
    items: list[Item],
    tp: TokenizedPrompts,
    model,
    tokenizer,
    context: int,
    store: RunStore,
    *,
    engine: str,
    batch_tokens: int,
    shots_cap: int,
    extra: dict | None = None,
    progress: Callable[[int], None] | None = None,
    log: Callable[[str], None] | None = None,
    model_path: str | None = None,
) -> dict:
    """Score every item of `unit` not already on disk, then write the unit's record.

    Out of GPU memory while scoring a chunk: the chunk is scored again with half the failing batch's tokens as the
    budget (kept for the rest of the unit; rows already stored stay), until a single request does not fit (UserError).
    The packed and plain engines score every request independently of how requests are batched, so the rows equal
    those of a run without the error up to float rounding. The record gets `oom_retries` and `batch_tokens_used`; each
    retry is reported through `log` (default: the `tunecheck` logger).
    """
    from evaluator.engine.memory import free_memory, is_out_of_memory
    from evaluator.engine.scorer import PrefixScorer
    from evaluator.training.distributed import broadcast_from_main, gather_all, is_main_process, rank, world_size

    k, how = resolve_shots(unit.shots, tp, items, context, shots_cap)
    prefix_text = tp.builder.prefix(k)
    prefix_ids = tp.prefix_ids(k)
    main, world = is_main_process(), world_size()
    if main:  # under a multi-process launch the main process alone writes the run folder
        store.write_prefix(unit.id, prefix_text)
    done_ids = broadcast_from_main(set(store.finished_items(unit.id)) if main else None)
    todo = [it for it in items if it.id not in done_ids]
    if progress and done_ids:
        progress(len(items) - len(todo))
    if engine == "lm-eval" and world > 1:
        raise UserError("engine lm-eval runs in one process — run the job without accelerate launch, or use engine "
                        "auto (tunecheck's scorer) for a multi-process run")
    if engine == "lm-eval":
        return _evaluate_with_lmeval(unit, task, items, todo, tp, model, tokenizer, k, how, context, store, extra, progress, model_path)
    t0 = time.perf_counter()
    try:
        scorer = PrefixScorer(model, prefix_ids, mode=engine, max_batch_tokens=batch_tokens)
    except RuntimeError as exc:  # torch.cuda.OutOfMemoryError is a RuntimeError
        if not is_out_of_memory(exc):
            raise
        scorer = None
    if scorer is None:  # encoding the shared prefix once: no batch to make smaller
        free_memory()
        raise UserError(
            f"unit {unit.id}: the {len(prefix_ids)}-token shared prefix (k={k}) alone does not fit in GPU memory — "
            "use fewer shots, a smaller dtype (e.g. dtype: bfloat16) or a GPU with more memory"
        )
    prefix_seconds = time.perf_counter() - t0
    warmup_seconds = _warm_up(task, tp, scorer, todo[rank() :: world], tokenizer, k)
    size = CHUNK_ITEMS  # the resume granularity; throughput at a full batch is measured apart (serving_probe)
    calls0, scored = scorer.forward_calls, 0
    oom_retries, start = 0, 0
    while start < len(todo):
        chunk = todo[start : start + size]
        mine = chunk[rank() :: world]  # this process's share (all of it in one process)
        t1 = time.perf_counter()
        try:
            if not mine:
                rows = []
            elif task.spec.kind == "choice":
                rows = choice_rows(task, tp, scorer, mine, k)
            else:
                rows = generate_rows(task, tp, scorer, mine, tokenizer, k)
        except RuntimeError as exc:
            if not is_out_of_memory(exc):
                raise
            rows = None
        if rows is None:  # out of GPU memory (the error and its frames are gone now): halve the batch, score again
            free_memory()
            _halve_batch_after_oom(unit, scorer, log)
            oom_retries += 1
            continue
        per_item = (time.perf_counter() - t1) / max(1, len(mine))
        scored += len(mine)
        for r in rows:
            r["seconds"] = round(per_item, 6)  # seconds of one process's work (summed: the unit's process-seconds)
        if world > 1:  # every process's rows, in the chunk's item order, to the main process that stores them
            by_id = {r["item_id"]: r for part in gather_all(rows) for r in part}
            rows = [by_id[it.id] for it in chunk]
        if main:
            store.append_items(unit.id, rows)
        if progress:
            progress(len(chunk))
        start += size
    forwards = scorer.forward_calls - calls0
    batch = {"chunk_items": size, "forwards": forwards or None,
             "requests_per_forward": (scored / forwards) if forwards and task.spec.kind == "choice" else None,
             "serving": serving_probe(task, tp, scorer, items, k)}
    if world > 1:  # the unit's figures over all processes
        oom_retries = sum(gather_all(oom_retries))
        warmup_seconds = max(gather_all(warmup_seconds))
    budget = min(gather_all(scorer.max_batch_tokens))
    extra = {**(extra or {}), "oom_retries": oom_retries, "batch_tokens_used": budget,
             "measured_with": measured_with(model, scorer.mode, budget, batch)}
    if not main:
        return {}
    return _finish(unit, task, items, k, how, len(prefix_ids), context, scorer.mode, prefix_seconds, store, extra,
                   tp=tp, warmup_seconds=warmup_seconds)


def _warm_up(task: Task, tp: TokenizedPrompts, scorer, todo: list[Item], tokenizer, k: int) -> float:
    """Score the first pending item once, untimed for the unit's throughput: the first forward of a shape (kernel
    selection, allocator growth, thread pools) is one-off work that would otherwise be priced per request. Returns
    its seconds (recorded apart); an out-of-memory here is left to the timed loop's recovery."""
    from evaluator.engine.memory import free_memory, is_out_of_memory

    if not todo:
        return 0.0
    t0 = time.perf_counter()
    try:
        if task.spec.kind == "choice":
            choice_rows(task, tp, scorer, todo[:1], k)
        else:
            generate_rows(task, tp, scorer, todo[:1], tokenizer, k)
    except RuntimeError as exc:
        if not is_out_of_memory(exc):
            raise
        free_memory()
    return time.perf_counter() - t0


def measured_with(model, engine: str, batch_tokens: int | None, batch: dict | None = None) -> dict:
    """Device, dtype, batch and processes a unit's throughput was measured with (the cost table prints them);
    `batch`: what the timed forwards held (see `evaluate_unit`)."""
    import os

    import torch

    from evaluator.models.load import device_map_summary, input_device

    w = next(model.parameters())
    dev = input_device(model)  # a model dispatched by a device_map: the inputs' device (its first parameter may be on meta)
    if dev.type == "cuda":
        name = torch.cuda.get_device_name(dev)
    elif dev.type == "cpu":
        name = f"CPU ({os.cpu_count()} cores, {torch.get_num_threads()} threads)"
    else:
        name = str(dev)
    placed = device_map_summary(model)  # None on one device
    if placed is not None and len(placed["devices"]) > 1:
        name += f" + {', '.join(d for d in placed['devices'] if d != str(dev))} (device_map)"
    from evaluator.training.distributed import world_size

    b = batch or {}
    procs = world_size()
    serving = b.get("serving")
    if not batch_tokens:
        note = "lm-eval's own batching (an offline scoring batch, not a serving batch)"
    elif serving:
        note = (f"a serving batch: {serving['requests']} requests in {serving['forwards']} forward(s) of ≤ "
                f"{serving['batch_tokens']} tokens" + (f", on each of {procs} processes" if procs > 1 else ""))
    else:
        note = (f"chunks of {b.get('chunk_items', CHUNK_ITEMS)} items, ≤ {batch_tokens} tokens per forward (an offline "
                "scoring batch, not a serving batch)")
    return {"device": name, "device_type": dev.type, "dtype": str(w.dtype).removeprefix("torch."), "engine": engine,
            "batch_tokens": batch_tokens, "chunk_items": b.get("chunk_items", CHUNK_ITEMS), "processes": procs,
            "forwards": b.get("forwards"), "requests_per_forward": b.get("requests_per_forward"),
            "serving": serving, "batch_note": note} | ({"device_map": placed} if placed is not None else {})


SERVING_MAX_REQUESTS = 1024  # the probe's batch is capped: a huge batch_tokens must not make it a second run


def serving_probe(task: Task, tp: TokenizedPrompts, scorer, items: list[Item], k: int) -> dict | None:
    """Requests/s at a batch the device holds: one call scoring as many of the unit's requests as fill a forward of
    the scorer's token budget (an item costs its query and choice tokens; items repeat when the unit has fewer),
    timed on its own — the resume chunks (CHUNK_ITEMS) are smaller than a serving batch on a GPU. Choice tasks only
    (generation runs one request at a time); None when there is nothing to time or the batch does not fit."""
    from evaluator.engine.memory import free_memory, is_out_of_memory

    if task.spec.kind != "choice" or not items:
        return None
    sample = items[:32]
    cost = sum(len(tp.item_ids(it, k)) + sum(len(tp.continuation_ids(c, it, k)) for c in it.choices)
               for it in sample) / len(sample)
    n = max(CHUNK_ITEMS, min(SERVING_MAX_REQUESTS, int(scorer.max_batch_tokens // max(1.0, cost))))
    batch = [items[i % len(items)] for i in range(n)]
    calls0 = scorer.forward_calls
    t0 = time.perf_counter()
    try:
        choice_rows(task, tp, scorer, batch, k)  # floats come back to the host: the timing is synchronised
    except RuntimeError as exc:
        if not is_out_of_memory(exc):
            raise
        free_memory()
        return None
    seconds = time.perf_counter() - t0
    forwards = scorer.forward_calls - calls0
    return {"requests": n, "seconds": round(seconds, 6), "requests_per_second": n / max(seconds, 1e-9),
            "forwards": forwards, "requests_per_forward": n / max(1, forwards),
            "batch_tokens": scorer.max_batch_tokens}


def zero_shot_request(tp: TokenizedPrompts, items: list[Item]) -> dict:
    """The request a user would send without demonstrations: instruction + input + reference answer (model tokens;
    the texts for API counts are the instruction here and each row's query and target)."""
    n = max(1, len(items))
    s = tp.builder.task.spec
    return {
        "instruction": tp.builder.head(),
        "target_delimiter": s.target_delimiter,
        "instruction_tokens": len(tp.prefix_ids(0)),
        "input_tokens_per_request": sum(len(tp.item_ids(it, 0)) for it in items) / n,
        "answer_tokens_per_request": sum(len(tp.continuation_ids(it.target, it, 0)) for it in items) / n,
    }


def _halve_batch_after_oom(unit: Unit, scorer, log: Callable[[str], None] | None) -> None:
    """Set the scorer's token budget to half the batch that ran out of memory; one request cannot be split."""
    requests, tokens = scorer.last_batch
    if requests <= 1:
        raise UserError(
            f"unit {unit.id} ran out of GPU memory even at the smallest batch (one request, {tokens} tokens) — use "
            "fewer shots, a smaller dtype (e.g. dtype: bfloat16) or a GPU with more memory"
        )
    budget = max(1, min(scorer.max_batch_tokens, tokens) // 2)
    message = (
        f"{unit.id}: out of GPU memory on a batch of {requests} requests ({tokens} tokens) — "
        f"retrying with batch_tokens {budget}"
    )
    (log or logging.getLogger("tunecheck").warning)(message)
    scorer.max_batch_tokens = budget


def _evaluate_with_lmeval(unit, task, items, todo, tp, model, tokenizer, k, how, context, store, extra, progress, model_path) -> dict:
    """The reference path: the same items and demonstrations scored by lm-eval's `simple_evaluate` (HF backend).

    With `model_path`, lm-eval loads the model itself as its CLI would (`pretrained=<folder>`, `peft=<adapter folder>`
    for arm B, on our device and in our dtype); its task files and dataset cache go to a folder of this unit (so
    per model). Without it the loaded model object is wrapped in lm-eval's HFLM."""
    from evaluator.arms.lmeval import run_lmeval

    if task.spec.kind != "choice":
        raise UserError(f"engine lm-eval supports choice tasks only; task {task.name} is {task.spec.kind}")
    if task.spec.scoring != "sum" or task.spec.labels is not None:
        what = " and ".join(x for x in (f"scoring: {task.spec.scoring}" if task.spec.scoring != "sum" else "",
                                        "labels" if task.spec.labels is not None else "") if x)
        raise UserError(f"engine lm-eval scores task {task.name} by the summed log-likelihood of its own labels only "
                        f"— it does not support {what}: use engine auto/packed/plain (tunecheck's scorer)")
    if todo:
        t1 = time.perf_counter()
        work = store.root / "lmeval" / unit.id
        if model_path is not None and getattr(model, "hf_device_map", None) is not None:
            model_path = None  # dispatched by a device_map: lm-eval scores the placed model (it would load it on one device)
        if model_path is not None:
            adapter = (extra or {}).get("adapter", {}).get("dir") if unit.arm == "B" else None
            if unit.arm == "B" and adapter is None:
                raise ValueError(f"unit {unit.id}: the lm-eval engine needs the adapter folder in extra['adapter']['dir']")
            weight = next(model.parameters())
            rows = run_lmeval(
                model_path, tokenizer, task, tp.builder, todo, k, peft=adapter, device=str(weight.device),
                dtype=weight.dtype, work_dir=work,
            )
        else:
            rows = run_lmeval(model, tokenizer, task, tp.builder, todo, k, work_dir=work)
        per_item = (time.perf_counter() - t1) / len(todo)
        by_id = {it.id: it for it in todo}
        for r in rows:
            r.setdefault("query", tp.builder.query(by_id[r["item_id"]]))
            r.setdefault("item_tokens", len(tp.item_ids(by_id[r["item_id"]], k)))
            r.setdefault("prompt_tokens", len(tp.prefix_ids(k)) + r["item_tokens"])
            r.setdefault("output_tokens", 0)
            r["seconds"] = round(per_item, 6)
        store.append_items(unit.id, rows)
        if progress:
            progress(len(todo))
    extra = {**(extra or {}), "measured_with": measured_with(model, "lm-eval", None)}
    return _finish(unit, task, items, k, how, len(tp.prefix_ids(k)), context, "lm-eval", 0.0, store, extra, tp=tp)


CHOICE_TOKENS_SHOWN = 64  # distinct labels listed in a unit's `scoring.choice_tokens` (per-row choices can be many)


def scoring_record(task: Task, tp: TokenizedPrompts | None, items: list[Item], k: int,
                   engine: str | None = None) -> dict:
    """The unit record's `scoring`: the rule, the verbaliser, each label's continuation tokens (target delimiter +
    its word, as scored at this k; the first item holding the label stands in), for `sum`, a warning when the
    choices of an item differ in token length (the sum then favours the shorter labels), and for tunecheck's
    scorer (`engine` packed or plain) `paths`: how many items took each scoring path (see `scoring_paths`)."""
    spec = task.spec
    first: dict[str, Item] = {}
    for it in items:
        for c in it.choices:
            first.setdefault(c, it)
    tokens: dict[str, int] | None = None
    warning = None
    if tp is not None and first:
        counts = {c: len(tp.continuation_ids(c, first[c], k)) for c in first}
        tokens = counts if len(counts) <= CHOICE_TOKENS_SHOWN else None
        uneven = [it for it in dict.fromkeys(first.values()) if len({counts[c] for c in it.choices}) > 1]
        if spec.scoring == "sum" and uneven:
            listed = ", ".join(f"{c} {n}" for c, n in list(counts.items())[:8]) + (", …" if len(counts) > 8 else "")
            warning = (f"choices differ in token length ({listed}): summed log-likelihood favours shorter labels — "
                       "consider scoring: length_normalised or labels")
    return {"rule": spec.scoring, "labels": dict(spec.labels) if spec.labels is not None else None,
            "choice_tokens": tokens, "warning": warning} | (
        {"paths": scoring_paths(tp, items, k)} if tp is not None and engine in ("packed", "plain") else {})


def scoring_paths(tp: TokenizedPrompts, items: list[Item], k: int) -> dict[str, int]:
    """Items scored from one next-token distribution (every choice one token: `single_token`) and items scored one
    branch / row per choice (`tree`), by the same rule and the same ids as the scorer (`engine.requests.
    is_single_token` on `continuation_ids`), so it holds for items scored before a resume too."""
    single = sum(all(len(tp.continuation_ids(c, it, k)) == 1 for c in it.choices) for it in items)
    return {"single_token": single, "tree": len(items) - single}


def _finish(unit, task, items, k, how, prefix_tokens, context, engine, prefix_seconds, store, extra, *,
            tp: TokenizedPrompts | None = None, warmup_seconds: float = 0.0) -> dict:
    """Metrics and measurements of a unit from its stored per-item rows; written atomically (= unit done)."""
    rows_by_id = store.finished_items(unit.id)
    rows = [rows_by_id[it.id] for it in items]
    est = estimate(accuracy_scores(rows))
    n = len(rows)
    record = {
        "unit": unit.id,
        "task": unit.task,
        "arm": unit.arm,
        "arm_name": ARM_NAMES[unit.arm],
        "model": unit.model,
        "model_slug": unit.model_slug,
        "point": {"shots_requested": unit.shots, "shots": k, "shots_how": str(how), "train_size": unit.train_size}
        | ({"max_limit": how.max_limit} if getattr(how, "max_limit", None) else {}),
        "metric": task.spec.metric,
        **est.as_dict(),
        "n_items": n,
        "item_ids_hash": hashlib.sha256(json.dumps([r["item_id"] for r in rows]).encode()).hexdigest()[:16],
        "engine": engine,
        "tokens": {
            "shared_prefix_tokens": prefix_tokens,
            "prompt_tokens_per_request": sum(r["prompt_tokens"] for r in rows) / n,
            "unique_tokens_per_request": sum(r["item_tokens"] for r in rows) / n,
            "output_tokens_per_request": sum(r["output_tokens"] for r in rows) / n,
            "context_window": context,
        },
        "timings": {
            # request_seconds: per-request work only (what throughput is priced from); eval_seconds: the unit's wall
            "request_seconds": sum(r["seconds"] for r in rows),
            "prefix_encode_seconds": prefix_seconds,
            "warmup_seconds": warmup_seconds,
            "eval_seconds": sum(r["seconds"] for r in rows) + prefix_seconds + warmup_seconds,
            "requests": n,
        },
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    if tp is not None:
        record["zero_shot_request"] = zero_shot_request(tp, items)
        record["tokenisation"] = dict(tp.tokenisation)
    if task.spec.kind == "choice":
        record["scoring"] = scoring_record(task, tp, items, k, engine)
    if extra:
        record.update(extra)
    store.finish_unit(unit.id, record)
    return record


