"""report.html: one self-contained page from the report.json dict and the figures (PNG bytes).

Self-contained means viewable with no network: the plots are embedded as ``data:image/png;base64`` URIs, the CSS is
inline, there is no script, no web font and no external link. A Content-Security-Policy meta tag
(``default-src 'none'; img-src data:; style-src 'unsafe-inline'``) makes the browser refuse any request that might
slip in later, and report it on the console (which the Chromium test watches).

Fits the screen, wide or narrow (issue 15: at 1280 px the old 980 px cap hid the cost table's last columns behind a
scroll; at 390 px a 10-column table can only scroll). The choice, per width:

- wide (> 640 px): the container grows to 1320 px; header cells wrap at spaces and long text cells (device,
  interval, "cheaper below/above") wrap, while numbers stay on one line — so every table fits 1280 px with all
  its columns on screen and no header text abbreviated (abbreviations would need a legend and change the text);
- narrow (≤ 640 px): tables *stack* — each row becomes a card, each cell a line led by its column's name — the only
  layout in which all ten columns of the arm-points table are readable at 390 px without a sideways scroll.
  The names come from a small per-table style sheet (``td:nth-child(i)::before { content: "header" }``), not from
  attributes, so the cells' markup and text stay exactly as before;
- always: every table still sits in a horizontally scrolling wrapper, a last resort for widths in between, so a
  table can never widen the page; figures sit in a grid (two columns at 1280 px, one on a phone) and scale to it.
"""

from __future__ import annotations

import base64
import hashlib
import html
import math
import struct
from typing import Any, Iterable, Mapping

from evaluator.analysis.labels import point_label
from evaluator.fmt import level_pct, num, num_text, qty_short, usd_short
from evaluator.report.html_style import CSP, CSS, FIGURE_TITLES, OUTCOME_CLASS
from evaluator.report.markdown import SERVED, errors_text, reference_curves_text, scoring_statement, task_set_cells

__all__ = ["render_html", "CSP", "FIGURE_TITLES"]

# ----------------------------------------------------------------------------------------------------------------
# Small helpers
# ----------------------------------------------------------------------------------------------------------------


def e(x: Any) -> str:
    return html.escape("" if x is None else str(x), quote=True)


def _png_size(data: bytes) -> tuple[int, int] | None:
    if len(data) >= 24 and data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR":
        w, h = struct.unpack(">II", data[16:24])
        return int(w), int(h)
    return None


def _mime(data: bytes) -> str:
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "image/png"
    if data[:3] == b"\xff\xd8\xff":
        return "image/jpeg"
    if data[:5] in (b"<?xml", b"<svg ") or data[:4] == b"<svg":
        return "image/svg+xml"
    return "application/octet-stream"


def _img(key: str, data: bytes, title: str, caption: str) -> str:
    size = _png_size(data)
    wh = f' width="{size[0]}" height="{size[1]}"' if size else ""
    uri = f"data:{_mime(data)};base64," + base64.b64encode(data).decode("ascii")
    return (
        f'<figure id="fig-{e(key.replace("/", "-"))}"><img class="plot" src="{uri}" alt="{e(title)}"{wh} '
        f'decoding="sync"><figcaption><strong>{e(title)}.</strong> {e(caption)}</figcaption></figure>'
    )


def _css_string(text: str) -> str:
    """``text`` as a CSS string literal that is safe inside a <style> element."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("<", "\\3c ").replace("\n", " ") + '"'


def _table(headers: Iterable[tuple[str, str]], rows: Iterable[Iterable[tuple[str, str]]]) -> str:
    """headers: (text, css class); rows: cells of (escaped html, css class). On a narrow screen the rows stack, each
    cell led by its header (see the module docstring), from a style sheet scoped to this table's headers."""
    headers = list(headers)
    key = "t" + hashlib.sha1("\x1f".join(t for t, _ in headers).encode("utf-8")).hexdigest()[:8]
    labels = "".join(f"table.{key} td:nth-child({i})::before{{content:{_css_string(t)}}}"
                     for i, (t, _) in enumerate(headers, 1))
    h = "".join(f'<th class="{c}">{e(t)}</th>' if c else f"<th>{e(t)}</th>" for t, c in headers)
    body = "".join(
        "<tr>" + "".join(f'<td class="{c}">{v}</td>' if c else f"<td>{v}</td>" for v, c in r) + "</tr>" for r in rows
    )
    return (f'<div class="scroll"><style>@media (max-width: 640px) {{ {labels} }}</style>'
            f'<table class="stack {key}"><thead><tr>{h}</tr></thead><tbody>{body}</tbody></table></div>')


