"""Scoring a generated answer as lm-eval 0.4.13 does: the task's filter pipeline (lm-eval's own filters, rebuilt by
name from its registry), then its metric function — for lm-eval `generate_until` tasks whose spec has
`lmeval_metric` (and, with a `filter_list`, `lmeval_filters`; the FIRST filter is the one scored). Reached through
`evaluator.tasks.metrics.scorer_for`; lm_eval is imported only when a scorer is built. What is supported and refused:
evaluator/tasks/lmeval.py."""

from __future__ import annotations

import logging
from typing import Any

from evaluator.errors import UserError


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


NO_FILTER = {"name": "none", "filter": [{"function": "take_first"}]}  # lm-eval's pipeline when a task has no filter_list


class LmEvalScorer:
    """lm-eval 0.4.13's scoring of one generate_until answer, rebuilt from the task spec (plain JSON):

    * the FIRST of `spec.lmeval_filters` (else lm-eval's default `none` = take_first) built by lm-eval's own
      `build_filter_ensemble` from its filter registry, applied as `FilterEnsemble.apply` does — each step
      instantiated and applied in order to `resps` = [[response]] and `docs` = [doc];
    * then the metric as `ConfigurableTask.process_results` calls it for generate_until: lm-eval's registered
      `exact_match` with the task's kwargs on (filtered answer, gold), the gold cast to the answer's type, or — for a
      task whose targets are lists — 1 if any gold matches.

    Per item, not per batch: the registered filters work on each response on its own (a custom filter over the whole
    batch would not, and custom filters are refused when the task is loaded)."""

    def __init__(self, spec: Any) -> None:
        from lm_eval.api.registry import get_metric
        from lm_eval.filters import build_filter_ensemble

        for logger in ("lm_eval", "lm-eval"):  # as evaluator.tasks.lmeval.quiet_lmeval (not imported: no cycle)
            logging.getLogger(logger).setLevel(logging.ERROR)
        self.task = spec.lmeval_task or spec.name
        first = (spec.lmeval_filters or [NO_FILTER])[0]
        self.filter_name = str(first["name"])
        components = [[step["function"], {k: v for k, v in step.items() if k != "function"}] for step in first["filter"]]
        try:
            self._ensemble = build_filter_ensemble(self.filter_name, components)
        except KeyError:
            known = _known_filters()
            bad = next((c[0] for c in components if c[0] not in known), components[0][0])
            raise UserError(f"lm-eval task {self.task}: filter {self.filter_name!r} uses {bad!r}, which is not in "
                            f"lm-eval's filter registry ({', '.join(sorted(known))})") from None
        m = spec.lmeval_metric
        self.metric_name = str(m["metric"])
        self._metric = get_metric(self.metric_name)
        self._kwargs = dict(m.get("kwargs") or {})
        self._gold = str(m.get("gold", "target"))

    def _fail(self, what: str, exc: BaseException) -> UserError:
        return UserError(f"lm-eval task {self.task}: {what} failed on an answer ({type(exc).__name__}: "
                         f"{_first_line(exc)}) — not supported")

    def filtered(self, response: str, doc: Any = None) -> Any:
        """The first filter's output for one response (as lm-eval stores it in `filtered_resps[name]`)."""
        resps: Any = [[response]]
        docs = [doc if doc is not None else {}]
        try:
            for f in self._ensemble.filters:
                resps = f().apply(resps, docs)
            return list(resps)[0]
        except Exception as exc:  # noqa: BLE001 - a filter lm-eval itself would fail on (bad kwargs, a doc it needs)
            raise self._fail(f"filter {self.filter_name!r}", exc) from None

    def metric(self, result: Any, gold: Any) -> float:
        """lm-eval's per-doc metric of a filtered answer (`ConfigurableTask.process_results`, generate_until)."""
        try:
            if self._gold == "targets":  # lm-eval's multiple_target: `list(gold)`, any match scores 1
                golds = list(gold) if isinstance(gold, (list, tuple, str)) else [gold]
                value = self._metric(references=golds, predictions=[result] * len(golds), **self._kwargs)
                value = value[self.metric_name] if isinstance(value, dict) else value
                return 1.0 if value > 0.0 else 0.0
            if type(gold) is not type(result) and not isinstance(result, list):
                gold = type(result)(gold)  # lm-eval casts the gold to the answer's type
            value = self._metric(references=[gold], predictions=[result], **self._kwargs)
            return float(value[self.metric_name] if isinstance(value, dict) else value)
        except Exception as exc:  # noqa: BLE001 - e.g. a kwarg exact_match does not take
            raise self._fail(f"metric {self.metric_name!r}", exc) from None

    def item(self, response: str, item: Any) -> tuple[Any, float]:
        """(first filter's output, score) of a test item's response: cut at `until`, not stripped."""
        result = self.filtered(response, getattr(item, "lmeval_doc", None))
        raw = getattr(item, "lmeval_target", None)
        gold = item.target if self._gold == "choice" or raw is None else raw
        return result, self.metric(result, gold)

    def __call__(self, answer: str, target: str) -> float:
        """The Scorer interface (answer, target text): no doc reaches the filters."""
        return self.metric(self.filtered(answer), target)


def _known_filters() -> set[str]:
    from lm_eval.api.registry import filter_registry

    try:
        return set(filter_registry.keys())
    except Exception:  # noqa: BLE001 - the registry's API differs across versions
        return set()


def lmeval_scorer(spec: Any) -> LmEvalScorer:
    """The scorer of an lm-eval task with `lmeval_metric` (called by `metrics.scorer_for`)."""
    return LmEvalScorer(spec)
