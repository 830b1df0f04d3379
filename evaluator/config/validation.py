"""Validation shared by every input file: strict YAML (duplicate keys and unquoted YAML booleans refused), the
strict pydantic base, and pydantic errors turned into one line naming the file, the field and the fix."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_core import PydanticCustomError

from evaluator.errors import UserError


def field_error(msg: str, *loc_extra: Any) -> PydanticCustomError:
    """A validation error with our own one-line message (and, optionally, a finer position inside the field)."""
    return PydanticCustomError("tunecheck", "{msg}", {"msg": msg, "loc_extra": tuple(loc_extra)})


BOOL_HINT_TEXT = 'quote YAML booleans ("yes" / "no"): unquoted yes/no/on/off/true/false are read as True/False'


BOOL_HINT_NUMBER = "write a number: unquoted yes/no/on/off/true/false are YAML booleans (True/False), not numbers"


def _accepts(tp: Any, kind: type) -> bool:
    """Whether the annotation `tp` takes values of `kind` (bool, int, float or str) anywhere in it."""
    if tp is kind or tp is Any:
        return True
    origin = get_origin(tp)
    if origin is Annotated:
        return _accepts(get_args(tp)[0], kind)
    if origin is Literal:
        return any(isinstance(a, kind) for a in get_args(tp))
    return any(_accepts(a, kind) for a in get_args(tp))


def _has_model(tp: Any) -> bool:
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return True
    return any(_has_model(a) for a in get_args(tp))


def _find_bool(value: Any, path: tuple = ()) -> tuple | None:
    """Where the first bool sits inside a plain YAML value (lists and mappings), or None."""
    if isinstance(value, bool):
        return path
    items = enumerate(value) if isinstance(value, (list, tuple)) else value.items() if isinstance(value, dict) else ()
    for k, v in items:
        if (p := _find_bool(v, (*path, k))) is not None:
            return p
    return None


def refuse_yaml_booleans(cls: type[BaseModel], value: Any, info: ValidationInfo) -> Any:
    """A `mode="before"` check for every field of a model: a bool where the field takes none is refused, with the hint
    to write a number or to quote the word (`shots: [yes]` would silently be k=1, `choices: [yes, no]` True/False)."""
    fi = cls.model_fields.get(info.field_name or "")
    if fi is None or _has_model(fi.annotation) or _accepts(fi.annotation, bool):
        return value
    at = _find_bool(value)
    if at is None:
        return value
    got = value
    for p in at:
        got = got[p]
    numeric = _accepts(fi.annotation, int) or _accepts(fi.annotation, float)
    hint = BOOL_HINT_NUMBER if numeric or not _accepts(fi.annotation, str) else BOOL_HINT_TEXT
    raise field_error(f"got the YAML boolean {got!r} — {hint}", *at)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @field_validator("*", mode="before")
    @classmethod
    def _no_yaml_booleans(cls, v: Any, info: ValidationInfo) -> Any:
        return refuse_yaml_booleans(cls, v, info)


def _is_union_tag(part: Any) -> bool:
    """pydantic puts the union member it tried into the error location (`int`, `constrained-int`, `literal['max']`,
    `function-after[...]`, …): not a field, so not shown."""
    if not isinstance(part, str):
        return False
    return (
        part in {"int", "str", "float", "bool", "none", "bytes", "list", "dict"}
        or "[" in part
        or part.startswith(("constrained-", "function-", "lax-", "json-", "is-instance", "chain", "nullable"))
    )


def clean_loc(loc: tuple) -> str:
    """A field path as the user wrote it: `arms.lora.train_sizes.0`, without pydantic's union-member tags."""
    return ".".join(str(p) for p in loc if not _is_union_tag(p))


def _loc_of(e: dict) -> str:
    extra = (e.get("ctx") or {}).get("loc_extra") or ()
    return clean_loc((*e["loc"], *extra))


def _pick(errors: list[dict]) -> dict:
    """Of one field's union-member errors, the most telling: ours, then a bound (>= 1), then the first."""
    ranked = sorted(errors, key=lambda e: (e["type"] != "tunecheck", e["type"] == "literal_error", e["type"].endswith("_parsing")))
    return ranked[0]


def format_validation_error(err: ValidationError, source: str) -> str:
    """One line with every problem: the first, its field path and how to fix it, then each other field's problem
    after "; also: " (one UserError line, however many fields are wrong)."""
    errors = err.errors()
    by_loc: dict[str, list[dict]] = {}
    for x in errors:  # one field, several union members: one problem
        by_loc.setdefault(_loc_of(x), []).append(x)

    def problem(loc: str, same: list[dict]) -> str:
        e = _pick(same)
        if e["type"] == "extra_forbidden":
            return f"unknown field '{loc}' — remove it or check its spelling"
        if e["type"] == "missing":
            return f"missing required field '{loc}' — add it"
        if e["type"] == "tunecheck":
            return f"field '{loc}': {e['msg']}"
        msg = e["msg"].removeprefix("Value error, ")
        got = e.get("input")
        hint = ""
        if got is None and e["type"] not in {"value_error"}:
            hint = " — the field is empty in the YAML: give it a value or remove the line"
        if len(same) > 1 and any(x["type"] == "literal_error" for x in same) and e["type"] != "literal_error":
            words = [x.get("ctx", {}).get("expected") for x in same if x["type"] == "literal_error"]
            hint = f" — or {' or '.join(w for w in words if w)}"
        return f"field '{loc}': {msg} (got {got!r}){hint}"

    texts = [" ".join(problem(loc, same).splitlines()) for loc, same in by_loc.items()]
    return f"{source}: {texts[0]}" + (f"; also: {'; '.join(texts[1:])}" if len(texts) > 1 else "")


class DuplicateKeyError(yaml.constructor.ConstructorError):
    def __init__(self, key: Any, first_line: int, line: int) -> None:
        super().__init__(None, None, f"key {key!r} is given twice (lines {first_line} and {line})", None)
        self.key, self.first_line, self.line = key, first_line, line


class UniqueKeyLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses a mapping key given twice (plain YAML keeps the last value silently); keys
    brought in by a `<<` merge may still be overridden."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, int] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    if key in seen:
                        raise DuplicateKeyError(key, seen[key], key_node.start_mark.line + 1)
                except TypeError:  # unhashable: the base class says so
                    continue
                seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


def parse_yaml(text: str, source: str, what: str) -> Any:
    """YAML text → data with UniqueKeyLoader; a syntax error or a repeated key is one UserError line."""
    try:
        return yaml.load(text, Loader=UniqueKeyLoader)
    except DuplicateKeyError as exc:
        raise UserError(f"{what} {source}: line {exc.line}: key {exc.key!r} is given twice (first on line "
                        f"{exc.first_line}) — keep one") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise UserError(f"{what} {source}:{where} is not valid YAML ({getattr(exc, 'problem', exc)})") from None


def load_yaml(path: Path, what: str) -> dict[str, Any]:
    """Read a YAML mapping safely, turning every read/parse problem into one UserError line."""
    if path.is_dir():
        raise UserError(f"{what} {path} is a directory, not a file — give the path of the YAML file")
    if not path.is_file():
        raise UserError(f"{what} {path} does not exist — check the path")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise UserError(f"{what} {path} is not UTF-8 text — re-save it as UTF-8") from None
    data = parse_yaml(text, str(path), what)
    if data is None:
        raise UserError(f"{what} {path} is empty — write its fields (see README)")
    if not isinstance(data, dict):
        raise UserError(f"{what} {path} must be a YAML mapping of fields, got {type(data).__name__}")
    return data
