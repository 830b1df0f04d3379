"""`tunecheck tasks`: list the tasks (or lm-eval tasks) with item counts; `--check` validates task files."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from evaluator.cli.base import _error_line, app, friendly, out
from evaluator.errors import UserError


@app.command()
@friendly
def tasks(
    directory: Optional[Path] = typer.Option(None, "--dir", help="Look for task YAMLs here instead."),
    lm_eval: Optional[list[Path]] = typer.Option(None, "--lm-eval", help="List the lm-eval task YAMLs in this folder instead (repeatable); use them as lm-eval:<name> with lm_eval_include."),
    check: bool = typer.Option(False, "--check", help="Check every task without loading a model: data, prompt lookup, the template rendered on every item and the variables it uses; one error line per problem (exit 2), else a table of OK tasks."),
) -> None:
    """List the available tasks with their item counts; with a folder of lm-eval YAML files, its lm-eval tasks."""
    from evaluator.tasks.load import list_tasks, load_task

    if check:
        if lm_eval:
            raise UserError("--check checks task YAMLs (tasks/ or --dir); lm-eval tasks are checked when a job names them")
        _check_tasks([directory] if directory else None)
        return
    if lm_eval:
        from evaluator.tasks.lmeval import list_lmeval_tasks

        found_lm = list_lmeval_tasks([p.resolve() for p in lm_eval])
        if not found_lm:
            raise UserError(f"no lm-eval tasks in {', '.join(map(str, lm_eval))} — the folder needs lm-eval task YAMLs")
        lm_table = Table("job reference", "output type", "file")
        for name, output_type, path in found_lm:
            lm_table.add_row(f"lm-eval:{name}", output_type, path)
        out.print(lm_table)
        return

    table = Table("task", "kind", "train", "test", "file", "description")
    found = list_tasks([directory] if directory else None)
    if not found:
        raise UserError("no task files found — add one under tasks/ (see README)")
    for path, spec, problem in found:
        if spec is None:
            table.add_row(path.stem, "-", "-", "-", str(path), f"[red]{problem}[/]")
            continue
        try:
            t = load_task(str(path))
            table.add_row(spec.name, spec.kind, str(len(t.train)), str(len(t.test)), str(path), spec.description)
        except UserError as exc:
            table.add_row(spec.name, spec.kind, "-", "-", str(path), f"[red]{exc}[/]")
    out.print(table)


def _check_tasks(search_dirs: Optional[list[Path]]) -> None:
    """`tasks --check`: every problem of every task as one `error:` line and exit 2, else a table of OK tasks."""
    from rich.markup import escape

    from evaluator.tasks.check import allowed_variables, check_tasks

    checks = check_tasks(search_dirs)
    if not checks:
        raise UserError("no task files found — add one under tasks/ (see README)")
    problems = [p for c in checks for p in c.problems]
    if problems:
        for line in problems:
            _error_line(" ".join(line.split("\n")))
        raise typer.Exit(2)
    allowed = ", ".join(allowed_variables())
    table = Table("task", "kind", "train", "test", "template", "variables used", "check",
                  caption=f"every task OK; a template gets {allowed}")
    for c in checks:
        used = "-" if c.variables is None else (", ".join(c.variables) or "(none)")
        table.add_row(escape(c.name), c.kind, str(c.train), str(c.test), escape(c.template), used, "[green]OK[/]")
    out.print(table)
