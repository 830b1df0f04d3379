"""Report figures as PNG bytes (matplotlib, Agg backend): pure functions of report data, no file or network access.

- :func:`learning_curves_png` — quality vs examples used: prompting vs k demonstrations (arm A, and each newer base
  in C), LoRA vs n training examples (arm B), 95% CI bands, the best prompting level and the crossover; optionally
  published reference curves (:mod:`evaluator.analysis.references`) as a thin, labelled layer.
- :func:`quality_vs_cost_png` — quality vs monthly cost per option as served (self-hosted or a hosted API at its
  measured usage), with the Pareto frontier.
- :func:`cost_vs_volume_png` — monthly cost vs traffic for every cost line, break-even points marked.
"""

from __future__ import annotations

import functools
import io
import math
from typing import Any, Iterable, Mapping, Sequence

import matplotlib

matplotlib.use("Agg", force=False)  # headless; a no-op when a backend is already in use by the caller
import matplotlib.ticker  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402  (Figure() needs no pyplot state: thread-safe, no leaks)

from evaluator.analysis.references import ReferenceCurve, reference  # noqa: E402
from evaluator.fmt import axis_short, num  # noqa: E402
from evaluator.report.pareto import pareto_frontier  # noqa: E402

__all__ = ["learning_curves_png", "quality_vs_cost_png", "cost_vs_volume_png", "pareto_frontier", "ARM_COLOURS",
           "draw_references"]

ARM_COLOURS = {"A": "#1f77b4", "B": "#d62728", "C": "#2ca02c"}
_EXTRA = ["#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f", "#ff7f0e"]
_DPI = 128
# Legible at 390 px: the page shows a figure at the width of its column (≈ 370 px on a phone, ≈ 600 px in the
# two-column grid at 1280 px), so what counts is font size relative to figure width. 5 in wide at 128 dpi = 640 px;
# 10.5 pt text is then 2.9% of the width: ≈ 10.5 px on a phone, ≈ 17 px on a desktop (was 7–7.5 pt of 7.2 in, shown
# at ≈ 5 px on a phone). Legends sit below the axes, one entry a line, so they never cover the data or run off a
# narrow figure.
_WIDTH = 5.0
_RC = {"font.size": 11, "axes.titlesize": 12, "axes.labelsize": 11, "xtick.labelsize": 10.5, "ytick.labelsize": 10.5,
       "legend.fontsize": 10.5}


def _styled(fn):
    """Build the figure under the report's font sizes (rcParams are read when text is created and saved)."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with matplotlib.rc_context(_RC):
            return fn(*args, **kwargs)
    return wrapper


def _legend_below(fig: Figure) -> None:
    handles, labels = fig.axes[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="outside lower center", ncols=1, frameon=False)


def _ticks(axis, prefix: str = "", linear: bool = False) -> None:
    """Compact tick labels ($80k, 1M) so neighbours never run together; at most ~5 ticks on a linear axis."""
    axis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: axis_short(v, prefix)))
    if linear:
        axis.set_major_locator(matplotlib.ticker.MaxNLocator(nbins=5))


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=_DPI, bbox_inches="tight", metadata={"Software": None})
    return buf.getvalue()


def _get(obj: Any, key: str, default: Any = None) -> Any:
    """Dict key or dataclass attribute (CostLine / BreakEven objects or their JSON dicts)."""
    if isinstance(obj, Mapping):
        return obj.get(key, default)
    return getattr(obj, key, default)


def _empty(fig: Figure, ax, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, fontsize=10, wrap=True)
    ax.set_xticks([])
    ax.set_yticks([])


# ----------------------------------------------------------------------------------------------------------------
# Learning curves
# ----------------------------------------------------------------------------------------------------------------


def _curve_series(units: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Group unit records into curves: A/C per model (x = shots), B per (model, shots) (x = train size)."""
    groups: dict[tuple, dict[str, Any]] = {}
    for u in units:
        arm, pt = u.get("arm"), u.get("point") or {}
        value = num(u.get("value"))
        if value is None or arm not in ("A", "B", "C"):
            continue
        if arm == "B":
            x = pt.get("train_size")
            key = ("B", u.get("model"), pt.get("shots") or 0)
            shots = pt.get("shots") or 0
            label = f"B: LoRA on {u.get('model')}, vs n" + (f" (+{shots} shots)" if shots else "")
        else:
            x = pt.get("shots")
            key = (arm, u.get("model"), None)
            label = f"{arm}: {'prompting' if arm == 'A' else 'newer base'} {u.get('model')}, vs k"
        if x is None:
            continue
        g = groups.setdefault(key, {"arm": arm, "label": label, "points": []})
        g["points"].append({
            "x": float(x), "q": value,
            "lo": num(u.get("ci_low")), "hi": num(u.get("ci_high")),
            "max": pt.get("shots_requested") == "max",
        })
    out = []
    for key, g in groups.items():
        g["points"].sort(key=lambda p: p["x"])
        g["key"] = key
        out.append(g)
    out.sort(key=lambda g: (g["arm"], str(g["key"][1]), g["key"][2] or 0))
    return out


