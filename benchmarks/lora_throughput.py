#!/usr/bin/env python3
"""LoRA training throughput: tunecheck's trainer (evaluator/training/) vs a plain default `transformers.Trainer`.

Same model (same weights, same dtype), same data (same token ids), same LoRA configuration, same batch size, same
number of optimizer steps; default first, then ours, in one process. The first `--warmup` steps of each are not timed
(CUDA/cuBLAS start-up); the clock is read after a device synchronisation at step `warmup` and at the last step.

tokens/s = NON-PAD tokens processed per second, for both (padding a trainer adds is its own cost, not throughput).

The "plain default" Trainer is exactly what a user writes from the docs:
    model = get_peft_model(model, LoraConfig(r, lora_alpha, lora_dropout, target_modules=<same list as ours>,
                                             task_type="CAUSAL_LM"))
    Trainer(model=model,
            args=TrainingArguments(output_dir=tmp, per_device_train_batch_size=B, max_steps=N, learning_rate=lr,
                                   report_to=[], save_strategy="no", logging_steps=N, seed=seed),
            train_dataset=[{"input_ids", "attention_mask", "labels" (-100 on the prompt)}, ...],
            data_collator=DataCollatorForSeq2Seq(tokenizer, padding=True)).train()
i.e. shuffled batches padded to their longest item, logits for every token, the model's own dtype (no autocast),
its default fused AdamW, gradient clipping 1.0, no evaluation. The model is loaded as tunecheck (and transformers 5's
`from_pretrained` default dtype="auto" for Qwen2.5) loads it: bf16 on GPUs, fp32 on CPU; `--model random:...` builds
it directly in that dtype on the device.

Where the default loses (and what ours does instead, evaluator/training/):
  * logits, their fp32 up-cast and cross-entropy for every token of every row (the 152k-row head of Qwen2.5-0.5B is
    ~28% of its weights) — ours computes the head only at answer positions (the loss needs nothing else);
  * shuffled batches padded to the longest item — ours groups by length (padding ~0% instead of ~10-45%);
  * several host<->device synchronisations per step (NaN/inf check of the loss, blocking batch copies, the padding
    mask check inside the attention-mask code) that drain the GPU queue — ours copies pinned batches without
    blocking, passes no attention mask (right padding + causal attention make it unnecessary, and SDPA then takes its
    causal flash kernel) and keeps losses on the device;
  * bf16 autocast for fp32 models and TF32 matmuls on GPUs (no effect when the model is already bf16).

Data: SNIPS training prompts exactly as arm B trains them (zero-shot prompt + answer, 70-106 tokens) by default —
the set tunecheck really fine-tunes, and the least favourable case for length grouping, so the headline ratio is not
inflated by padding. `--mixed-lengths` prepends 0-8 demonstrations per item (about 70-330 tokens), like general
fine-tuning sets whose items vary several-fold in length.

MFU (model FLOPs utilisation) uses ONE formula for both trainers — the useful work of answer-only LoRA training:
    FLOPs per token = 4·N_body + 12·L·d·s + 4·N_head·f_ans
  N_body: weights of the transformer blocks' linear layers (forward 2·N + backward activation gradients 2·N; the
  frozen weights need no weight gradients; LoRA's own FLOPs, < 1%, are left out), L layers, d = attention width,
  s = token-weighted mean sequence length (attention scores + values, forward and backward, not halved for causal
  masking), N_head = vocab × hidden (the LM head, needed only at answer tokens: f_ans = answer tokens / tokens).
  Peak: H100/H200 SXM dense bf16 989 TFLOP/s (override with --peak-tflops).

Last line (machine-readable):
    lora_throughput ours_tok_s=<t> default_tok_s=<t> ratio=<x> peak_mem_mb=<m>

`--sweep 16,64,256,all` (the learning-curve sweep of arm B): the WHOLE sweep's wall time — one adapter per size n,
trained on the first n SNIPS items for `--epochs` passes at `--batch-size` (each run's steps: ceil(n / batch) x
epochs) — with `train_lora_sweep` (evaluator/training/sweep.py: all adapters in one job, every step one forward and
backward over the rows of all runs still training) vs the plain default Trainer above run once per n, one after
another, each for the steps that n takes. Both are timed whole, one after the other in this process: adapter set-up,
training and saving each adapter (the Trainer's `save_pretrained` added for that), after a device synchronisation;
no warm-up is excluded. `--sweep-loop` also times tunecheck's own `train_lora` run once per n (what arm B does
without the sweep). No validation slice (val_fraction 0), no warm-up of the learning rate, dropout 0.05 for all.
ratio = default_s / ours_s (above 1: the sweep is faster). Last line:
    lora_sweep sizes=<n,...> ours_s=<s> default_s=<s> ratio=<x> [loop_s=<s>] steps=<n,...> peak_mem_mb=<m>
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

PEAK_TFLOPS = {"H100": 989.4, "H200": 989.4, "H800": 989.4, "A100": 312.0, "L40S": 362.0}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="smollm2-135m", help="random:qwen2.5-0.5b, a built-in name, a hub id or a folder")
    p.add_argument("--tokenizer", default=None, help="tokenizer folder for random:* models (default: the smollm2-135m conversion)")
    p.add_argument("--model-cache", default=None, help="zoo cache dir of built-in models (default $TUNECHECK_CACHE/models or /tmp/tunecheck-zoo-cache)")
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", default="auto", help="model dtype: auto = what tunecheck loads (bf16 on GPU, fp32 on CPU)")
    p.add_argument("--steps", type=int, default=20, help="timed optimizer steps per trainer")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps before the clock starts")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--r", type=int, default=8)
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--mixed-lengths", action="store_true",
                   help="prepend 0-8 demonstrations per example (70 to ~400 tokens) instead of zero-shot prompts")
    p.add_argument("--num-layers", type=int, default=None, help="(flow tests) fewer layers for random:* models")
    p.add_argument("--max-seconds", type=float, default=0, help="stop a trainer's timed phase after this long (0: off)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch (on a shared CPU, 1 is the steadiest)")
    p.add_argument("--peak-tflops", type=float, default=None, help="device peak for MFU (default: known GPUs)")
    p.add_argument("--no-shared-prefix", action="store_true",
                   help="ours without the shared-prefix forward (each row runs its whole sequence): the ablation")
    p.add_argument("--packing", action="store_true",
                   help="ours with padding-free packed batches (lora.packing: one row, block-diagonal mask)")
    p.add_argument("--no-grouping", action="store_true",
                   help="ours with plain shuffled batches (lora.group_by_length false), as the default Trainer")
    p.add_argument("--sweep", default=None, metavar="SIZES",
                   help="learning-curve sweep mode, e.g. 16,64,256,all: the whole sweep with train_lora_sweep (one job) "
                        "vs one default Trainer run per size, each for the steps its size takes")
    p.add_argument("--epochs", type=float, default=1.0, help="(--sweep) passes over each size's items")
    p.add_argument("--sweep-loop", action="store_true",
                   help="(--sweep) also time tunecheck's train_lora once per size, one after another")
    return p.parse_args(argv)


def zoo_dir(args) -> Path | None:
    from evaluator.models import zoo

    for cand in [args.model_cache, os.environ.get("TUNECHECK_CACHE") and Path(os.environ["TUNECHECK_CACHE"]) / "models",
                 "/tmp/tunecheck-zoo-cache", None]:
        try:
            path = zoo.cached_path("smollm2-135m", cand)
        except Exception:
            path = None
        if path:
            return Path(path).parent
    return Path(args.model_cache) if args.model_cache else None


def load_base(args, device: str):
    """(model, tokenizer, description): random:qwen2.5-0.5b on `device`, or a real model loaded as tunecheck does."""
    from transformers import AutoTokenizer

    from evaluator.models.load import load_model, pick_dtype, resolve_source

    if args.model.startswith("random:"):
        if args.model != "random:qwen2.5-0.5b":
            raise SystemExit(f"unknown random model {args.model}; the one known is random:qwen2.5-0.5b")
        from random_models import random_qwen25_05b

        tok_dir = args.tokenizer or (zoo_dir(args) / "smollm2-135m" if zoo_dir(args) else None)
        if tok_dir is None or not Path(tok_dir).is_dir():
            raise SystemExit("no tokenizer: pass --tokenizer DIR (e.g. a converted smollm2-135m folder)")
        tok = AutoTokenizer.from_pretrained(str(tok_dir))
        if tok.pad_token_id is None:
            tok.pad_token = tok.eos_token
        model = random_qwen25_05b(tok, device, pick_dtype(args.dtype, device), seed=args.seed, num_layers=args.num_layers)
        cfg = model.config
        return model, tok, f"random Qwen2.5-0.5B shape ({cfg.num_hidden_layers} layers, tokenizer {tok_dir})"
    lm = load_model(resolve_source(args.model, Path.cwd()), device=device, dtype=args.dtype, cache_dir=zoo_dir(args))
    return lm.model, lm.tokenizer, f"{args.model} ({lm.path})"


def _snips_without_datasets():
    import json

    from evaluator.tasks.data import _to_items
    from evaluator.tasks.load import load_spec
    from evaluator.tasks.spec import REPO_TASKS, Task

    path = REPO_TASKS / "snips_intents.yaml"
    spec = load_spec(path)
    rows = {split: [json.loads(x) for x in (path.parent / f).read_text(encoding="utf-8").splitlines() if x.strip()]
            for split, f in spec.data.data_files.items()}
    return Task(spec, path, _to_items(spec, rows["train"], "train"), _to_items(spec, rows["test"], "test"))


def snips_examples(tok, args):
    """SNIPS training items as tunecheck trains them: zero-shot prompt → answer (or with 0-8 demos prepended)."""
    from evaluator.arms.lora import build_examples
    from evaluator.prompts.tokenized import TokenizedPrompts
    from evaluator.tasks.layout import PromptBuilder
    from evaluator.tasks.load import load_task
    from evaluator.training.data import Example

    try:
        task = load_task("snips_intents")
    except ImportError:  # no `datasets` on this machine: read the task's JSONL files directly (same items)
        task = _snips_without_datasets()
    tp = TokenizedPrompts(PromptBuilder(task, args.seed), tok)
    items = list(task.train)
    if not args.mixed_lengths:
        return build_examples(task, tp, items, tok)
    rng = random.Random(args.seed)
    ks = [rng.randint(0, 8) for _ in items]
    prefixes = {k: tp.prefix_ids(k) for k in set(ks)}
    return [Example(prefixes[k] + tp.item_ids(it, k), tp.continuation_ids(it.target)) for k, it in zip(ks, items)]


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _reset_mem(device: str) -> None:
    import torch

    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    else:
        try:  # Linux: reset the process's peak RSS (VmHWM) so each trainer's peak is its own
            Path("/proc/self/clear_refs").write_text("5")
        except OSError:
            pass


def _peak_mb(device: str) -> float:
    import torch

    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**20
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _reset_accelerate() -> None:
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)


def run_default(model, tok, examples, targets, args, device, out_dir, warmup=None, steps=None, save=False):
    """The plain default Trainer (see the module docstring): `warmup` untimed then `steps` timed steps (default
    --warmup / --steps); `save`: save the adapter at the end (the sweep mode times whole runs). Returns (metrics,
    base model without LoRA)."""
    from peft import LoraConfig, get_peft_model
    from transformers import DataCollatorForSeq2Seq, Trainer, TrainerCallback, TrainingArguments

    from evaluator.training.data import IGNORE

    W = args.warmup if warmup is None else warmup
    N = args.steps if steps is None else steps
    data = [
        {"input_ids": e.context_ids + e.answer_ids, "attention_mask": [1] * len(e),
         "labels": [IGNORE] * len(e.context_ids) + list(e.answer_ids)}
        for e in examples
    ]
    inner = DataCollatorForSeq2Seq(tok, padding=True)
    counts: list[tuple[int, int]] = []

    def collator(features):  # counts tokens on the host tensors: no device sync added
        batch = inner(features)
        counts.append((int(batch["attention_mask"].sum()), int(batch["attention_mask"].numel())))
        return batch

    marks: dict[str, float] = {}

    class Clock(TrainerCallback):
        def on_train_begin(self, a, state, control, **kw):
            if W == 0:  # nothing untimed: the clock starts with the first step
                _sync(device)
                marks["t0"] = time.perf_counter()

        def on_step_end(self, a, state, control, **kw):
            s = state.global_step
            if s == W:
                _sync(device)
                marks["t0"] = time.perf_counter()
            elif s > W and (s == W + N or (args.max_seconds and time.perf_counter() - marks["t0"] > args.max_seconds)):
                _sync(device)
                marks["t1"], marks["end_step"] = time.perf_counter(), s
                control.should_training_stop = True

    peft_model = get_peft_model(model, LoraConfig(r=args.r, lora_alpha=2 * args.r, lora_dropout=0.05,
                                                  target_modules=targets, task_type="CAUSAL_LM"))
    _reset_accelerate()
    _reset_mem(device)
    trainer = Trainer(
        model=peft_model,
        args=TrainingArguments(
            output_dir=str(out_dir), per_device_train_batch_size=args.batch_size, max_steps=W + N,
            learning_rate=args.lr, report_to=[], save_strategy="no", logging_steps=W + N, seed=args.seed,
            use_cpu=device == "cpu", disable_tqdm=True,
        ),
        train_dataset=data,
        data_collator=collator,
        callbacks=[Clock()],
    )
    trainer.train()
    if save:
        peft_model.save_pretrained(str(out_dir / "adapter"), safe_serialization=True)
    steps = int(marks["end_step"]) - W
    real = sum(c[0] for c in counts[W : W + steps])
    padded = sum(c[1] for c in counts[W : W + steps])
    seconds = marks["t1"] - marks["t0"]
    losses = [h["train_loss"] for h in trainer.state.log_history if "train_loss" in h]
    res = {"steps": steps, "tokens": real, "seconds": seconds, "tok_s": real / seconds, "pad": 1 - real / padded,
           "peak_mb": _peak_mb(device), "loss": losses[-1] if losses else float("nan")}
    del trainer
    base = peft_model.unload()
    del peft_model
    return res, base


def run_ours(model, examples, targets, args, device, pad_id, out_dir):
    from evaluator.config.arms import LoraArm
    from evaluator.training.loop import train_lora

    W, N = args.warmup, args.steps
    hp = LoraArm(r=args.r, alpha=2 * args.r, dropout=0.05, target_modules=targets, learning_rate=args.lr,
                 batch_size=args.batch_size, max_steps=W + N, warmup_ratio=0.0, val_fraction=0.0,
                 shared_prefix=not args.no_shared_prefix, packing=args.packing, group_by_length=not args.no_grouping)
    marks: dict[str, float] = {}

    def on_step(info):
        step, tokens = info.step, info.tokens
        if step == W:
            _sync(device)
            marks["t0"], marks["tok0"] = time.perf_counter(), tokens
        elif step > W and (step == W + N or (args.max_seconds and time.perf_counter() - marks["t0"] > args.max_seconds)):
            _sync(device)
            marks["t1"], marks["tok1"], marks["end_step"] = time.perf_counter(), tokens, step
            return True
        return None

    _reset_accelerate()
    _reset_mem(device)
    peft_model, res = train_lora(model, examples, hp, out_dir, seed=args.seed, pad_id=pad_id, device=device,
                                 val_examples=[], on_step=on_step)
    tokens = int(marks["tok1"] - marks["tok0"])
    seconds = marks["t1"] - marks["t0"]
    out = {"steps": int(marks["end_step"]) - W, "tokens": tokens, "seconds": seconds, "tok_s": tokens / seconds,
           "pad": res.padding_fraction, "peak_mb": _peak_mb(device), "loss": res.final_loss, "loss_path": res.loss_path,
           "precision": res.mixed_precision, "run": res.shared_prefix_tokens / res.tokens_seen}
    base = peft_model.unload()
    return out, base


def sweep_sizes(spec: str, n_items: int) -> list[int]:
    """`16,64,256,all` → distinct item counts (sizes above the data, and `all`, are all of it), in order."""
    out: list[int] = []
    for part in spec.split(","):
        part = part.strip()
        n = n_items if part == "all" else min(int(part), n_items)
        if n < 1:
            raise SystemExit(f"--sweep: {part!r} is not a training size")
        if n not in out:
            out.append(n)
    return out


def run_sweep_mode(args, model, tok, examples, targets, device) -> int:
    """--sweep: the whole sweep, default Trainer once per size vs train_lora_sweep (see the module docstring)."""
    import math

    import torch

    from evaluator.config.arms import LoraArm
    from evaluator.training.loop import train_lora
    from evaluator.training.sweep import SweepRun, train_lora_sweep

    sizes = sweep_sizes(args.sweep, len(examples))
    bs = args.batch_size
    steps = [max(1, math.ceil(math.ceil(n / bs) * args.epochs)) for n in sizes]
    hp = LoraArm(r=args.r, alpha=2 * args.r, dropout=0.05, target_modules=targets, learning_rate=args.lr,
                 batch_size=bs, epochs=args.epochs, warmup_ratio=0.0, val_fraction=0.0)
    label = ",".join("all" if n == len(examples) else str(n) for n in sizes)
    print(f"sweep: sizes {label} (first n SNIPS items), {args.epochs:g} epoch(s) at batch {bs}: steps "
          f"{','.join(map(str, steps))} ({sum(steps)} in all)", flush=True)
    with tempfile.TemporaryDirectory(prefix="lora-sweep-") as tmp:
        default_s, default_peak = 0.0, 0.0
        for n, k in zip(sizes, steps):
            _sync(device)
            t = time.perf_counter()
            res, model = run_default(model, tok, examples[:n], targets, args, device, Path(tmp) / f"default{n}",
                                     warmup=0, steps=k, save=True)
            _sync(device)
            dt = time.perf_counter() - t
            default_s += dt
            default_peak = max(default_peak, res["peak_mb"])
            print(f"  default Trainer n={n}: {k} steps in {dt:.1f}s ({res['tok_s']:.0f} tok/s in its steps, "
                  f"pad {100 * res['pad']:.1f}%)", flush=True)
        loop_s = None
        if args.sweep_loop:
            loop_s = 0.0
            for n in sizes:
                _reset_accelerate()
                _reset_mem(device)
                _sync(device)
                t = time.perf_counter()
                peft_model, res = train_lora(model, examples[:n], hp, Path(tmp) / f"loop{n}", seed=args.seed,
                                             pad_id=tok.pad_token_id, device=device)
                model = peft_model.unload()
                _sync(device)
                dt = time.perf_counter() - t
                loop_s += dt
                print(f"  train_lora n={n}: {res.steps} steps in {dt:.1f}s ({res.train_seconds:.1f}s training)",
                      flush=True)
        _reset_accelerate()
        _reset_mem(device)
        _sync(device)
        t = time.perf_counter()
        runs = [SweepRun(examples[:n], args.seed, Path(tmp) / f"sweep{n}") for n in sizes]
        results = train_lora_sweep(model, runs, hp, pad_id=tok.pad_token_id, device=device)
        _sync(device)
        ours_s = time.perf_counter() - t
        ours_peak = _peak_mb(device)
        for n, (_, res) in zip(sizes, results):
            print(f"  train_lora_sweep n={n}: {res.steps} steps, {res.train_seconds:.1f}s of the shared training time, "
                  f"loss {res.final_loss:.3f}, pad {100 * res.padding_fraction:.1f}%")
        print(f"  train_lora_sweep: all {len(sizes)} adapters in {ours_s:.1f}s "
              f"({sum(r.train_seconds for _, r in results):.1f}s training)", flush=True)
    assert [r.steps for _, r in results] == steps, ([r.steps for _, r in results], steps)
    mem_note = "CUDA max allocated" if device.startswith("cuda") else "process peak RSS"
    ratio = default_s / ours_s
    loop = f" loop_s={loop_s:.2f}" if loop_s is not None else ""
    print(f"sweep wall time: default Trainer x{len(sizes)} {default_s:.1f}s, train_lora_sweep {ours_s:.1f}s"
          + (f", train_lora x{len(sizes)} {loop_s:.1f}s" if loop_s is not None else "")
          + f"; ratio default/ours = {ratio:.2f}x; peak memory ({mem_note}) default {default_peak:.0f} MB, "
          f"sweep {ours_peak:.0f} MB; torch {torch.__version__}")
    print(f"lora_sweep sizes={label} ours_s={ours_s:.2f} default_s={default_s:.2f} ratio={ratio:.3f}{loop} "
          f"steps={','.join(map(str, steps))} peak_mem_mb={ours_peak:.0f}", flush=True)
    return 0


def flops_per_token(model, examples) -> tuple[float, str]:
    cfg = model.config
    n_body = sum(p.numel() for n, p in model.named_parameters() if p.dim() == 2 and ".layers." in n)
    n_head = cfg.vocab_size * cfg.hidden_size
    L = cfg.num_hidden_layers
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    d = cfg.num_attention_heads * head_dim  # attention width (query heads x head dim)
    lens = [len(e) for e in examples]
    s = sum(x * x for x in lens) / sum(lens)
    f_ans = sum(e.n_targets for e in examples) / sum(lens)
    f = 4 * n_body + 12 * L * d * s + 4 * n_head * f_ans
    how = (f"4*N_body({n_body / 1e6:.1f}M) + 12*L({L})*d({d})*s({s:.0f}) + 4*N_head({n_head / 1e6:.1f}M)*f_ans({f_ans:.3f})"
           f" = {f / 1e9:.3f} GFLOP/token")
    return f, how


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch

    from evaluator.models.load import pick_device
    from evaluator.training.adapter import target_modules_for

    if args.warmup < 1 or args.steps < 1:
        raise SystemExit("--warmup and --steps must be >= 1")
    device = pick_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    model, tok, desc = load_base(args, device)
    examples = snips_examples(tok, args)
    targets = target_modules_for(model, None)
    lens = sorted(len(e) for e in examples)
    n_params = sum(p.numel() for p in model.parameters())
    dev_name = torch.cuda.get_device_name() if device.startswith("cuda") else f"CPU ({os.cpu_count()} logical cores, {torch.get_num_threads()} threads)"
    print(f"model: {desc}; {n_params / 1e6:.1f}M parameters, {next(model.parameters()).dtype}, on {device} [{dev_name}]")
    print(f"data: SNIPS train, {len(examples)} examples, {'0-8 demos + ' if args.mixed_lengths else 'zero-shot '}prompt + answer; "
          f"tokens min/median/max {lens[0]}/{lens[len(lens) // 2]}/{lens[-1]}")
    timing = "whole runs (--sweep)" if args.sweep else f"{args.warmup} untimed + {args.steps} timed steps per trainer"
    print(f"LoRA r={args.r} alpha={2 * args.r} dropout=0.05 on {targets}; batch {args.batch_size}; {timing}; "
          f"torch {torch.__version__}")
    print(f"setup {time.perf_counter() - t_start:.1f}s", flush=True)
    if args.sweep:
        return run_sweep_mode(args, model, tok, examples, targets, device)

    with tempfile.TemporaryDirectory(prefix="lora-bench-") as tmp:
        t = time.perf_counter()
        default, model = run_default(model, tok, examples, targets, args, device, Path(tmp) / "default")
        print(f"default Trainer done in {time.perf_counter() - t:.1f}s", flush=True)
        t = time.perf_counter()
        ours, model = run_ours(model, examples, targets, args, device, tok.pad_token_id, Path(tmp) / "ours")
        print(f"ours done in {time.perf_counter() - t:.1f}s", flush=True)

    f_tok, how = flops_per_token(model, examples)
    peak = args.peak_tflops
    if peak is None and device.startswith("cuda"):
        peak = next((v for k, v in PEAK_TFLOPS.items() if k in dev_name), None)
    print(f"MFU formula: {how}; peak {f'{peak:.1f} TFLOP/s' if peak else 'unknown (n/a)'}")
    mem_note = "CUDA max allocated" if device.startswith("cuda") else "process peak RSS, reset before each trainer"
    print(f"ours: mixed precision {ours['precision']}, loss via {ours['loss_path']}, shared prefix "
          f"{'off' if args.no_shared_prefix else 'on'} ({100 * ours['run']:.1f}% of its tokens not run again), "
          f"{'packed' if args.packing else 'padded'} batches, {'shuffled' if args.no_grouping else 'length-grouped'}; "
          "loss column: default = mean over its run, ours = mean of its last 5 steps")
    print("MFU = tok/s x FLOP/token / peak, over every row's tokens (the work a trainer must account for); "
          "MFU run = over the tokens actually run (ours skips each micro-batch's shared prefix after its first row)")
    print(f"{'trainer':<16}{'steps':>6}{'tokens':>10}{'seconds':>9}{'tok/s':>11}{'pad %':>7}{'peak MB':>9}{'MFU':>8}"
          f"{'MFU run':>9}{'loss':>8}")
    for name, r in (("default Trainer", default), ("ours", ours)):
        mfu = f"{100 * r['tok_s'] * f_tok / (peak * 1e12):.1f}%" if peak else "n/a"
        run = f"{100 * r['tok_s'] * (1 - r.get('run', 0.0)) * f_tok / (peak * 1e12):.1f}%" if peak else "n/a"
        print(f"{name:<16}{r['steps']:>6}{r['tokens']:>10}{r['seconds']:>9.2f}{r['tok_s']:>11.0f}{100 * r['pad']:>7.1f}"
              f"{r['peak_mb']:>9.0f}{mfu:>8}{run:>9}{r['loss']:>8.3f}")
    ratio = ours["tok_s"] / default["tok_s"]
    print(f"ratio ours/default = {ratio:.2f}x (tokens/s = non-pad tokens per second; peak memory: {mem_note}); "
          f"total {time.perf_counter() - t_start:.1f}s")
    print(f"lora_throughput ours_tok_s={ours['tok_s']:.1f} default_tok_s={default['tok_s']:.1f} ratio={ratio:.3f} "
          f"peak_mem_mb={ours['peak_mb']:.0f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
