#!/usr/bin/env python3
"""Many-shot speed and parity: lm-eval (HF backend, full re-encoding per choice) vs our shared-prefix engine.

Same model object, task, test items and k fixed demonstrations (lm-eval's ``first_n`` sampler over our
demonstrations, so both build the identical context text). For each k it prints wall seconds of
``lm_eval.simple_evaluate`` (model already loaded and warmed up) and of ours (PrefixScorer construction, which
encodes the prefix, + scoring every item through the runner's row code, packed mode), their ratio, the prediction
agreement and the max |Δ log-likelihood| between the two, then one machine-readable line per k (the last line is
the last k):

    many_shot k=<k> items=<n> lmeval_s=<s> ours_s=<s> ratio=<x> agreement=<0..1> max_dloglik=<d>

"Δ lm-ids" is the same comparison with our engine fed lm-eval's own token ids (evaluator.arms.lmeval.lmeval_requests):
it isolates engine differences from the prefix/query tokenisation boundary (see that module's docstring).

Examples:
    python benchmarks/many_shot.py --model smollm2-135m --model-cache /tmp/tunecheck-zoo-cache --k 0,8,32 --limit 40
    python benchmarks/many_shot.py --model random:qwen2.5-0.5b --tokenizer DIR --device cuda --dtype bfloat16 --k 256
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import offline  # noqa: E402, F401  (offline set-up and the repository on sys.path, first)

DEFAULT_KS = (0, 8, 32, 128)

def _log(msg: str) -> None:
    print(msg, flush=True)


def _parse_ks(values: list[str] | None) -> list[int] | None:
    if not values:
        return None
    out: list[int] = []
    for v in values:
        out += [int(x) for x in str(v).split(",") if x.strip()]
    return sorted(dict.fromkeys(out))


def _sync(device) -> None:
    import torch

    if getattr(device, "type", str(device)).startswith("cuda"):
        torch.cuda.synchronize()


def load(args):
    """(model, tokenizer, context window, description) — the model on its device, in eval mode."""
    from transformers import AutoTokenizer

    from evaluator.models import zoo
    from evaluator.models.load import load_model, pick_device, pick_dtype, resolve_source

    cache = Path(args.model_cache) if args.model_cache else None
    if args.model.startswith("random:"):
        arch = args.model.split(":", 1)[1]
        if arch != "qwen2.5-0.5b":
            raise SystemExit(f"unknown random model {arch!r} (known: qwen2.5-0.5b)")
        from random_models import random_qwen25_05b

        tok_dir = args.tokenizer or str(zoo.ensure_model("smollm2-135m", cache_dir=cache))
        tok = AutoTokenizer.from_pretrained(tok_dir)
        if tok.pad_token_id is None:
            tok.pad_token = tok.eos_token or tok.unk_token
        dev = pick_device(args.device)
        model = random_qwen25_05b(tok, dev, pick_dtype(args.dtype, dev), seed=0)
        cfg = model.config
        n = sum(p.numel() for p in model.parameters())
        theta = (getattr(cfg, "rope_parameters", None) or {}).get("rope_theta", getattr(cfg, "rope_theta", None))
        desc = f"random Qwen2ForCausalLM (Qwen2.5-0.5B shapes, {n / 1e6:.0f}M params, rope_theta={theta}), tokenizer {tok_dir}"
        return model, tok, int(cfg.max_position_embeddings), desc
    src = resolve_source(args.model)
    lm = load_model(src, device=args.device, dtype=args.dtype, cache_dir=cache)
    tok = lm.tokenizer
    if args.tokenizer:
        tok = AutoTokenizer.from_pretrained(args.tokenizer)
    return lm.model, tok, lm.context_window, f"{args.model} ({lm.path})"


def _lmeval_batch_size(arg: str | None, device, prompt_tokens: int, vocab: int, dtype) -> int | str:
    """CPU: 8. CUDA: lm-eval keeps full-vocabulary logits AND their log_softmax for every position of every row,
    so the batch that fits is bounded by rows x tokens x vocab x 2 tensors; use up to 60% of free memory, <= 64."""
    import torch

    if arg not in (None, "", "mem"):
        return arg if arg == "auto" else int(arg)
    if getattr(device, "type", "cpu") != "cuda":
        return 8
    free, _ = torch.cuda.mem_get_info()
    elt = torch.finfo(dtype).bits // 8
    per_row = prompt_tokens * vocab * elt * 2 * 1.25
    return int(max(1, min(64, (0.6 * free) // per_row)))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="smollm2-135m", help="folder, hub id, built-in name, or random:qwen2.5-0.5b")
    ap.add_argument("--tokenizer", default=None, help="tokenizer folder (random models: default smollm2-135m's)")
    ap.add_argument("--model-cache", default=None, help="built-in models cache folder")
    ap.add_argument("--task", default="snips_intents")
    ap.add_argument("--k", action="append", default=None, help="shots; repeatable or comma list (default 0,8,32,128 that fit)")
    ap.add_argument("--limit", type=int, default=40, help="test items (default 40)")
    ap.add_argument("--seed", type=int, default=0, help="demonstration order seed")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--lmeval-batch-size", default=None, help="int, 'auto' (lm-eval's OOM search) or 'mem' (default on CUDA)")
    ap.add_argument("--batch-tokens", type=int, default=4096, help="our packed tokens per forward")
    ap.add_argument("--work-dir", default=None, help="where lm-eval task files go (default: a temp folder)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = ap.parse_args(argv)

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    import lm_eval
    import transformers

    from evaluator.arms.lmeval import lmeval_requests, run_lmeval
    from evaluator.arms.rows import choice_rows
    from evaluator.engine.scorer import PrefixScorer
    from evaluator.prompts.tokenized import TokenizedPrompts
    from evaluator.tasks.layout import PromptBuilder
    from evaluator.tasks.lmeval import quiet_lmeval
    from evaluator.tasks.load import load_task

    t_load = time.perf_counter()
    model, tok, context, desc = load(args)
    device = next(model.parameters()).device
    dtype = next(model.parameters()).dtype
    load_s = time.perf_counter() - t_load
    if device.type == "cuda":
        dev_name = f"cuda: {torch.cuda.get_device_name(device)}"
    else:
        dev_name = f"cpu: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    _log(f"model: {desc}")
    _log(f"device: {dev_name} | dtype: {str(dtype).removeprefix('torch.')} | attn: {model.config._attn_implementation}")
    _log(
        f"versions: python {platform.python_version()}, torch {torch.__version__}, transformers {transformers.__version__}, "
        f"lm_eval {getattr(lm_eval, '__version__', '?')}"
    )
    if hasattr(os, "getloadavg"):
        _log(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} cpus")
    _log(f"model load {load_s:.1f}s (excluded), context window {context}")

    task = load_task(args.task)
    builder = PromptBuilder(task, args.seed)
    tp = TokenizedPrompts(builder, tok)
    items = list(task.test[: args.limit])
    need = tp.longest_request(items)
    ks = _parse_ks(args.k) or list(DEFAULT_KS)
    explicit = bool(args.k)
    runs: list[int] = []
    for k in ks:
        total = len(tp.prefix_ids(k)) + need if k <= len(task.train) else None
        if total is None or total > context:
            why = f"only {len(task.train)} train items" if total is None else f"{total} tokens > context {context}"
            _log(f"k={k}: skipped ({why})")
            if explicit and total is None:
                return 2
            continue
        runs.append(k)
    if not runs:
        _log("nothing to run")
        return 2

    from lm_eval.models.huggingface import HFLM

    quiet_lmeval()
    longest = len(tp.prefix_ids(max(runs))) + need
    bs = _lmeval_batch_size(args.lmeval_batch_size, device, longest, model.config.vocab_size, dtype)
    hflm = HFLM(pretrained=model, tokenizer=tok, batch_size=bs)
    ll_time = [0.0]
    inner = hflm.loglikelihood

    def timed_loglikelihood(requests, *a, **kw):
        _sync(device)
        t = time.perf_counter()
        out = inner(requests, *a, **kw)
        _sync(device)
        ll_time[0] += time.perf_counter() - t
        return out

    hflm.loglikelihood = timed_loglikelihood
    _log(f"lm-eval: HFLM around the loaded model, batch_size={bs}; ours: PrefixScorer packed, max_batch_tokens={args.batch_tokens}")

    # Warm-up (untimed): one full-length causal forward (lm-eval's shape) and one small packed scoring pass (ours).
    with torch.inference_mode():
        n = min(longest, context)
        model(input_ids=torch.randint(0, len(tok), (1, n), device=device), use_cache=False)
        warm = PrefixScorer(model, tp.prefix_ids(0), mode="packed", max_batch_tokens=args.batch_tokens)
        choice_rows(task, tp, warm, items[:2], 0)
    _sync(device)

    work = Path(args.work_dir or tempfile.mkdtemp(prefix="tunecheck-many-shot-"))
    results = []
    for k in runs:
        _log(f"k={k}: lm-eval on {len(items)} items ...")
        ll_time[0] = 0.0
        lm = run_lmeval(hflm, tok, task, builder, items, k, work_dir=work, return_details=True)
        lm_s, lm_ll_s = lm.seconds, ll_time[0]
        _log(f"k={k}: lm-eval {lm_s:.2f}s (loglikelihood {lm_ll_s:.2f}s); ours ...")

        _sync(device)
        t0 = time.perf_counter()
        scorer = PrefixScorer(model, tp.prefix_ids(k), mode="packed", max_batch_tokens=args.batch_tokens)
        ours = choice_rows(task, tp, scorer, items, k)
        _sync(device)
        ours_s = time.perf_counter() - t0

        # Not timed: our engine on lm-eval's exact token ids.
        shared, reqs, same = lmeval_requests(tok, builder, items, k)
        al = PrefixScorer(model, shared, mode="packed", max_batch_tokens=args.batch_tokens).score(reqs)
        d_al = max(abs(a - b) for r, s in zip(lm.rows, al) for a, b in zip(r["loglik"], s.loglik))

        agree = sum(a["prediction"] == b["prediction"] for a, b in zip(lm.rows, ours)) / len(items)
        d = max(abs(a - b) for r, s in zip(lm.rows, ours) for a, b in zip(r["loglik"], s["loglik"]))
        res = dict(
            k=k,
            items=len(items),
            lmeval_s=lm_s,
            lmeval_ll_s=lm_ll_s,
            ours_s=ours_s,
            prefix_s=scorer.prefix_encode_seconds,
            ratio=lm_s / ours_s,
            ratio_ll=lm_ll_s / ours_s,
            agreement=agree,
            max_dloglik=d,
            max_dloglik_lmids=d_al,
            same_ids=sum(same) / len(same),
            prompt_tokens=sum(r["prompt_tokens"] for r in lm.rows) / len(items),
            prefix_tokens=scorer.prefix_len,
            acc_lmeval=sum(r["score"] for r in lm.rows) / len(items),
            acc_ours=sum(r["score"] for r in ours) / len(items),
        )
        results.append(res)
        _log(
            f"k={k}: ours {ours_s:.2f}s (prefix encode {res['prefix_s']:.2f}s) ratio {res['ratio']:.1f}x "
            f"agreement {agree:.3f} max|Δ| {d:.2e} (lm-ids {d_al:.2e})"
        )

    if hasattr(os, "getloadavg"):
        _log(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    _log("")
    head = (
        f"{'k':>4} {'items':>5} {'prompt tok':>10} {'lm-eval s':>9} {'(ll s)':>8} {'ours s':>7} {'ratio':>7} "
        f"{'(ll ratio)':>10} {'agree':>6} {'max|Δ|':>9} {'Δ lm-ids':>9} {'same ids':>8} {'acc lm/ours':>11}"
    )
    _log(head)
    _log("-" * len(head))
    for r in results:
        _log(
            f"{r['k']:>4} {r['items']:>5} {r['prompt_tokens']:>10.0f} {r['lmeval_s']:>9.2f} {r['lmeval_ll_s']:>8.2f} "
            f"{r['ours_s']:>7.2f} {r['ratio']:>6.1f}x {r['ratio_ll']:>9.1f}x {r['agreement']:>6.3f} "
            f"{r['max_dloglik']:>9.2e} {r['max_dloglik_lmids']:>9.2e} {r['same_ids']:>8.2f} "
            f"{r['acc_lmeval']:>5.3f}/{r['acc_ours']:.3f}"
        )
    _log("")
    for r in results:
        _log(
            f"many_shot k={r['k']} items={r['items']} lmeval_s={r['lmeval_s']:.3f} ours_s={r['ours_s']:.3f} "
            f"ratio={r['ratio']:.2f} agreement={r['agreement']:.4f} max_dloglik={r['max_dloglik']:.3e}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
