"""The command-line application every verb registers on: typer app whose errors are one line with exit code 2
(user errors, usage errors, OS errors naming what was kept), and the shared folder/output-file checks."""

from __future__ import annotations

import errno
import functools
import os
import sys
from pathlib import Path
from typing import Any, Callable, Optional

import click
import typer
from rich.console import Console
from typer.core import TyperGroup

from evaluator.errors import UserError, os_error_line

try:  # typer >= 0.2x parses with its own copy of click: its exceptions are not click's
    from typer._click import exceptions as _typer_click_exc
except ImportError:  # pragma: no cover - older typer uses click itself
    _typer_click_exc = click.exceptions




def _exc(name: str) -> tuple[type, ...]:
    return tuple({getattr(m, name) for m in (_typer_click_exc, click.exceptions) if hasattr(m, name)})


NO_ARGS_IS_HELP, USAGE_ERROR, CLICK_EXCEPTION, ABORT = (
    _exc("NoArgsIsHelpError"), _exc("UsageError"), _exc("ClickException"), _exc("Abort"))


def _no_hyphen_breaks() -> None:
    """Help text wraps at spaces only: `lm-eval` or `--allow-incomplete` is never split into `lm-` / `eval`."""
    import importlib
    import textwrap

    for name in ("typer._click._textwrap", "click._textwrap"):
        try:  # the hyphen-aware splitter replaced by the whitespace-only one (break_on_hyphens is set per instance)
            importlib.import_module(name).TextWrapper.wordsep_re = textwrap.TextWrapper.wordsep_simple_re
        except (ImportError, AttributeError):  # pragma: no cover - another click layout: hyphens may break there
            pass


_no_hyphen_breaks()


#: the verbs in the order `tunecheck --help` lists them: a run, its report and costs, comparing runs, then the tools
VERBS = ("run", "demo", "report", "cost", "compare", "tasks", "schema", "train", "eval", "samples")


class OneLineErrors(TyperGroup):
    """The app's click group: a usage error (bad option value, unknown option, missing argument) is one line
    `error: <click's message> (see tunecheck <cmd> --help)` and exit 2, not click's usage box. Done in `main`, so it
    holds for the console script and for `CliRunner().invoke(app, ...)` alike; `--help` is untouched."""

    def list_commands(self, ctx: Any) -> list[str]:
        """The verbs in the order a new user meets them (then any others), whatever order their modules load in."""
        names = list(self.commands)
        return sorted(names, key=lambda n: VERBS.index(n) if n in VERBS else len(VERBS))

    def format_commands(self, ctx: Any, formatter: Any) -> None:
        """Each verb's whole first sentence, wrapped, in the command list (click would cut it with "...")."""
        for name in self.list_commands(ctx):
            cmd = self.get_command(ctx, name)
            if cmd is not None and not cmd.short_help and cmd.help:
                first = " ".join(cmd.help.strip().split("\n\n")[0].split())
                cmd.short_help = first.split(". ")[0].rstrip(".") + "."
        super().format_commands(ctx, formatter)

    def main(self, args: Any = None, prog_name: Optional[str] = None, complete_var: Optional[str] = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        try:
            rv = super().main(args=args, prog_name=prog_name, complete_var=complete_var, standalone_mode=False, **extra)
        except NO_ARGS_IS_HELP:  # bare `tunecheck`: the help text, as click gives it
            return super().main(args=args, prog_name=prog_name, complete_var=complete_var,
                                standalone_mode=standalone_mode, **extra)
        except USAGE_ERROR as exc:
            if not standalone_mode:
                raise
            ctx = exc.ctx  # its command path starts with the program name as invoked ("root" under CliRunner)
            sub = ctx.command_path.split(" ", 1)[1:] if ctx is not None else []
            where = " ".join(["tunecheck", *sub])
            msg = " ".join(exc.format_message().split()).rstrip(".")
            click.echo(f"error: {msg} (see {where} --help)", err=True)
            sys.exit(2)
        except CLICK_EXCEPTION as exc:
            if not standalone_mode:
                raise
            click.echo(f"error: {' '.join(exc.format_message().split())}", err=True)
            sys.exit(exc.exit_code)
        except ABORT:
            if not standalone_mode:
                raise
            click.echo("Aborted!", err=True)
            sys.exit(1)
        if not standalone_mode:
            return rv
        sys.exit(rv if isinstance(rv, int) else 0)


app = typer.Typer(
    cls=OneLineErrors,
    help="tunecheck — does this task need fine-tuning? Runs many-shot prompting, LoRA and a newer base on the same "
    "test items and reports quality, cost and a verdict.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain click help: wrapped at the terminal width, option names never cut
)


out = Console(soft_wrap=True)


err = Console(stderr=True, soft_wrap=True)


# what an OSError mid-command leaves intact, per command (the one error line says it)
KEPT = {
    "run": "finished units are saved",
    "demo": "finished units are saved",
    "train": "adapters already saved are kept",
    "eval_adapter": "the adapter is untouched",
    "report": "the run's stored results are untouched",
    "cost": "the run's stored results are untouched",
    "compare": "both runs' stored results are untouched",
    "samples": "the run's stored results are untouched",
}


def _error_line(text: str) -> None:
    """`error: TEXT` on stderr; TEXT is printed as is (a file name like `runs/[old]` is not rich markup)."""
    from rich.markup import escape

    err.print(f"[bold red]error:[/] {escape(text)}", highlight=False, soft_wrap=True)


def friendly(fn: Callable) -> Callable:
    """The CLI's one error boundary: UserError and OSError (disk full, read-only mount, permissions, a file where a
    folder should be, ...) become one `error: ...` line + exit 2; Ctrl-C a resume hint + exit 130."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except UserError as exc:
            _error_line(str(exc))
            raise typer.Exit(2) from None
        except OSError as exc:
            if exc.errno == errno.EPIPE:  # stdout closed (`| head`): click's own quiet exit
                raise
            _error_line(os_error_line(exc, KEPT.get(fn.__name__, "files already written are kept")))
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            err.print("interrupted — finished work is saved; run the same command again to resume")
            raise typer.Exit(130) from None

    return wrapper


def _nearest_existing(path: Path) -> Path:
    p = path
    while not os.path.lexists(p) and p != p.parent:
        p = p.parent
    return p


def check_folder(path: Path, what: str, fix: str) -> None:
    """`path` is (or can be created as) a folder we can write: else one line naming it, before any work is done."""
    p = _nearest_existing(path)
    if p.is_dir():
        if not os.access(p, os.W_OK | os.X_OK):
            raise UserError(f"{what}: {p} is not writable — {fix} you can write to")
        return
    if p == path:
        raise UserError(f"{what}: {path} is a file, not a folder — {fix}")
    raise UserError(f"{what}: {p} is a file, so {path} cannot be a folder — {fix}")


def check_output_file(path: Path, what: str) -> None:
    """`path` can be written as a file (its folder exists or can be made, and is writable; it is not a folder)."""
    if path.is_dir():
        raise UserError(f"{what}: {path} is a folder — give a file path, e.g. {path / 'eval.json'}")
    check_folder(path.parent, what, "write the file into a folder")