# Reference layer: muted colours, none of them an arm's (A blue, B red, C green) or an extra series' (_EXTRA).
_REF_COLOURS = ["#555555", "#b8860b", "#6b8e23", "#708090", "#bc8f8f"]
_REF_ALPHA = 0.55


def _reference_curves(references: Iterable[ReferenceCurve | str] | None) -> list[ReferenceCurve]:
    """ReferenceCurve objects, or names looked up in :mod:`evaluator.analysis.references` (UserError if unknown)."""
    out: list[ReferenceCurve] = []
    for r in references or ():
        r = r if isinstance(r, ReferenceCurve) else reference(str(r))
        if r not in out:
            out.append(r)
    return out


def draw_references(ax, references: Iterable[ReferenceCurve | str] | None) -> list[float]:
    """Draw published reference curves on ``ax`` as a thin, semi-transparent, labelled layer; returns their x values.

    Per dataset: ICL accuracy vs k demonstrations (dashed, open circles), fine-tuning accuracy vs n training examples
    (dotted, open squares), one legend entry ("Bertsch 2024 Banking77 ICL / FT (Llama-2-7b-80k)"), and the best
    ICL accuracy — which has no stated k — as a marker just right of the axes at its height (an annotation, not a
    point at an invented x). One more legend line says how to read the layer. Nothing is drawn for none.
    """
    refs = _reference_curves(references)
    xs: list[float] = []
    if not refs:
        return xs
    from matplotlib.transforms import blended_transform_factory

    edge = blended_transform_factory(ax.transAxes, ax.transData)  # x in axes fraction, y in data
    for i, r in enumerate(refs):
        colour = _REF_COLOURS[i % len(_REF_COLOURS)]
        kw = dict(color=colour, alpha=_REF_ALPHA, linewidth=1.0, markersize=4.5, markerfacecolor="none", zorder=1)
        ax.plot([k for k, _ in r.icl], [q for _, q in r.icl], marker="o", linestyle="--", label=r.label, **kw)
        ax.plot([n for n, _ in r.ft], [q for _, q in r.ft], marker="s", linestyle=":", **kw)
        # just right of the axes, one column per dataset (best ICL levels often lie within a hair of each other)
        ax.plot([1.02 + 0.03 * i], [r.best_icl], marker="<", markersize=6, color=colour, alpha=0.85,
                linestyle="none", transform=edge, clip_on=False, zorder=3)
        xs += [float(k) for k, _ in r.icl] + [float(n) for n, _ in r.ft]
    ax.plot([], [], linestyle="none", marker="",
            label="reference: ICL dashed (x = k), FT dotted (x = n);\n◂ right of the axes = best ICL (no k stated)")
    return xs


