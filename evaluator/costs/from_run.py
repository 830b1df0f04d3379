"""Costs of a finished run: stored measurements (units, per-item prompts, prefixes) → the pure cost model.

No model is loaded: token counts for the API come from tiktoken on the stored prompt texts, throughput and
training seconds from the unit records. The options costed are each arm's operating points, chosen by
:func:`evaluator.analysis.selection.choose` — the same rule and items as the verdict. `tunecheck cost` re-runs only this.
"""

from __future__ import annotations

import dataclasses
from dataclasses import fields
from pathlib import Path
from typing import Any, Mapping, Sequence

from evaluator.analysis.labels import unit_label
from evaluator.analysis.selection import choose, verdict_settings
from evaluator.analysis.taskset import traffic_shares
from evaluator.costs.compute import CostReport, compute_costs
from evaluator.costs.inputs import ApiPrices, ApiUsage, ArmMeasurement, CostInputs
from evaluator.costs.pricing import ApiPriceError, api_prices, api_token_counts, prices_for_inputs
from evaluator.costs.workload import RequestSize
from evaluator.errors import UserError
from evaluator.store.files import read_json
from evaluator.store.run_store import RunStore


def cost_inputs(job_costs: dict[str, Any], overrides: dict[str, Any] | None = None) -> CostInputs:
    """The job's recorded cost inputs with command-line overrides on top (None = keep).

    The job's `costs:` section is generated from CostInputs (one schema), so what a run recorded is CostInputs'
    fields; a key an older run recorded that is no longer a cost input is ignored."""
    data = {**job_costs, **{k: v for k, v in (overrides or {}).items() if v is not None}}
    return CostInputs(**{f.name: data[f.name] for f in fields(CostInputs) if f.name in data})


def parse_throughput(specs: Sequence[str] | None) -> dict[str, float]:
    """``["B n=100=850", "A k=128=12.5"]`` → {option label: req/s}; the value follows the last '='."""
    out: dict[str, float] = {}
    for spec in specs or []:
        label, sep, value = spec.rpartition("=")
        try:
            rps = float(value)
        except ValueError:
            rps = float("nan")
        if not sep or not label.strip() or not rps > 0 or rps == float("inf"):
            raise UserError(f"--throughput {spec!r}: expected OPTION=REQ_PER_S with a positive number, e.g. "
                            "\"B n=100=850\" (option labels as in the cost table)")
        out[label.strip()] = rps
    return out


def _store_scores(store: RunStore, units: Sequence[Mapping]) -> dict[str, dict[str, float]]:
    return {u["unit"]: {r["item_id"]: float(r["score"]) for r in store.items(u["unit"])} for u in units}


def _env_device(store: RunStore) -> str:
    env_path = store.root / "env.json"
    if not env_path.exists():
        return "unknown device"
    dev = read_json(env_path).get("device", {})
    return (dev.get("gpu") or f"CPU ({dev.get('cpu_count')} cores)") + " (from env.json: not recorded by the unit)"


def _measured_on(store: RunStore, u: Mapping) -> tuple[str, bool]:
    """(how the unit's throughput was measured, whether on a CPU). Units record it; older ones fall back to env.json."""
    mw = u.get("measured_with")
    if isinstance(mw, Mapping) and mw.get("device_type") == "api":  # no dtype: a hosted API measured its latency
        return f"{mw.get('device')}, {mw.get('batch_note', '')}".rstrip(", "), False
    if isinstance(mw, Mapping):
        return (f"{mw.get('device')}, {mw.get('dtype')}, {mw.get('engine')} engine, {mw.get('batch_note', '')}"
                .rstrip(", "), mw.get("device_type") == "cpu")
    dev = _env_device(store)
    return dev, dev.startswith("CPU")


def _throughput_basis(u: Mapping) -> tuple[int, float]:
    """(requests, seconds) a unit's self-hosted throughput is priced from: its serving-batch probe where it recorded
    one (a batch the device holds, `measured_with.serving`), else the per-request work of its evaluation."""
    mw = u.get("measured_with")
    sv = mw.get("serving") if isinstance(mw, Mapping) else None
    if isinstance(sv, Mapping) and isinstance(sv.get("requests"), int) and (sv.get("seconds") or 0) > 0:
        return int(sv["requests"]), float(sv["seconds"])
    return int(u["timings"]["requests"]), _request_seconds(u)