def _ul(items: Iterable[str]) -> str:
    items = [i for i in items if i]
    return "<ul>" + "".join(f"<li>{e(i)}</li>" for i in items) + "</ul>" if items else ""


# ----------------------------------------------------------------------------------------------------------------
# Sections
# ----------------------------------------------------------------------------------------------------------------


def _verdict(v: Mapping[str, Any]) -> str:
    outcome = str(v.get("outcome", "inconclusive"))
    title = v.get("title") or outcome.replace("_", " ").capitalize()
    parts = [f'<div class="verdict {OUTCOME_CLASS.get(outcome, "neutral")}" data-outcome="{e(outcome)}">',
             f'<p class="title">Verdict: {e(title)}</p>', f"<p>{e(v.get('reason', ''))}.</p>"]
    numbers = v.get("numbers")
    if isinstance(numbers, str):
        numbers = [numbers]
    if numbers:
        parts.append(_ul(numbers))
    need = v.get("items_needed")
    if isinstance(need, Mapping) and need.get("n"):
        total = f" ({need['total_items']:,} with the selection share)" if need.get("total_items") else ""
        count = f"{need['n']:,}"
        parts.append(
            f"<p><strong>What would settle it:</strong> about {e(count)} paired test items{e(total)} "
            f"for the criterion it leans to ({e(need.get('criterion'))}, margin "
            f"{num_text(need.get('margin'), '+.2f')}) with {num_text(need.get('power'), '.0%')} power. "
            f"<span class=\"small\">{e(need.get('method'))}</span></p>"
        )
    cc = v.get("cost_case")
    if isinstance(cc, Mapping) and cc.get("statement"):
        parts.append(f"<p><strong>Cost case:</strong> {e(cc['statement'])}.</p>")
    parts.append("</div>")
    return "".join(parts)


def _selection(t: Mapping[str, Any], v: Mapping[str, Any]) -> str:
    sel = t.get("selection") or {}
    if not sel:
        return ""
    out = [f"<p><strong>Selection:</strong> {e(sel.get('reason'))}. Decided by: {e(v.get('decided_by', '—'))}.</p>"]
    arms = sel.get("arms") or {}
    if arms:
        headers = [("arm", ""), ("operating point (honest)", ""), ("quality on test items", "num"),
                   ("best on all items (optimistic)", ""), ("quality on all items", "num")]
        rows = [[(e(arm), ""), (e(a.get("chosen")), ""),
                 (f"{num_text(a.get('test_value'))} ({e(a.get('test_items'))})", "num"),
                 (e(a.get("optimistic_point")), ""), (num_text(a.get("optimistic_value")), "num")]
                for arm, a in arms.items()]
        out.append(_table(headers, rows))
    b = t.get("baselines")
    if isinstance(b, Mapping):
        at = ", ".join(b.get("at_chance") or []) or "none"
        out.append(f"<p><strong>Baselines:</strong> {e(b.get('how'))}; an option must clear {num_text(b.get('bar'))}. "
                   f"At chance: {e(at)}.</p>")
    for u in t.get("units") or []:
        sp = u.get("answer_spread") or {}
        if sp.get("constant"):
            out.append(f"<p><strong>Constant answer:</strong> {e(u.get('label'))} {e(sp.get('statement'))}.</p>")
    return "".join(out)


def _units_table(units: list[Mapping[str, Any]]) -> str:
    level = next((u.get("ci_level") for u in units if u.get("ci_level")), 0.95)
    headers = [("arm", ""), ("model", ""), ("point", ""), ("quality", "num"), (f"{level_pct(level)} CI", ""),
               ("items", "num"), ("prompt tok/req", "num"), ("shared prefix tok", "num"), ("eval s", "num"),
               ("train s", "num")]
    rows = []
    for u in units:
        tok = u.get("tokens") or {}
        tim = u.get("timings") or {}
        train = (u.get("training") or {}).get("train_seconds")
        rows.append([
            (e(u.get("arm")), ""), (e(u.get("model")), "wrap" if str(u.get("model", "")).startswith("api:") else ""),
            (e(point_label(u) + (" ★" if u.get("operating_point") else "")
               + (" · at chance" if u.get("at_chance") else "")), ""),
            (num_text(u.get("value")), "num"),
            (f"[{num_text(u.get('ci_low'))}, {num_text(u.get('ci_high'))}]", ""),
            (e(u.get("n_items", u.get("n"))), "num"), (num_text(tok.get("prompt_tokens_per_request"), ".0f"), "num"),
            (e(tok.get("shared_prefix_tokens", "—")), "num"),
            (num_text(tim.get("eval_seconds"), ".1f"), "num"), ("" if train is None else num_text(train, ".1f"), "num"),
        ])
    return _table(headers, rows)