@_styled
def learning_curves_png(units: Sequence[Mapping[str, Any]], *, crossover: Mapping[str, Any] | None = None,
                        title: str | None = None, references: Iterable[ReferenceCurve | str] = ()) -> bytes:
    """Prompting quality vs k (A, and C per newer base) and LoRA quality vs n (B) on one log-scaled axis.

    ``units``: the report's unit records (``arm``, ``model``, ``point``, ``value``, ``ci_low``, ``ci_high``).
    Shaded bands are the per-point 95% CIs; the dotted line is the best prompting point of the base (A), the
    crossover's ``best_prompting`` (the highest A point when the report has no crossover); the star is the report's
    crossover (``crossover``: :func:`evaluator.analysis.crossover.crossover_with_uncertainty`), where LoRA (zero-shot)
    first reaches it, with its bootstrap interval as a horizontal bar; the plot never recomputes it.

    ``references``: published curves to overlay (:class:`evaluator.analysis.references.ReferenceCurve` objects or their
    names, e.g. ``("banking77", "trec")``), drawn by :func:`draw_references` beneath the run's own curves, the x-axis
    widened to hold them; empty (the default): the figure is exactly as without the option.
    """
    refs = _reference_curves(references)  # an unknown name is a UserError even before any unit has finished
    fig = Figure(figsize=(_WIDTH, 5.2), layout="constrained")
    ax = fig.add_subplot()
    series = _curve_series(units)
    if not series:
        _empty(fig, ax, "no finished arm points yet")
        return _png(fig)
    c_idx = 0
    b_idx = 0
    for s in series:
        arm = s["arm"]
        if arm == "A":
            colour, marker, ls = ARM_COLOURS["A"], "o", "-"
        elif arm == "B":
            colour = ARM_COLOURS["B"] if b_idx == 0 else _EXTRA[(b_idx - 1) % len(_EXTRA)]
            marker, ls = "s", "-" if s["key"][2] == 0 else "--"
            b_idx += 1
        else:
            colour = ARM_COLOURS["C"] if c_idx == 0 else _EXTRA[(c_idx + 3) % len(_EXTRA)]
            marker, ls = "^", "-"
            c_idx += 1
        pts = s["points"]
        xs = [p["x"] for p in pts]
        qs = [p["q"] for p in pts]
        ax.plot(xs, qs, marker=marker, linestyle=ls, color=colour, label=s["label"], linewidth=1.8, markersize=5)
        if all(p["lo"] is not None and p["hi"] is not None for p in pts):
            if len(pts) > 1:
                ax.fill_between(xs, [p["lo"] for p in pts], [p["hi"] for p in pts], color=colour, alpha=0.15,
                                linewidth=0)
            else:
                p = pts[0]
                ax.errorbar(xs, qs, yerr=[[max(0.0, p["q"] - p["lo"])], [max(0.0, p["hi"] - p["q"])]], color=colour, capsize=3, fmt="none")
        for p in pts:
            if p["max"]:
                ax.annotate(f"max (k={p['x']:.0f})", (p["x"], p["q"]), textcoords="offset points", xytext=(4, 6),
                            fontsize=10, color=colour)
    prompt = [(p["x"], p["q"]) for s in series if s["arm"] == "A" for p in s["points"]]
    lora = [(p["x"], p["q"]) for s in series if s["arm"] == "B" and s["key"][2] == 0 for p in s["points"]]
    cx = crossover or {}
    if prompt:
        bp = cx.get("best_prompting")  # the crossover's target, from the report; without a crossover, the top A point
        k_best, q_best = (bp["k"], bp["quality"]) if bp else max(prompt, key=lambda t: (t[1], -t[0]))
        ax.axhline(q_best, color=ARM_COLOURS["A"], linestyle=":", linewidth=1,
                   label=f"best prompting (k={k_best:.0f}): {q_best:.3f}")
        if lora and cx.get("n") is not None:
            sure = cx.get("distinguishable", True)
            label = f"crossover: n ≈ {cx['n']:,.0f}" + (" (or below)" if cx.get("at_or_below") else "")
            if not sure:
                label += " — not distinguishable"
            ax.plot([cx["n"]], [q_best], marker="*", markersize=15, color="black" if sure else "grey",
                    linestyle="none", label=label, zorder=5)
            iv = cx.get("interval") or [None, None]
            lo = iv[0] if iv[0] is not None else min(n for n, _ in lora)
            hi = iv[1] if iv[1] is not None else max(n for n, _ in lora) * 1.5
            ax.plot([lo, hi], [q_best, q_best], color="black" if sure else "grey", linewidth=3, alpha=0.35,
                    solid_capstyle="butt", zorder=4)
        elif lora:
            ax.plot([], [], linestyle="none", marker="", label=f"no crossover up to n={max(n for n, _ in lora):.0f}")
    all_x = [p["x"] for s in series for p in s["points"]]
    all_x += draw_references(ax, refs)  # nothing (and no change to the figure) without references
    ax.set_xscale("symlog", linthresh=1.0)  # k = 0 (zero-shot) stays on the axis
    ax.set_xlim(-0.3 if min(all_x) <= 0 else None, max(all_x) * 1.6 if max(all_x) > 0 else 1)
    ax.set_ylim(0, 1.02 if max(p["q"] for s in series for p in s["points"]) <= 1 else None)
    ax.set_xlabel("examples used: k demonstrations in the prompt (A, C)\n/ n training examples (B)")
    _ticks(ax.xaxis)
    ax.set_ylabel("quality (95% CI band)")
    ax.set_title(title or "Learning curves: prompting vs k, LoRA vs n")
    ax.grid(True, which="major", alpha=0.3)
    _legend_below(fig)
    return _png(fig)


