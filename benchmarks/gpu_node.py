"""The GPU-node check of issue 17, in one run, on a randomly initialised Qwen2.5-0.5B-shaped model (no hub):

1. **A base larger than one device.** The model is loaded with `device_map: auto` and a `max_memory` cap below its
   size on each device, so it must span two: the two first GPUs when there are two, else cuda:0 + CPU memory, else
   (a CPU machine) CPU + disk offload. Arm A at k is scored by tunecheck's prefix-cached engine on the dispatched model
   and on the model on one device; the script prints the placement, both times, the agreement of the predictions and
   the max |Δ| of the per-choice log-likelihoods.
2. **+ 3. Arm A at k=256, ours vs lm-eval**, through `benchmarks/many_shot.py` (unless `--skip-many-shot`): on a GPU this
   re-measures the k=256 ratio with cuDNN attention switched off in the scorer (benchmarks/RESULTS.md: "still to be
   measured"). lm-eval must be importable (see benchmarks/gpu_many_shot.sh for the wheels the GPU machine lacks).

    python benchmarks/gpu_node.py                                   # on the GPU node, defaults
    python benchmarks/gpu_node.py --layers 2 --k 4 --limit 6 --skip-many-shot   # a CPU dry run of step 1 (minutes)

Prints what it measured; nothing is assumed.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))


def _score(model, tokenizer, task, items, k: int, seed: int, batch_tokens: int) -> tuple[list, float]:
    """Per-item rows of arm A at k (tunecheck's packed scorer) and the seconds they took (prefix encoding included)."""
    from evaluator.arms.rows import choice_rows
    from evaluator.engine.scorer import PrefixScorer
    from evaluator.prompts.tokenized import TokenizedPrompts
    from evaluator.tasks.layout import PromptBuilder

    tp = TokenizedPrompts(PromptBuilder(task, seed), tokenizer)
    t0 = time.perf_counter()
    scorer = PrefixScorer(model, tp.prefix_ids(k), mode="auto", max_batch_tokens=batch_tokens)
    rows = choice_rows(task, tp, scorer, items, k)
    return rows, time.perf_counter() - t0


def _caps(model_bytes: int, embed_bytes: int) -> tuple[dict, str]:
    """max_memory that forces the model over two devices: on each of the first ones, the embeddings (they are tied
    to the output head and stay together) and half of the decoder layers, with 5% to spare."""
    import torch

    part = int((embed_bytes + 0.5 * (model_bytes - embed_bytes)) * 1.05)
    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if n >= 2:
        return {0: part, 1: part}, "cuda:0 + cuda:1"
    if n == 1:
        return {0: part, "cpu": 4 * model_bytes}, "cuda:0 + CPU memory"
    return {"cpu": part}, "CPU + disk offload"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tokenizer", default=str(Path.home() / ".cache/tunecheck/models/smollm2-135m"),
                    help="a local tokenizer folder whose ids fit Qwen2.5's vocabulary (default: the smollm2-135m conversion)")
    ap.add_argument("--layers", type=int, default=None, help="decoder layers (default: Qwen2.5-0.5B's 24)")
    ap.add_argument("--dtype", default="auto", help="auto: bfloat16 on a GPU, float32 on a CPU")
    ap.add_argument("--k", type=int, default=32, help="shots for step 1 (default 32)")
    ap.add_argument("--limit", type=int, default=40, help="SNIPS test items (default 40)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch-tokens", type=int, default=4096)
    ap.add_argument("--skip-many-shot", action="store_true", help="only step 1")
    ap.add_argument("--many-shot-args", default="--k 256 --limit 150",
                    help="arguments for benchmarks/many_shot.py in steps 2-3 (default: k=256, 150 items)")
    args = ap.parse_args(argv)

    import torch
    from transformers import AutoTokenizer

    from evaluator.models.load import ModelSource, load_model, pick_dtype
    from evaluator.tasks.load import load_task
    from random_models import random_qwen25_05b

    gpu = torch.cuda.is_available()
    print(f"== device: {torch.cuda.get_device_name(0) if gpu else 'CPU'} ({torch.cuda.device_count() if gpu else 0} "
          f"GPUs), torch {torch.__version__}")
    tok = AutoTokenizer.from_pretrained(args.tokenizer)
    dtype = pick_dtype(args.dtype, "cuda" if gpu else "cpu")
    task = load_task("snips_intents")
    items = list(task.test[: args.limit])
    with tempfile.TemporaryDirectory(prefix="tunecheck-gpu-node-") as tmp:
        folder = Path(tmp) / "qwen2.5-0.5b-random"
        model = random_qwen25_05b(tok, "cpu", dtype, seed=args.seed, num_layers=args.layers)
        model.save_pretrained(folder, safe_serialization=True)
        tok.save_pretrained(folder)
        size = sum(p.numel() * p.element_size() for p in model.parameters())
        embed = model.get_input_embeddings().weight
        embed_bytes = embed.numel() * embed.element_size()
        del model, embed
        src = ModelSource(str(folder), "local", str(folder))
        dt = str(dtype).removeprefix("torch.")
        print(f"== step 1: a {size / 2**20:.0f} MiB model ({args.layers or 24} layers, {dt}), arm A k={args.k}, "
              f"{len(items)} items")
        one = load_model(src, device="cuda" if gpu else "cpu", dtype=dt)
        ref, t_one = _score(one.model, one.tokenizer, task, items, args.k, args.seed, args.batch_tokens)
        print(f"one device ({one.device}): {t_one:.2f} s")
        del one
        caps, where = _caps(size, embed_bytes)
        split = load_model(src, device="auto", dtype=dt, device_map="auto", max_memory=caps)
        placement = getattr(split.model, "hf_device_map", {})
        devices = sorted({str(v) for v in placement.values()})
        print(f"dispatched over {where} (max_memory {caps}): devices {devices}, {len(placement)} modules placed")
        if len(devices) < 2:
            print("WARNING: the cap did not split the model over two devices")
        got, t_split = _score(split.model, split.tokenizer, task, items, args.k, args.seed, args.batch_tokens)
        delta = max(abs(a - b) for r, s in zip(ref, got) for a, b in zip(r["loglik"], s["loglik"]))
        agree = sum(r["prediction"] == s["prediction"] for r, s in zip(ref, got)) / len(ref)
        print(f"dispatched: {t_split:.2f} s ({t_split / t_one:.2f}x the one-device time); predictions agree "
              f"{agree:.3f}; max |Δ loglik| {delta:.3g}")
        print(f"gpu_node step1 devices={'+'.join(devices)} one_s={t_one:.3f} split_s={t_split:.3f} agree={agree:.3f} "
              f"max_delta={delta:.3g}")
        del split
    if args.skip_many_shot:
        return 0
    print(f"== steps 2-3: arm A ours vs lm-eval (benchmarks/many_shot.py {args.many_shot_args})")
    cmd = [sys.executable, str(REPO / "benchmarks" / "many_shot.py"), "--model", "random:qwen2.5-0.5b",
           "--tokenizer", args.tokenizer, *args.many_shot_args.split()]
    return subprocess.call(cmd, cwd=REPO)


if __name__ == "__main__":
    raise SystemExit(main())