def _paired_table(paired: list[Mapping[str, Any]]) -> str:
    level = next((1 - d["alpha"] for d in paired if d.get("alpha")), 0.95)
    headers = [("comparison (b − a)", ""), ("difference", "num"), (f"{level_pct(level)} CI", ""),
               ("McNemar p", "num"), ("b only / a only", "num"), ("n", "num"), ("interval", "")]
    how = {"split": "Newcombe, test items (decides)", "bootstrap": "procedure bootstrap ∪ Newcombe (decides)",
           "none": "Newcombe, all items (decides)"}
    rows = []
    for d in paired:
        p = d.get("mcnemar_p")
        rows.append([
            (f"{e(d.get('b'))} − {e(d.get('a'))}", ""), (num_text(d.get("diff"), "+.3f"), "num"),
            (f"[{num_text(d.get('ci_low'), '+.3f')}, {num_text(d.get('ci_high'), '+.3f')}]", ""),
            ("—" if p is None else e(f"{p:.3g}"), "num"), (f"{e(d.get('b_only'))} / {e(d.get('a_only'))}", "num"),
            (e(d.get("n")), "num"),
            (e(how.get(d.get("interval_of"), "optimistic: chosen and tested on all items (does not decide)")), "wrap"),
        ])
    return _table(headers, rows)


def _crosses(b: Mapping[str, Any]) -> bool:
    """A break-even at a positive, finite volume (else the row says in words who is always cheaper)."""
    r = num(b.get("requests_per_day"))
    return r is not None and 0 < r < math.inf


