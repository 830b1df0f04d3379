"""The one selection rule: which point of an arm is its operating point, and on which items it is chosen.

Every place that needs "the best point" (the verdict, the cost table, `compare`, the report, the crossover) asks this
module, so they can never name different points.

**Rule.** Highest quality; ties go to the cheaper option to serve — fewer prompt tokens per request, then the smaller
training set n, then the unit id (alphabetical) — never to file order. Quality is compared *exactly*: a 0/1 metric
on n items is a count out of n, so equal accuracies are equal as fractions, not as floats (0.54 − 0.52 is not
0.020000000000000018 here).

**Honest selection (winner's curse).** Choosing each arm's best point on the very items that then test it inflates
the winner. With a *selection split* the points are chosen on a seeded share of the test items and the verdict's
paired test runs on the remaining, disjoint items. The split depends only on the item ids and the seed, so two runs
of the same items (``tunecheck compare``) split them identically. When a run is too small to split, the caller
bootstraps the whole select-then-compare procedure instead (see :mod:`evaluator.analysis.verdict`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from fractions import Fraction
from typing import Iterable, Mapping, Sequence

__all__ = ["Split", "best", "operating_points", "quality", "split_items", "tie_key"]

#: Fewer items than these on either side of the split and the run is "too small to split".
MIN_SELECTION_ITEMS = 10
MIN_TEST_ITEMS = 20


def quality(scores: Mapping[str, float], items: Iterable[str] | None = None) -> Fraction | float:
    """Mean score over `items` (all when None): an exact Fraction for 0/1 scores, else a float."""
    ids = list(scores) if items is None else list(items)
    if not ids:
        return Fraction(0)
    vals = [float(scores[i]) for i in ids]
    if all(v in (0.0, 1.0) for v in vals):
        return Fraction(int(sum(vals)), len(vals))
    return sum(vals) / len(vals)


def tie_key(u: Mapping) -> tuple:
    """Cheaper to serve first: prompt tokens per request, then training-set size, then unit id."""
    tok = float((u.get("tokens") or {}).get("prompt_tokens_per_request", 0.0))
    n = (u.get("point") or {}).get("train_size")
    return (tok, int(n) if isinstance(n, int) else 0, str(u.get("unit", "")))


def _stored_quality(u: Mapping) -> Fraction | float:
    n = int(u.get("n_items") or 0)
    v = float(u["value"])
    if n and abs(v * n - round(v * n)) < 1e-6:  # a stored accuracy: recover the exact count
        return Fraction(round(v * n), n)
    return v


def best(units: Sequence[Mapping], scores: Mapping[str, Mapping[str, float]] | None = None,
         items: Iterable[str] | None = None) -> Mapping | None:
    """The operating point among `units`: highest quality (on `items` of `scores` when given, else the stored
    value), ties by :func:`tie_key`. None for no units."""
    if not units:
        return None
    item_list = None if items is None else list(items)

    def q(u: Mapping) -> Fraction | float:
        if scores is None:
            return _stored_quality(u)
        return quality(scores[u["unit"]], item_list)

    # max quality, then min tie_key: sort by tie key, then take the first maximum (max keeps the first on ties)
    ordered = sorted(units, key=tie_key)
    return max(ordered, key=q)


@dataclass(frozen=True)
class Split:
    """A seeded, disjoint division of a task's test items into selection and test items."""

    selection: tuple[str, ...]
    test: tuple[str, ...]
    fraction: float
    seed: int
    method: str  # "split" | "none" (all items test; nothing to select) | "bootstrap" (too small: whole procedure bootstrapped)
    reason: str

    def as_dict(self) -> dict:
        return {"method": self.method, "fraction": self.fraction, "seed": self.seed, "reason": self.reason,
                "selection_items": len(self.selection), "test_items": len(self.test),
                "selection_ids_hash": _hash_ids(self.selection), "test_ids_hash": _hash_ids(self.test)}


def _hash_ids(ids: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(sorted(ids)).encode()).hexdigest()[:16]


