#!/usr/bin/env python3
"""Learning curves on a shipped task: prompting vs k up to `max` (arm A) and LoRA vs n up to the whole training
split (arm B), on each demo model as the base, with the crossover where LoRA first reaches the best prompting point.

One ordinary tunecheck job per base model, run through the real runner (`evaluator.runner.run_job`, what `tunecheck
run` calls): its job.yaml is written under `--out`, its run folder is `--out/runs/<name>-<hash>` and its adapters
live under `--out/adapters`, so an interrupted benchmark resumes where it stopped and recomputes nothing that is
finished (a changed option gives a new run id). LoRA settings are the job defaults (r 8, alpha 16, lr 1e-3,
2 epochs, batch 8, 10% of n held out for early stopping at n >= 40); no arm C.

Shots: `max` is resolved before the run exactly as the runner resolves it (`resolve_shots` on the same items and
tokenizer): the largest k whose prefix plus the longest test item and answer fits the model's context window,
capped at `--max-shots` (default: the demonstration pool, so only the context or the pool bounds it). Explicit k at
or above that `max` are left out of the sweep (at it: the same point twice; above it: it would not fit).

After both runs, per model: the crossover from per-item scores with
`evaluator.analysis.crossover.crossover_with_uncertainty` — the same call, alpha and seed the report uses — and
`--out/learning_curves.png` (both models' A and B curves with 95% CI bands, each model's best prompting level and
crossover star with its bootstrap interval; `--reference banking77,clinic150,trec` overlays the published Bertsch
et al. 2024 curves), `--out/learning_curves_<model>.png` (the report's own figure for that run, with the same
references), and `--out/learning_curves.json` (per point quality, CI, items, eval / train seconds; the crossovers).
Prints a table per model and the crossover, then one machine-readable line per model:

    learning_curves model=<m> task=<t> items=<n> max_k=<k> crossover_n=<n|none> at_or_below=<0|1>
        crossover_lo=<n|none> lo_at_or_below=<0|1> crossover_hi=<n|beyond> share_crossing=<0..1>
        distinguishable=<0|1> none_up_to=<n|-> best_prompting_k=<k> best_prompting_q=<q> lora_all_n=<n>
        lora_all_q=<q> units_s=<s> total_s=<s>

(one line; crossover_n=none: LoRA never reaches the best prompting point up to n=none_up_to; crossover_lo=none:
even the interval's lower end lies beyond the largest n; `units_s` = the recorded eval + train seconds of the
model's units, also when they were resumed; `total_s` = wall time of this invocation for that model, model loading,
each unit's serving-batch timing and the reports included).

Quick smoke run:
    python benchmarks/learning_curves.py --limit 20 --shots 0,2 --sizes 8,16 --models smollm2-135m
The full run (both demo models, all 200 SNIPS test items, k up to max, n up to all 493 training items):
    python benchmarks/learning_curves.py --reference banking77,clinic150,trec
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

import offline  # noqa: E402, F401  (offline set-up and the repository on sys.path, first)

DEFAULT_SHOTS = "0,1,2,4,8,16,32,64,128,256,max"
DEFAULT_SIZES = "8,16,32,64,128,256,all"
DEFAULT_MODELS = "smollm2-135m,gemma3-270m"
# Per model: (A colour, B colour). smollm2 keeps the report's arm colours; gemma gets two others.
MODEL_COLOURS = [("#1f77b4", "#d62728"), ("#9467bd", "#ff7f0e"), ("#17becf", "#8c564b"), ("#2ca02c", "#e377c2")]


def _log(msg: str = "") -> None:
    print(msg, flush=True)


def _list(text: str, what: str, word: str) -> list[int | str]:
    out: list[int | str] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        if part == word:
            out.append(word)
            continue
        try:
            out.append(int(part))
        except ValueError:
            raise SystemExit(f"--{what}: {part!r} is not a number or '{word}'") from None
    if not out:
        raise SystemExit(f"--{what}: give at least one value")
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--task", default="snips_intents", help="a task name in tasks/ or a task YAML path (default snips_intents)")
    ap.add_argument("--models", default=DEFAULT_MODELS, help=f"comma list of base models, one job each (default {DEFAULT_MODELS})")
    ap.add_argument("--shots", default=DEFAULT_SHOTS, help=f"arm A shot counts, 'max' allowed (default {DEFAULT_SHOTS})")
    ap.add_argument("--sizes", default=DEFAULT_SIZES, help=f"arm B training sizes, 'all' allowed (default {DEFAULT_SIZES})")
    ap.add_argument("--max-shots", type=int, default=None,
                    help="cap on the k that 'max' resolves to (default: the demonstration pool, i.e. no cap)")
    ap.add_argument("--limit", type=int, default=None, help="test items: the first N of the test split (default: all)")
    ap.add_argument("--seed", type=int, default=1234, help="job seed: demonstration order, LoRA, bootstrap (default 1234)")
    ap.add_argument("--reference", default="", help="published curves to overlay: comma list of "
                    "banking77,clinic150,trec or 'all' (Bertsch et al. 2024); default none")
    ap.add_argument("--out", default="/tmp/tunecheck-learning-curves",
                    help="output folder: job files, runs/, adapters/, figure and JSON (default /tmp/tunecheck-learning-curves)")
    ap.add_argument("--model-cache", default=None, help="built-in models cache (default ~/.cache/tunecheck/models)")
    ap.add_argument("--device", default="auto", help="job device (default auto)")
    ap.add_argument("--quiet", action="store_true", help="no progress bars (off anyway when stderr is not a terminal)")
    ap.add_argument("--json-progress", default=None, help="append the runner's progress events (units, items, "
                    "training steps, ETA) to this file as JSON lines, e.g. to follow a long run with tail -f")
    ap.add_argument("--reps", type=int, default=1000, help="crossover bootstrap resamples (the report's: 1000)")
    args = ap.parse_args(argv)
    args.shot_list = _list(args.shots, "shots", "max")
    args.size_list = _list(args.sizes, "sizes", "all")
    args.model_list = [m.strip() for m in args.models.split(",") if m.strip()]
    if not args.model_list:
        raise SystemExit("--models: give at least one model")
    if args.limit is not None and args.limit < 1:
        raise SystemExit("--limit must be >= 1")
    return args


# ---------------------------------------------------------------------------------------------------------------
# the job per model
# ---------------------------------------------------------------------------------------------------------------


def job_dict(args, model: str, shots: list, max_shots: int) -> dict:
    """One ordinary job: the task, this base, arm A's shots, arm B's sizes (LoRA settings: the job defaults)."""
    slug = "".join(ch if ch.isalnum() or ch in "-_." else "-" for ch in model)[-40:]
    task_name = Path(args.task).stem
    task = args.task
    if task.endswith((".yaml", ".yml")) and Path(task).exists():
        task = str(Path(task).resolve())  # the job file lives under --out
    data: dict = {
        "name": f"learning-curves-{task_name}-{slug}",
        "description": (f"benchmarks/learning_curves.py: {task_name}, arm A k up to max, arm B n up to the whole "
                        "training split, on this base; LoRA settings are the job defaults."),
        "tasks": [task],
        "base": model,
        "newer": [],
        "seed": args.seed,
        "device": args.device,
        "arms": {"prompting": {"shots": shots, "max_shots": max_shots},
                 "lora": {"train_sizes": list(args.size_list)}},
        "output_dir": str(Path(args.out).resolve() / "runs"),
        "adapters_dir": str(Path(args.out).resolve() / "adapters"),
    }
    if args.limit is not None:
        data["limit"] = args.limit
    if args.model_cache:
        data["model_cache"] = args.model_cache
    return data


def resolve_max(job, job_dir: Path, cap: int | None) -> dict:
    """What `max` resolves to for this job's base, as the runner will resolve it (same function, items, tokenizer,
    context window), without loading the weights, at the cap `cap` (None: the demonstration pool):
    {"k", "how", "max_limit", "context", "pool", "cap", "n_train", "n_test", "task"}."""
    from types import SimpleNamespace

    from transformers import AutoConfig, AutoTokenizer

    from evaluator.arms.evaluate import resolve_shots
    from evaluator.models.load import LoadedModel, materialise
    from evaluator.prompts.tokenized import TokenizedPrompts
    from evaluator.runner import plan, test_items
    from evaluator.tasks.layout import PromptBuilder

    p = plan(job, job_dir)
    task = next(iter(p.tasks.values()))
    cache = Path(job.model_cache).expanduser() if job.model_cache else None
    path = materialise(p.base, cache)
    tok = AutoTokenizer.from_pretrained(path, trust_remote_code=job.trust_remote_code)
    cfg = AutoConfig.from_pretrained(path, trust_remote_code=job.trust_remote_code)
    context = LoadedModel.context_window.fget(SimpleNamespace(model=SimpleNamespace(config=cfg), tokenizer=tok))
    tp = TokenizedPrompts(PromptBuilder(task, job.seed), tok)
    items = test_items(task, job.limit)
    pool = len(task.demo_pool)
    cap = pool if cap is None else cap
    k, how = resolve_shots("max", tp, items, context, cap)
    return {"k": k, "how": str(how), "max_limit": getattr(how, "max_limit", None), "context": context,
            "pool": pool, "cap": cap, "n_train": len(task.train), "n_test": len(items), "task": task.name}


def plan_shots(asked: list, mx: dict) -> tuple[list, list[str]]:
    """The sweep to run: explicit k below `max`, then `max` if asked (without `max`: every explicit k the context
    fits); notes for the ones left out."""
    shots, notes = [], []
    k_max = mx["k"]
    k_context = (mx["max_limit"] or {}).get("k_context", k_max)
    for k in asked:
        if k == "max":
            continue
        if "max" in asked and k >= k_max:
            notes.append(f"k={k} left out: {'it is' if k == k_max else 'above'} max (k={k_max})")
            continue
        if k > k_context:
            notes.append(f"k={k} left out: the {mx['context']}-token context fits at most k={k_context}")
            continue
        shots.append(k)
    shots = sorted(set(shots))
    if "max" in asked:
        shots.append("max")
    return shots, notes


def run_model(args, model: str) -> dict:
    import yaml

    from evaluator.config.job import Job
    from evaluator.runner import run_job

    out = Path(args.out).resolve()
    job_dir = out / "jobs"
    job_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    # resolve `max` first (cap: the pool unless --max-shots), then drop explicit k that max already covers
    probe = Job.model_validate(job_dict(args, model, ["max"], args.max_shots or 1))
    mx = resolve_max(probe, job_dir, args.max_shots)
    cap = mx["cap"]
    shots, notes = plan_shots(args.shot_list, mx)
    data = job_dict(args, model, shots, cap)
    job = Job.model_validate(data)
    text = yaml.safe_dump(data, sort_keys=False)
    job_file = job_dir / f"{data['name']}.yaml"
    job_file.write_text(text, encoding="utf-8")
    _log(f"== {model}: {mx['task']}, {mx['n_test']} test items, {mx['n_train']} training items, context "
         f"{mx['context']} tokens; max = k={mx['k']} ({mx['how']})")
    for n in notes:
        _log(f"   note: {n}")
    sizes = [mx["n_train"] if n == "all" else min(int(n), mx["n_train"]) for n in args.size_list]
    _log(f"   arm A k: {', '.join(str(mx['k']) + ' (max)' if k == 'max' else str(k) for k in shots)} "
         f"({len(shots)} points); arm B n: {', '.join(map(str, sizes))} ({len(set(sizes))} points)")
    _log(f"   job file {job_file}")
    run_dir = run_job(job, job_dir, text, quiet=args.quiet,
                      json_progress=Path(args.json_progress).resolve() if args.json_progress else None)
    wall = time.perf_counter() - t0
    return {"model": model, "job_file": str(job_file), "run_dir": str(run_dir), "wall_s": wall, "max": mx,
            "shots": shots, "max_shots": cap} | collect(run_dir, mx["task"], args.reps)


# ---------------------------------------------------------------------------------------------------------------
# results
# ---------------------------------------------------------------------------------------------------------------


def collect(run_dir: Path, task: str, reps: int) -> dict:
    """Per point quality, CI and seconds from the run's unit records; the crossover as the report computes it."""
    from evaluator.analysis.crossover import crossover_with_uncertainty
    from evaluator.analysis.selection import verdict_settings
    from evaluator.store.run_store import RunStore

    store = RunStore.open(run_dir)
    units = [u for u in store.units() if u["task"] == task]
    scores = {u["unit"]: {r["item_id"]: float(r["score"]) for r in store.items(u["unit"])} for u in units}
    points = []
    for u in units:
        pt, tm, tr = u["point"], u.get("timings") or {}, u.get("training") or {}
        if u["arm"] == "B" and (pt.get("shots") or 0) != 0:
            continue
        eval_s = float(tm.get("eval_seconds") or 0.0)
        train_s = float(tr.get("train_seconds") or 0.0) if u["arm"] == "B" else None
        points.append({
            "unit": u["unit"], "arm": u["arm"], "model": u["model"],
            "x": pt["shots"] if u["arm"] == "A" else pt["train_size"],
            "shots_requested": pt.get("shots_requested"), "max_limit": pt.get("max_limit"),
            "quality": u["value"], "ci_low": u["ci_low"], "ci_high": u["ci_high"], "metric": u.get("metric"),
            "n_items": u["n_items"], "prefix_tokens": (u.get("tokens") or {}).get("shared_prefix_tokens"),
            "eval_s": eval_s, "train_s": train_s, "seconds": eval_s + (train_s or 0.0),
            "train_items": tr.get("train_items"), "val_items": tr.get("val_items"),
            "stopped_early": tr.get("stopped_early"), "best_val_accuracy": tr.get("best_val_accuracy"),
        })
    points.sort(key=lambda p: (p["arm"], p["x"]))
    cfg_job = store.config.get("job", {})
    st = verdict_settings(cfg_job)
    prompt = {p["x"]: scores[p["unit"]] for p in points if p["arm"] == "A"}
    lora = {p["x"]: scores[p["unit"]] for p in points if p["arm"] == "B"}
    cx = crossover_with_uncertainty(prompt, lora, alpha=st["alpha"], reps=reps, seed=st["selection_seed"]) \
        if prompt and lora else None
    report_cx = None
    rep_path = Path(run_dir) / "report.json"
    if rep_path.is_file():
        report_cx = (json.loads(rep_path.read_text(encoding="utf-8")).get("tasks", {}).get(task) or {}).get("crossover")
    same = None if report_cx is None or cx is None else (
        report_cx.get("n") == cx.get("n") and report_cx.get("interval") == cx.get("interval"))
    return {"points": points, "crossover": cx, "crossover_matches_report": same,
            "units_s": sum(p["seconds"] for p in points), "alpha": st["alpha"]}


