#!/usr/bin/env python3
"""Where the packed many-shot scorer spends its time: wall time per batch budget, then a torch.profiler table.

Random Qwen2.5-0.5B shapes (benchmarks/random_models.py), SNIPS, k demonstrations in the shared prefix, `--items`
test items scored with `choice_rows` (what `evaluate_unit` runs). Warm-up first (untimed), then for each
`--batch-tokens` value the wall time of scoring all items; then one profiled pass at the first value, printing the
top operators by device time (CPU time on a CPU machine).

python benchmarks/profile_packed.py --tokenizer .gpu/tokenizer [--k 256] [--items 100] [--batch-tokens 4096,1024,16384]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))


def main(argv=None) -> int:
    import torch
    from oom_recovery import snips_task
    from random_models import random_qwen25_05b
    from torch.profiler import ProfilerActivity, profile
    from transformers import AutoTokenizer

    from evaluator.arms.rows import choice_rows
    from evaluator.engine.scorer import PrefixScorer
    from evaluator.prompts.tokenized import TokenizedPrompts
    from evaluator.tasks.layout import PromptBuilder

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tokenizer", required=True)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--dtype", default="bfloat16")
    p.add_argument("--layers", type=int, default=None)
    p.add_argument("--k", type=int, default=256)
    p.add_argument("--items", type=int, default=100)
    p.add_argument("--batch-tokens", default="4096,1024,16384")
    args = p.parse_args(argv)

    def sync():
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()

    tok = AutoTokenizer.from_pretrained(args.tokenizer)
    model = random_qwen25_05b(tok, args.device, getattr(torch, args.dtype), num_layers=args.layers)
    task = snips_task()
    tp = TokenizedPrompts(PromptBuilder(task, 0), tok)
    items = list(task.test[: args.items])
    budgets = [int(b) for b in args.batch_tokens.split(",")]
    prefix = tp.prefix_ids(args.k)
    print(f"device {torch.cuda.get_device_name(0) if args.device.startswith('cuda') else 'cpu'}, {args.dtype}, "
          f"k={args.k} ({len(prefix)} prefix tokens), {len(items)} items, torch {torch.__version__}", flush=True)
    scorer = PrefixScorer(model, prefix, mode="packed", max_batch_tokens=budgets[0])
    choice_rows(task, tp, scorer, items[:8], args.k)  # warm-up
    for b in budgets:
        scorer.max_batch_tokens = b
        choice_rows(task, tp, scorer, items, args.k)  # warm-up at this budget's shapes
        sync()
        calls = scorer.forward_calls
        t0 = time.perf_counter()
        choice_rows(task, tp, scorer, items, args.k)
        sync()
        dt = time.perf_counter() - t0
        print(f"batch_tokens {b}: {dt:.3f}s for {len(items)} items, {scorer.forward_calls - calls} forwards", flush=True)
    scorer.max_batch_tokens = budgets[0]
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if args.device.startswith("cuda") else [])
    with profile(activities=acts) as prof:
        choice_rows(task, tp, scorer, items, args.k)
        sync()
    key = "cuda_time_total" if args.device.startswith("cuda") else "cpu_time_total"
    print(prof.key_averages().table(sort_by=key, row_limit=22, max_name_column_width=60))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