def split_items(item_ids: Iterable[str], fraction: float, seed: int, *, needed: bool = True,
                mode: str = "split") -> Split:
    """Divide items into a selection share and the rest, by a seeded hash of each id (order-independent).

    `needed=False` (no arm has more than one point: nothing is selected) keeps every item for the test. A split
    that would leave fewer than MIN_SELECTION_ITEMS or MIN_TEST_ITEMS items — or ``mode="bootstrap"`` — returns
    method "bootstrap": the caller chooses on all items and bootstraps the whole select-then-compare procedure.
    """
    ids = sorted(set(item_ids))
    if not needed:
        return Split((), tuple(ids), fraction, seed, "none",
                     "each arm has a single point, so nothing is selected: every item tests")
    if mode == "bootstrap" or fraction <= 0:
        return Split((), tuple(ids), fraction, seed, "bootstrap",
                     "selection split turned off: points chosen on all items, the whole select-then-compare "
                     "procedure bootstrapped")
    ranked = sorted(ids, key=lambda i: hashlib.sha256(f"{seed}:{i}".encode()).hexdigest())
    n_sel = round(fraction * len(ids))
    if n_sel < MIN_SELECTION_ITEMS or len(ids) - n_sel < MIN_TEST_ITEMS:
        return Split((), tuple(ids), fraction, seed, "bootstrap",
                     f"{len(ids)} items are too few to split {fraction:.0%} off for selection (needs ≥ "
                     f"{MIN_SELECTION_ITEMS} selection and ≥ {MIN_TEST_ITEMS} test items): points chosen on all "
                     "items, the whole select-then-compare procedure bootstrapped")
    sel = tuple(sorted(ranked[:n_sel]))
    test = tuple(sorted(ranked[n_sel:]))
    return Split(sel, test, fraction, seed, "split",
                 f"operating points chosen on {len(sel)} seeded selection items ({fraction:.0%}); the verdict's "
                 f"paired tests use the other {len(test)} items")


def operating_points(units: Sequence[Mapping], scores: Mapping[str, Mapping[str, float]] | None = None,
                     items: Iterable[str] | None = None) -> dict[str, Mapping]:
    """The options a decision is between, chosen by :func:`best` on `items`:
    ``{"A": …, "B": …, "C": best newer base overall, "C:<model>": best of each newer base}`` (absent arms omitted)."""
    item_list = None if items is None else list(items)
    out: dict[str, Mapping] = {}
    for arm in ("A", "B", "C"):
        pick = best([u for u in units if u["arm"] == arm], scores, item_list)
        if pick is not None:
            out[arm] = pick
    for model in sorted({u["model"] for u in units if u["arm"] == "C"}):
        pick = best([u for u in units if u["arm"] == "C" and u["model"] == model], scores, item_list)
        if pick is not None:
            out[f"C:{model}"] = pick
    return out


@dataclass(frozen=True)
class Choice:
    """The split and the operating points chosen on it (`points`), beside the best-on-all-items points."""

    split: Split
    points: dict[str, Mapping]
    optimistic: dict[str, Mapping]

    @property
    def chosen_on(self) -> tuple[str, ...] | None:
        return self.split.selection if self.split.method == "split" else None


def verdict_settings(job: Mapping) -> dict:
    """The job's verdict settings with defaults (config.json's job dict; older runs lack the newer fields)."""
    v = dict((job or {}).get("verdict") or {})
    seed = v.get("selection_seed")
    return {"margin": float(v.get("margin", 0.02)), "alpha": float(v.get("alpha", 0.05)),
            "selection": v.get("selection", "split"), "selection_fraction": float(v.get("selection_fraction", 0.3)),
            "selection_seed": int(seed if seed is not None else (job or {}).get("seed") or 0),
            "bootstrap_reps": int(v.get("bootstrap_reps", 2000))}


def choose(units: Sequence[Mapping], scores: Mapping[str, Mapping[str, float]], settings: Mapping) -> Choice:
    """Split the task's items (when any arm has a choice to make) and choose every arm's operating point."""
    item_ids: set[str] = set()
    for u in units:
        item_ids |= set(scores.get(u["unit"], {}))
    needed = any(sum(1 for u in units if u["arm"] == arm) > 1 for arm in ("A", "B", "C"))
    split = split_items(item_ids, settings["selection_fraction"], settings["selection_seed"], needed=needed,
                        mode=settings["selection"])
    optimistic = operating_points(units, scores)
    points = operating_points(units, scores, split.selection) if split.method == "split" else optimistic
    return Choice(split, points, optimistic)