def _n(v) -> str:
    return "none" if v is None else f"{v:.0f}"


def crossover_words(cx: dict | None, points: list[dict]) -> str:
    if cx is None:
        return "no crossover: needs both an A and a B curve"
    ns = [p["x"] for p in points if p["arm"] == "B"]
    iv = cx.get("interval") or [None, None]
    lo = "at or below " + _n(iv[0]) if cx.get("interval_low_at_or_below") else (
        f"beyond {max(ns)}" if iv[0] is None else _n(iv[0]))
    hi = f"beyond {max(ns)}" if iv[1] is None else (
        "at or below " + _n(iv[1]) if iv[1] <= min(ns) else _n(iv[1]))
    share = cx.get("share_crossing")
    tail = f"95% bootstrap interval {lo} to {hi}; {share:.0%} of item resamples cross" if share is not None else ""
    if cx.get("n") is None:
        return f"none up to n={max(ns)} ({tail})"
    where = f"n ≤ {cx['n']:.0f} (the smallest n measured)" if cx.get("at_or_below") else f"n ≈ {cx['n']:.0f}"
    sure = "" if cx.get("distinguishable") else " — not distinguishable"
    return f"{where}{sure} ({tail})"


def print_model(res: dict) -> None:
    mx = res["max"]
    _log("")
    _log(f"### {res['model']} — {mx['task']}, {res['points'][0]['n_items'] if res['points'] else 0} test items, "
         f"context {mx['context']}; max = k={mx['k']} ({(mx['max_limit'] or {}).get('binding', '?')})")
    _log("")
    _log("| arm | k / n | quality | 95% CI | prefix tok | eval s | train s | seconds |")
    _log("|---|---:|---:|---|---:|---:|---:|---:|")
    for p in res["points"]:
        if p["arm"] == "A":
            what = f"k={p['x']}" + (" (max)" if p["shots_requested"] == "max" else "")
        else:
            what = f"n={p['x']}" + (f" ({p['train_items']} trained, {p['val_items']} held out)" if p.get("val_items") else "")
        train = "" if p["train_s"] is None else f"{p['train_s']:.1f}"
        _log(f"| {p['arm']} | {what} | {p['quality']:.3f} | [{p['ci_low']:.3f}, {p['ci_high']:.3f}] | "
             f"{p['prefix_tokens'] if p['prefix_tokens'] is not None else ''} | {p['eval_s']:.1f} | {train} | "
             f"{p['seconds']:.1f} |")
    _log("")
    _log(f"crossover: {crossover_words(res['crossover'], res['points'])}")
    if res["crossover"]:
        _log(f"  ({res['crossover']['statement']})")
    if res.get("crossover_matches_report") is False:
        _log("  WARNING: the report's crossover differs from this one (different points or settings)")
    _log(f"run dir {res['run_dir']}; units {res['units_s']:.1f}s recorded, this invocation {res['wall_s']:.1f}s")