def _request_seconds(u: Mapping) -> float:
    t = u["timings"]
    if "request_seconds" in t:
        return float(t["request_seconds"])
    return float(t["eval_seconds"]) - float(t.get("prefix_encode_seconds", 0.0))  # older records: prefix inside


def tok_prefix(u: Mapping) -> float:
    return float((u.get("tokens") or {}).get("shared_prefix_tokens") or 0)


def is_api_unit(u: Mapping) -> bool:
    """A unit served by a hosted API (arm C with an ``api:`` spec): it records an ``api`` section."""
    return u.get("engine") == "api" and isinstance(u.get("api"), Mapping)


_PRICE_KEYS = ("input_usd_per_m", "cached_input_usd_per_m", "output_usd_per_m")


def _num(x: object) -> float | None:
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) else None


def _api_unit_prices(api: Mapping) -> tuple[ApiPrices | None, str]:
    """(the API unit's own prices, why it has none): the price table's entry for ``price.model`` with the job's
    per-M prices on top, or — without a table model — the job's prices alone (input and output both needed)."""
    pr = api.get("price") if isinstance(api.get("price"), Mapping) else {}
    over = {k: _num(pr.get(k)) for k in _PRICE_KEYS}
    model, provider = pr.get("model"), pr.get("provider")
    how = f" ({pr['how']})" if pr.get("how") else ""
    if model:
        try:
            p = api_prices(str(model), str(provider) if provider else None, over)
        except ApiPriceError:
            return None, f"{model} ({provider or 'any provider'}) is not in the price table"
        return dataclasses.replace(p, source=p.source + how), ""
    if over["input_usd_per_m"] is not None and over["output_usd_per_m"] is not None:
        who = str(api.get("model") or api.get("spec") or "API model")
        return ApiPrices(model=who, provider=str(provider or api.get("base_url") or "endpoint"),
                         input_usd_per_m=over["input_usd_per_m"], output_usd_per_m=over["output_usd_per_m"],
                         cached_input_usd_per_m=over["cached_input_usd_per_m"],
                         source=f"the job's API prices{how}, no price table"), ""
    return None, f"{api.get('spec') or api.get('model')} names no model of the price table and the job gives no prices"


def api_usage(u: Mapping) -> ApiUsage:
    """An API unit's measured usage per item (one item = one user request), latency and its own prices."""
    api = u["api"]
    us = api.get("usage") if isinstance(api.get("usage"), Mapping) else {}
    items = int(us.get("items") or u.get("n_items") or 0)

    def per_item(key: str) -> float:
        v = _num(us.get(f"{key}_per_item"))
        if v is None:
            total = _num(us.get(key)) or 0.0
            v = total / items if items else 0.0
        return v

    lat = api.get("latency_s") if isinstance(api.get("latency_s"), Mapping) else {}
    prices, why = _api_unit_prices(api)
    where = api.get("base_url") if api.get("provider") is None else api.get("provider")
    inp = per_item("input_tokens")
    return ApiUsage(
        model=f"{api.get('model') or u['model']} ({where})" if where else str(api.get("model") or u["model"]),
        input_tokens_per_request=inp,
        cached_input_tokens_per_request=min(per_item("cached_input_tokens"), inp),
        output_tokens_per_request=per_item("output_tokens"),
        prices=prices, unpriced_reason=why, items=items or None,
        latency_p50_s=_num(lat.get("p50")), latency_p95_s=_num(lat.get("p95")),
        usage_source=str(us.get("source") or "the responses' usage fields"),
        missing_usage=int(us.get("missing") or 0),
    )


def _api_measurement(store: RunStore, u: Mapping) -> ArmMeasurement:
    """An API unit as a cost option: its usage and prices; the token and timing fields only record the run."""
    tok, t = u["tokens"], u["timings"]
    usage = api_usage(u)
    prompt = float(tok.get("prompt_tokens_per_request") or usage.input_tokens_per_request)
    return ArmMeasurement(
        name=unit_label(u), arm=u["arm"], requests=max(int(t.get("requests") or u.get("n_items") or 1), 1),
        eval_seconds=max(_request_seconds(u), 1e-9), device=_measured_on(store, u)[0],
        prompt_tokens_per_request=prompt,
        shared_prefix_tokens=min(float(tok.get("shared_prefix_tokens") or 0.0), prompt),
        output_tokens_per_request=float(tok.get("output_tokens_per_request") or usage.output_tokens_per_request),
        api_prompt_tokens_per_request=usage.input_tokens_per_request,
        api_output_tokens_per_request=usage.output_tokens_per_request,
        api_usage=usage,
    )


