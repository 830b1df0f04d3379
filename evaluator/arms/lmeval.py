"""Bridge to lm-evaluation-harness (lm-eval 0.4.x): the reference scorer and the parity / speed baseline.

* :func:`write_lmeval_task` writes a self-contained lm-eval task (YAML + JSONL, ``dataset_path: json``) whose
  few-shot context is *text-identical* to ours: the few-shot split holds ``builder.demos(k)`` in order and the
  ``first_n`` sampler takes them as they are, every doc carries its query already rendered with our template, and
  ``description`` is ``builder.head()`` (instruction + its delimiter). The function checks the identity on one doc by asking
  lm-eval itself to build the context (``verify=True``).
* :func:`run_lmeval` runs ``lm_eval.simple_evaluate`` (HF backend) on that task — from a model folder
  (``model="hf"``, optionally with a peft adapter folder) or from an already loaded model wrapped in ``HFLM`` — and
  returns per-item rows in the row format of :func:`evaluator.arms.rows.choice_rows`.
* :func:`lmeval_requests` tokenises the prompts exactly as lm-eval's HF backend does (context encoded whole,
  continuation = encode(context + continuation) minus encode(context), trailing context spaces moved to the
  continuation) and splits them into one shared prefix + per-item requests for :class:`evaluator.engine.scorer.PrefixScorer`.

Tokenisation. lm-eval tokenises ``prefix + query`` as ONE string and each continuation as
encode(context + continuation) minus encode(context); we tokenise the shared prefix, each item and each choice
separately (one prefix KV cache for all items). The two agree only if every piece boundary is a pre-token boundary.
The choice boundary is one for the tokenizers we ship (the context ends in ``:``, the choice starts with the target
delimiter). The prefix/item boundary was not: with a GPT-2-style pre-tokenizer regex (``\\s+(?!\\S)``, SmolLM2) a
prefix ending in ``"\\n\\n"`` is ONE token on its own but ``"\\n", "\\n"`` when ``"Utterance"`` follows — one token
shorter than lm-eval's request, measured max |Δ log-lik| 4.06 at k=0 and 0.56 at k=32 on SmolLM2-135M. Since
:class:`TokenizedPrompts` cuts the shared prefix *before* the trailing delimiter (the delimiter is tokenised with the
item), our ids equal lm-eval's for SmolLM2 and Gemma 3 on all 200 SNIPS test items at k = 0..256.
:func:`lmeval_requests` gives lm-eval's ids for any tokenizer and reports, per item, whether ours equal them.

Chat format (a task's or job's ``prompt_format: chat``): the task file is the same — ``doc_to_text`` is the item's
user content (``PromptBuilder.user_text``), ``description`` the instruction alone — and ``simple_evaluate`` runs with
``apply_chat_template=True``, the task's ``fewshot_as_multiturn`` and ``system_instruction=system``; lm-eval then builds
the messages and renders them with the model's template, and its context must equal our prefix + query (checked per
item). Its continuation is the choice without the target delimiter, its trailing context whitespace (the generation
prompt's newline) moved into the continuation — what our chat tokenisation scores too.

BOS: lm-eval 0.4.13 has no model-specific BOS rule; with ``add_bos_token=None`` it encodes with the tokenizer's
default special tokens, exactly as :meth:`TokenizedPrompts.prefix_ids` does (Gemma: BOS added; SmolLM2: none).

lm-eval's request cache is never used here (its key ignores the model); its dataset cache goes into ``out_dir``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evaluator.tasks.layout import PromptBuilder
from evaluator.tasks.lmeval import quiet_lmeval
from evaluator.tasks.spec import Item, Task

__all__ = [
    "LmEvalRun",
    "lmeval_context",
    "lmeval_encode",
    "lmeval_requests",
    "lmeval_task_name",
    "run_lmeval",
    "write_lmeval_task",
]

FEWSHOT_SPLIT = "fewshot"
TEST_SPLIT = "test"


def lmeval_task_name(task: Task, k: int) -> str:
    safe = re.sub(r"[^A-Za-z0-9_]+", "_", task.name)
    return f"tunecheck_{safe}_k{k}"


def _row(builder: PromptBuilder, it: Item) -> dict[str, Any]:
    if not it.choices:
        raise ValueError(f"item {it.id}: the lm-eval bridge scores choice tasks only (no choices)")
    return {
        "id": it.id,
        "query": builder.user_text(it),  # raw: the query; chat: the user turn's content (lm-eval adds the markup)
        "choices": list(it.choices),
        "label": list(it.choices).index(it.target),
    }


def write_lmeval_task(
    task: Task, builder: PromptBuilder, items: list[Item], k: int, out_dir: Path, *, verify: bool = True
) -> str:
    """Write ``<name>.yaml``, ``<name>_test.jsonl`` and ``<name>_fewshot.jsonl`` into ``out_dir``; return the name.

    Fields are read by column name (``doc_to_text: query`` etc.), so no Jinja runs over user text; the
    description is also a column, for the same reason. With ``verify`` lm-eval builds the context of the first item
    and it must equal ``builder.prefix(k) + builder.query(item)`` character for character.
    """
    import yaml

    if task.spec.kind != "choice":
        raise ValueError(f"task {task.name}: the lm-eval bridge handles choice tasks only")
    if not items:
        raise ValueError("no items")
    if k > len(task.demo_pool):
        raise ValueError(f"k={k} > {len(task.demo_pool)} demonstration items")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    name = lmeval_task_name(task, k)
    spec = task.spec
    description = spec.instruction if builder.is_chat else builder.head()  # chat: the system turn's text is lm-eval's

    test_rows = [dict(_row(builder, it), tc_description=description) for it in items]
    # The sampler needs a non-empty split even for k=0 (it is then never read).
    demo_rows = [dict(_row(builder, d), tc_description=description) for d in builder.demos(max(k, 1))]
    test_path = out_dir / f"{name}_test.jsonl"
    fewshot_path = out_dir / f"{name}_fewshot.jsonl"
    for path, rows in ((test_path, test_rows), (fewshot_path, demo_rows)):
        with path.open("w", encoding="utf-8") as f:
            for r in rows:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")

    config = {
        "task": name,
        "dataset_path": "json",
        "dataset_kwargs": {
            "data_files": {TEST_SPLIT: str(test_path.resolve()), FEWSHOT_SPLIT: str(fewshot_path.resolve())},
            "cache_dir": str((out_dir / ".hf_datasets").resolve()),
        },
        "test_split": TEST_SPLIT,
        "fewshot_split": FEWSHOT_SPLIT,
        "fewshot_config": {"sampler": "first_n"},
        "output_type": "multiple_choice",
        "doc_to_text": "query",
        "doc_to_choice": "choices",
        "doc_to_target": "label",
        "description": "tc_description",
        "target_delimiter": spec.target_delimiter,
        "fewshot_delimiter": spec.fewshot_delimiter,
        "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True}],
        "metadata": {"version": 1.0},
    }
    (out_dir / f"{name}.yaml").write_text(yaml.safe_dump(config, allow_unicode=True, sort_keys=False), encoding="utf-8")

    if verify:
        got = lmeval_context(out_dir, name, k, doc_index=0, **chat_args(builder))
        want = builder.prefix(k) + builder.query(items[0])
        if got != want:
            raise AssertionError(
                f"lm-eval context differs from ours for item {items[0].id}:\n--- lm-eval\n{got!r}\n--- ours\n{want!r}"
            )
    return name


def _task_manager(out_dir: Path):
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=str(Path(out_dir).resolve()), include_defaults=False)


def chat_args(builder: PromptBuilder) -> dict[str, Any]:
    """lm-eval's chat options for the builder's format ({} for raw prompts): apply_chat_template,
    fewshot_as_multiturn, system_instruction and (for :func:`lmeval_context`) the renderer."""
    if not builder.is_chat:
        return {}
    return {"apply_chat_template": True, "fewshot_as_multiturn": builder.task.spec.fewshot_as_multiturn,
            "system_instruction": builder.task.spec.system, "chat_template": builder.chat}


def lmeval_context(out_dir: Path, name: str, k: int, doc_index: int = 0, **chat: Any) -> str:
    """The context string lm-eval builds for one test doc of a task written by :func:`write_lmeval_task`; `chat`:
    :func:`chat_args` (lm-eval's fewshot_context renders the messages with `chat_template`)."""
    quiet_lmeval()
    task_obj = _task_manager(out_dir).load([name])["tasks"][name]
    doc = task_obj.test_docs()[doc_index]
    return task_obj.fewshot_context(doc, k, **chat)


# --------------------------------------------------------------------------------------------------------------------
# Tokenisation as lm-eval's HF backend does it
# --------------------------------------------------------------------------------------------------------------------


def _encode(tokenizer, text: str, add_bos_token: bool | None) -> list[int]:
    """``HFLM.tok_encode`` with add_special_tokens=None (its default)."""
    kwargs = {} if add_bos_token is None else {"add_special_tokens": add_bos_token}
    bos_id = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    if bos_id is not None and text.startswith(tokenizer.decode(bos_id)):
        kwargs["add_special_tokens"] = False
    return list(tokenizer.encode(text, **kwargs))


def lmeval_encode(tokenizer, context: str, continuation: str, add_bos_token: bool | None = None) -> tuple[list[int], list[int]]:
    """``HFLM._encode_pair`` for a causal model: (context ids, continuation ids) exactly as lm-eval scores them."""
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces:
        continuation = context[-n_spaces:] + continuation
        context = context[:-n_spaces]
    whole = _encode(tokenizer, context + continuation, add_bos_token)
    ctx = _encode(tokenizer, context, add_bos_token)
    return ctx, whole[len(ctx) :]


def lmeval_requests(tokenizer, builder: PromptBuilder, items: list[Item], k: int, add_bos_token: bool | None = None):
    """lm-eval's token ids as (shared prefix ids, [ChoiceRequest]) for :class:`PrefixScorer`.

    The shared prefix is the longest common start of the encoded prefix text and every item's encoded context
    (kept at least one token short of each context so every item is non-empty); each request holds the rest of its
    context and lm-eval's continuation ids. Scoring these reproduces lm-eval's log-likelihoods to float rounding.
    Also returns, per item, whether our piecewise ids (:class:`TokenizedPrompts`) equal lm-eval's.
    """
    from evaluator.engine.requests import ChoiceRequest
    from evaluator.prompts.tokenized import TokenizedPrompts

    tp = TokenizedPrompts(builder, tokenizer)
    builder = tp.builder  # chat tasks: bound to the tokenizer's chat template
    prefix_text = builder.prefix(k)
    ctxs, conts, same = [], [], []
    for it in items:
        context = prefix_text + builder.query(it)
        pairs = [lmeval_encode(tokenizer, context, builder.continuation(c), add_bos_token) for c in it.choices]
        ctx = pairs[0][0]
        if any(p[0] != ctx for p in pairs):  # only when the context ends in whitespace handled per choice
            raise ValueError(f"item {it.id}: context encodes differently per choice")
        ctxs.append(ctx)
        conts.append([p[1] for p in pairs])
        ours_ctx = tp.prefix_ids(k) + tp.item_ids(it, k)
        same.append(ours_ctx == ctx and all(tp.continuation_ids(c) == p[1] for c, p in zip(it.choices, pairs)))
    shared = _encode(tokenizer, prefix_text, add_bos_token)
    n = min([len(shared)] + [len(c) - 1 for c in ctxs])
    for c in ctxs:
        j = 0
        while j < n and c[j] == shared[j]:
            j += 1
        n = j
    shared = shared[:n]
    reqs = [ChoiceRequest(item_ids=c[n:], choice_ids=cs) for c, cs in zip(ctxs, conts)]
    return shared, reqs, same


# --------------------------------------------------------------------------------------------------------------------
# Running lm-eval
# --------------------------------------------------------------------------------------------------------------------


@dataclass
class LmEvalRun:
    rows: list[dict]  # per item, in item order, our row format
    seconds: float  # wall time of simple_evaluate (model already loaded when an object was passed)
    batch_size: Any  # what lm-eval used
    task_name: str
    task_dir: Path
    raw: dict | None = None  # simple_evaluate's result (samples included)


def _dtype_str(dtype) -> str | None:
    if dtype is None:
        return None
    s = str(dtype)
    return s.removeprefix("torch.")


def run_lmeval(
    model,
    tokenizer,
    task: Task,
    builder: PromptBuilder,
    items: list[Item],
    k: int,
    *,
    peft: str | Path | None = None,
    batch_size: int | str = 8,
    device: str | None = None,
    dtype: Any = None,
    cache_dir: str | Path | None = None,
    work_dir: str | Path | None = None,
    max_length: int | None = None,
    add_bos_token: bool | None = None,
    softmax_dtype: str | None = None,
    return_details: bool = False,
):
    """Score ``items`` with ``k`` fixed demonstrations through ``lm_eval.simple_evaluate``; rows in item order.

    ``model``: an lm-eval ``LM`` (e.g. a ready ``HFLM``; used as is), a model folder (loaded by lm-eval's HF backend, ``peft`` = adapter folder applied by lm-eval,
    ``device``/``dtype`` passed on) or an already loaded ``PreTrainedModel`` / ``PeftModel`` (wrapped in ``HFLM``;
    its own device and dtype are used; to evaluate an adapter pass the ``PeftModel``). ``tokenizer``: a tokenizer
    object or folder (default: the model folder). ``cache_dir``/``work_dir``: where the task files go (a fresh
    temporary folder by default). ``return_details``: return an :class:`LmEvalRun` (timings, raw result) instead
    of the rows. The task data are local files, so nothing here needs the hub (set ``HF_HUB_OFFLINE=1`` to be sure);
    only a hub id as ``model`` does. lm-eval's global seeding is switched off (it would reseed the caller's RNGs).
    """
    import tempfile
    import time

    import lm_eval
    from lm_eval.models.huggingface import HFLM

    quiet_lmeval()
    base = work_dir or cache_dir
    if base is not None:
        Path(base).mkdir(parents=True, exist_ok=True)
    task_dir = Path(tempfile.mkdtemp(prefix="tunecheck-lmeval-", dir=base))

    if isinstance(tokenizer, (str, Path)):
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(tokenizer))
    elif tokenizer is None and isinstance(model, (str, Path)):
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(model))
    extra: dict[str, Any] = {}
    if max_length is not None:
        extra["max_length"] = max_length
    if add_bos_token is not None:
        extra["add_bos_token"] = add_bos_token
    if softmax_dtype is not None:
        extra["softmax_dtype"] = softmax_dtype

    from lm_eval.api.model import LM

    if isinstance(model, LM):  # a ready HFLM (benchmarks build it once, outside the timing)
        lm = model
    elif isinstance(model, (str, Path)):
        args: dict[str, Any] = {"pretrained": str(model), "batch_size": batch_size, **extra}
        if tokenizer is not None:
            args["tokenizer"] = tokenizer
        if peft is not None:
            args["peft"] = str(peft)
        if device is not None:
            args["device"] = device
        if dtype is not None:
            args["dtype"] = _dtype_str(dtype)
        lm = HFLM(**args)
    else:
        if peft is not None:
            raise ValueError("for an in-memory model pass the PeftModel itself, not peft=")
        if tokenizer is None:
            raise ValueError("an in-memory model needs its tokenizer")
        lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size, **extra)
        if getattr(model, "hf_device_map", None) is not None:
            from evaluator.models.load import input_device

            # dispatched by a device_map: HFLM took the first parameter's device, which may be `meta` (offloaded)
            lm._device = input_device(model)

    from evaluator.prompts.chat import chat_builder

    builder = chat_builder(builder, lm.tokenizer, str(model) if isinstance(model, (str, Path)) else "this model")
    name = write_lmeval_task(task, builder, items, k, task_dir)
    chat = {key: v for key, v in chat_args(builder).items() if key != "chat_template"}  # lm-eval renders with its own
    t0 = time.perf_counter()
    res = lm_eval.simple_evaluate(
        model=lm,
        tasks=[name],
        num_fewshot=k,
        log_samples=True,
        task_manager=_task_manager(task_dir),
        bootstrap_iters=0,
        random_seed=None,
        numpy_random_seed=None,
        torch_random_seed=None,
        **chat,
    )
    sync_dev = getattr(lm, "device", None)
    if sync_dev is not None and getattr(sync_dev, "type", "") == "cuda":
        import torch

        torch.cuda.synchronize(sync_dev)
    seconds = time.perf_counter() - t0
    rows = _rows_from_samples(res["samples"][name], items, builder, k, lm.tokenizer, add_bos_token)
    if return_details:
        return LmEvalRun(rows, seconds, getattr(lm, "batch_size", batch_size), name, task_dir, res)
    return rows


