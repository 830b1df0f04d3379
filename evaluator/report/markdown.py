"""The Markdown report: per task the verdict, the quality table with intervals, the operating points, costs and
break-even volumes, how scoring was done — rendered from the report dict only."""

from __future__ import annotations

from evaluator.analysis.labels import point_label
from evaluator.fmt import ci_pct, usd_whole


def render_markdown(rep: dict) -> str:
    job = rep["job"]
    dev = rep.get("environment", {}).get("device", {})
    pk = rep.get("environment", {}).get("packages", {})
    lines = [
        f"# tunecheck report — {job.get('name', rep['run_id'])}",
        "",
        f"Run `{rep['run_id']}` · base `{job.get('base')}` · newer {', '.join(f'`{n}`' for n in job.get('newer', [])) or '—'} "
        f"· seed {job.get('seed')} · tunecheck {rep['tunecheck_version']}  ",
        f"Device: {dev.get('gpu', 'CPU')} ({dev.get('cpu_count')} CPU cores) · torch {pk.get('torch')} · "
        f"transformers {pk.get('transformers')} · peft {pk.get('peft')}",
    ]
    if job.get("description"):
        lines += ["", f"> {job['description']}"]
    if not rep["complete"]:
        done = sum(len(t["units"]) for t in rep["tasks"].values())
        lines += ["", f"**Incomplete run**: {done} of {rep['units_planned']} units finished."]
    if rep.get("costs_error"):
        lines += ["", f"Costs not computed: {rep['costs_error']}"]
    if rep.get("task_set"):
        lines += ["", "## Task set", ""] + task_set_markdown(rep["task_set"])
    if rep.get("reference_curves"):
        title, text = reference_curves_text(rep["reference_curves"])
        lines += ["", f"**{title}** {text}"]
    for task, t in rep["tasks"].items():
        lines += ["", f"## Task `{task}`", ""] + task_markdown(t)
    return "\n".join(lines) + "\n"


def reference_curves_text(refs: list[dict]) -> tuple[str, str]:
    """(title, text) of one paragraph: the published curves the learning-curve figures overlay, with their numbers
    and source."""
    parts = []
    for r in refs:
        icl = ", ".join(f"{q:.3f} at k={k:,}" for k, q in r["icl"])
        ft = ", ".join(f"{q:.3f} at n={n:,}" for n, q in r["ft"])
        parts.append(f"{r['dataset']}: ICL {icl}, best {r['best_icl']:.3f}; fine-tuning {ft}")
    return "Reference curves", (f"(a labelled layer on the learning-curve figures, not measured here — "
                                f"{refs[0]['citation']}): " + "; ".join(parts)
                                + f". The best ICL has no stated k: {refs[0]['note']}.")


def _money(x) -> str:
    return "not priced" if x is None else usd_whole(x)


def task_set_cells(ts: dict) -> dict:
    """The task-set opening as text cells, for report.md and report.html alike: the answer, one row per task
    (verdict, its option, quality on the test items, $/month at the task's traffic share), one row per strategy over
    the whole mix (total $/month, traffic-weighted quality, tasks lost) and the notes."""
    ci = ci_pct(ts["alpha"])
    mc = ts["multiple_comparisons"]
    task_rows = []
    for r in ts["tasks"]:
        lean = r.get("lean") if r.get("outcome") == "inconclusive" else None
        verdict = r["verdict"] + (f" (leans {lean.replace('_', ' ')})" if lean else "")
        opt = "—" if r.get("option") is None else r["option"] + (
            " (lean, unconfirmed)" if r.get("recommended_by") != "verdict" else "")
        has_q = r.get("quality") is not None
        task_rows.append([r["task"], f"{r['traffic_share']:.0%}", verdict, r.get("simultaneous_verdict") or "—", opt,
                          f"{r['quality']:.3f}" if has_q else "—",
                          f"[{r['ci_low']:.3f}, {r['ci_high']:.3f}]" if has_q else "—",
                          "—" if r.get("option") is None else _money(r.get("monthly_usd"))])
    strategy_rows = []
    for st in ts["strategies"]:
        cost = _money(st["monthly_usd"]) if not st["not_run_on"] else f"not run on {', '.join(st['not_run_on'])}"
        q = st["traffic_weighted_quality"]
        lost, raw = st["loses_on"], st["loses_on_unadjusted"]
        strategy_rows.append([st["words"], cost, "—" if q is None else f"{q:.3f}",
                              f"{len(lost)} of {st['tasks_run']}" + (f": {', '.join(lost)}" if lost else ""),
                              f"{len(raw)}" + (f": {', '.join(raw)}" if raw else "")])
    notes = []
    if ts.get("planned_tasks", len(ts["tasks"])) > len(ts["tasks"]):
        notes.append(f"Only {len(ts['tasks'])} of {ts['planned_tasks']} planned tasks have finished units.")
    if ts.get("per_task_mix_monthly_usd") is not None:
        notes.append(f"Following each task's verdict (the options above): {usd_whole(ts['per_task_mix_monthly_usd'])}"
                     "/month for the whole mix.")
    return {
        "answer": f"{ts['answer']}.",
        "task_header": ["task", "traffic share", "verdict", f"verdict at α/{mc['tasks']}", "option",
                        "quality (test items)", f"{ci} CI", "$/month at its share"],
        "task_rows": task_rows,
        "strategy_intro": ("Strategies over the whole traffic mix (each task at its share; an adapter's training is "
                           "amortised per adapter; *loses on* = another strategy's option is better on that task's "
                           f"test items, Holm-adjusted at α = {ts['alpha']:g} over the strategy's comparisons):"),
        "strategy_header": ["strategy", "$/month, whole mix", "traffic-weighted quality", "loses on",
                            "loses on (unadjusted)"],
        "strategy_rows": strategy_rows,
        "notes": notes,
        "multiple_comparisons": mc["statement"],
    }


