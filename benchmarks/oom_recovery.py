#!/usr/bin/env python3
"""Real CUDA out-of-memory recovery: scoring and LoRA training under a memory cap give the uncapped results.

For each of scoring (arm A: `evaluate_unit`, packed engine) and training (arm B: `train_lora`):
  1. run uncapped and record the peak allocated memory above what was allocated before (the model);
  2. cap the process (`torch.cuda.set_per_process_memory_fraction`) at model + CAP_FRACTION × that increment (for
     scoring at least 1.25 × what encoding the shared prefix alone needs: that cannot be split), so the configured
     batch really runs out of memory;
  3. run the same thing again and print the OOM retries, the batch actually used and the difference from step 1.
Model: random Qwen2.5-0.5B shapes (benchmarks/random_models.py), SNIPS prompts. CUDA only (a CPU cannot run out
of memory this way; tests/test_oom.py simulates it there).

python benchmarks/oom_recovery.py --tokenizer .gpu/tokenizer [--dtype float32] [--k 32] [--items 64]
    [--batch-tokens 65536] [--train-batch 64] [--train-steps 4] [--cap-fraction 0.5]
Last line: `oom_recovery {json}`.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tokenizer", required=True, help="a local tokenizer folder whose ids fit Qwen2.5's vocabulary")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    p.add_argument("--layers", type=int, default=None, help="fewer decoder layers (default: all 24)")
    p.add_argument("--k", type=int, default=32, help="demonstrations in the shared prefix (scoring)")
    p.add_argument("--items", type=int, default=64, help="test items scored")
    p.add_argument("--batch-tokens", type=int, default=65536, help="scoring token budget (deliberately large)")
    p.add_argument("--train-batch", type=int, default=64, help="global training batch (one micro-batch uncapped)")
    p.add_argument("--train-steps", type=int, default=4)
    p.add_argument("--cap-fraction", type=float, default=0.5, help="share of the uncapped peak increment allowed")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--device", default="cuda", help="cuda; cpu only tests the script's flow (nothing runs out of memory)")
    return p.parse_args(argv)


def snips_task():
    try:
        from evaluator.tasks.load import load_task

        return load_task("snips_intents")
    except ImportError:  # no `datasets` on the GPU machine
        from lora_throughput import _snips_without_datasets

        return _snips_without_datasets()


class Cap:
    """Limit this process's CUDA memory to `total_bytes` (restored on exit)."""

    def __init__(self, total_bytes: float) -> None:
        import torch

        total = torch.cuda.get_device_properties(0).total_memory if torch.cuda.is_available() else 1
        self.fraction = min(1.0, total_bytes / total)

    def __enter__(self):
        import torch

        if not torch.cuda.is_available():  # CPU flow test
            return self
        torch.cuda.empty_cache()
        torch.cuda.set_per_process_memory_fraction(self.fraction)
        return self

    def __exit__(self, *exc):
        import torch

        if not torch.cuda.is_available():
            return
        torch.cuda.empty_cache()
        torch.cuda.set_per_process_memory_fraction(1.0)


def held() -> int:
    """What the caching allocator holds for live tensors (the memory-fraction limit counts reserved memory)."""
    import torch

    if not torch.cuda.is_available():
        return 0
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    return torch.cuda.memory_reserved()


def measure(fn):
    """(result, peak allocated bytes above the allocation at the start, seconds)."""
    import torch

    if not torch.cuda.is_available():  # CPU flow test
        t0 = time.perf_counter()
        return fn(), 0, time.perf_counter() - t0
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    t0 = time.perf_counter()
    out = fn()
    torch.cuda.synchronize()
    return out, torch.cuda.max_memory_allocated() - before, time.perf_counter() - t0