def machine_line(res: dict) -> str:
    cx = res["crossover"] or {}
    pts = res["points"]
    b = [p for p in pts if p["arm"] == "B"]
    b_all = max(b, key=lambda p: p["x"]) if b else None
    bp = cx.get("best_prompting") or {}
    iv = cx.get("interval") or [None, None]
    items = pts[0]["n_items"] if pts else 0

    def f(v, fmt=".3f"):
        return "none" if v is None else format(v, fmt)

    return (f"learning_curves model={res['model']} task={res['max']['task']} items={items} max_k={res['max']['k']} "
            f"crossover_n={f(cx.get('n'), '.1f')} at_or_below={int(bool(cx.get('at_or_below')))} "
            f"crossover_lo={f(iv[0], '.1f')} lo_at_or_below={int(bool(cx.get('interval_low_at_or_below')))} "
            f"crossover_hi={'beyond' if iv[1] is None else format(iv[1], '.1f')} "
            f"share_crossing={f(cx.get('share_crossing'))} distinguishable={int(bool(cx.get('distinguishable')))} "
            f"none_up_to={b_all['x'] if b_all and cx.get('n') is None else '-'} "
            f"best_prompting_k={bp.get('k', 'none')} best_prompting_q={f(bp.get('quality'))} "
            f"lora_all_n={b_all['x'] if b_all else 'none'} lora_all_q={f(b_all['quality'] if b_all else None)} "
            f"units_s={res['units_s']:.1f} total_s={res['wall_s']:.1f}")