# ----------------------------------------------------------------------------------------------------------------
# Quality vs monthly cost
# ----------------------------------------------------------------------------------------------------------------


@_styled
def quality_vs_cost_png(points: Sequence[Mapping[str, Any]], *, title: str | None = None) -> bytes:
    """Quality (with 95% CI) vs monthly cost per option as it is served — self-hosted, or an option served by a
    hosted API at its measured usage (a diamond) — with the Pareto frontier as a step line.

    ``points``: ``{label, arm, quality, ci_low, ci_high, monthly_usd, served_by?}``. Log cost axis when costs span
    > 10×. An option without a monthly cost (an unpriced API option) is left out.
    """
    fig = Figure(figsize=(_WIDTH, 4.6), layout="constrained")
    ax = fig.add_subplot()
    usable = [p for p in points if num(p.get("monthly_usd")) is not None and num(p.get("quality")) is not None
              and math.isfinite(num(p.get("monthly_usd")))]  # type: ignore[arg-type]
    if not usable:
        _empty(fig, ax, "no options with both a quality and a monthly cost")
        return _png(fig)
    names = {"A": "A: prompting (base)", "B": "B: LoRA (base)", "C": "C: newer base"}
    seen: set[tuple[str, bool]] = set()
    for p in usable:
        c, q = num(p["monthly_usd"]), num(p["quality"])
        arm = str(p.get("arm", "?"))
        rented = p.get("served_by") == "API"
        colour = _EXTRA[0] if rented else ARM_COLOURS.get(arm, "#7f7f7f")
        lo, hi = num(p.get("ci_low")), num(p.get("ci_high"))
        yerr = [[max(0.0, q - lo)], [max(0.0, hi - q)]] if lo is not None and hi is not None else None  # type: ignore[operator]
        label = f"{arm}: API model (measured usage)" if rented else names.get(arm, arm)
        ax.errorbar([c], [q], yerr=yerr, fmt="D" if rented else "o", color=colour, capsize=3, markersize=6,
                    label=label if (arm, rented) not in seen else None)
        seen.add((arm, rented))
        ax.annotate(str(p.get("label", "")), (c, q), textcoords="offset points", xytext=(5, 4), fontsize=10)
    front = [usable[i] for i in pareto_frontier(usable)]
    costs = [num(p["monthly_usd"]) for p in usable]
    if len(front) >= 1:
        fx = [num(p["monthly_usd"]) for p in front]
        fy = [num(p["quality"]) for p in front]
        fx.append(max(costs) * 1.15)  # type: ignore[type-var]
        fy.append(fy[-1])
        ax.step(fx, fy, where="post", color="black", linestyle="--", linewidth=1, alpha=0.7,
                label="Pareto frontier (nothing cheaper is better)")
    pos = [c for c in costs if c is not None and c > 0]
    log = bool(pos and max(pos) / min(pos) > 10 and len(pos) == len(costs))
    if log:
        ax.set_xscale("log")
    ax.set_xlabel("monthly cost at the stated volume (USD):\nself-hosted, or API usage as measured")
    ax.set_ylabel("quality (95% CI)")
    ax.set_title(title or "Quality vs monthly cost")
    _ticks(ax.xaxis, "$", linear=not log)
    ax.grid(True, alpha=0.3)
    _legend_below(fig)
    return _png(fig)


# ----------------------------------------------------------------------------------------------------------------
# Monthly cost vs volume
# ----------------------------------------------------------------------------------------------------------------


