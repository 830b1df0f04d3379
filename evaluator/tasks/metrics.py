"""Scorers of free-form (generated) answers: text → a per-item score in [0, 1], named by a task's `metric`.

- `exact_match` (and `accuracy`, the choice metric, when a choice task is asked for text): the stripped answer equals
  the stripped target — 0 or 1.
- `f1`: token F1 after SQuAD-style normalisation (lower case, punctuation and the articles a / an / the removed,
  whitespace tokens); both empty → 1, one empty → 0.
- `regex`: the task's `answer_regex` is searched in the answer; the named group `answer` if the pattern has one,
  else the whole first match, is compared with the target by exact match; no match → 0.
- `json_valid`: the answer parses as strict JSON (no NaN / Infinity) — 0 or 1.
- `json_schema`: the answer parses as JSON and validates against the task's `answer_schema` — 0 or 1.
- `json_fields`: the share of the target JSON object's fields that the answer's JSON object reproduces exactly
  (numbers by value, `true` is not `1`); an answer that is not a JSON object → 0.
- lm-eval tasks with `lmeval_metric` (a `filter_list` or exact_match kwargs): lm-eval's own filters and metric
  (`evaluator.tasks.lmeval_scoring`, which imports lm_eval when a scorer is built); their `metric` stays exact_match.

Pure Python (no torch): analysis pairs the scores item by item and picks the interval by their kind (0/1 → Wilson /
Newcombe, otherwise bootstrap)."""

from __future__ import annotations

import json
import re
import string
import unicodedata
from collections import Counter
from typing import Any, Callable

Scorer = Callable[[str, str], float]

GENERATE_METRICS = ("exact_match", "f1", "regex", "json_valid", "json_schema", "json_fields")

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_ASCII_PUNCT = frozenset(string.punctuation)


def _is_punct(ch: str) -> bool:
    return ch in _ASCII_PUNCT or unicodedata.category(ch).startswith("P")


def normalise(text: str) -> str:
    """SQuAD's normalize_answer (lower case, no punctuation — Unicode punctuation too —, no articles, single spaces)."""
    text = "".join(ch for ch in text.lower() if not _is_punct(ch))
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(answer: str, target: str) -> float:
    return float(answer.strip() == target.strip())


def token_f1(answer: str, target: str) -> float:
    """SQuAD token F1 (v2 rule for empty answers: both empty → 1, one empty → 0)."""
    a, t = normalise(answer).split(), normalise(target).split()
    if not a or not t:
        return float(a == t)
    same = sum((Counter(a) & Counter(t)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(a), same / len(t)
    return 2 * precision * recall / (precision + recall)


def extract(pattern: re.Pattern[str], answer: str) -> str | None:
    """The first match's named group `answer` (if the pattern has one) or whole text; None: no match (or the group
    took no part in the match)."""
    m = pattern.search(answer)
    if m is None:
        return None
    return m.group("answer") if "answer" in pattern.groupindex else m.group(0)


def regex_scorer(pattern: str) -> Scorer:
    compiled = re.compile(pattern)

    def score(answer: str, target: str) -> float:
        got = extract(compiled, answer)
        return 0.0 if got is None else exact_match(got, target)

    return score


class _NotJson(ValueError):
    pass


def _reject_constant(name: str) -> Any:
    raise _NotJson(f"{name} is not JSON")


def parse_json(text: str) -> tuple[bool, Any]:
    """(parsed, value) of strict JSON text."""
    try:
        return True, json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        return False, None


def json_valid(answer: str, target: str) -> float:
    return float(parse_json(answer)[0])


def check_schema(schema: Any) -> str | None:
    """Why `schema` is not a valid JSON Schema (for its own `$schema` draft, default the newest); None: it is."""
    import jsonschema

    if not isinstance(schema, dict):
        return f"must be a JSON Schema (a mapping), got {type(schema).__name__}"
    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.exceptions.SchemaError as err:
        where = "/".join(str(p) for p in err.path)
        return f"is not a valid JSON Schema: {err.message}" + (f" (at {where})" if where else "")
    return None


def schema_scorer(schema: Any) -> Scorer:
    import jsonschema

    validator = jsonschema.validators.validator_for(schema)(schema)

    def score(answer: str, target: str) -> float:
        ok, value = parse_json(answer)
        return float(ok and validator.is_valid(value))

    return score


def same_json(a: Any, b: Any) -> bool:
    """JSON equality: numbers by value (1 == 1.0), but booleans are not numbers; objects and arrays element-wise."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_json(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same_json(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


def target_fields(target: str) -> dict | None:
    """The target of a `json_fields` item: a JSON object with at least one field; None if it is not one."""
    ok, value = parse_json(target)
    return value if ok and isinstance(value, dict) and value else None


def json_fields(answer: str, target: str) -> float:
    want = target_fields(target)
    if want is None:
        raise ValueError(f"metric json_fields needs a target that is a JSON object with fields, got {target[:60]!r}")
    ok, got = parse_json(answer)
    if not ok or not isinstance(got, dict):
        return 0.0
    return sum(k in got and same_json(got[k], v) for k, v in want.items()) / len(want)


def scorer_for(spec: Any) -> Scorer:
    """The scorer of a task's generated answers: `spec` is its TaskSpec (not imported: spec.py imports this module),
    read for `metric`, `answer_regex`, `answer_schema` (a schema file must have been read by load_task)."""
    if getattr(spec, "lmeval_metric", None) is not None:  # an lm-eval task scored by lm-eval's filters and metric
        from evaluator.tasks.lmeval_scoring import lmeval_scorer  # imports lm_eval when it builds one

        return lmeval_scorer(spec)
    metric = spec.metric
    if metric in ("exact_match", "accuracy"):
        return exact_match
    if metric == "f1":
        return token_f1
    if metric == "regex":
        return regex_scorer(spec.answer_regex)
    if metric == "json_valid":
        return json_valid
    if metric == "json_schema":
        if not isinstance(spec.answer_schema, dict):
            raise ValueError(f"task {spec.name}: answer_schema {spec.answer_schema!r} was not read (load the task "
                             "with load_task)")
        return schema_scorer(spec.answer_schema)
    if metric == "json_fields":
        return json_fields
    raise ValueError(f"unknown metric {metric!r}")
