"""`tunecheck compare RUN_A RUN_B`: paired comparison of two runs on the same test items.

The use case: RUN_A is last quarter's run (the base, its LoRA adapter), RUN_B a run on a new base release (the new
model prompted, maybe a new adapter). Differences are always **RUN_B minus RUN_A** ("after − before"), paired by
item id, with the paired interval (Newcombe for accuracy) and McNemar's exact test of :mod:`evaluator.analysis.paired`.

In everything a person reads (the Markdown, the headline) the runs are **before** (RUN_A) and **after** (RUN_B), or
their run names — never "A"/"B", which are the arms' letters (A k=32, B n=100, C …). Two runs with the same run id
are told apart as "name (before)" / "name (after)". Comparing a run with itself (the same folder on both sides) is
not refused: the result has ``same_run`` true and a ``note``, which the Markdown puts first.

Per task present in both runs, the comparisons made:

- ``adapter_vs_prompting``: every LoRA point (arm B) of RUN_A vs the best prompting point of each model in RUN_B
  (its base, arm A, and each newer base, arm C) — "does the new base, prompted, make our adapter obsolete?";
- ``best_vs_best``: RUN_B's best option vs RUN_A's best option, whatever the arms;
- ``adapter_vs_adapter``: RUN_B's best LoRA point vs RUN_A's (when both runs trained adapters);
- ``prompting_vs_prompting``: RUN_B's best prompting point vs RUN_A's;
- ``same_point``: every unit present in both runs with the same arm, model and point (a regression check).

The headline answers the use case: RUN_A's best adapter vs RUN_B's best prompting point, read exactly as the verdict
reads "not needed" (:func:`evaluator.analysis.paired.judge`, RUN_B's verdict settings: margin, alpha, selection split): the
two points are chosen by the one selection rule on the selection items and tested on the others (or the whole
procedure bootstrapped when too few items); *matches or beats* when the interval of (adapter − prompting) lies at or
below the margin, *adapter still better* when it lies above it, otherwise *inconclusive* with the items needed for
the criterion it leans to — the same figure the verdict gives for the same pair. The other rows ("best" = the same
rule on all items) are descriptive.

Both runs must have scored the same item ids for a task; otherwise :class:`UserError` (one line, naming both runs
and the counts), which the CLI turns into exit code 2. A run whose config.json plans units that never finished (a
killed run) is refused the same way unless ``allow_incomplete`` is given; then the result records the unfinished
units (``run_a.unfinished_units``, ``incomplete``) and the Markdown opens with a warning, since each arm's best point
is then chosen among the finished units only. Points are listed in numeric order (k=8 before k=32, n=16 before
n=256), never in file-name order.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from evaluator.analysis.labels import unit_label
from evaluator.analysis.paired import judge, paired_diff
from evaluator.analysis.selection import best as _select
from evaluator.analysis.selection import split_items, verdict_settings
from evaluator.errors import UserError
from evaluator.fmt import ci_text, num
from evaluator.report.compare_markdown import compare_markdown
from evaluator.store.files import atomic_write_json, atomic_write_text, safe_name
from evaluator.store.run_store import RunStore

__all__ = ["compare_runs", "format_compare", "write_compare", "compare_paths", "COMPARE_VERSION"]

COMPARE_VERSION = "1.0"
PROMPTING_ARMS = ("A", "C")


def _run_name(store: RunStore, cfg: dict) -> str:
    return str(cfg.get("run_id") or store.root.name)


ARM_ORDER = {"A": 0, "B": 1, "C": 2}


def _sort_number(v: Any) -> float:
    """A shot count or training size as a number for sorting (an unreadable value last)."""
    x = num(v)
    return math.inf if x is None else x


def _order(u: dict) -> tuple:
    """Numeric listing order of units: arm, model, then n and k as numbers (k=8 before k=32), then the unit id."""
    pt = u.get("point") or {}
    return (ARM_ORDER.get(u.get("arm"), 9), str(u.get("model")), _sort_number(pt.get("train_size") or 0),
            _sort_number(pt.get("shots") or 0), str(u.get("unit")))


def _point_key(u: dict) -> tuple:
    pt = u.get("point") or {}
    return (u.get("arm"), u.get("model"), pt.get("shots"), pt.get("train_size"))


def _best(units: list[dict]) -> dict | None:
    """The selection rule of :mod:`evaluator.analysis.selection` on all items (descriptive rows)."""
    return _select(units)  # type: ignore[return-value]


def _monthly_costs(store: RunStore) -> dict[str, dict[str, float]]:
    """{task: {option label: $/month as served}} from the run's report.json, when it has costs (else empty): the
    self-hosted figure, or an API option's measured usage (reports before `monthly_usd`: the self-hosted figure)."""
    path = store.root / "report.json"
    if not path.is_file():
        return {}
    try:
        rep = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    out: dict[str, dict[str, float]] = {}
    tasks = rep.get("tasks") if isinstance(rep, dict) else None
    for task, t in (tasks if isinstance(tasks, dict) else {}).items():  # a damaged report.json: no costs, no crash
        c = t.get("costs") if isinstance(t, dict) else None
        arms = c.get("arms") if isinstance(c, dict) else None
        arms = arms if isinstance(arms, list) else []
        out[task] = {
            str(a["name"]): m for a in arms if isinstance(a, dict) and "name" in a
            and isinstance(m := a.get("monthly_usd", a.get("monthly_selfhost_cached")), (int, float))
        }
    return out