def _md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(r) + " |" for r in rows]


def task_set_markdown(ts: dict) -> list[str]:
    c = task_set_cells(ts)
    return ([f"**Overall answer:** {c['answer']}", ""] + _md_table(c["task_header"], c["task_rows"])
            + ["", c["strategy_intro"], ""] + _md_table(c["strategy_header"], c["strategy_rows"])
            + [x for n in c["notes"] + [f"_Multiple comparisons:_ {c['multiple_comparisons']}"] for x in ("", n)])


SCORING_WORDS = {
    "sum": "sum of log-likelihoods of each choice's continuation (lm-eval's `acc`)",
    "length_normalised": "log-likelihood per character of each choice's scored word (lm-eval's `acc_norm`)",
}


def scoring_statement(units: list) -> str | None:
    """One sentence on how a task's choices were scored, read from its units' `scoring` records (None when no unit
    has one, e.g. generation tasks): the rule(s), the verbaliser, each label's tokens, and the first warning."""
    recs = [u["scoring"] for u in units if isinstance(u, dict) and isinstance(u.get("scoring"), dict)]
    if not recs:
        return None
    rules = list(dict.fromkeys(str(r.get("rule")) for r in recs))
    text = "; ".join(SCORING_WORDS.get(r, r) for r in rules)
    words = next((r["labels"] for r in recs if isinstance(r.get("labels"), dict)), None)
    if words:
        text += "; labels scored as " + ", ".join(f"{k} → “{v}”" for k, v in words.items())
    toks = next((r["choice_tokens"] for r in recs if isinstance(r.get("choice_tokens"), dict)), None)
    if toks:
        shown = list(toks.items())[:8]
        text += "; tokens per choice: " + ", ".join(f"{k} {n}" for k, n in shown) + (", …" if len(toks) > 8 else "")
    text += "."
    warning = next((r["warning"] for r in recs if r.get("warning")), None)
    if warning:
        text += f" ⚠ {warning}."
    return text