def _costs(c: Mapping[str, Any]) -> str:
    inp = c.get("inputs") or {}
    vol = num(inp.get("volume_tokens_per_day"))
    head = (f"Costs at {qty_short(vol)} tokens/day ({qty_short(c.get('requests_per_day'))} requests/day), best point "
            "of each arm" if vol is not None else "Costs, best point of each arm")
    out = [f"<h3>{e(head)}</h3>"]
    z = c.get("zero_shot_request") or {}
    if z.get("statement"):
        out.append(f"<p>Requests/day from the {e(z['statement'])}.</p>")
    headers = [("option", ""), ("served by", ""), ("$/month as served", "num"), ("$/1k req", "num"),
               ("req/s (per-request work)", "num"), ("self-host $/month", "num"), ("no prefix cache $/month*", "num"),
               ("API $/month (same prompts)", "num"), ("measured with", "")]
    rows = []
    for a in c.get("arms") or []:
        rented = a.get("served_by") == "API"
        dev = e(a.get("device")) + (" <strong>— CPU: not a GPU serving figure</strong>" if a.get("on_cpu") else "")
        lat = a.get("api_usage") or {}
        if rented and lat.get("latency_p50_s") is not None and lat.get("latency_p95_s") is not None:
            dev += e(f"; latency p50 {lat['latency_p50_s']:.3g} s / p95 {lat['latency_p95_s']:.3g} s")
        unpriced = "not priced" if rented else "—"
        served = unpriced if a.get("monthly_usd") is None else usd_short(a.get("monthly_usd"))
        per_1k = unpriced if a.get("usd_per_1k_requests") is None else usd_short(a.get("usd_per_1k_requests"))
        rows.append([
            (e(a.get("name")), ""),
            (e(SERVED.get(a.get("served_by", "self-host"), a.get("served_by"))), ""),
            (f"<strong>{e(served)}</strong>", "num"), (e(per_1k), "num"),
            (num_text(a.get("requests_per_second"), ".3g"), "num"),
            *((usd_short(a.get(k)), "num") for k in ("monthly_selfhost_cached", "monthly_selfhost_uncached",
                                                      "monthly_api")),
            (dev, "wrap"),
        ])
    out.append(_table(headers, rows))
    out.append('<p class="small"><em>$/month as served</em>: a self-hosted option\'s is an estimate — its throughput '
               "measured here × the GPU price (prefix cached); an API option's is the token usage measured in this "
               "run × that API's prices. — = does not apply (an API option has no self-host cost and no “same "
               "prompts” line). * every request encodes the shared prefix again (from its measured encoding time; a "
               "FLOP-proportional estimate where none was recorded). API (same prompts) = the job's API model sent the "
               "same prompts (a LoRA adapter cannot run there).</p>")
    for a in c.get("arms") or []:
        if a.get("note"):
            out.append(f'<p class="banner"><strong>Not priced:</strong> {e(a["note"])}</p>')
    qvc = c.get("quality_vs_cost") or []
    if qvc:
        out.append("<h3>Quality vs monthly cost</h3>")
        out.append('<p class="small">Each option as it is served; ◆ = on the Pareto frontier (nothing cheaper is '
                   "better).</p>")
        headers = [("option", ""), ("served by", ""), ("quality", "num"), ("CI", ""), ("$/month as served", "num"),
                   ("frontier", "")]
        out.append(_table(headers, [[
            (e(q.get("label")), ""), (e(SERVED.get(q.get("served_by", "self-host"), q.get("served_by"))), ""),
            (num_text(q.get("quality")), "num"), (f"[{num_text(q.get('ci_low'))}, {num_text(q.get('ci_high'))}]", ""),
            (e("not priced") if q.get("monthly_usd") is None else usd_short(q.get("monthly_usd")), "num"),
            ("◆" if q.get("pareto") else "", ""),
        ] for q in qvc]))
    bes = c.get("break_evens") or []
    if bes:
        out.append("<h3>Break-even volumes</h3>")
        headers = [("between", ""), ("tokens/day", "num"), ("requests/day", "num"), ("who is cheaper", "")]
        rows = [[
            (f"{e(b.get('a'))} <br>vs {e(b.get('b'))}", ""),
            (qty_short(b.get("tokens_per_day")) if _crosses(b) else "never cross", "num"),
            (qty_short(b.get("requests_per_day")) if _crosses(b) else "never cross", "num"),
            (e(b.get("summary") or f"{b.get('cheaper_below') or '—'} below, {b.get('cheaper_above') or '—'} above"),
             "wrap"),
        ] for b in bes]
        out.append(_table(headers, rows))
        out.append("<details><summary>How each break-even was computed</summary>" + _ul(b.get("how", "") for b in bes)
                   + "</details>")
    thr = c.get("threshold")
    if isinstance(thr, Mapping) and thr.get("sentence"):
        out.append(f"<p><strong>Article threshold:</strong> {e(thr['sentence'])}</p>")
    if c.get("assumptions"):
        out.append("<details open><summary>Cost assumptions (all overridable)</summary>" + _ul(c["assumptions"])
                   + "</details>")
    hows = [(a.get("name"), a.get("how") or []) for a in c.get("arms") or [] if a.get("how")]
    if hows:
        out.append("<details><summary>How each monthly figure was computed</summary>"
                   + "".join(f"<p><strong>{e(n)}</strong></p>{_ul(h)}" for n, h in hows) + "</details>")
    return "".join(out)


def _api_options(opts: Iterable[Mapping[str, Any]]) -> str:
    """The API options table: how each hosted-API option was called and what it used (as report.md has it)."""
    headers = [("option", ""), ("endpoint", ""), ("scoring method", ""), ("requests", "num"),
               ("tokens/item input / cached / output", "num"), ("latency p50 / p95", "num"), ("retries", "num"),
               ("errors", ""), ("answered from cache", "num")]
    rows, missing = [], []
    for o in opts:
        us, lat = o.get("usage") or {}, o.get("latency_s") or {}
        toks = " / ".join(num_text(us.get(k), ",.1f") for k in ("input_tokens_per_item", "cached_input_tokens_per_item",
                                                                 "output_tokens_per_item"))
        lats = " / ".join("—" if num(lat.get(k)) is None else f"{num(lat.get(k)):.3g} s" for k in ("p50", "p95"))
        rows.append([
            (e(o.get("option")), ""), (e(f"{o.get('model')} at {o.get('base_url')} ({o.get('endpoint')})"), "wrap"),
            (e(o.get("scoring_method") or "—"), ""), (e(o.get("requests", "—")), "num"), (e(toks), "num"),
            (e(lats), "num"), (e(o.get("retries", "—")), "num"), (e(errors_text(o.get("errors"))), "wrap"),
            (e(o.get("from_cache", "—")), "num"),
        ])
        if us.get("missing"):
            missing.append(f"{o.get('option')}: {us['missing']} response(s) without usage")
    out = "<h3>API options</h3>" + _table(headers, rows)
    if missing:
        out += (f'<p class="small">Usage missing — {e("; ".join(missing))} (per-item usage is over the responses that '
                "had it).</p>")
    return out


