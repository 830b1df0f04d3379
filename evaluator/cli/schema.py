"""The field reference (docs/FIELDS.md, `tunecheck schema`): every job and task field, generated from the schemas.

Each row is one field of the pydantic models — :class:`evaluator.config.job.Job` and the models nested in it, and
:class:`evaluator.tasks.spec.TaskSpec` with its own — with its dotted path, its type (constraints included), its default
and its meaning, which is the field's `description=` in the schema: the reference cannot drift from the code, and
`tests/test_fieldref.py` checks that docs/FIELDS.md is what :func:`field_reference` gives and that no field lacks a
meaning. The "Template variables" section is derived the same way: the variables are the ones
:func:`evaluator.prompts.render_query` passes to a template, the folders the ones :func:`evaluator.prompts.find_prompt`
searches, in its order (probed with placeholder paths, nothing is read or written).
"""

from __future__ import annotations

import json
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal, Optional, Union, get_args, get_origin

import typer
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from evaluator.cli.base import app, check_output_file, friendly, out
from evaluator.tasks.templates import TEMPLATE_MEANINGS, prompt_folders, template_variables

__all__ = ["field_reference", "field_rows", "schemas", "template_variables", "prompt_folders", "TEMPLATE_MEANINGS"]


def schemas() -> list[tuple[str, str, type[BaseModel], str]]:
    """(section title, where it is written, model, one-line intro) for every schema the reference covers."""
    from evaluator.config.job import Job
    from evaluator.tasks.spec import TaskSpec

    return [
        ("Job file", "`tunecheck run JOB.yaml`; schema `evaluator.config.job.Job`", Job,
         "A job names the tasks, the base and newer models, the three arms' sweeps, the cost inputs and the verdict "
         "settings. Unknown fields are refused."),
        ("Task file", "`tasks/<name>.yaml` or a task YAML path; schema `evaluator.tasks.spec.TaskSpec`", TaskSpec,
         "A task is a `datasets.load_dataset` source, the input/target fields, the kind, a prompt template and the "
         "splits. Unknown fields are refused."),
    ]


# --- types ---------------------------------------------------------------------------------------------------------


def _constraints(meta: list[Any]) -> list[str]:
    """Readable bounds from pydantic / annotated-types metadata (Ge, Gt, Le, Lt, MinLen, MaxLen, pattern)."""
    out: list[str] = []
    for m in meta:
        if isinstance(m, FieldInfo):
            out += _constraints(list(m.metadata))
            continue
        for attr, sym in (("ge", "≥"), ("gt", ">"), ("le", "≤"), ("lt", "<"),
                          ("min_length", "length ≥"), ("max_length", "length ≤")):
            v = getattr(m, attr, None)
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                out.append(f"{sym} {v:g}" if isinstance(v, float) else f"{sym} {v}")
        pattern = getattr(m, "pattern", None)
        if isinstance(pattern, str):
            out.append(f"pattern {pattern}")
    return out


def _models_in(tp: Any) -> list[type[BaseModel]]:
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return [tp]
    return [m for a in get_args(tp) for m in _models_in(a)]


def type_text(tp: Any, meta: list[Any] | None = None) -> str:
    """An annotation as a reader of a YAML file sees it: `int (≥ 1) | "all"`, `list[str] | null`, `mapping`. Bounds
    on an optional field bound its value, so they are written beside the type, before `| null`."""
    cons = _constraints(meta or [])
    if not cons:
        return _type(tp)
    args = get_args(tp) if get_origin(tp) in (Union, types.UnionType) else ()
    if type(None) in args:
        rest = [a for a in args if a is not type(None)]
        inner = rest[0] if len(rest) == 1 else Union[tuple(rest)]  # type: ignore[valid-type]
        return f"{_type(inner)} ({', '.join(cons)}) | null"
    return f"{_type(tp)} ({', '.join(cons)})"


def _type(tp: Any) -> str:
    origin = get_origin(tp)
    if tp is type(None):
        return "null"
    if tp is Any:
        return "any"
    if origin is Annotated:
        base, *meta = get_args(tp)
        return type_text(base, meta)
    if origin is Literal:
        return " | ".join(json.dumps(a) for a in get_args(tp))
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        parts = [_type(a) for a in args if a is not type(None)]
        return " | ".join(parts + (["null"] if type(None) in args else []))
    if origin in (list, tuple, set, frozenset):
        return f"list[{', '.join(_type(a) for a in get_args(tp))}]"
    if origin is dict:
        k, v = get_args(tp)
        return f"mapping[{_type(k)} → {_type(v)}]"
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return "mapping"
    if isinstance(tp, type):
        return tp.__name__
    return str(tp)