def _rows_from_samples(samples: list[dict], items: list[Item], builder: PromptBuilder, k: int, tokenizer, add_bos) -> list[dict]:
    by_doc = {int(s["doc_id"]): s for s in samples}
    if sorted(by_doc) != list(range(len(items))):
        raise RuntimeError(f"lm-eval logged {len(by_doc)} samples for {len(items)} items")
    prefix_text = builder.prefix(k)
    rows = []
    for i, it in enumerate(items):
        s = by_doc[i]
        if s["doc"]["id"] != it.id:
            raise RuntimeError(f"lm-eval doc {i} is {s['doc']['id']}, expected {it.id}")
        context = s["arguments"][0][0] if isinstance(s["arguments"][0], (list, tuple)) else s["arguments"]["gen_args_0"]["arg_0"]
        if context != prefix_text + builder.query(it):
            raise RuntimeError(f"lm-eval context for item {it.id} differs from ours")
        resps = s["filtered_resps"]
        ll = [float(r[0]) for r in resps]
        greedy = [bool(r[1]) for r in resps]
        best = max(range(len(ll)), key=lambda j: ll[j])
        pred = it.choices[best]
        query = builder.query(it)
        ctx_ids, _ = lmeval_encode(tokenizer, context, builder.continuation(it.choices[0]), add_bos)
        rows.append(
            {
                "item_id": it.id,
                "query": query,
                "target": it.target,
                "choices": list(it.choices),
                "prediction": pred,
                "score": float(pred == it.target),
                "loglik": [round(x, 6) for x in ll],
                "is_greedy": greedy,
                "item_tokens": len(tokenizer.encode(query, add_special_tokens=False)),
                "prompt_tokens": len(ctx_ids),
                "output_tokens": 0,
            }
        )
        if "acc" in s and float(s["acc"]) != rows[-1]["score"]:
            raise RuntimeError(f"item {it.id}: lm-eval acc {s['acc']} disagrees with its own log-likelihoods")
    return rows
