"""`tunecheck tasks --check`: every task file loaded and its template rendered on every item, no model loaded.

Each task is checked on its own and every problem is kept, so one command lists them all: a task file that does not
validate, its prompt template (looked up, compiled, and the variables it uses — `jinja2.meta.find_undeclared_variables`
on its source — against the ones a template gets), and loading the task (data files, rows, fields, the template
rendered on every training and test item: :func:`evaluator.tasks.load_task`). Problems are one line each, as the
loaders word them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

from evaluator.errors import UserError

__all__ = ["TaskCheck", "check_tasks", "template_variables_used", "allowed_variables"]


@dataclass
class TaskCheck:
    name: str
    path: Path
    kind: str = "-"
    train: int | None = None
    test: int | None = None
    template: str = "-"
    variables: list[str] | None = None  # the variables the template uses (None: no template, or it did not compile)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def allowed_variables() -> list[str]:
    """The variables a template gets (as evaluator.prompts.render_query passes them)."""
    from evaluator.tasks.templates import template_variables

    return template_variables()


def template_variables_used(path: Path) -> list[str]:
    """The variables a template's source reads that it does not set itself (sorted); the file must compile."""
    from jinja2 import meta
    from jinja2.sandbox import SandboxedEnvironment

    text = path.read_bytes().decode("utf-8").removeprefix("\ufeff")
    return sorted(meta.find_undeclared_variables(SandboxedEnvironment().parse(text)))


def _check_prompt(chk: TaskCheck, spec, path: Path, allowed: list[str]) -> None:
    from evaluator.tasks.templates import TEMPLATE_VARIABLES, _template, find_prompt

    try:
        tpath = find_prompt(SimpleNamespace(name=spec.name, path=path, spec=spec))  # type: ignore[arg-type]
        chk.template = str(tpath)
        _template(tpath)  # a syntax error or an unreadable file: one line
        chk.variables = template_variables_used(tpath)
    except UserError as exc:
        chk.problems.append(str(exc))
        return
    unknown = [v for v in chk.variables if v not in allowed]
    if unknown:
        chk.problems.append(
            f"task {spec.name}: prompt template {tpath} uses {', '.join(repr(v) for v in unknown)}, which a template "
            f"does not get — it gets {TEMPLATE_VARIABLES}; fix the template"
        )


def check_tasks(search_dirs: list[Path] | None = None) -> list[TaskCheck]:
    """Every task file found (as `tunecheck tasks` lists them), each checked completely; see the module docstring."""
    from evaluator.tasks.load import list_tasks, load_task

    allowed = allowed_variables()
    out: list[TaskCheck] = []
    for path, spec, problem in list_tasks(search_dirs):
        if spec is None:
            out.append(TaskCheck(name=path.stem, path=path, problems=[problem]))
            continue
        chk = TaskCheck(name=spec.name, path=path, kind=spec.kind)
        out.append(chk)
        if not spec.prerendered and spec.prompt:
            _check_prompt(chk, spec, path, allowed)
        try:
            task = load_task(str(path))
            chk.train, chk.test = len(task.train), len(task.test)
        except UserError as exc:
            msg = str(exc)
            undefined_again = chk.problems and chk.variables is not None and "the template gets" in msg
            if msg not in chk.problems and not undefined_again:  # the same problem found twice is one line
                chk.problems.append(msg)
    return out