def measurement(store: RunStore, u: Mapping, api_model: str, api_provider: str,
                stated_rps: float | None = None) -> ArmMeasurement:
    if is_api_unit(u):
        return _api_measurement(store, u)
    rows = store.items(u["unit"])
    prefix = store.read_prefix(u["unit"])
    if prefix is None and tok_prefix(u):  # a many-shot unit without its prefix text cannot be API-counted
        rows = []
    prefix = prefix or ""
    api: dict[str, float | None] = {"p": None, "s": None, "o": None}
    if rows and all("query" in r for r in rows):
        try:  # outputs: the reference answers — one output size for every arm, whatever each arm predicted
            c = api_token_counts([prefix + r["query"] for r in rows], prefix, [r["target"] for r in rows],
                                 api_model, api_provider)
            api = {"p": c.prompt_tokens_per_request, "s": c.shared_prefix_tokens, "o": c.output_tokens_per_request}
        except ApiPriceError:
            pass  # unknown encoding: the model's own token counts stand in (the cost model says so)
    tok = u["tokens"]
    device, on_cpu = _measured_on(store, u)
    training = u.get("training") or {}
    return ArmMeasurement(
        name=unit_label(u),
        arm=u["arm"],
        requests=_throughput_basis(u)[0],
        eval_seconds=max(_throughput_basis(u)[1], 1e-9),
        device=device,
        prompt_tokens_per_request=float(tok["prompt_tokens_per_request"]),
        shared_prefix_tokens=float(tok["shared_prefix_tokens"]),
        output_tokens_per_request=float(tok["output_tokens_per_request"]),
        train_seconds=float(training.get("train_seconds", 0.0)),
        api_prompt_tokens_per_request=api["p"],
        api_shared_prefix_tokens=api["s"],
        api_output_tokens_per_request=api["o"],
        prefix_cached=u.get("engine", "packed") != "lm-eval",
        prefix_seconds=float(u["timings"].get("prefix_encode_seconds", 0.0)) if tok["shared_prefix_tokens"] else 0.0,
        train_processes=int(training.get("world_size", 1) or 1),
        on_cpu=on_cpu,
        stated_rps=stated_rps,
    )


def zero_shot_request(store: RunStore, units: Sequence[Mapping], base_model: str | None, api_model: str,
                      api_provider: str) -> RequestSize | None:
    """Instruction + input + reference answer of the task's zero-shot request, from a base-model unit's record
    (API tokens where tiktoken knows the API model, else the base model's tokens). None when no unit recorded it."""
    recs = [u for u in units if isinstance(u.get("zero_shot_request"), Mapping)]
    if not recs:
        return None
    recs.sort(key=lambda u: (u["model"] != base_model, u["arm"] not in ("A", "B"), u["unit"]))
    u = recs[0]
    z = u["zero_shot_request"]
    rows = store.items(u["unit"])
    if rows and all("query" in r for r in rows):
        head = str(z.get("instruction", ""))
        try:
            full = api_token_counts([head + r["query"] for r in rows], head.rstrip(), [r["target"] for r in rows],
                                    api_model, api_provider)
            instr = full.shared_prefix_tokens
            return RequestSize(instr, full.prompt_tokens_per_request - instr, float(full.output_tokens_per_request or 0),
                               f"API tokens ({full.encoding})", f"tiktoken counts of the {len(rows)} test items")
        except ApiPriceError:
            pass
    return RequestSize(float(z["instruction_tokens"]), float(z["input_tokens_per_request"]),
                       float(z["answer_tokens_per_request"]), f"model tokens ({u['model_slug']})",
                       "the base model's tokenizer (no tiktoken encoding for the API model)")