def task_markdown(t: dict) -> list[str]:
    """One task's section: verdict, selection (honest beside optimistic), baselines, points, paired tests, costs."""
    v = t["verdict"]
    ci = ci_pct(v.get("alpha", 0.05))
    lines = [f"**Verdict: {v['title']}** — {v['reason']}."]
    need = v.get("items_needed") or {}
    if need.get("n"):
        lines += ["", f"**What would settle it:** about {need['n']:,} paired test items"
                  + (f" ({need['total_items']:,} with the selection share)" if need.get("total_items") else "")
                  + f" (have {(t.get('selection') or {}).get('test_items', '?')}) — {need.get('method', '')}."]
    sel = t.get("selection") or {}
    if sel:
        lines += ["", f"**Selection:** {sel.get('reason', '')}. Decided by: {v.get('decided_by', '—')}."]
        arms = sel.get("arms") or {}
        if arms:
            lines += ["", "| arm | operating point (honest) | quality on test items | best on all items (optimistic) "
                      "| quality on all items |", "|---|---|---|---|---|"]
            for arm, a in arms.items():
                tv = "—" if a.get("test_value") is None else f"{a['test_value']:.3f} ({a['test_items']})"
                lines.append(f"| {arm} | {a['chosen']} | {tv} | {a['optimistic_point']} | {a['optimistic_value']:.3f} |")
    b = t.get("baselines")
    if b:
        at = ", ".join(b.get("at_chance") or []) or "none"
        lines += ["", f"**Baselines:** {b['how']}; an option must clear {b['bar']:.3f}. At chance (the {ci} "
                  f"interval does not clear it): {at}."]
    flat = [u for u in t["units"] if (u.get("answer_spread") or {}).get("constant")]
    for u in flat:
        lines += ["", f"**Constant answer:** {u['label']} {u['answer_spread']['statement']}."]
    if t.get("obsolescence"):
        lines += ["", f"**Obsolescence:** {t['obsolescence']['statement']}"]
    if t.get("crossover"):
        lines += ["", f"**Crossover:** {t['crossover'].get('statement', t['crossover'])}"]
    if t.get("demonstrations"):
        d = t["demonstrations"]
        lines += ["", f"**Demonstrations:** `{d['order']}` — {d['note']}."]
    scoring_line = scoring_statement(t.get("units") or [])
    if scoring_line:
        lines += ["", f"**Scoring:** {scoring_line}"]
    lines += [
        "",
        "A = prompting the base with k shared demonstrations; B = LoRA on the first n training items; C = prompting "
        f"the newer base. Quality on all test items with a {ci} CI (Wilson); ★ = operating point (chosen by the "
        "selection rule); *chance* = the interval does not clear the baseline.",
        "",
        f"| arm | model | point | quality | {ci} CI | items | prompt tok/req | shared prefix tok | eval s | train s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for u in t["units"]:
        train = u.get("training", {}).get("train_seconds")
        mark = (" ★" if u.get("operating_point") else "") + (" *chance*" if u.get("at_chance") else "")
        lines.append(
            f"| {u['arm']} | {u['model']} | {point_label(u)}{mark} | {u['value']:.3f} | [{u['ci_low']:.3f}, {u['ci_high']:.3f}] "
            f"| {u['n_items']} | {u['tokens']['prompt_tokens_per_request']:.0f} | {u['tokens']['shared_prefix_tokens']} "
            f"| {u['timings']['eval_seconds']:.1f} | {'' if train is None else f'{train:.1f}'} |"
        )
    for u in t["units"]:
        if u["point"]["shots_requested"] == "max":
            lines.append(f"\n`max` for {u['model']}: k={u['point']['shots']} — {u['point']['shots_how']}.")
    if t["paired"]:
        lines += ["", "### Paired comparisons that decide (same items)", "",
                  f"| comparison | difference | {ci} CI | McNemar p | b only / a only | n | interval |",
                  "|---|---|---|---|---|---|---|"]
        rows = [(d, d.get("interval_of", "")) for d in t["paired"]]
        rows += [(d, "optimistic (chosen and tested on all items; does not decide)") for d in t.get("paired_optimistic", [])]
        for d, how in rows:
            p = "—" if d.get("mcnemar_p") is None else f"{d['mcnemar_p']:.3g}"
            how = {"split": "Newcombe, test items", "bootstrap": "procedure bootstrap ∪ Newcombe",
                   "none": "Newcombe, all items"}.get(how, how)
            lines.append(f"| {d['b']} − {d['a']} | {d['diff']:+.3f} | [{d['ci_low']:+.3f}, {d['ci_high']:+.3f}] | {p} "
                         f"| {d['b_only']} / {d['a_only']} | {d['n']} | {how} |")
    c = t.get("costs")
    if c:
        vol = c["inputs"]["volume_tokens_per_day"]
        z = c.get("zero_shot_request") or {}
        lines += [
            "",
            f"### Costs at {vol / 1e6:g}M tokens/day ({c['requests_per_day']:,.0f} requests/day), operating point of each arm"
            + (f" — this task's {c['traffic_share']:.0%} of the job's traffic" if c.get("traffic_share", 1) < 1 else ""),
            "",
        ]
        if z.get("statement"):
            lines += [f"Requests/day from the {z['statement']}.", ""]
        lines += [
            "| option | served by | $/month as served | $/1k req | req/s (per-request work) | self-host $/month | "
            "no prefix cache $/month | API $/month (same prompts) | measured with |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for a in c["arms"]:
            lines.append("| " + " | ".join(cost_row(a)) + " |")
        lines += ["", "_$/month as served_: a self-hosted option's is an estimate — its throughput measured here × the "
                  "GPU price (prefix cached); an API option's is the token usage measured in this run × that API's "
                  "prices. — = does not apply (an API option has no self-host cost and no \"same prompts\" line)."]
        lines += [f"- **Not priced:** {a['note']}" for a in c["arms"] if a.get("note")]
        qvc = c.get("quality_vs_cost") or []
        if qvc:
            lines += ["", "Quality vs monthly cost (as served; ◆ = on the Pareto frontier: nothing cheaper is better):", "",
                      f"| option | served by | quality | {ci} CI | $/month as served | frontier |", "|---|---|---|---|---|---|"]
            for q in qvc:
                lines.append(f"| {q['label']} | {SERVED.get(q.get('served_by', 'self-host'), q.get('served_by'))} "
                             f"| {q['quality']:.3f} "
                             f"| [{q['ci_low']:.3f}, {q['ci_high']:.3f}] "
                             f"| {usd_whole(q['monthly_usd']) if q.get('monthly_usd') is not None else 'not priced'} "
                             f"| {'◆' if q.get('pareto') else ''} |")
        lines += ["", "Break-even volumes:"]
        for b_ in c["break_evens"]:
            lines.append(f"- {break_even_row(b_)}")
        if c.get("threshold"):
            lines += ["", f"Article threshold: {c['threshold']['sentence']}"]
        lines += ["", "Assumptions:"] + [f"- {a}" for a in c["assumptions"]]
    if t.get("api_options"):
        lines += ["", "### API options", ""] + api_options_markdown(t["api_options"])
    lines += ["", f"_{v.get('framework', '')}_"]
    return lines


SERVED = {"self-host": "self-host (estimate)", "API": "API (measured usage)"}


def cost_row(a: dict) -> list[str]:
    """One option's cells in the cost table: "—" where a figure does not apply (self-host cells of an option an API
    serves), "not priced" for an API option without prices — never $0."""
    rented = a.get("served_by") == "API"
    dev = a.get("device", "") + (" — **CPU: not a GPU serving figure**" if a.get("on_cpu") else "")
    lat = (a.get("api_usage") or {})
    if rented and lat.get("latency_p50_s") is not None and lat.get("latency_p95_s") is not None:
        dev += f"; latency p50 {lat['latency_p50_s']:.3g} s / p95 {lat['latency_p95_s']:.3g} s"
    served = "not priced" if a.get("monthly_usd") is None and rented else usd_whole(a.get("monthly_usd"))
    per_1k = a.get("usd_per_1k_requests")
    per_1k_s = ("not priced" if rented else "—") if per_1k is None else f"${per_1k:.4g}"
    rps = a.get("requests_per_second")
    return [a["name"], SERVED.get(a.get("served_by", "self-host"), str(a.get("served_by"))), f"**{served}**",
            per_1k_s, "—" if rps is None else f"{rps:.3g}", usd_whole(a.get("monthly_selfhost_cached")),
            usd_whole(a.get("monthly_selfhost_uncached")), usd_whole(a.get("monthly_api")), dev]


def errors_text(errors: dict | None) -> str:
    """``{"429": 2, "connection": 1}`` → "429 ×2, connection ×1"; "none" when empty."""
    return ", ".join(f"{k} ×{v}" for k, v in (errors or {}).items() if v) or "none"


def _tok(x) -> str:
    return "—" if not isinstance(x, (int, float)) else f"{x:,.1f}"


def _sec(x) -> str:
    return "—" if not isinstance(x, (int, float)) else f"{x:.3g} s"


def api_options_markdown(opts: list[dict]) -> list[str]:
    """The API options table: how each hosted-API option was called and what it used (from its unit's record)."""
    lines = ["| option | endpoint | scoring method | requests | tokens/item input / cached / output | latency p50 / p95 "
             "| retries | errors | answered from cache |", "|---|---|---|---|---|---|---|---|---|"]
    for o in opts:
        us, lat = o.get("usage") or {}, o.get("latency_s") or {}
        ep = f"{o.get('model')} at {o.get('base_url')} ({o.get('endpoint')})"
        lines.append(
            f"| {o['option']} | {ep} | {o.get('scoring_method') or '—'} | {o.get('requests', '—')} "
            f"| {_tok(us.get('input_tokens_per_item'))} / {_tok(us.get('cached_input_tokens_per_item'))} / "
            f"{_tok(us.get('output_tokens_per_item'))} | {_sec(lat.get('p50'))} / {_sec(lat.get('p95'))} "
            f"| {o.get('retries', '—')} | {errors_text(o.get('errors'))} | {o.get('from_cache', '—')} |")
    missing = [f"{o['option']}: {o['usage']['missing']} response(s) without usage" for o in opts
               if (o.get("usage") or {}).get("missing")]
    if missing:
        lines += ["", "Usage missing — " + "; ".join(missing) + " (per-item usage is over the responses that had it)."]
    return lines


def break_even_row(b: dict) -> str:
    """One break-even row of report.md: its result in words first, in bold (``summary``: "X is always cheaper; Y is
    never cheaper", "X is cheaper below …, Y above it"), then the cost model's derivation (``how``) without repeating
    them — so a row never reads as a volume of 0 or below zero."""
    how, words = str(b.get("how", "")), b.get("summary")
    if not words:
        return how
    return f"**{words}** — " + how.replace(f" — {words}: ", " — ", 1)