# --- defaults and rows ---------------------------------------------------------------------------------------------


def _default(fi: FieldInfo) -> tuple[str, bool]:
    """(the default as YAML-ish text, whether it is a literal value to show as code)."""
    if fi.default_factory is not None:
        value = fi.default_factory()  # type: ignore[call-arg]
    elif fi.default is PydanticUndefined:
        return "required", False
    else:
        value = fi.default
    if isinstance(value, BaseModel):
        return "all defaults (below)", False
    return json.dumps(value, ensure_ascii=False), True


def _fields(model: type[BaseModel], prefix: str = "") -> Iterator[tuple[str, FieldInfo, type[BaseModel]]]:
    for name, fi in model.model_fields.items():
        path = f"{prefix}{name}"
        yield path, fi, model
        for sub in _models_in(fi.annotation):
            yield from _fields(sub, f"{path}.")


def field_rows(model: type[BaseModel]) -> list[dict[str, str]]:
    """One row per field of `model` and of every model nested in it (dotted paths), in schema order."""
    rows = []
    for path, fi, owner in _fields(model):
        default, code = _default(fi)
        rows.append({
            "path": path, "type": type_text(fi.annotation, list(fi.metadata)), "default": default,
            "default_is_value": "yes" if code else "", "meaning": " ".join((fi.description or "").split()),
            "model": owner.__name__,
        })
    return rows


# --- template variables and prompt folders ---------------------------------------------------------------------------


# --- the document --------------------------------------------------------------------------------------------------


def _cell(text: str) -> str:
    """Text for a table cell: `|` escaped, and `<` outside code spans (`<name>` would be read as an HTML tag)."""
    parts = text.replace("|", "\\|").split("`")
    return "`".join(p.replace("<", "\\<") if i % 2 == 0 else p for i, p in enumerate(parts))


def _code(text: str) -> str:
    escaped = text.replace("|", "\\|")
    return f"`{escaped}`" if "`" not in text else f"`` {escaped} ``"


def field_reference() -> str:
    """The whole reference as Markdown (what docs/FIELDS.md holds and `tunecheck schema` prints)."""
    lines = [
        "# Field reference",
        "",
        "Every field of a job file and of a task file, generated from the schemas (pydantic models) by "
        "`tunecheck schema` — do not edit by hand: run `tunecheck schema --out docs/FIELDS.md`. A nested field is "
        "written with its dotted path (`arms.lora.r` is `r:` under `lora:` under `arms:`). `null` means the field is "
        "left unset; a YAML boolean (yes/no/on/off) where a number or text is expected is refused.",
    ]
    for title, where, model, intro in schemas():
        lines += ["", f"## {title}", "", f"{intro} ({where}.)", "", "| path | type | default | meaning |",
                  "|---|---|---|---|"]
        for r in field_rows(model):
            default = _code(r["default"]) if r["default_is_value"] else r["default"]
            lines.append(f"| `{r['path']}` | {_code(r['type'])} | {default} | {_cell(r['meaning'])} |")
    names = template_variables()
    lines += [
        "",
        "## Template variables",
        "",
        "A task's prompt template (`prompt:`) is a Jinja2 file rendered in a sandbox for every item, with strict "
        "undefined variables: it gets exactly these variables, and any other name is an error when the task loads "
        "(`tunecheck tasks --check` lists the variables each template uses).",
        "",
        "| variable | meaning |",
        "|---|---|",
    ]
    lines += [f"| `{n}` | {_cell(TEMPLATE_MEANINGS.get(n, ''))} |" for n in names]
    lines += ["", "`prompt:` is a file name (not a path), looked up in these folders in order — the first match wins:", ""]
    lines += [f"{i}. {d}" for i, d in enumerate(prompt_folders(), 1)]
    lines += ["", "A prompt that is not found is one error line naming every folder searched."]
    return "\n".join(lines) + "\n"


@app.command()
@friendly
def schema(
    out_file: Optional[Path] = typer.Option(None, "--out", help="Write the reference to this file (e.g. docs/FIELDS.md) instead of printing it."),
) -> None:
    """Print the field reference: every job and task field (dotted path, type, default, meaning) and the template
    variables, generated from the schemas (docs/FIELDS.md is this output)."""

    text = field_reference()
    if out_file is None:
        sys.stdout.write(text)
        return
    from evaluator.store.files import atomic_write_text

    check_output_file(out_file, "--out")
    atomic_write_text(out_file, text)
    out.print(f"written: {out_file}", highlight=False, soft_wrap=True)