def cost_options(units: Sequence[Mapping], scores: Mapping[str, Mapping[str, float]], job: Mapping) -> list[Mapping]:
    """The options to cost: each arm's operating point (A, B, and the best point of each newer base), chosen by
    the verdict's selection rule on the verdict's selection items."""
    ch = choose(units, scores, verdict_settings(job))
    seen, out = set(), []
    for key, u in ch.points.items():
        if key == "C" or u["unit"] in seen:  # "C" is one of the per-model "C:<model>" points
            continue
        seen.add(u["unit"])
        out.append(u)
    return sorted(out, key=lambda u: (u["arm"], u["model"]))


def run_costs(store: RunStore, overrides: dict[str, Any] | None = None, *, only_key: bool = True,
              throughput: Mapping[str, float] | None = None, must_use: set[str] | None = None) -> dict[str, CostReport]:
    """One cost report per task of the run: the operating point of each arm (only_key) or every unit.

    ``throughput`` states serving throughputs (req/s) for option labels, replacing the measured ones; a label in
    ``must_use`` that names no costed option is an error (a typo must not be ignored)."""
    cfg = store.config
    job = cfg.get("job", {})
    inputs = cost_inputs(job.get("costs", {}), overrides)
    try:
        prices = prices_for_inputs(inputs)
    except ApiPriceError as exc:
        raise UserError(str(exc)) from None
    by_task: dict[str, list[dict]] = {}
    for u in store.units():
        by_task.setdefault(u["task"], []).append(u)
    if not by_task:
        raise UserError(f"{store.root} has no finished units yet — run the job first")
    stated = dict(throughput or {})
    shares = task_shares(cfg, list(by_task))
    reports = {}
    used: set[str] = set()
    for task, units in by_task.items():
        opts = cost_options(units, _store_scores(store, units), job) if only_key else units
        labels = {unit_label(u) for u in opts}
        used |= labels & set(stated)
        for u in opts:
            if is_api_unit(u) and unit_label(u) in stated:
                raise UserError(f"--throughput {unit_label(u)!r}: that option is served by an API — its cost is its "
                                "measured usage at its API prices, not a throughput; state throughputs of self-hosted "
                                "options only")
        ms = [measurement(store, u, inputs.api_model, inputs.api_provider, stated.get(unit_label(u))) for u in opts]
        req = zero_shot_request(store, units, job.get("base"), inputs.api_model, inputs.api_provider)
        reports[task] = compute_costs(ms, at_share(inputs, shares[task]), prices, req)
    unknown = sorted(set(must_use or ()) - used)
    if unknown:
        known = sorted({m.name for r in reports.values() for m in r.arms})
        raise UserError(f"--throughput names {', '.join(repr(x) for x in unknown)}, not a costed option — use one of "
                        f"{', '.join(known)} (or --all to cost every point)")
    return reports


def task_shares(cfg: Mapping[str, Any], finished: Sequence[str]) -> dict[str, float]:
    """Each task's share of the job's traffic, as the run recorded it (config.json's `traffic_share`); a run recorded
    before traffic mixes: equal shares over its planned tasks."""
    planned = cfg.get("tasks") or {}
    names = list(planned) or list(finished)
    out = {t: (planned.get(t) or {}).get("traffic_share") for t in names}
    if any(not isinstance(v, (int, float)) for v in out.values()):
        out = traffic_shares(names, None)
    return {t: float(out.get(t, 1.0 / max(1, len(names)))) for t in finished}


def at_share(inputs: CostInputs, share: float) -> CostInputs:
    """The cost inputs of one task of a set: its share of the job's traffic (tokens/day, or requests/day when given)."""
    if share == 1.0:
        return inputs
    rpd = inputs.requests_per_day
    return dataclasses.replace(inputs, volume_tokens_per_day=inputs.volume_tokens_per_day * share,
                               requests_per_day=None if rpd is None else rpd * share)


def throughput_from_run(run_dir: Path) -> dict[str, float]:
    """Measured per-request throughput (req/s) of every option in another run (e.g. the same job on the target GPU),
    by option label, to cost this run's quality at that hardware's speed."""
    other = RunStore.open(Path(run_dir))
    return {unit_label(u): (lambda n, s: n / max(s, 1e-9))(*_throughput_basis(u)) for u in other.units()}
