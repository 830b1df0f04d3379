#!/usr/bin/env python3
"""Single-token answers: the one-position path vs the tree path of our scorer, on the demo's base model.

SNIPS intents with a `labels` verbaliser onto words that are one token each in SmolLM2's tokenizer (" playlist",
" restaurant", ...; checked before anything is timed), so every item's 7 choices can be scored from the
next-token distribution at the item's last token. For each k the same `PrefixScorer` (its prefix encoded once,
not timed) scores the test items through the runner's row code (`choice_rows`, in the runner's chunks of 16 items)
once per path, each path warmed up untimed on the first chunk first; it prints both wall times, their ratio, the
prediction agreement and the max |Δ log-likelihood| between the paths, then one machine-readable line per k:

    single_token k=<k> items=<n> mode=<m> tree_s=<s> fast_s=<s> ratio=<x> agreement=<0..1> max_dloglik=<d>

`--k max` is the demo's `max` (largest k whose prompt fits the context, capped at `--max-shots`, 128 as in the demo).
The plain engine (`--mode plain`) re-encodes the prefix per row, so on a CPU keep its k small.

Example (the figures in benchmarks/RESULTS.md):
    python benchmarks/single_token.py --model smollm2-135m --k 32,max --limit 60
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

from offline import REPO  # noqa: E402  (offline set-up and the repository on sys.path, first)

# One token each (after the target delimiter) in SmolLM2's tokenizer; the script refuses to time otherwise.
WORDS = {"add_to_playlist": "playlist", "book_restaurant": "restaurant", "get_weather": "weather",
         "play_music": "music", "search_screening_event": "movie", "search_creative_work": "show",
         "rate_book": "rating"}


def _log(msg: str) -> None:
    print(msg, flush=True)


def verbalised_snips(folder: Path):
    """SNIPS intents (tasks/snips_intents.yaml, its data and prompt) with the single-token `labels` above."""
    import yaml

    from evaluator.tasks.load import load_task

    spec = yaml.safe_load((REPO / "tasks" / "snips_intents.yaml").read_text())
    spec["name"] = "snips_single_token"
    spec["labels"] = WORDS
    spec["data"]["data_files"] = {s: str(REPO / "tasks" / f) for s, f in spec["data"]["data_files"].items()}
    (folder / "prompts").mkdir(exist_ok=True)
    (folder / "prompts" / spec["prompt"]).write_text((REPO / "prompts" / spec["prompt"]).read_text())
    (folder / "snips_single_token.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return load_task(str(folder / "snips_single_token.yaml"))


def timed_rows(task, tp, scorer, items, k: int, single_token: bool, chunk: int) -> tuple[float, list[dict]]:
    """Wall seconds of scoring `items` as `evaluate_unit` does (chunks of `chunk` items), on one path."""
    from evaluator.arms.rows import choice_rows

    scorer.single_token = single_token
    choice_rows(task, tp, scorer, items[:chunk], k)  # warm-up: this path's shapes, untimed
    rows: list[dict] = []
    t0 = time.perf_counter()
    for start in range(0, len(items), chunk):
        rows += choice_rows(task, tp, scorer, items[start : start + chunk], k)
    return time.perf_counter() - t0, rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="smollm2-135m", help="folder, hub id or built-in name (default: the demo's base)")
    ap.add_argument("--model-cache", default=None, help="built-in models cache folder (default ~/.cache/tunecheck/models)")
    ap.add_argument("--k", default="32,max", help="comma list of shots; 'max' = the demo's max (default 32,max)")
    ap.add_argument("--max-shots", type=int, default=128, help="cap on k=max (the demo's max_shots, 128)")
    ap.add_argument("--limit", type=int, default=60, help="test items (default 60)")
    ap.add_argument("--seed", type=int, default=0, help="demonstration order seed")
    ap.add_argument("--mode", default="packed", choices=["packed", "plain"], help="engine (default packed)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--batch-tokens", type=int, default=4096, help="tokens per forward (the job default, 4096)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = ap.parse_args(argv)

    import torch
    import transformers

    if args.threads:
        torch.set_num_threads(args.threads)
    from evaluator.arms.evaluate import CHUNK_ITEMS, resolve_shots
    from evaluator.engine.requests import ChoiceRequest, is_single_token
    from evaluator.engine.scorer import PrefixScorer
    from evaluator.models.load import load_model, resolve_source
    from evaluator.prompts.tokenized import TokenizedPrompts
    from evaluator.tasks.layout import PromptBuilder

    t_load = time.perf_counter()
    lm = load_model(resolve_source(args.model), device=args.device, dtype=args.dtype,
                    cache_dir=Path(args.model_cache) if args.model_cache else None)
    model, tok, context = lm.model, lm.tokenizer, lm.context_window
    load_s = time.perf_counter() - t_load
    w = next(model.parameters())
    dev = (f"cuda: {torch.cuda.get_device_name(w.device)}" if w.device.type == "cuda"
           else f"cpu: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} threads")
    _log(f"model: {args.model} ({lm.path})")
    _log(f"device: {dev} | dtype: {str(w.dtype).removeprefix('torch.')} | attn: {model.config._attn_implementation}")
    _log(f"versions: python {platform.python_version()}, torch {torch.__version__}, transformers {transformers.__version__}")
    if hasattr(os, "getloadavg"):
        _log(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} cpus")
    _log(f"model load {load_s:.1f}s (excluded), context window {context}")

    task = verbalised_snips(Path(tempfile.mkdtemp(prefix="tunecheck-single-token-")))
    tp = TokenizedPrompts(PromptBuilder(task, args.seed), tok)
    items = list(task.test[: args.limit])
    results = []
    for ask in [x.strip() for x in args.k.split(",") if x.strip()]:
        k, how = resolve_shots(ask if ask == "max" else int(ask), tp, items, context, args.max_shots)
        reqs = [ChoiceRequest(tp.item_ids(it, k), [tp.continuation_ids(c, it, k) for c in it.choices]) for it in items]
        if not all(is_single_token(r) for r in reqs):
            _log(f"k={k}: some label is not one token in this tokenizer — nothing timed")
            return 2
        scorer = PrefixScorer(model, tp.prefix_ids(k), mode=args.mode, max_batch_tokens=args.batch_tokens)
        _log(f"k={k} ({ask}: {how}): prefix {scorer.prefix_len} tokens encoded in {scorer.prefix_encode_seconds:.2f}s "
             f"(not timed); {args.mode}, batch_tokens {args.batch_tokens}, {len(items)} items x 7 choices ...")
        tree_s, tree = timed_rows(task, tp, scorer, items, k, False, CHUNK_ITEMS)
        fast_s, fast = timed_rows(task, tp, scorer, items, k, True, CHUNK_ITEMS)
        agree = sum(a["prediction"] == b["prediction"] for a, b in zip(tree, fast)) / len(items)
        greedy = sum(a["is_greedy"] == b["is_greedy"] for a, b in zip(tree, fast)) / len(items)
        d = max(abs(x - y) for a, b in zip(tree, fast) for x, y in zip(a["loglik"], b["loglik"]))
        res = dict(k=k, ask=ask, items=len(items), tree_s=tree_s, fast_s=fast_s, ratio=tree_s / fast_s, agree=agree,
                   greedy=greedy, d=d, prefix=scorer.prefix_len, acc_tree=sum(r["score"] for r in tree) / len(items),
                   acc_fast=sum(r["score"] for r in fast) / len(items))
        results.append(res)
        _log(f"k={k}: tree {tree_s:.2f}s, single-token {fast_s:.2f}s, ratio {res['ratio']:.2f}x, agreement {agree:.3f}, "
             f"is_greedy same {greedy:.3f}, max|Δ| {d:.2e}")

    if hasattr(os, "getloadavg"):
        _log(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    _log("")
    _log("|   k | prefix tok | items | tree s | single-token s | ratio | agreement | max abs Δ loglik | accuracy tree / single |")
    _log("|----:|-----------:|------:|-------:|---------------:|------:|----------:|-----------------:|---:|")
    for r in results:
        _log(f"| {r['k']:>3} | {r['prefix']:>10,} | {r['items']:>5} | {r['tree_s']:>6.2f} | {r['fast_s']:>14.2f} | "
             f"{r['ratio']:>4.2f}x | {r['agree']:>9.3f} | {r['d']:>16.2e} | {r['acc_tree']:.3f} / {r['acc_fast']:.3f} |")
    _log("")
    for r in results:
        _log(f"single_token k={r['k']} items={r['items']} mode={args.mode} tree_s={r['tree_s']:.3f} "
             f"fast_s={r['fast_s']:.3f} ratio={r['ratio']:.2f} agreement={r['agree']:.4f} max_dloglik={r['d']:.3e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