def scoring(model, tok, task, args, work: Path) -> dict:

    from evaluator.arms.evaluate import Unit, evaluate_unit
    from evaluator.prompts.tokenized import TokenizedPrompts
    from evaluator.store.run_store import RunStore
    from evaluator.tasks.layout import PromptBuilder

    tp = TokenizedPrompts(PromptBuilder(task, args.seed), tok)
    items = list(task.test[: args.items])
    unit = Unit(task.name, "A", "random-qwen2.5-0.5b", "random-qwen2.5-0.5b", args.k)
    logs: list[str] = []

    def run(name: str):
        store = RunStore(work / name)
        rec = evaluate_unit(unit, task, items, tp, model, tok, 32768, store, engine="packed",
                            batch_tokens=args.batch_tokens, shots_cap=256, log=logs.append)
        rows = [json.loads(x) for x in store.results_path(unit.id).read_text().splitlines()]
        return rec, rows

    from evaluator.engine.scorer import PrefixScorer

    _, prefix_peak, _ = measure(lambda: PrefixScorer(model, tp.prefix_ids(args.k), mode="packed"))  # must fit
    (ref_rec, ref_rows), peak, ref_s = measure(lambda: run("uncapped"))
    cap = held() + max(1.25 * prefix_peak, args.cap_fraction * peak)
    print(f"scoring: prefix peak {prefix_peak / 2**20:.0f} MB, batch peak {peak / 2**20:.0f} MB, cap {cap / 2**20:.0f} MB", flush=True)
    with Cap(cap):
        (rec, rows), _, s = measure(lambda: run("capped"))
    worst = max(abs(a - b) for g, r in zip(rows, ref_rows) for a, b in zip(g["loglik"], r["loglik"]))
    return {
        "prompt_tokens": round(ref_rec["tokens"]["prompt_tokens_per_request"]),
        "prefix_peak_mb": round(prefix_peak / 2**20), "uncapped_peak_mb": round(peak / 2**20), "cap_mb": round(cap / 2**20),
        "oom_retries": rec["oom_retries"], "batch_tokens_used": rec["batch_tokens_used"],
        "same_predictions": [r["prediction"] for r in rows] == [r["prediction"] for r in ref_rows],
        "max_abs_dloglik": worst, "accuracy": [ref_rec["value"], rec["value"]],
        "seconds": [round(ref_s, 2), round(s, 2)], "log": logs,
    }


def training(model, tok, task, args, work: Path) -> dict:

    from evaluator.arms.lora import build_examples
    from evaluator.config.arms import LoraArm
    from evaluator.prompts.tokenized import TokenizedPrompts
    from evaluator.tasks.layout import PromptBuilder
    from evaluator.training.loop import train_lora

    tp = TokenizedPrompts(PromptBuilder(task, args.seed), tok)
    n = args.train_batch * args.train_steps
    examples = build_examples(task, tp, list(task.train[:n]), tok)
    hp = LoraArm(batch_size=args.train_batch, max_steps=args.train_steps, dropout=0.0, val_fraction=0.0, warmup_ratio=0.0)
    logs: list[str] = []

    def run(name: str):
        peft_model, res = train_lora(model, examples, hp, work / name, seed=args.seed, pad_id=tok.pad_token_id,
                                     device=args.device, log=logs.append)
        weights = {k: v.detach().float().cpu().clone() for k, v in peft_model.named_parameters() if "lora_" in k}
        peft_model.unload()
        return res, weights

    (ref, ref_w), peak, ref_s = measure(lambda: run("uncapped"))
    cap = held() + args.cap_fraction * peak
    with Cap(cap):
        (res, w), _, s = measure(lambda: run("capped"))
    rel = max(abs(a - b) / max(abs(a), 1e-12) for a, b in zip(ref.loss_curve, res.loss_curve))
    wdiff = max(float((w[k] - ref_w[k]).abs().max()) for k in ref_w)
    wmax = max(float(v.abs().max()) for v in ref_w.values())
    return {
        "examples": len(examples), "uncapped_peak_mb": round(peak / 2**20), "cap_mb": round(cap / 2**20),
        "oom_retries": res.oom_retries, "micro_batch_size": [ref.micro_batch_size, res.micro_batch_size],
        "loss_curve_max_rel_diff": rel, "lora_weight_max_abs_diff": wdiff, "lora_weight_max_abs": wmax,
        "seconds": [round(ref_s, 2), round(s, 2)], "log": logs,
    }


def main(argv=None) -> int:
    import torch
    from random_models import random_qwen25_05b
    from transformers import AutoTokenizer

    args = parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("oom_recovery needs CUDA (tests/test_oom.py simulates out-of-memory on a CPU; --device cpu tests the flow)")
        return 2
    tok = AutoTokenizer.from_pretrained(args.tokenizer)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    dtype = getattr(torch, args.dtype)
    model = random_qwen25_05b(tok, args.device, dtype, seed=args.seed, num_layers=args.layers)
    task = snips_task()
    out = {"device": torch.cuda.get_device_name(0) if args.device == "cuda" else "cpu (flow test)", "dtype": args.dtype, "torch": torch.__version__}
    from evaluator.errors import UserError

    with tempfile.TemporaryDirectory() as tmp:
        for name, fn in (("scoring", scoring), ("training", training)):
            try:
                out[name] = fn(model, tok, task, args, Path(tmp) / name)
            except UserError as exc:  # the cap left too little even for the smallest batch
                out[name] = {"error": str(exc)}
            print(name, json.dumps(out[name]), flush=True)
    print("oom_recovery " + json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
