"""Prompt templates: found in the task's folder, the current folder or the bundled `prompts/`, compiled in a Jinja2
sandbox, rendered on every item when a task loads (`check_prompt`) so a broken template fails before any model."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import StrictUndefined, TemplateError, TemplateSyntaxError
from jinja2.sandbox import SandboxedEnvironment

from evaluator.errors import UserError
from evaluator.tasks.spec import Item, Task

REPO_PROMPTS = Path(__file__).resolve().parents[2] / "prompts"


TEMPLATE_VARIABLES = "input, id and choices"


@lru_cache(maxsize=64)
def _compile(text: str):
    env = SandboxedEnvironment(undefined=StrictUndefined, keep_trailing_newline=False, autoescape=False)
    return env.from_string(text)


def _template(path: Path):
    """The compiled template of a prompt file (compiled once per distinct text); every problem is one UserError line."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise UserError(f"prompt template {path} cannot be read ({exc.strerror or exc}) — check the file") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise UserError(f"prompt template {path} is not UTF-8 text (line {line}, byte {exc.start}) — re-save it as UTF-8") from None
    try:
        return _compile(text.removeprefix("\ufeff"))
    except TemplateSyntaxError as exc:
        raise UserError(f"prompt template {path} line {exc.lineno}: {exc.message} — fix the template syntax") from None
    except Exception as exc:  # noqa: BLE001 - any other compile-time failure
        raise UserError(f"prompt template {path}: {type(exc).__name__}: {exc} — fix the template") from None


def _describe(exc: BaseException) -> str:
    msg = " ".join(str(exc).split()) or "(no message)"
    if isinstance(exc, TemplateError) and type(exc).__name__ in {"UndefinedError"}:
        return f"{msg} (the template gets {TEMPLATE_VARIABLES})"
    return f"{type(exc).__name__}: {msg}"


def render_query(template, path: Path | str, task: Task, item: Item, split: str | None = None) -> str:
    """One item's query; any exception while rendering (of any type) is one UserError line naming the template,
    the item and the error."""
    try:
        out = template.render(input=item.input, id=item.id, choices=list(item.choices))
    except Exception as exc:  # noqa: BLE001 - ZeroDivisionError, TypeError, SecurityError, UndefinedError, ...
        where = f" (split {split!r})" if split else ""
        raise UserError(
            f"task {task.name}: prompt template {path} failed on item {item.id}{where}: {_describe(exc)} — fix the template"
        ) from None
    if not isinstance(out, str):  # pragma: no cover - jinja2 always renders text
        out = str(out)
    return out


def find_prompt(task: Task) -> Path:
    name = task.spec.prompt
    if "/" in name or "\\" in name or name.startswith("."):
        raise UserError(f"task {task.name}: prompt {name!r} must be a file name in prompts/, not a path")
    dirs = (task.path.parent / "prompts", task.path.parent.parent / "prompts", Path.cwd() / "prompts", REPO_PROMPTS)
    for d in dirs:
        if (d / name).is_file():
            return d / name
    for d in dirs:
        if (d / name).is_dir():
            raise UserError(f"task {task.name}: prompt template {d / name} is a directory, not a file — `prompt` names a Jinja2 file")
    raise UserError(f"task {task.name}: prompt template {name!r} not found (searched {', '.join(dict.fromkeys(str(d.resolve()) for d in dirs))}) — add it to one of these folders or fix `prompt`")


def check_prompt(task: Task) -> None:
    """Render the task's template on every training and test item (cheap: no model), keeping each query in
    `task.rendered` for the run. The first failure is one UserError line; so is a query that renders empty."""
    if task.spec.prerendered:
        return
    path = find_prompt(task)
    template = _template(path)
    for split, items in ((task.spec.train_split, task.train), (task.spec.test_split, task.test)):
        for it in items:
            if it in task.rendered:
                continue
            q = render_query(template, path, task, it, split)
            if not q.strip():
                raise UserError(
                    f"task {task.name}: prompt template {path} renders an empty query for item {it.id} (split "
                    f"{split!r}) — the template must produce text (it gets {TEMPLATE_VARIABLES})"
                )
            task.rendered[it] = q


# What each variable a template gets holds (the names themselves come from render_query, see template_variables).
TEMPLATE_MEANINGS = {
    "input": "the item's input text (the task's `input_field`)",
    "id": "the item's id, as text (the task's `id_field`; without one `<split>-<row index>`)",
    "choices": "the item's choices, a list of strings (the task's `choices`, or its `choices_field` per row; empty "
               "for a generate task without choices)",
}


def template_variables() -> list[str]:
    """The variables a prompt template gets, as :func:`render_query` passes them (captured from a
    call with a stand-in template, so this list is the code's)."""
    from types import SimpleNamespace

    from evaluator.tasks.spec import Item

    class _Capture:
        names: list[str] = []

        def render(self, **kw: Any) -> str:
            _Capture.names = list(kw)
            return "probe"

    render_query(_Capture(), "probe", SimpleNamespace(name="probe"), Item("id", "input", "", ("a", "b")))
    return _Capture.names


def prompt_folders() -> list[str]:
    """Where `prompt:` is looked up, in :func:`find_prompt`'s order, as placeholders (`<task
    folder>/prompts/`, `./prompts/`, …): find_prompt is called on a stand-in task under placeholder paths, with every
    file check answering "no", and the folders it asked about are recorded."""
    from types import SimpleNamespace
    from unittest import mock

    from evaluator.errors import UserError

    root = Path("/__fieldref__")
    task_file, cwd = root / "project" / "tasks" / "task.yaml", root / "cwd"
    asked: list[Path] = []

    def is_file(self: Path) -> bool:
        if self.parent not in asked:
            asked.append(self.parent)
        return False

    stub = SimpleNamespace(name="probe", path=task_file, spec=SimpleNamespace(prompt="__fieldref_probe__.j2"))
    with mock.patch.object(Path, "is_file", is_file), mock.patch.object(Path, "cwd", lambda: cwd), \
            mock.patch.object(Path, "is_dir", lambda self: False):
        try:
            find_prompt(stub)  # type: ignore[arg-type]
        except UserError:
            pass
    out = []
    for d in asked:
        if d == REPO_PROMPTS:
            out.append("the `prompts/` folder installed with tunecheck (its bundled templates)")
            continue
        for base, shown, note in ((task_file.parent, "<task folder>", " (next to the task file)"),
                                  (task_file.parent.parent, "<task folder>/..", " (beside the task file's folder)"),
                                  (cwd, ".", " (in the current directory)")):
            try:
                rel = d.relative_to(base)
            except ValueError:
                continue
            out.append(f"`{shown}/{rel.as_posix()}/`{note}")
            break
        else:  # pragma: no cover - a folder find_prompt adds that is none of the above
            out.append(f"`{d}`")
    return out
