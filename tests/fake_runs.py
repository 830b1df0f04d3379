"""Fake run directories in the store's format (config.json, env.json, units/*.json, results/*.jsonl) — no model.

Scores are drawn per item from a fixed seed so a unit with quality q gets about q·n items right; arms are correlated
(an item that is "easy" for one arm tends to be easy for all), as real arms on the same items are.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from evaluator.analysis.estimates import wilson

TASK = "toy_intents"
LABELS = ["book", "play", "rate", "weather", "search"]


def unit_name(task: str, arm: str, model: str, shots: int | str, train: int | None) -> str:
    k = f"k{shots}"
    return f"{task}__{arm}__{slug(model)}__" + (f"n{train}__{k}" if arm == "B" else k)


def slug(model: str) -> str:
    """The model's slug as the runner records it: plain names unchanged; an API spec "api-<model>", as
    evaluator.api.spec does ("api:openai/gpt-4o-mini" → "api-gpt-4o-mini", "api:http://h/v1#name" → "api-name")."""
    if not model.startswith("api:"):
        return model
    spec = model[len("api:"):]
    name = spec.split("#", 1)[1] if "#" in spec else spec.split("/", 1)[1]
    return ("api-" + re.sub(r"[^A-Za-z0-9_.-]+", "-", name.strip("/").replace("/", "--")).strip("-."))[:60]


def api_section(model: str, n_items: int, shots: int, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """A plausible `api` section of an API unit's record for `model` ("api:openai/gpt-4o-mini" or
    "api:http://host/v1#name"), `overrides` merged on top (one level deep for usage, latency_s and price)."""
    spec = model[len("api:"):]
    if "#" in spec:
        base_url, name = spec.split("#", 1)
        provider, price = None, {"model": None, "provider": None, "how": None}
    else:
        provider, name = spec.split("/", 1)
        base_url = "https://api.openai.com/v1" if provider == "openai" else f"https://api.{provider}.example/v1"
        price = {"model": name, "provider": provider, "how": "price table"}
    price |= {"input_usd_per_m": None, "cached_input_usd_per_m": None, "output_usd_per_m": None}
    per_in = 60.0 + 12 * shots  # instruction + item (+ demonstrations), as the API counts them
    per_cached = 0.0
    per_out = 2.0
    sec = {
        "spec": model, "base_url": base_url, "model": name, "provider": provider, "endpoint": "chat",
        "scoring_method": "generate_match", "requests": n_items, "from_cache": 0, "retries": 2,
        "errors": {"429": 1, "500": 1}, "concurrency": 4, "served_models": [name],
        "latency_s": {"p50": 0.12, "p95": 0.30, "mean": 0.15, "max": 0.40, "n": n_items},
        "usage": {"input_tokens": per_in * n_items, "cached_input_tokens": per_cached * n_items,
                  "output_tokens": per_out * n_items, "items": n_items, "input_tokens_per_item": per_in,
                  "cached_input_tokens_per_item": per_cached, "output_tokens_per_item": per_out,
                  "source": "the responses' usage fields", "missing": 0},
        "price": price,
    }
    for k, v in (overrides or {}).items():
        sec[k] = sec[k] | v if isinstance(v, dict) and isinstance(sec.get(k), dict) else v
    u = sec["usage"]  # keep the totals and the per-item figures consistent when per-item figures are overridden
    for key in ("input_tokens", "cached_input_tokens", "output_tokens"):
        if f"{key}_per_item" in (overrides or {}).get("usage", {}) and key not in (overrides or {}).get("usage", {}):
            u[key] = u[f"{key}_per_item"] * u["items"]
    return sec


def make_run(
    root: Path,
    run_id: str,
    items: list[str],
    points: list[dict[str, Any]],
    *,
    task: str = TASK,
    base: str = "old-base",
    newer: list[str] | None = None,
    seed: int = 0,
    planned_extra: int = 0,
) -> Path:
    """points: {arm, model, shots (int or "max" with k=...), train_size?, q} → a finished run dir under root/run_id.

    A point whose model starts with ``api:`` (arm C) is a unit served by a hosted API, recorded as the API arm records
    it: engine "api", measured_with device_type "api", an `api` section (see :func:`api_section`; the point's "api"
    dict overrides its fields) and per-item rows with usage and latency."""
    run = root / run_id
    (run / "units").mkdir(parents=True)
    (run / "results").mkdir()
    (run / "prefixes").mkdir()
    rng = np.random.default_rng(seed)
    difficulty = rng.random(len(items))  # shared per item: correlation between arms
    names = []
    for j, p in enumerate(points):
        arm, model = p["arm"], p["model"]
        req = p.get("shots", 0)
        shots = p.get("k", req) if req == "max" else req
        train = p.get("train_size")
        name = unit_name(task, arm, model, req, train)
        names.append(name)
        noise = np.random.default_rng(seed * 1000 + j).random(len(items))
        u = 0.7 * difficulty + 0.3 * noise
        correct = np.argsort(np.argsort(u)) < round(p["q"] * len(items))  # exactly round(q·n) right
        prefix_tokens = 12 * int(shots) + 20
        api = api_section(model, len(items), int(shots), p.get("api")) if model.startswith("api:") else None
        rows = []
        for i, item in enumerate(items):
            target = LABELS[i % len(LABELS)]
            pred = target if correct[i] else LABELS[(i + 1) % len(LABELS)]
            if api is not None:
                us = api["usage"]
                rows.append({
                    "item_id": item, "target": target, "prediction": pred, "score": float(correct[i]),
                    "prompt_tokens": us["input_tokens_per_item"], "cached_tokens": us["cached_input_tokens_per_item"],
                    "output_tokens": us["output_tokens_per_item"], "seconds": api["latency_s"]["p50"], "requests": 1,
                    "retries": 0, "from_cache": False, "method": api["scoring_method"],
                })
                continue
            rows.append({
                "item_id": item, "target": target, "prediction": pred, "score": float(correct[i]),
                "loglik": [-1.0 if lab == pred else -3.0 for lab in LABELS], "is_greedy": [lab == pred for lab in LABELS],
                "item_tokens": 15, "prompt_tokens": prefix_tokens + 15, "output_tokens": 0, "seconds": 0.05,
            })
        (run / "results" / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        (run / "prefixes" / f"{name}.txt").write_text("Intent classification.\n" + "x: y\n" * int(shots))
        est = wilson(int(correct.sum()), len(items))
        rec: dict[str, Any] = {
            "unit": name, "task": task, "arm": arm,
            "arm_name": {"A": "prompting (base)", "B": "LoRA (base)", "C": "prompting (newer base)"}[arm],
            "model": model, "model_slug": slug(model),
            "point": {"shots_requested": req, "shots": int(shots),
                      "shots_how": "max: largest k that fits" if req == "max" else "explicit", "train_size": train},
            "metric": "accuracy", "value": est.value, "ci_low": est.low, "ci_high": est.high, "n": est.n,
            "ci_method": "wilson", "n_items": len(items), "item_ids_hash": "fake", "engine": "packed",
            "tokens": {"shared_prefix_tokens": prefix_tokens, "prompt_tokens_per_request": prefix_tokens + 15.0,
                       "unique_tokens_per_request": 15.0, "output_tokens_per_request": 0.0, "context_window": 8192},
            "timings": {"eval_seconds": 2.0 + 0.01 * prefix_tokens, "prefix_encode_seconds": 0.1,
                        "requests": len(items)},
            "finished_at": "2026-01-01T00:00:00+0000",
        }
        if api is not None:
            us = api["usage"]
            wall = len(items) * api["latency_s"]["mean"] / api["concurrency"]
            rec["engine"] = "api"
            rec["tokens"] = {"shared_prefix_tokens": 0, "prompt_tokens_per_request": us["input_tokens_per_item"],
                             "unique_tokens_per_request": us["input_tokens_per_item"],
                             "output_tokens_per_request": us["output_tokens_per_item"], "context_window": 128000}
            rec["timings"] = {"request_seconds": wall, "prefix_encode_seconds": 0, "warmup_seconds": 0,
                              "eval_seconds": wall, "requests": len(items)}
            rec["measured_with"] = {"device": f"API {api['base_url']} ({api['model']})", "device_type": "api", "dtype": None, "engine": "api",
                                    "batch_tokens": None, "chunk_items": 16,
                                    "batch_note": f"{api['concurrency']} concurrent requests"}
            rec["api"] = api
        if arm == "B":
            rec["adapter"] = {"dir": f"/tmp/adapters/{name}", "key": "abc"}
            rec["training"] = {"adapter_dir": f"/tmp/adapters/{name}", "train_seconds": 0.5 * train, "steps": 4,
                               "epochs": 2.0, "tokens_seen": 100 * train, "answer_tokens_seen": 5 * train,
                               "peak_mem_mb": 100.0, "adapter_bytes": 1000, "final_loss": 0.5,
                               "loss_curve": [1.0, 0.7, 0.5]}
        (run / "units" / f"{name}.json").write_text(json.dumps(rec, indent=1))
    job = {
        "name": run_id, "tasks": [task], "base": base, "newer": newer or [], "seed": seed,
        "arms": {}, "costs": {"volume_tokens_per_day": 5e6, "engineering_hours_per_training": 8.0},
        "verdict": {"margin": 0.02, "alpha": 0.05},
    }
    cfg = {"fingerprint": f"fp-{run_id}", "run_id": run_id, "job": job,
           "units": names + [f"planned-{i}" for i in range(planned_extra)]}
    (run / "config.json").write_text(json.dumps(cfg, indent=1))
    env = {"python": "3.11", "platform": "test", "packages": {"torch": "x", "transformers": "y", "peft": "z"},
           "device": {"cuda": False, "cpu_count": 2}}
    (run / "env.json").write_text(json.dumps(env))
    return run


def old_run(root: Path, items: list[str], run_id: str = "q1-adapter") -> Path:
    """Last quarter's run: the old base prompted (A) and LoRA adapters (B), plus a newer base (C)."""
    return make_run(root, run_id, items, [
        {"arm": "A", "model": "old-base", "shots": 0, "q": 0.30},
        {"arm": "A", "model": "old-base", "shots": 8, "q": 0.45},
        {"arm": "A", "model": "old-base", "shots": "max", "k": 64, "q": 0.55},
        {"arm": "B", "model": "old-base", "shots": 0, "train_size": 16, "q": 0.40},
        {"arm": "B", "model": "old-base", "shots": 0, "train_size": 64, "q": 0.60},
        {"arm": "B", "model": "old-base", "shots": 0, "train_size": 256, "q": 0.75},
        {"arm": "C", "model": "mid-base", "shots": 0, "q": 0.35},
        {"arm": "C", "model": "mid-base", "shots": 8, "q": 0.60},
    ], base="old-base", newer=["mid-base"], seed=1)


def new_run(root: Path, items: list[str], run_id: str = "q2-new-base") -> Path:
    """This quarter: the new base release prompted (as the run's base, arm A)."""
    return make_run(root, run_id, items, [
        {"arm": "A", "model": "new-base", "shots": 0, "q": 0.55},
        {"arm": "A", "model": "new-base", "shots": 8, "q": 0.72},
        {"arm": "A", "model": "new-base", "shots": 32, "q": 0.80},
    ], base="new-base", seed=1)


def item_ids(n: int, start: int = 0) -> list[str]:
    return [f"it-{i:04d}" for i in range(start, start + n)]