def _figures(task: str, figures: Mapping[str, bytes]) -> str:
    keys = [k for k in figures if k.startswith(f"{task}/")]
    order = list(FIGURE_TITLES)
    keys.sort(key=lambda k: (order.index(k.split("/", 1)[1]) if k.split("/", 1)[1] in order else 99, k))
    out = []
    for k in keys:
        name = k.split("/", 1)[1]
        title, cap = FIGURE_TITLES.get(name, (name.replace("_", " ").capitalize(), ""))
        out.append(_img(k, figures[k], title, cap))
    return f'<div class="figs">{"".join(out)}</div>' if out else ""


def _task(task: str, t: Mapping[str, Any], figures: Mapping[str, bytes]) -> str:
    out = [f'<section id="task-{e(task)}"><h2>Task <code>{e(task)}</code></h2>']
    if isinstance(t.get("verdict"), Mapping):
        out.append(_verdict(t["verdict"]))
        out.append(_selection(t, t["verdict"]))
    obs = t.get("obsolescence")
    if isinstance(obs, Mapping) and obs.get("statement"):
        out.append(f"<p><strong>Obsolescence:</strong> {e(obs['statement'])}</p>")
    dm = t.get("demonstrations")
    if isinstance(dm, Mapping):
        out.append(f"<p><strong>Demonstrations:</strong> <code>{e(dm.get('order'))}</code> — {e(dm.get('note'))}.</p>")
    scoring_line = scoring_statement(list(t.get("units") or []))
    if scoring_line:
        out.append(f'<p class="scoring"><strong>Scoring:</strong> {e(scoring_line.replace("`", ""))}</p>')
    cx = t.get("crossover")
    if isinstance(cx, Mapping):
        out.append(f"<p><strong>Crossover:</strong> {e(cx.get('statement') or cx.get('reason') or '')}</p>")
    out.append(_figures(task, figures))
    units = list(t.get("units") or [])
    if units:
        out.append("<h3>Arm points</h3>")
        out.append('<p class="small">A = prompting the base with k shared demonstrations; B = LoRA on the first n '
                   "training items; C = prompting the newer base. Quality on all test items with its Wilson interval "
                   "at the job's level; ★ = operating point; at chance = the interval does not clear the baseline.</p>")
        out.append(_units_table(units))
        for u in units:
            pt = u.get("point") or {}
            if pt.get("shots_requested") == "max":
                out.append(f'<p class="small"><code>max</code> for {e(u.get("model"))}: k={e(pt.get("shots"))} — '
                           f"{e(pt.get('shots_how'))}.</p>")
    paired = list(t.get("paired") or []) + list(t.get("paired_optimistic") or [])
    if paired:
        out.append("<h3>Paired comparisons (same items)</h3>")
        out.append('<p class="small">Difference of mean quality, b minus a, on the same test items; interval by '
                   "Newcombe's method 10 for accuracy (bootstrap over items otherwise); McNemar's exact test on the "
                   "discordant items (b only / a only). The optimistic rows choose and test on the same items and "
                   "never decide.</p>")
        out.append(_paired_table(paired))
    if isinstance(t.get("costs"), Mapping):
        out.append(_costs(t["costs"]))
    if t.get("api_options"):
        out.append(_api_options(t["api_options"]))
    fw = (t.get("verdict") or {}).get("framework") if isinstance(t.get("verdict"), Mapping) else None
    if fw:
        out.append(f'<p class="small"><em>{e(fw)}</em></p>')
    out.append("</section>")
    return "".join(out)