class _Run:
    def __init__(self, path: Path) -> None:
        self.store = RunStore.open(Path(path))
        self.cfg = self.store.config
        self.job = self.cfg.get("job") or {}
        self.name = _run_name(self.store, self.cfg)
        self.units = sorted(self.store.units(measurements=False), key=_order)  # quality only, numeric order
        self.planned = [str(u) for u in self.cfg.get("units") or []]
        self.unfinished = [u for u in self.planned if not self.store.is_done(u)]
        self.by_task: dict[str, list[dict]] = {}
        for u in self.units:
            self.by_task.setdefault(u["task"], []).append(u)
        self._scores: dict[str, dict[str, float]] = {}
        self.costs = _monthly_costs(self.store)

    def scores(self, u: dict) -> dict[str, float]:
        if u["unit"] not in self._scores:
            self._scores[u["unit"]] = {r["item_id"]: float(r["score"]) for r in self.store.items(u["unit"])}
        return self._scores[u["unit"]]

    def item_set(self, task: str) -> frozenset[str]:
        """The task's test items in this run; every unit of the task must have scored the same ones."""
        sets: dict[frozenset[str], str] = {}
        for u in self.by_task[task]:
            s = frozenset(self.scores(u))
            if s:
                sets.setdefault(s, u["unit"])
        if not sets:
            raise UserError(f"run {self.name} has no per-item results for task {task} (results/*.jsonl missing)")
        if len(sets) > 1:
            (s1, u1), (s2, u2) = list(sets.items())[:2]
            raise UserError(
                f"run {self.name}: units {u1} ({len(s1)} items) and {u2} ({len(s2)} items) of task {task} scored "
                "different items — re-run the job so every arm sees the same test items"
            )
        return next(iter(sets))

    def describe(self) -> dict[str, Any]:
        return {
            "run_id": self.name, "dir": str(self.store.root), "base": self.job.get("base"),
            "newer": list(self.job.get("newer") or []), "tasks": sorted(self.by_task), "units": len(self.units),
            "complete": not self.unfinished if self.planned else None,
            "planned_units": len(self.planned), "unfinished_units": list(self.unfinished),
        }

    def incomplete_line(self, name: str) -> str:
        """What is missing, in a few words: "3 of 10 planned units unfinished (e.g. t__B__m__n64__k0)"."""
        shown = ", ".join(self.unfinished[:2]) + (", …" if len(self.unfinished) > 2 else "")
        return f"run {name} is incomplete: {len(self.unfinished)} of {len(self.planned)} planned units unfinished ({shown})"


ROLES = ("before", "after")  # RUN_A, RUN_B: runs are never called A/B, the arms' letters


def _disambiguate(a: str, b: str) -> tuple[str, str]:
    """The runs' names in text: their run ids, with "(before)"/"(after)" added when both have the same id."""
    return (a, b) if a != b else (f"{a} ({ROLES[0]})", f"{b} ({ROLES[1]})")


def _roles(names: tuple[str, str]) -> tuple[str, str]:
    """The names with their role, for sentences: "q1-adapter (before)", "q2-new-base (after)"."""
    return tuple(n if n.endswith(f"({r})") else f"{n} ({r})" for n, r in zip(names, ROLES))  # type: ignore[return-value]