# ---------------------------------------------------------------------------------------------------------------
# the figure
# ---------------------------------------------------------------------------------------------------------------


def figure_png(results: list[dict], refs, title: str) -> bytes:
    """Both models' A (vs k) and B (vs n) curves with 95% CI bands, each model's best prompting level (dotted) and
    crossover star with its bootstrap interval, and the optional reference layer (the report's `draw_references`)."""
    import io

    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.ticker
    from matplotlib.figure import Figure

    from evaluator.fmt import axis_short
    from evaluator.report import plots

    with matplotlib.rc_context(plots._RC):
        fig = Figure(figsize=(6.4, 6.6 + 0.25 * len(refs)), layout="constrained")
        ax = fig.add_subplot()
        all_x: list[float] = []
        for i, res in enumerate(results):
            ca, cb = MODEL_COLOURS[i % len(MODEL_COLOURS)]
            m = res["model"]
            for arm, colour, marker, what in (("A", ca, "o", "prompting, vs k"), ("B", cb, "s", "LoRA, vs n")):
                pts = [p for p in res["points"] if p["arm"] == arm]
                if not pts:
                    continue
                xs, qs = [float(p["x"]) for p in pts], [p["quality"] for p in pts]
                all_x += xs
                ax.plot(xs, qs, marker=marker, color=colour, linewidth=1.8, markersize=5, label=f"{arm}: {m} {what}")
                if len(pts) > 1:
                    ax.fill_between(xs, [p["ci_low"] for p in pts], [p["ci_high"] for p in pts], color=colour,
                                    alpha=0.15, linewidth=0)
                else:
                    p = pts[0]
                    ax.errorbar(xs, qs, yerr=[[max(0.0, p["quality"] - p["ci_low"])], [max(0.0, p["ci_high"] - p["quality"])]],
                                color=colour, capsize=3, fmt="none")
                for p in pts:
                    if p["shots_requested"] == "max":
                        below = p["quality"] > 0.9  # keep the label off the title
                        ax.annotate(f"max (k={p['x']})", (p["x"], p["quality"]), textcoords="offset points",
                                    xytext=(5, -14 if below else 6), fontsize=9.5, color=colour)
            cx = res["crossover"]
            if not cx or not cx.get("best_prompting"):
                continue
            q_best, k_best = cx["best_prompting"]["quality"], cx["best_prompting"]["k"]
            ax.axhline(q_best, color=ca, linestyle=":", linewidth=1, label=f"{m} best prompting (k={k_best}): {q_best:.3f}")
            ns = [float(p["x"]) for p in res["points"] if p["arm"] == "B"]
            if cx.get("n") is not None:
                sure = cx.get("distinguishable", False)
                lab = f"{m} crossover: n ≈ {cx['n']:,.0f}" + (" (or below)" if cx.get("at_or_below") else "")
                lab += "" if sure else " — not distinguishable"
                ax.plot([cx["n"]], [q_best], marker="*", markersize=15, color=cb, markeredgecolor="black",
                        linestyle="none", label=lab, zorder=5, alpha=1.0 if sure else 0.6)
                iv = cx.get("interval") or [None, None]
                lo = iv[0] if iv[0] is not None else min(ns)
                hi = iv[1] if iv[1] is not None else max(ns) * 1.5
                ax.plot([lo, hi], [q_best, q_best], color=cb, linewidth=3, alpha=0.35, solid_capstyle="butt", zorder=4)
            else:
                ax.plot([], [], linestyle="none", marker="", label=f"{m}: no crossover up to n={max(ns):.0f}")
        all_x += plots.draw_references(ax, refs)
        if not all_x:
            all_x = [1.0]
        ax.set_xscale("symlog", linthresh=1.0)
        ax.set_xlim(-0.3 if min(all_x) <= 0 else None, max(all_x) * 1.6 if max(all_x) > 0 else 1)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("examples used: k demonstrations in the prompt (A)\n/ n training examples (B)")
        ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: axis_short(v, "")))
        ax.set_ylabel("quality (95% CI band)")
        ax.set_title(title)
        ax.grid(True, which="major", alpha=0.3)
        handles, labels = ax.get_legend_handles_labels()
        if handles:
            fig.legend(handles, labels, loc="outside lower center", ncols=1, frameon=False)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=128, bbox_inches="tight", metadata={"Software": None})
        return buf.getvalue()