def _infer_tokens_per_request(break_evens: Iterable[Any]) -> float | None:
    for b in break_evens:
        r, t = num(_get(b, "requests_per_day")), num(_get(b, "tokens_per_day"))
        if r and t and math.isfinite(r) and math.isfinite(t) and r > 0:
            return t / r
    return None


@_styled
def cost_vs_volume_png(
    lines: Sequence[Any],
    break_evens: Sequence[Any],
    *,
    days_per_month: float = 30.0,
    tokens_per_request: float | None = None,
    current_requests_per_day: float | None = None,
    title: str | None = None,
) -> bytes:
    """Monthly cost vs traffic for each cost line (``monthly = fixed + usd_per_request × requests/day × days``),
    log-log, with the finite break-even volumes marked and the stated volume as a vertical line.

    ``lines``: ``costs.CostReport.lines()`` or their JSON dicts (``name``, ``kind``, ``fixed_usd_per_month``,
    ``usd_per_request``, ``label``); ``break_evens``: ``CostReport.break_evens`` or their dicts (``a``/``b`` are
    line labels). The x axis is tokens/day when ``tokens_per_request`` is given or can be read off a break-even
    (tokens/day ÷ requests/day), else requests/day.
    """
    fig = Figure(figsize=(_WIDTH, 6.0), layout="constrained")
    ax = fig.add_subplot()
    parsed = []
    for ln in lines:
        f, v = num(_get(ln, "fixed_usd_per_month")), num(_get(ln, "usd_per_request"))
        if f is None or v is None:
            continue
        label = _get(ln, "label") or f"{_get(ln, 'name')} [{_get(ln, 'kind')}]"
        parsed.append({"label": str(label), "name": str(_get(ln, "name")), "kind": str(_get(ln, "kind")),
                       "f": f, "v": v})
    if not parsed:
        _empty(fig, ax, "no cost lines")
        return _png(fig)
    tpr = tokens_per_request or _infer_tokens_per_request(break_evens)
    scale = tpr if tpr else 1.0
    unit = "tokens/day (zero-shot-request tokens)" if tpr else "requests/day"
    be_pts = []
    for b in break_evens:
        r = num(_get(b, "requests_per_day"))
        if r is None or not math.isfinite(r) or r <= 0:
            continue
        be_pts.append((r, str(_get(b, "a")), str(_get(b, "b"))))
    anchors = [r for r, _, _ in be_pts]
    if current_requests_per_day:
        anchors.append(float(current_requests_per_day))
    if not anchors:
        anchors = [1e4]
    lo_r = max(min(anchors) / 30.0, 1e-6)
    hi_r = max(anchors) * 30.0
    import numpy as np

    rs = np.logspace(math.log10(lo_r), math.log10(hi_r), 200)
    colours: dict[str, str] = {}
    palette = list(ARM_COLOURS.values()) + _EXTRA
    styles = {"self-host": "-", "self-host, no prefix cache": ":", "API": "--", "API, no adapter": "--",
              "API, measured usage": "-."}
    by_label = {}
    for p in parsed:
        if p["name"] not in colours:
            colours[p["name"]] = palette[len(colours) % len(palette)]
        ys = p["f"] + p["v"] * rs * days_per_month
        ys = np.maximum(ys, 1e-2)
        ax.plot(rs * scale, ys, color=colours[p["name"]], linestyle=styles.get(p["kind"], "-."), linewidth=1.6,
                label=p["label"])
        by_label[p["label"]] = p
    first = True
    for r, a, b in be_pts:
        la = by_label.get(a) or by_label.get(b)
        if la is None:
            continue
        y = la["f"] + la["v"] * r * days_per_month
        ax.plot([r * scale], [max(y, 1e-2)], marker="o", markersize=7, markerfacecolor="white",
                markeredgecolor="black", linestyle="none", zorder=5, label="break-even" if first else None)
        first = False
    if current_requests_per_day:
        ax.axvline(current_requests_per_day * scale, color="grey", linestyle="-", linewidth=1, alpha=0.7,
                   label="stated volume")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(f"volume, {unit}")
    ax.set_ylabel("monthly cost (USD)")
    ax.set_title(title or "Monthly cost vs volume (break-even points circled)")
    _ticks(ax.yaxis, "$")
    _ticks(ax.xaxis)
    ax.grid(True, which="major", alpha=0.3)
    _legend_below(fig)
    return _png(fig)