def _same_run(ra: _Run, rb: _Run) -> bool:
    try:
        return ra.store.root.resolve() == rb.store.root.resolve()
    except OSError:
        return False


def same_run_note(name: str) -> str:
    """The one line `compare` gives when both sides are the same run folder (it still compares, exit 0)."""
    return (f"the same run on both sides ({name} is both before and after): nothing to compare — every same-point "
            "difference is 0 by construction, and the headline only sets this run's own options against each other")


def _pair(kind: str, ra: _Run, ua: dict, rb: _Run, ub: dict, names: tuple[str, str], task: str, seed: int,
          reps: int, alpha: float = 0.05) -> dict[str, Any]:
    la, lb = unit_label(ua), unit_label(ub)
    try:
        d = paired_diff(ra.scores(ua), rb.scores(ub), f"{la} @ {names[0]}", f"{lb} @ {names[1]}", alpha=alpha,
                        seed=seed, reps=reps)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    row: dict[str, Any] = d.as_dict() | {
        "kind": kind, "unit_a": ua["unit"], "unit_b": ub["unit"], "label_a": la, "label_b": lb,
        "arm_a": ua["arm"], "arm_b": ub["arm"], "summary": d.summary(),
        "monthly_usd_a": ra.costs.get(task, {}).get(la), "monthly_usd_b": rb.costs.get(task, {}).get(lb),
    }
    return row


def _headline(ra: _Run, adapters: list[dict], rb: _Run, prompting: list[dict], names: tuple[str, str],
              settings: dict, items: frozenset[str]) -> dict[str, Any] | None:
    """Is the after run's (RUN_B's) best prompting point at least as good as the before run's (RUN_A's) best adapter
    (within the margin)? ``names`` are the runs' names with their roles ("q1-adapter (before)").

    Both points are chosen on the selection items by the one selection rule and tested on the other items; the
    criterion, interval and items-needed figure are the verdict's (:func:`evaluator.analysis.paired.judge`)."""
    from evaluator.analysis.verdict import procedure_bootstrap

    if not adapters or not prompting:
        return None
    margin, alpha = settings["margin"], settings["alpha"]
    needed = len(adapters) > 1 or len(prompting) > 1
    split = split_items(items, settings["selection_fraction"], settings["selection_seed"], needed=needed,
                        mode=settings["selection"])
    sel = split.selection if split.method == "split" else None
    ua = _select(adapters, {u["unit"]: ra.scores(u) for u in adapters}, sel)
    ub = _select(prompting, {u["unit"]: rb.scores(u) for u in prompting}, sel)
    assert ua is not None and ub is not None
    la, lb = f"{unit_label(ua)} @ {names[0]}", f"{unit_label(ub)} @ {names[1]}"
    try:  # the verdict's orientation: adapter (b) minus prompting (a)
        d = paired_diff(rb.scores(ub), ra.scores(ua), lb, la, alpha=alpha, items=split.test)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    lo, hi = d.ci_low, d.ci_high
    if split.method == "bootstrap":
        cands = {"B": [dict(u, unit=f"A/{u['unit']}") for u in adapters],
                 "A": [dict(u, unit=f"B/{u['unit']}") for u in prompting]}
        sc = {f"A/{u['unit']}": ra.scores(u) for u in adapters} | {f"B/{u['unit']}": rb.scores(u) for u in prompting}
        blo, bhi = procedure_bootstrap(cands, sc, split.test, ["A"], alpha=alpha, reps=settings["bootstrap_reps"],
                                       seed=settings["selection_seed"])["A"]
        lo, hi = min(lo, blo), max(hi, bhi)
    j = judge(d, margin, low=lo, high=hi, selection_share=split.fraction if split.method == "split" else 0.0)
    ci = ci_text(alpha, -hi, -lo, d.n, d.mcnemar_p)  # after − before
    subject = f"{unit_label(ub)} in {names[1]}"
    obj = f"{'the adapter' if ua['arm'] == 'B' else 'the option'} {unit_label(ua)} in {names[0]}"
    diff = -d.diff  # after − before
    out: dict[str, Any] = {"pair": "headline", "a": la, "b": lb, "unit_a": ua["unit"], "unit_b": ub["unit"],
                           "diff": diff, "ci_low": -hi, "ci_high": -lo, "margin": margin, "alpha": alpha,
                           "selection": split.as_dict(), "judged": j}
    if j["outcome"] == "within":
        better = -hi > 0
        out |= {"outcome": "matches_or_beats", "confirmed": True, "significantly_better": better}
        text = (f"{subject} {'beats' if better else 'matches'} {obj}: difference (after − before) {diff:+.3f} ({ci}); "
                f"the whole "
                f"interval is at or above −{margin:.2f}, so it is no worse by more than the margin")
    elif j["outcome"] == "beyond":
        out |= {"outcome": "run_a_better", "confirmed": True, "significantly_better": False}
        text = (f"{obj[0].upper() + obj[1:]} is still better than {subject}: difference (after − before) {diff:+.3f} "
                f"({ci}), the "
                f"whole interval below −{margin:.2f}")
    else:
        out |= {"outcome": "inconclusive", "confirmed": False, "significantly_better": False}
        text = (f"Inconclusive: {subject} vs {obj}: difference (after − before) {diff:+.3f} ({ci}) straddles the "
                f"−{margin:.2f} margin")
        need = j.get("items_needed") or {}
        out["items_needed"] = need
        if need.get("n") is not None:
            text += (f"; about {need['n']:,} paired test items would settle it for the criterion it leans to "
                     f"({'matches' if j['lean'] == 'within' else 'adapter still better'}) with {need['power']:.0%} "
                     f"power (have {d.n})")
        else:
            text += f"; no practical test size settles it ({need.get('reason')})"
    out["statement"] = text + f". Points chosen and tested as the verdict does: {split.reason}."
    return out


