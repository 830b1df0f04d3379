"""Learning curves and their crossover, with uncertainty.

Pure numpy; no model code.

- :func:`crossover` — the training-set size n where LoRA's learning curve (quality vs n) first reaches the best
  prompting point (quality vs k). Point estimate only; same rules and keys as :func:`evaluator.analysis.paired.crossover`.
- :func:`crossover_with_uncertainty` — the same point estimate from per-item scores, plus a paired bootstrap over
  *items*: every curve point scored the same test items, so each resample draws one set of item indices and
  recomputes every point's mean from it (the correlation between points travels with the items). The crossover is
  recomputed in each resample (including the choice of the best prompting point), which gives a percentile
  interval for n* and the share of resamples in which LoRA reaches prompting at all within the measured range.

Why: a crossover read off two noisy curves is easy to over-claim. Two flat curves at chance level (0.50 ± noise)
"cross" somewhere by luck about half the time; the statement only claims a crossover when it holds in nearly every
item resample (``share_crossing >= 1 - alpha``).
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np

__all__ = ["crossover", "crossover_with_uncertainty"]

_METHOD = "first LoRA point >= best prompting quality; interpolated in log n"


def _best(curve: Sequence[tuple[float, float]]) -> tuple[float, float]:
    """Highest quality; ties go to the cheaper (smaller) point."""
    return max(curve, key=lambda p: (p[1], -p[0]))


def crossover(prompt_curve: Sequence[tuple[int, float]], lora_curve: Sequence[tuple[int, float]]) -> dict[str, Any]:
    """Where LoRA's learning curve (quality vs n training examples) first reaches the *best* prompting point.

    The target is the best prompting quality over the k sweep (ties: smallest k). Going up the LoRA curve in n,
    the first measured point at or above the target is found; the crossover n is interpolated between it and the
    point before, linearly in log n (train-size sweeps are geometric) — or linearly in n if a size is 0. If the
    smallest measured n already reaches the target, the crossover is "at or below" that n. If no point reaches
    it, ``n`` is None and ``reason`` says how far short LoRA's best point stays. Point estimate only: see
    :func:`crossover_with_uncertainty` for whether the crossover survives resampling the items.

    Returns ``{"n", "crosses", "at_or_below", "best_prompting": {"k", "quality"}, "lora_reaches": {"n", "quality"}
    | None, "lora_range": [n_min, n_max], "reason", "statement", "method"}``.
    """
    pc = [(float(k), float(q)) for k, q in prompt_curve if q is not None and math.isfinite(q)]
    lc = sorted((float(n), float(q)) for n, q in lora_curve if q is not None and math.isfinite(q))
    base: dict[str, Any] = {
        "n": None, "crosses": False, "at_or_below": False, "best_prompting": None, "lora_reaches": None,
        "lora_range": None, "method": _METHOD,
    }
    if not pc or not lc:
        missing = "prompting" if not pc else "LoRA"
        reason = f"no {missing} points to compare"
        return base | {"reason": reason, "statement": f"No crossover: {reason}."}
    k_best, q_best = _best(pc)
    base["best_prompting"] = {"k": int(k_best), "quality": q_best}
    base["lora_range"] = [int(lc[0][0]), int(lc[-1][0])]
    for i, (n, q) in enumerate(lc):
        if q < q_best:
            continue
        if i == 0:
            stmt = (
                f"LoRA already reaches the best prompting point (k={int(k_best)}, {q_best:.3f}) at the smallest "
                f"training size measured, n={int(n)} ({q:.3f}): the crossover is at or below n={int(n)}."
            )
            return base | {"n": n, "crosses": True, "at_or_below": True, "lora_reaches": {"n": int(n), "quality": q},
                           "reason": None, "statement": stmt}
        n0, q0 = lc[i - 1]
        t = (q_best - q0) / (q - q0) if q != q0 else 1.0
        if n0 > 0 and n > 0:
            nx = math.exp(math.log(n0) + t * (math.log(n) - math.log(n0)))
        else:
            nx = n0 + t * (n - n0)
        stmt = (
            f"LoRA overtakes the best prompting point (k={int(k_best)}, {q_best:.3f}) at n ≈ {nx:,.0f} training "
            f"examples (between n={int(n0)}: {q0:.3f} and n={int(n)}: {q:.3f})."
        )
        return base | {"n": nx, "crosses": True, "lora_reaches": {"n": int(n), "quality": q}, "reason": None,
                       "statement": stmt}
    n_top, q_top = _best([(n, q) for n, q in lc])
    reason = (
        f"LoRA's best point (n={int(n_top)}: {q_top:.3f}) stays {q_best - q_top:.3f} below the best prompting "
        f"point (k={int(k_best)}: {q_best:.3f}) over the measured range n={int(lc[0][0])}–{int(lc[-1][0])}"
    )
    return base | {"reason": reason, "statement": f"No crossover: {reason}."}


# -- bootstrap ------------------------------------------------------------------------------------------------------


def _crossover_n_batch(prompt_means: np.ndarray, ns: np.ndarray, lora_means: np.ndarray) -> np.ndarray:
    """Vectorised :func:`crossover` n for many resamples at once.

    ``prompt_means``: (reps, K) quality per resample and k; ``ns``: (N,) LoRA sizes, ascending; ``lora_means``:
    (reps, N), columns in the order of ``ns``. Returns (reps,) n*: the interpolated crossover, ``ns[0]`` when the
    smallest n already reaches the target ("at or below"), ``+inf`` when no point reaches it in the measured range.
    Same rules as :func:`crossover` (only the target's value matters, so the k tie rule does not enter).
    """
    reps = prompt_means.shape[0]
    target = prompt_means.max(axis=1)
    reach = lora_means >= target[:, None]
    any_reach = reach.any(axis=1)
    first = reach.argmax(axis=1)
    out = np.full(reps, np.inf)
    out[any_reach & (first == 0)] = ns[0]
    mid = np.flatnonzero(any_reach & (first > 0))
    if mid.size:
        j = first[mid]
        n0, n1 = ns[j - 1], ns[j]
        q0, q1 = lora_means[mid, j - 1], lora_means[mid, j]
        tgt = target[mid]
        dq = q1 - q0
        safe = dq != 0
        t = np.where(safe, (tgt - q0) / np.where(safe, dq, 1.0), 1.0)
        pos = (n0 > 0) & (n1 > 0)
        with np.errstate(divide="ignore", invalid="ignore"):
            log_interp = np.exp(np.log(np.where(pos, n0, 1.0)) + t * (np.log(np.where(pos, n1, 1.0))
                                                                        - np.log(np.where(pos, n0, 1.0))))
        out[mid] = np.where(pos, log_interp, n0 + t * (n1 - n0))
    return out


def _score_matrix(curve: Mapping[int, Mapping[str, float]], items: list, what: str) -> tuple[np.ndarray, np.ndarray]:
    """(sizes ascending, scores matrix points x items) for one curve; checks scores are finite numbers."""
    sizes = sorted(curve)
    mat = np.empty((len(sizes), len(items)), dtype=float)
    for r, size in enumerate(sizes):
        row = curve[size]
        try:
            mat[r] = [float(row[i]) for i in items]
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{what}={size}: scores must be numbers ({exc})") from None
        if not np.isfinite(mat[r]).all():
            bad = [i for i, v in zip(items, mat[r]) if not math.isfinite(v)][:5]
            raise ValueError(f"{what}={size}: non-finite scores for items {bad}")
    return np.asarray(sizes, dtype=float), mat


def _check_items(prompt_scores: Mapping, lora_scores: Mapping) -> list:
    """The common item ids (sorted), or ValueError naming the first point whose item set differs."""
    points = [("k", k, prompt_scores[k]) for k in sorted(prompt_scores)] + \
             [("n", n, lora_scores[n]) for n in sorted(lora_scores)]
    if not points:
        return []
    what0, size0, ref = points[0]
    ref_ids = set(ref)
    for what, size, row in points[1:]:
        ids = set(row)
        if ids != ref_ids:
            missing = sorted(ref_ids - ids, key=str)
            extra = sorted(ids - ref_ids, key=str)
            parts = []
            if missing:
                parts.append(f"lacks {len(missing)} item(s) {missing[:5]}" + (" …" if len(missing) > 5 else ""))
            if extra:
                parts.append(f"has {len(extra)} extra item(s) {extra[:5]}" + (" …" if len(extra) > 5 else ""))
            raise ValueError(
                f"all curve points must score the same items: {what}={size} {' and '.join(parts)} "
                f"compared with {what0}={size0} ({len(ref_ids)} items)"
            )
    return sorted(ref_ids, key=str)


def _quantile(x: np.ndarray, q: float) -> float:
    # No interpolation: x may hold +inf (no crossover), and an order statistic stays meaningful with it.
    return float(np.quantile(x, q, method="inverted_cdf"))


def crossover_with_uncertainty(
    prompt_scores: Mapping[int, Mapping[str, float]],
    lora_scores: Mapping[int, Mapping[str, float]],
    *,
    alpha: float = 0.05,
    reps: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """:func:`crossover` from per-item scores, with a paired item bootstrap of the crossover n.

    ``prompt_scores``: ``{k: {item_id: score}}`` (arm A's sweep); ``lora_scores``: ``{n: {item_id: score}}``
    (arm B's learning curve). All points must score the same item set (ValueError naming the difference).

    The point estimate is ``crossover()`` of the full-item means. The bootstrap draws one ``reps x n_items`` matrix
    of item indices (``numpy.random.default_rng(seed)``) and uses it for every point; in each resample the best
    prompting point and the crossover are recomputed. A resample in which LoRA never reaches the best prompting
    point counts as n* = +inf ("beyond the measured range"); one in which the smallest n already reaches it counts
    as n* = n_min ("at or below n_min").

    Adds to ``crossover()``'s keys:

    - ``interval``: ``[lo, hi]``, the (alpha/2, 1 - alpha/2) percentiles (order statistics, no interpolation) of
      n* over the resamples. ``None`` for an end that lies beyond n_max; an end equal to n_min means "at or below
      n_min" — see ``interval_low_at_or_below`` / ``interval_high_beyond`` (and ``interval_low_beyond``, when even
      the lower end lies beyond n_max). ``[None, None]`` when there is no curve to resample.
    - ``share_crossing``: fraction of resamples with a crossover in the measured range (at-or-below included);
      ``None`` without both curves.
    - ``distinguishable``: True only when the point estimate crosses and ``share_crossing >= 1 - alpha``.
    - ``bootstrap``: ``{"reps", "seed", "alpha", "n_items"}``.
    - ``statement``: replaces ``crossover()``'s, and claims a crossover only together with its uncertainty.
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if int(reps) < 1:
        raise ValueError(f"reps must be >= 1, got {reps}")
    reps = int(reps)
    items = _check_items(prompt_scores, lora_scores)
    if (prompt_scores or lora_scores) and not items:
        raise ValueError("curve points score no items: nothing to estimate")
    ks, P = _score_matrix(prompt_scores, items, "k")
    ns, L = _score_matrix(lora_scores, items, "n")

    p_mean = P.mean(axis=1).tolist() if items else []
    l_mean = L.mean(axis=1).tolist() if items else []
    point = crossover(list(zip(ks.astype(int).tolist(), p_mean)), list(zip(ns.astype(int).tolist(), l_mean)))
    boot = {"reps": reps, "seed": seed, "alpha": alpha, "n_items": len(items)}
    out: dict[str, Any] = point | {
        "interval": [None, None], "interval_low_at_or_below": False, "interval_low_beyond": False,
        "interval_high_beyond": False, "share_crossing": None, "distinguishable": False, "bootstrap": boot,
        "method": _METHOD + "; paired percentile bootstrap over items",
    }
    if P.shape[0] == 0 or L.shape[0] == 0:
        return out  # crossover()'s "no ... points to compare" statement stands

    n_items = len(items)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n_items, size=(reps, n_items))
    # Resample counts per item (reps x items): the mean of a point over a resample is counts @ scores / n_items,
    # identical to scores[idx].mean() but O(reps x items) memory for any number of points.
    offsets = (np.arange(reps) * n_items)[:, None]
    counts = np.bincount((idx + offsets).ravel(), minlength=reps * n_items).reshape(reps, n_items).astype(float)
    pm = counts @ P.T / n_items
    lm = counts @ L.T / n_items
    nstar = _crossover_n_batch(pm, ns, lm)

    n_min, n_max = int(ns[0]), int(ns[-1])
    share = float(np.isfinite(nstar).mean())
    lo, hi = _quantile(nstar, alpha / 2), _quantile(nstar, 1 - alpha / 2)
    lo_beyond, hi_beyond = math.isinf(lo), math.isinf(hi)
    lo_at_or_below = (not lo_beyond) and lo <= n_min
    hi_at_or_below = (not hi_beyond) and hi <= n_min
    distinguishable = bool(point["crosses"]) and share >= 1 - alpha
    out |= {
        "interval": [None if lo_beyond else lo, None if hi_beyond else hi],
        "interval_low_at_or_below": lo_at_or_below, "interval_low_beyond": lo_beyond,
        "interval_high_beyond": hi_beyond, "share_crossing": share, "distinguishable": distinguishable,
    }

    def end(v: float, beyond: bool, at_or_below: bool) -> str:
        if beyond:
            return f"beyond {n_max:,}"
        if at_or_below:
            return f"at or below {n_min:,}"
        return f"{v:,.0f}"

    pct = f"{(1 - alpha) * 100:g}%"
    ivl = f"{end(lo, lo_beyond, lo_at_or_below)} to {end(hi, hi_beyond, hi_at_or_below)}"
    rng_txt = f"n={n_min:,}–{n_max:,}"
    share_txt = f"{share:.0%}"
    bp = point["best_prompting"]
    if point["crosses"]:
        q_reach = point["lora_reaches"]["quality"]
        if point["at_or_below"]:
            where = f"at or below n={n_min:,} (the smallest training size measured)"
        else:
            where = f"at n ≈ {point['n']:,.0f}"
        if distinguishable:
            verb = "already reaches" if point["at_or_below"] else "overtakes"
            stmt = (f"LoRA {verb} the best prompting point (k={bp['k']}, {bp['quality']:.3f}) {where} "
                    f"({pct} bootstrap interval {ivl}; crosses in {share_txt} of {reps:,} item resamples).")
        else:
            stmt = (f"Not distinguishable: the point estimate crosses {where} ({bp['quality']:.3f} → "
                    f"{q_reach:.3f}), but only {share_txt} of item resamples cross within {rng_txt} "
                    f"({pct} interval {ivl}).")
    else:
        stmt = (f"{point['statement'].rstrip('.')}; {share_txt} of item resamples cross within {rng_txt} "
                f"({pct} interval {ivl}).")
    out["statement"] = stmt
    return out
