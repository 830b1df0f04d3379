"""Run a job: plan the units of the three arms, evaluate those not yet done, write the report.

task → prompts → arms (units) → per-item results (store) → report. Models are loaded once and only if one of their
units still has work; the base model serves arms A and B (LoRA is unloaded after each adapter), then the newer
bases serve arm C.

Read top to bottom: `run_job` is the whole story; each step it takes follows in the order it takes it (plan, the
run folder and its key, the check that stored results were computed from these inputs, then `Runner`, which loads
each model once and evaluates its pending units).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from evaluator import identity
from evaluator.analysis.taskset import traffic_shares
from evaluator.arms.evaluate import Unit, evaluate_unit
from evaluator.config.job import Job
from evaluator.errors import UserError
from evaluator.models.chat import check_chat_templates
from evaluator.models.environment import environment
from evaluator.models.load import LoadedModel, ModelSource, check_loadable, load_model, resolve_source
from evaluator.progress import RunProgress
from evaluator.prompts.tokenized import TokenizedPrompts
from evaluator.store.files import atomic_write_json, atomic_write_text, safe_name
from evaluator.store.run_store import RunStore
from evaluator.tasks.layout import PromptBuilder
from evaluator.tasks.load import check_task_for_job, load_task, task_search_dirs, with_prompt_format
from evaluator.tasks.spec import Item, Task

console = Console(stderr=True, soft_wrap=True)


def run_job(job: Job, job_dir: Path, job_text: str, run_id: str | None = None, *, recompute: bool = False,
            quiet: bool = False, json_progress: Path | None = None) -> Path:
    """Plan, create or resume the run dir, evaluate what is not done, write the reports. Returns the run dir.

    A resumed run whose recorded inputs differ from the job's now is refused, or (``recompute``) has the affected
    units set aside and recomputed — results of different inputs are never mixed."""
    from evaluator.report.build import write_reports
    from evaluator.training.distributed import broadcast_from_main, is_main_process

    main = is_main_process()  # under `accelerate launch` every process runs every unit; the main one writes
    console.quiet = not main  # ... and speaks: the others print nothing (their rows reach the main one)
    with console.status("checking tasks, data and models"):
        p = plan(job, job_dir)
    run_dir = run_dir_for(job, job_dir, run_id, p.inputs)
    failure = None
    if main:
        try:
            store = RunStore.create_or_resume(run_dir, job_text, resolved_config(p, run_dir), environment())
            check_inputs(p, store, recompute)
        except UserError as exc:
            failure = str(exc)
    failure = broadcast_from_main(failure)  # the other processes stop with the main one, never wait for it
    if failure is not None:
        raise UserError(failure)
    if not main:
        store = RunStore.open(run_dir)
    if main:
        for note in p.notes:
            console.print(f"[yellow]note:[/] {note}")
        console.print(f"run dir {run_dir}: {len(p.units)} units over {len(p.tasks)} task(s)")
    cache = Path(job.model_cache).expanduser() if job.model_cache else None
    runner = Runner(p, store, cache, quiet=quiet or not main, json_progress=json_progress if main else None)
    t0 = time.perf_counter()
    runner.run()
    if main:
        write_reports(store)
        atomic_write_json(
            run_dir / "last_invocation.json",
            {"computed": runner.computed, "skipped": runner.skipped, "seconds": time.perf_counter() - t0},
        )
    return run_dir


@dataclass
class RunPlan:
    job: Job
    job_dir: Path
    tasks: dict[str, Task]
    base: ModelSource
    newer: list[ModelSource]
    units: list[Unit] = field(default_factory=list)
    inputs: dict = field(default_factory=dict)  # identity.run_inputs: what the run measures beyond the job file
    notes: list[str] = field(default_factory=list)  # e.g. sizes that collapsed to the same unit
    refs: dict[str, str] = field(default_factory=dict)  # task name → the reference the job lists it by

    def traffic_shares(self) -> dict[str, float]:
        """Each task's share of the job's traffic, by task name (the job's traffic_mix is keyed as listed in tasks)."""
        mix = self.job.traffic_mix
        by_name = None if mix is None else {n: mix[ref] for n, ref in self.refs.items()}
        return traffic_shares(list(self.tasks), by_name)

    def add(self, unit: Unit, asked: str) -> None:
        """Plan a unit once: sizes or shots that resolve to the same unit (n=all = the whole split) are noted."""
        if any(u.id == unit.id for u in self.units):
            self.notes.append(f"{asked} is the same unit as one already planned ({unit.id}): planned once")
            return
        self.units.append(unit)

    def unit_fingerprint(self, u: Unit) -> str:
        return identity.unit_fingerprint(self.job.fingerprint(), u.id, u.task, u.model, self.inputs)


def plan(job: Job, job_dir: Path) -> RunPlan:
    """Validate everything that can fail cheaply (tasks, data, models) before any model is loaded."""
    dirs = task_search_dirs(job_dir)
    include = [(job_dir / Path(d).expanduser()).resolve() for d in job.lm_eval_include]
    tasks, refs = {}, {}
    for ref in job.tasks:
        t = with_prompt_format(load_task(ref, dirs, include), job.prompt_format)  # the job's format, if it sets one
        if t.name in tasks:
            raise UserError(f"task {t.name!r} is listed twice in tasks — remove one")
        if job.arms.lora.enabled and not t.train:
            raise UserError(f"task {t.name} has no training items, so the LoRA arm cannot train — set arms.lora.enabled: false")
        check_task_for_job(t, job)  # shot counts above the demonstration pool, before any model loads
        tasks[t.name] = t
        refs[t.name] = ref
    base = resolve_source(job.base, job_dir)
    newer = [resolve_source(n, job_dir) for n in job.newer]
    slugs: dict[str, str] = {base.slug: base.spec}
    for src in newer:  # units are named by the model's slug: two models with one slug would share (and lose) units
        if src.slug in slugs and slugs[src.slug] != src.spec:
            raise UserError(f"models {slugs[src.slug]!r} and {src.spec!r} have the same short name {src.slug!r} in unit "
                            "ids — rename a folder or list only one of them")
        slugs[src.slug] = src.spec
    for src in [base, *newer]:
        check_loadable(src, job.trust_remote_code, job.allow_pickle)
    chat = [name for name, t in tasks.items() if t.spec.prompt_format == "chat"]  # every model must have a template
    check_chat_templates([base, *newer], chat, job.trust_remote_code,
                         Path(job.model_cache).expanduser() if job.model_cache else None)
    p = RunPlan(job, job_dir, tasks, base, newer, refs=refs)
    p.inputs = identity.run_inputs(tasks, {s.spec: (s.kind, s.ref) for s in [base, *newer]}, job.api.model_dump())
    for name in tasks:
        for k in job.arms.prompting.shots:
            p.add(Unit(name, "A", base.spec, base.slug, k), f"{name}: prompting shots {k}")
        if job.arms.lora.enabled:
            n_train = len(tasks[name].train)
            for n in job.arms.lora.train_sizes:
                n_eff = n_train if n == "all" else min(int(n), n_train)
                for k in job.arms.lora.eval_shots:
                    asked = f"{name}: train size {n}" + (f" (the training split has {n_train} items)" if n_eff != n else "")
                    p.add(Unit(name, "B", base.spec, base.slug, k, n_eff), asked)
        for src in newer:
            for k in job.newer_shots():
                p.add(Unit(name, "C", src.spec, src.slug, k), f"{name}: newer base {src.spec} shots {k}")
    return p


def test_items(task: Task, limit: int | None) -> list[Item]:
    return list(task.test[:limit] if limit else task.test)


def run_dir_for(job: Job, job_dir: Path, run_id: str | None, inputs: dict | None = None) -> Path:
    out = Path(job.output_dir)
    if not out.is_absolute():
        out = Path.cwd() / out
    return out / safe_name(run_id or f"{job.name}-{run_fingerprint(job, inputs)}")


def run_fingerprint(job: Job, inputs: dict | None) -> str:
    """The default run id's hash: the job file's fingerprint and what the run measures (task data, template,
    demonstrations, model weights, scoring version) — a changed input gets a new run, never a silent resume."""
    if not inputs:
        return job.fingerprint()
    return identity.inputs_digest({"job": job.fingerprint(), "inputs": identity.inputs_digest(inputs)})[:8]


def resolved_config(p: RunPlan, run_dir: Path) -> dict:
    job = p.job
    shares = p.traffic_shares()
    return {
        "fingerprint": job.fingerprint(),
        "run_id": run_dir.name,
        "job": job.model_dump(mode="json"),
        "tasks": {
            n: {"path": str(t.path), "ref": p.refs.get(n, n), "traffic_share": shares[n],
                "spec": t.spec.model_dump(mode="json"), "n_train": len(t.train), "n_test": len(t.test)}
            | label_stats(t)
            for n, t in p.tasks.items()
        },
        "models": {"base": p.base.__dict__, "newer": [s.__dict__ for s in p.newer]},
        "units": [u.id for u in p.units],
        "inputs": p.inputs,
    }


def label_stats(task: Task) -> dict:
    """For the report's baselines: the number of choices, and the training split's label counts when every item
    chooses from the same label set (a classification task; per-item choices have no majority class)."""
    sets = {tuple(it.choices) for it in [*task.train, *task.test]}
    if task.spec.kind != "choice" or len(sets) != 1:
        return {}
    counts: dict[str, int] = {}
    for it in task.train:
        counts[it.target] = counts.get(it.target, 0) + 1
    return {"n_choices": len(next(iter(sets))), "train_label_counts": counts}


def check_inputs(p: RunPlan, store: RunStore, recompute: bool) -> list[str]:
    """Refuse to mix results computed from other inputs (one line naming what changed), or — with `recompute` — set
    the stale units aside and record the new inputs. Returns the units set aside."""
    cfg = store.config
    what = identity.changed(cfg.get("inputs"), p.inputs) if cfg.get("inputs") != p.inputs else []
    stale = stale_units(p, store)
    if not what and not stale:
        return []
    if not recompute:
        reason = "; ".join(what) or f"{len(stale)} unit(s) {next(iter(stale.values()))}"
        raise UserError(
            f"{store.root} was computed from other inputs than this job now has — {reason}: its results would be mixed "
            "with new ones. Drop --run-id to start a new run, or pass --recompute to recompute the affected units "
            "(the old files are kept under replaced/)"
        )
    dest = _set_aside(store, sorted(stale))
    atomic_write_json(store.root / "config.json", cfg | {"inputs": p.inputs})
    console.print(f"[yellow]inputs changed ({'; '.join(what) or 'unit records'}): {len(stale)} unit(s) set aside in "
                  f"{dest} and recomputed[/]")
    return sorted(stale)


def stale_units(p: RunPlan, store: RunStore) -> dict[str, str]:
    """Units with stored results (finished or partial) whose recorded inputs differ from this run's: {unit: why}."""
    out: dict[str, str] = {}
    for u in p.units:
        want = p.unit_fingerprint(u)
        if store.is_done(u.id):
            got = store.read_unit(store.unit_path(u.id)).get("inputs_fingerprint")
            if got != want:
                out[u.id] = "finished with other inputs" if got else "finished before inputs were recorded"
        elif store.results_path(u.id).exists():
            ip = inputs_path(store, u.id)
            got = ip.read_text(encoding="utf-8").strip() if ip.is_file() else None
            if got != want:
                out[u.id] = "partly computed with other inputs" if got else "partly computed, inputs not recorded"
    return out


def inputs_path(store: RunStore, unit_id: str) -> Path:
    """The fingerprint of the inputs a unit's (possibly partial) results were computed from."""
    return store.root / "inputs" / f"{safe_name(unit_id)}.txt"


def _set_aside(store: RunStore, units: list[str]) -> Path:
    """Move the stale units' files into replaced/<time>/ (kept, not deleted) so they are recomputed."""
    dest = store.root / "replaced" / time.strftime("%Y%m%dT%H%M%S")
    for uid in units:
        for src in (store.unit_path(uid), store.results_path(uid), inputs_path(store, uid),
                    store.root / "prefixes" / f"{safe_name(uid)}.txt"):
            if src.exists():
                target = dest / src.parent.name / src.name
                target.parent.mkdir(parents=True, exist_ok=True)
                src.replace(target)
    return dest


class Runner:
    def __init__(self, p: RunPlan, store: RunStore, model_cache: Path | None = None, *, quiet: bool = False,
                 json_progress: Path | None = None) -> None:
        self.p = p
        self.store = store
        self.model_cache = model_cache
        self.quiet = quiet  # no progress bars (they are off anyway when stderr is not a terminal)
        self.json_progress = json_progress  # progress events as JSON lines, for schedulers
        self.computed: list[str] = []
        self.skipped: list[str] = []
        from evaluator.training.distributed import is_main_process

        self.main = is_main_process()  # the process that writes (all of them score)

    def _load(self, src: ModelSource) -> LoadedModel:
        job = self.p.job
        from evaluator.models.load import device_map_summary
        from evaluator.training.distributed import process_device, refuse_device_map_launch

        refuse_device_map_launch(job.device_map)  # one process spreads the model, or N processes each hold one
        with console.status(f"loading {src.spec}"):
            lm = load_model(
                src, device=process_device(job.device), dtype=job.dtype, trust_remote_code=job.trust_remote_code,
                allow_pickle=job.allow_pickle, cache_dir=self.model_cache, device_map=job.device_map,
                max_memory=job.max_memory,
            )
        placed = device_map_summary(lm.model)
        where = f"{lm.device}" + (f" (device_map {placed['text']})" if placed else "")
        console.print(f"loaded {src.spec} on {where} in {lm.load_seconds:.1f}s (context {lm.context_window} tokens)")
        return lm

    def _begin(self, unit: Unit, progress: RunProgress):
        """A unit's task, test items, progress bar and inputs fingerprint — recorded (by the main process) before its
        first result row is appended, so a resume can tell what those rows were computed from."""
        task = self.p.tasks[unit.task]
        items = test_items(task, self.p.job.limit)
        fp = self.p.unit_fingerprint(unit)
        if self.main:
            atomic_write_text(inputs_path(self.store, unit.id), fp + "\n")
        return task, items, progress.unit(unit.id, len(items)), fp

    def _eval(self, unit: Unit, lm: LoadedModel, model, progress: RunProgress, extra: dict | None = None) -> None:
        job = self.p.job
        task, items, bar, fp = self._begin(unit, progress)
        tp = TokenizedPrompts(PromptBuilder(task, job.seed), lm.tokenizer)
        rec = evaluate_unit(
            unit, task, items, tp, model, lm.tokenizer, lm.context_window, self.store,
            engine=job.engine, batch_tokens=job.batch_tokens, shots_cap=job.arms.prompting.max_shots,
            extra={**(extra or {}), "inputs_fingerprint": fp}, progress=bar.advance,
            log=lambda m: progress.console.print(f"[yellow]{m}[/]"), model_path=lm.path,
        )
        self.computed.append(unit.id)
        if not rec:  # another process of a multi-process launch: the main one stores and reports the unit
            return
        progress.console.print(
            f"[green]done[/] {unit.id}: {rec['metric']} {rec['value']:.3f} [{rec['ci_low']:.3f}, {rec['ci_high']:.3f}] "
            f"k={rec['point']['shots']} prompt {rec['tokens']['prompt_tokens_per_request']:.0f} tok/req, "
            f"eval {rec['timings']['eval_seconds']:.1f}s"
        )
        progress.unit_done(unit.id, metric=rec["metric"], value=rec["value"], ci=[rec["ci_low"], rec["ci_high"]],
                           eval_s=rec["timings"]["eval_seconds"])

    def _open_apis(self, pending: list[Unit]) -> dict:
        """Each API model with pending units, checked against its endpoint (key, model, reachability)."""
        from evaluator.arms.api import open_api_option

        out = {}
        for src in self.p.newer:
            if src.kind == "api" and any(u.model == src.spec for u in pending):
                with console.status(f"checking {src.spec}"):
                    out[src.spec] = open_api_option(src.spec, self.p.job.api)
                opt = out[src.spec]
                ctx = (f"context {opt.context} tokens ({opt.context_how})" if opt.context else
                       "context window unknown (api.context_window sets it; shots: max needs it)")
                console.print(f"API {src.spec}: {opt.endpoint} endpoint, {ctx}, {opt.concurrency} concurrent requests")
        return out

    def _eval_api(self, unit: Unit, opt, progress: RunProgress) -> None:
        from evaluator.arms.api import api_tokenized, evaluate_api_unit

        job = self.p.job
        task, items, bar, fp = self._begin(unit, progress)
        rec = evaluate_api_unit(unit, task, items, api_tokenized(task, job.seed, opt), opt, self.store,
                                shots_cap=job.arms.prompting.max_shots, extra={"inputs_fingerprint": fp},
                                progress=bar.advance)
        self.computed.append(unit.id)
        a = rec["api"]
        lat = a["latency_s"]
        p50 = f"{lat['p50']:.2f}s" if lat["p50"] is not None else "?"
        p95 = f"{lat['p95']:.2f}s" if lat["p95"] is not None else "?"
        progress.console.print(
            f"[green]done[/] {unit.id}: {rec['metric']} {rec['value']:.3f} [{rec['ci_low']:.3f}, {rec['ci_high']:.3f}] "
            f"k={rec['point']['shots']} by {a['scoring_method']}, {a['requests']} requests ({a['from_cache']} from "
            f"cache, {a['retries']} retries), {a['usage']['input_tokens_per_item']:.0f} in / "
            f"{a['usage']['output_tokens_per_item']:.0f} out tokens per item, latency p50 {p50} p95 {p95}"
        )
        progress.unit_done(unit.id, metric=rec["metric"], value=rec["value"], ci=[rec["ci_low"], rec["ci_high"]],
                           eval_s=rec["timings"]["eval_seconds"])

    def _train_or_reuse(self, unit: Unit, lm: LoadedModel, progress: RunProgress):
        """Train the adapter for unit.train_size (or reuse a finished one with the same key): see adapters.py."""
        from evaluator.arms.lora import resolve_root, train_or_reuse

        job = self.p.job
        bar = None

        def on_step(info) -> None:  # training progress: steps with loss, tokens/s and ETA
            nonlocal bar
            if bar is None:
                bar = progress.training(f"LoRA n={unit.train_size} on {lm.source.spec}", info.total)
            bar.step(info.step, info.loss, info.tokens_per_second, total=info.total)

        try:
            return train_or_reuse(
                lm, self.p.tasks[unit.task], int(unit.train_size), job.arms.lora, job.seed,
                resolve_root(job.adapters_dir), log=progress.console.print, on_step=on_step,
            )
        finally:
            if bar is not None:
                bar.close()

    def _train_sweeps(self, b_units: list[Unit], lm: LoadedModel, progress: RunProgress) -> None:
        """Per task, the learning curve's missing adapters trained together (`arms.lora.train_sweep`) where the job's
        `lora.sweep` says so: `auto` on a CUDA device only. Each is stored as `train_or_reuse` stores it."""
        from evaluator.arms.lora import resolve_root, train_sweep

        job = self.p.job
        mode = job.arms.lora.sweep
        if mode == "off" or (mode == "auto" and not str(lm.device).startswith("cuda")):
            return
        for task in sorted({u.task for u in b_units}):
            sizes = sorted({int(u.train_size) for u in b_units if u.task == task})
            bars: dict[int, Any] = {}

            def on_step(n: int, info) -> None:
                if n not in bars:
                    bars[n] = progress.training(f"LoRA n={n} (sweep) on {lm.source.spec}", info.total)
                bars[n].step(info.step, info.loss, info.tokens_per_second, total=info.total)

            try:
                train_sweep(lm, self.p.tasks[task], sizes, job.arms.lora, job.seed, resolve_root(job.adapters_dir),
                            log=progress.console.print, on_step=on_step)
            finally:
                for bar in bars.values():
                    bar.close()

    def run(self) -> None:
        p = self.p
        pending = [u for u in p.units if not self.store.is_done(u.id)]
        self.skipped = [u.id for u in p.units if self.store.is_done(u.id)]
        for uid in self.skipped:
            console.print(f"[dim]skip {uid} (finished earlier)[/]")
        # a refused key or an unreachable endpoint stops here, before any model loads; API units are asked by the
        # main process alone (nothing to share out: the endpoint does the work)
        apis = self._open_apis(pending) if self.main else {}
        with RunProgress(console, len(pending), quiet=self.quiet, json_path=self.json_progress) as progress:
            base_units = [u for u in pending if u.model == p.base.spec and u.arm in "AB"]
            if base_units:
                lm = self._load(p.base)
                if any(u.arm == "B" for u in base_units):  # an unknown LoRA target module stops here, before arm A
                    from evaluator.arms.lora import check_target_modules

                    check_target_modules(lm, p.job.arms.lora)
                for u in [u for u in base_units if u.arm == "A"]:
                    self._eval(u, lm, lm.model, progress)
                b_units = [u for u in base_units if u.arm == "B"]
                self._train_sweeps(b_units, lm, progress)  # then the loop below reuses what the sweeps stored
                for key in sorted({(u.task, u.train_size) for u in b_units}, key=lambda t: (t[0], int(t[1]))):
                    group = [u for u in b_units if (u.task, u.train_size) == key]
                    peft_model, meta, out = self._train_or_reuse(group[0], lm, progress)
                    extra = {"adapter": {"dir": str(out), "key": meta["key"]}, "training": meta["training"]}
                    for u in group:
                        self._eval(u, lm, peft_model, progress, extra=extra)
                    lm.model = peft_model.unload()  # remove LoRA layers: the base is clean for the next n
                del lm
            for src in p.newer:
                units = [u for u in pending if u.arm == "C" and u.model == src.spec]
                if not units:
                    continue
                if src.kind == "api":
                    for u in units if self.main else []:
                        self._eval_api(u, apis[src.spec], progress)
                    continue
                lm = self._load(src)
                for u in units:
                    self._eval(u, lm, lm.model, progress)
                del lm