def report_figure(res: dict, refs) -> bytes:
    """The report's own learning-curves figure for this run (its unit records and crossover), with the references."""
    from evaluator.report import plots

    rep = json.loads((Path(res["run_dir"]) / "report.json").read_text(encoding="utf-8"))
    t = rep["tasks"][res["max"]["task"]]
    return plots.learning_curves_png(t["units"], crossover=t.get("crossover"), references=refs,
                                     title=f"{res['max']['task']} on {res['model']}")


# ---------------------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from evaluator.analysis.references import references
    from evaluator.errors import UserError

    try:
        refs = references(args.reference)
    except UserError as exc:
        _log(f"error: {exc}")
        return 2
    import torch
    import transformers

    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    _log(f"command: python benchmarks/learning_curves.py {' '.join(sys.argv[1:] if argv is None else argv)}")
    _log(f"device: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch threads "
         f"{torch.get_num_threads()}{', cuda: ' + torch.cuda.get_device_name() if torch.cuda.is_available() else ''}")
    _log(f"versions: python {platform.python_version()}, torch {torch.__version__}, transformers {transformers.__version__}")
    if hasattr(os, "getloadavg"):
        _log(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    _log(f"output folder {out}")
    results = []
    try:
        for model in args.model_list:
            results.append(run_model(args, model))
    except UserError as exc:
        _log(f"error: {exc}")
        return 2
    for res in results:
        print_model(res)
    task = results[0]["max"]["task"]
    items = results[0]["points"][0]["n_items"] if results[0]["points"] else 0
    title = f"{task} ({items} test items): prompting vs k, LoRA vs n"
    fig = out / "learning_curves.png"
    fig.write_bytes(figure_png(results, refs, title))
    per_model = {}
    for res in results:
        path = out / f"learning_curves_{''.join(ch if ch.isalnum() or ch in '-_.' else '-' for ch in res['model'])}.png"
        path.write_bytes(report_figure(res, refs))
        per_model[res["model"]] = str(path)
    js = out / "learning_curves.json"
    js.write_text(json.dumps({
        "task": task, "items": items, "limit": args.limit, "seed": args.seed,
        "command": "python benchmarks/learning_curves.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "references": [r.name for r in refs], "reference_citation": refs[0].citation if refs else None,
        "figure": str(fig), "report_figures": per_model, "total_s": time.perf_counter() - t_start,
        "models": {r["model"]: {k: v for k, v in r.items() if k != "model"} for r in results},
    }, indent=2, default=lambda o: None if isinstance(o, float) and not math.isfinite(o) else str(o)) + "\n",
        encoding="utf-8")
    _log("")
    if hasattr(os, "getloadavg"):
        _log(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    _log(f"figure {fig}" + (f" (references: {', '.join(r.dataset for r in refs)})" if refs else "")
         + f"; per model (the report's figure): {', '.join(per_model.values())}")
    _log(f"json {js}; total {time.perf_counter() - t_start:.1f}s")
    for res in results:
        _log(machine_line(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
