"""Costs of a finished run: stored measurements (units, per-item prompts, prefixes) → the pure cost model.

No model is loaded: token counts for the API come from tiktoken on the stored prompt texts, throughput and
training seconds from the unit records. `tunecheck cost` re-runs only this (well under a second).
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from evaluator.api_pricing import ApiPriceError, api_token_counts, prices_for_inputs
from evaluator.costs import ArmMeasurement, CostInputs, CostReport, compute_costs
from evaluator.errors import UserError
from evaluator.store import RunStore, safe_name


def unit_label(u: dict) -> str:
    """Short, unique within a task: 'A k=32', 'B n=100', 'B n=100 k=5', 'C gemma3-270m k=32'."""
    pt = u["point"]
    if u["arm"] == "B":
        return f"B n={pt['train_size']}" + (f" k={pt['shots']}" if pt["shots"] else "")
    return ("A" if u["arm"] == "A" else f"C {u['model_slug']}") + f" k={pt['shots']}"


def key_units(units: list[dict]) -> list[dict]:
    """The options a decision is between: the best point of A, of B and of each newer base in C."""
    best: dict[tuple[str, str], dict] = {}
    for u in units:
        k = (u["arm"], u["model"])
        if k not in best or u["value"] > best[k]["value"]:
            best[k] = u
    return sorted(best.values(), key=lambda u: (u["arm"], u["model"]))


def cost_inputs(job_costs: dict[str, Any], overrides: dict[str, Any] | None = None) -> CostInputs:
    """The job's recorded cost inputs with command-line overrides on top (None = keep)."""
    names = {f.name for f in fields(CostInputs)}
    data = {k: v for k, v in job_costs.items() if k in names}
    data.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return CostInputs(**data)


def measurement(store: RunStore, u: dict, api_model: str, api_provider: str, device: str) -> ArmMeasurement:
    rows = store.items(u["unit"])
    prefix_path = store.root / "prefixes" / f"{safe_name(u['unit'])}.txt"
    prefix = prefix_path.read_text(encoding="utf-8") if prefix_path.exists() else ""
    api: dict[str, float | None] = {"p": None, "s": None, "o": None}
    if rows and all("query" in r for r in rows):
        try:
            c = api_token_counts(
                [prefix + r["query"] for r in rows], prefix,
                [(r.get("prediction") or r["target"]) for r in rows], api_model, api_provider,
            )
            api = {"p": c.prompt_tokens_per_request, "s": c.shared_prefix_tokens, "o": c.output_tokens_per_request}
        except ApiPriceError:
            pass  # unknown encoding: the model's own token counts stand in (the cost model says so)
    tok = u["tokens"]
    return ArmMeasurement(
        name=unit_label(u),
        arm=u["arm"],
        requests=int(u["timings"]["requests"]),
        eval_seconds=max(float(u["timings"]["eval_seconds"]), 1e-9),
        device=device,
        prompt_tokens_per_request=float(tok["prompt_tokens_per_request"]),
        shared_prefix_tokens=float(tok["shared_prefix_tokens"]),
        output_tokens_per_request=float(tok["output_tokens_per_request"]),
        train_seconds=float(u.get("training", {}).get("train_seconds", 0.0)),
        api_prompt_tokens_per_request=api["p"],
        api_shared_prefix_tokens=api["s"],
        api_output_tokens_per_request=api["o"],
        prefix_cached=u.get("engine", "packed") != "lm-eval",
    )


def device_of(store: RunStore) -> str:
    env_path = store.root / "env.json"
    if not env_path.exists():
        return "unknown"
    from evaluator.store import read_json

    dev = read_json(env_path).get("device", {})
    return dev.get("gpu") or f"CPU ({dev.get('cpu_count')} cores)"


def run_costs(store: RunStore, overrides: dict[str, Any] | None = None, *, only_key: bool = True) -> dict[str, CostReport]:
    """One cost report per task of the run: the best point of each arm (only_key) or every unit."""
    cfg = store.config
    inputs = cost_inputs(cfg.get("job", {}).get("costs", {}), overrides)
    try:
        prices = prices_for_inputs(inputs)
    except ApiPriceError as exc:
        raise UserError(str(exc)) from None
    device = device_of(store)
    by_task: dict[str, list[dict]] = {}
    for u in store.units():
        by_task.setdefault(u["task"], []).append(u)
    if not by_task:
        raise UserError(f"{store.root} has no finished units yet — run the job first")
    return {
        task: compute_costs(
            [measurement(store, u, inputs.api_model, inputs.api_provider, device) for u in (key_units(units) if only_key else units)],
            inputs, prices,
        )
        for task, units in by_task.items()
    }