def _task_set(ts: Mapping[str, Any]) -> str:
    """The task-set opening (same cells as report.md's)."""
    c = task_set_cells(dict(ts))

    def table(header: list[str], rows: list[list[str]]) -> str:
        return _table([(h, "") for h in header], [[(e(v), "") for v in r] for r in rows])

    intro = e(c["strategy_intro"]).replace("*loses on*", "<em>loses on</em>")
    notes = "".join(f"<p>{e(n)}</p>" for n in c["notes"])
    return (f'<section id="task-set"><h2>Task set</h2><p class="banner"><strong>Overall answer:</strong> '
            f'{e(c["answer"])}</p>{table(c["task_header"], c["task_rows"])}<p>{intro}</p>'
            f'{table(c["strategy_header"], c["strategy_rows"])}{notes}'
            f'<p><em>Multiple comparisons:</em> {e(c["multiple_comparisons"])}</p></section>')


def _environment(env: Mapping[str, Any]) -> str:
    if not env:
        return ""
    pk = env.get("packages") or {}
    dev = env.get("device") or {}
    rows = [[(e(k), ""), (e(v if v is not None else "not installed"), "")] for k, v in pk.items()]
    dev_s = ", ".join(f"{k}={v}" for k, v in dev.items())
    return ("<details><summary>Environment</summary>"
            f"<p>Python {e(env.get('python'))} · {e(env.get('platform'))}<br>Device: {e(dev_s)}</p>"
            + (_table([("package", ""), ("version", "")], rows) if rows else "") + "</details>")


def render_html(report: Mapping[str, Any], figures: Mapping[str, bytes]) -> str:
    """The whole page as a string (UTF-8). ``report``: the report.json dict; ``figures``: ``"<task>/<name>"`` →
    image bytes (PNG), e.g. from ``evaluator.report.figures_for``. Figures whose task is not in the report are
    shown at the end."""
    job = report.get("job") or {}
    env = report.get("environment") or {}
    dev = env.get("device") or {}
    pk = env.get("packages") or {}
    name = job.get("name") or report.get("run_id") or "run"
    newer = ", ".join(f"<code>{e(n)}</code>" for n in job.get("newer") or []) or "—"
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
        '<meta name="referrer" content="no-referrer">',
        f"<title>tunecheck report — {e(name)}</title>",
        f"<style>{CSS}</style></head><body><main>",
        f"<h1>tunecheck report — {e(name)}</h1>",
        f'<p class="meta">Run <code>{e(report.get("run_id"))}</code> · base <code>{e(job.get("base"))}</code> · '
        f"newer {newer} · seed {e(job.get('seed'))} · tunecheck {e(report.get('tunecheck_version'))} · "
        f"generated {e(report.get('generated_at'))}<br>"
        f"Device: {e(dev.get('gpu') or 'CPU')} ({e(dev.get('cpu_count'))} CPU cores) · torch {e(pk.get('torch'))} · "
        f"transformers {e(pk.get('transformers'))} · peft {e(pk.get('peft'))}</p>",
    ]
    tasks = report.get("tasks") or {}
    if job.get("description"):
        parts.append(f'<p class="banner">{e(job["description"])}</p>')
    if report.get("complete") is False:
        done = sum(len(t.get("units") or []) for t in tasks.values())
        parts.append(f'<p class="banner"><strong>Incomplete run:</strong> {done} of {e(report.get("units_planned"))} '
                     "units finished. Run the same command again to resume.</p>")
    if report.get("costs_error"):
        parts.append(f'<p class="banner">Costs not computed: {e(report["costs_error"])}</p>')
    if report.get("task_set"):
        parts.append(_task_set(report["task_set"]))
    if report.get("reference_curves"):
        title, text = reference_curves_text(list(report["reference_curves"]))
        parts.append(f"<p><strong>{e(title)}</strong> {e(text)}</p>")
    if len(tasks) > 1:
        parts.append("<p>Tasks: " + " · ".join(f'<a href="#task-{e(t)}">{e(t)}</a>' for t in tasks) + "</p>")
    for task, t in tasks.items():
        parts.append(_task(task, t, figures))
    orphans = {k: v for k, v in figures.items() if k.split("/", 1)[0] not in tasks}
    if orphans:
        parts.append("<h2>Figures</h2>")
        for k, v in orphans.items():
            title, cap = FIGURE_TITLES.get(k.rsplit("/", 1)[-1], (k, ""))
            parts.append(_img(k, v, title, cap))
    parts.append(_environment(env))
    parts.append(f"<footer>tunecheck {e(report.get('tunecheck_version'))} · report schema "
                 f"{e(report.get('schema_version'))} · self-contained page: no network needed to view.</footer>")
    parts.append("</main></body></html>")
    return "\n".join(parts) + "\n"