def compare_runs(run_a: Path, run_b: Path, *, margin: float | None = None, alpha: float | None = None, seed: int = 0,
                 reps: int = 5000, allow_incomplete: bool = False) -> dict[str, Any]:
    """Paired comparison of two run dirs, RUN_B minus RUN_A, per task present in both (see the module docstring).

    Raises :class:`UserError` (one line) when a path is not a run dir, a run is incomplete (units planned in its
    config.json not finished) and ``allow_incomplete`` is false, the runs share no task, or a shared task was scored
    on different item sets. Returns plain data (JSON-able) including ``markdown`` (a list of lines).
    """
    ra, rb = _Run(Path(run_a)), _Run(Path(run_b))
    names = _disambiguate(ra.name, rb.name)
    same_run = _same_run(ra, rb)
    incomplete = [(r, n) for r, n in ((ra, names[0]), (rb, names[1])) if r.unfinished]
    if incomplete and not allow_incomplete:
        r, n = incomplete[0]
        also = f"; so is {incomplete[1][1]}" if len(incomplete) > 1 else ""
        raise UserError(f"{r.incomplete_line(n)}{also} — finish it (run the same job again: it resumes) or pass "
                        "--allow-incomplete to compare the finished units only")
    common = [t for t in ra.by_task if t in rb.by_task]
    if not common:
        raise UserError(
            f"cannot compare {names[0]} and {names[1]}: they share no task ({', '.join(sorted(ra.by_task)) or 'none'} "
            f"vs {', '.join(sorted(rb.by_task)) or 'none'}) — compare runs of the same task"
        )
    settings = verdict_settings(rb.job)
    if margin is not None:
        settings["margin"] = float(margin)
    if alpha is not None:
        settings["alpha"] = float(alpha)
    margin, alpha = settings["margin"], settings["alpha"]
    tasks: dict[str, Any] = {}
    for task in common:
        sa, sb = ra.item_set(task), rb.item_set(task)
        if sa != sb:
            both = len(sa & sb)
            raise UserError(
                f"cannot compare {names[0]} and {names[1]}: task {task} has different test items ({len(sa)} in "
                f"{names[0]}, {len(sb)} in {names[1]}, {both} in common) — a paired comparison needs the same items "
                "(same task data, split and limit)"
            )
        ua_all = [u for u in ra.by_task[task] if ra.scores(u)]
        ub_all = [u for u in rb.by_task[task] if rb.scores(u)]
        pairs: list[dict[str, Any]] = []
        seen: set[tuple[str, str]] = set()

        def add(kind: str, ua: dict | None, ub: dict | None) -> dict | None:
            if ua is None or ub is None or (ua["unit"], ub["unit"]) in seen:
                return None
            seen.add((ua["unit"], ub["unit"]))
            row = _pair(kind, ra, ua, rb, ub, names, task, seed, reps, alpha)
            pairs.append(row)
            return row

        a_adapters = [u for u in ua_all if u["arm"] == "B"]
        b_prompt_models: dict[str, list[dict]] = {}
        for u in ub_all:
            if u["arm"] in PROMPTING_ARMS:
                b_prompt_models.setdefault(u["model"], []).append(u)
        b_best_prompting = {m: _best(us) for m, us in b_prompt_models.items()}
        for ua in sorted(a_adapters, key=lambda u: (u["model"], u["point"].get("train_size") or 0,
                                                    u["point"].get("shots") or 0)):
            for m in sorted(b_best_prompting):
                add("adapter_vs_prompting", ua, b_best_prompting[m])
        best_a, best_b = _best(ua_all), _best(ub_all)
        add("best_vs_best", best_a, best_b)
        add("adapter_vs_adapter", _best(a_adapters), _best([u for u in ub_all if u["arm"] == "B"]))
        best_pa = _best([u for u in ua_all if u["arm"] in PROMPTING_ARMS])
        best_pb = _best([u for u in ub_all if u["arm"] in PROMPTING_ARMS])
        add("prompting_vs_prompting", best_pa, best_pb)
        same: list[dict[str, Any]] = []
        b_by_point = {_point_key(u): u for u in ub_all}
        for ua in ua_all:
            ub = b_by_point.get(_point_key(ua))
            if ub is not None:
                same.append(_pair("same_point", ra, ua, rb, ub, names, task, seed, reps, alpha))
        # the headline: RUN_A's adapters vs RUN_B's prompting points, chosen and tested as the verdict does
        roles = _roles(names)
        head = _headline(ra, a_adapters, rb, [u for u in ub_all if u["arm"] in PROMPTING_ARMS], roles, settings, sa)
        if head is None:  # no adapter or no prompting point: best vs best
            head = _headline(ra, ua_all, rb, ub_all, roles, settings, sa) if ua_all and ub_all else None
        tasks[task] = {
            "n_items": len(sa),
            "pairs": pairs,
            "same_point": same,
            "headline": head,
        }
    result: dict[str, Any] = {
        "kind": "tunecheck-compare",
        "compare_version": COMPARE_VERSION,
        "run_a": ra.describe() | {"name": names[0]},
        "run_b": rb.describe() | {"name": names[1]},
        "direction": "differences are after (RUN_B) minus before (RUN_A) on the same items",
        "same_run": same_run,
        "note": same_run_note(ra.name) if same_run else None,
        "margin": margin,
        "alpha": alpha,
        "tasks": tasks,
        "tasks_only_in_a": sorted(t for t in ra.by_task if t not in rb.by_task),
        "tasks_only_in_b": sorted(t for t in rb.by_task if t not in ra.by_task),
        "incomplete": [r.incomplete_line(n) for r, n in incomplete],
    }
    result["markdown"] = compare_markdown(result)
    return result


def format_compare(result: dict[str, Any]) -> str:
    """The comparison as Markdown (what `tunecheck compare` prints)."""
    return "\n".join(result["markdown"]) + "\n"


def compare_paths(result: dict[str, Any], out_dir: Path | None = None) -> tuple[Path, Path]:
    """Where :func:`write_compare` writes: ``compare-<A>-vs-<B>.md`` and ``.json`` in ``out_dir`` (default: the
    current directory — never inside either run's folder unless asked)."""
    stem = f"compare-{safe_name(result['run_a']['run_id'], 60)}-vs-{safe_name(result['run_b']['run_id'], 60)}"
    out = Path.cwd() if out_dir is None else Path(out_dir)
    return out / f"{stem}.md", out / f"{stem}.json"


def write_compare(result: dict[str, Any], out_dir: Path | None = None) -> tuple[Path, Path]:
    """Write ``compare-<A>-vs-<B>.md`` and ``.json`` into ``out_dir`` (default: the current directory); returns the
    paths."""
    md, js = compare_paths(result, out_dir)
    atomic_write_text(md, format_compare(result))
    atomic_write_json(js, {k: v for k, v in result.items() if k != "markdown"})
    return md, js

