"""Progress a person can plan by, and a record a scheduler can read.

`RunProgress` shows, on a terminal, one bar for the whole run (units i/N, elapsed, ETA), one per unit (items i/N,
items/s, ETA) and LoRA training as steps i/N with loss, tokens/s and ETA. Off a terminal, or with `quiet`, there are
no bars (the one-line `done …` records still print, so a log file reads well). With `json_path`, every event is also
appended to that file as one JSON line — `{"event": ..., "t": seconds since the start, ...}` — so a scheduler can
follow a run without parsing the screen.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable, TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text


class _Rate(ProgressColumn):
    """items/s (or steps/s) of a bar, blank until rich has a speed estimate."""

    def render(self, task: Task) -> Text:
        unit = task.fields.get("unit", "items")
        return Text(f"{task.speed:.1f} {unit}/s" if task.speed else "", style="cyan")


class _Info(ProgressColumn):
    """A bar's free text (e.g. the latest loss and tokens/s of a training)."""

    def render(self, task: Task) -> Text:
        return Text(str(task.fields.get("info", "")), style="dim")


class UnitBar:
    """The items of one unit: `advance(n)` as results are stored."""

    def __init__(self, run: RunProgress, name: str, total: int, task_id: int | None) -> None:
        self.run, self.name, self.total, self.task_id, self.done = run, name, total, task_id, 0

    def advance(self, n: int) -> None:
        self.done += n
        if self.task_id is not None:
            self.run.bars.advance(self.task_id, n)
        self.run.event("items", unit=self.name, done=self.done, total=self.total)


class TrainBar:
    """The optimiser steps of one LoRA training: `step(i, total, loss, tokens_per_s)` after each.

    Shown (and logged as a JSON event) at most every `every` seconds and at the last step: `loss` may be a callable,
    read only then, because on a GPU reading it waits for the step to finish."""

    def __init__(self, run: RunProgress, name: str, total: int, task_id: int | None, every: float = 0.5) -> None:
        self.run, self.name, self.total, self.task_id, self.every = run, name, total, task_id, every
        self.t0 = time.perf_counter()
        self._shown = float("-inf")

    def step(self, i: int, loss: float | Callable[[], float | None] | None = None,
             tokens_per_s: float | None = None, total: int | None = None) -> None:
        self.total = total or self.total
        now = time.perf_counter()
        if now - self._shown < self.every and i < self.total:
            return
        self._shown = now
        loss = loss() if callable(loss) else loss
        elapsed = now - self.t0
        eta = elapsed / i * (self.total - i) if i and self.total >= i else None
        info = " ".join(p for p in (f"loss {loss:.3f}" if loss is not None else "",
                                    f"{tokens_per_s:,.0f} tok/s" if tokens_per_s else "") if p)
        if self.task_id is not None:
            self.run.bars.update(self.task_id, completed=i, total=max(self.total, i), info=info)
            self.run.bars.refresh()  # a step takes seconds: show it now, not at the next timer tick
        self.run.event("train_step", unit=self.name, step=i, steps=self.total, loss=loss,
                       tokens_per_s=tokens_per_s, eta_s=None if eta is None else round(eta, 1))

    def close(self) -> None:
        if self.task_id is not None:
            self.run.bars.remove_task(self.task_id)


class RunProgress:
    """The progress display and JSON event log of one run (a context manager)."""

    def __init__(self, console: Console, total_units: int, *, quiet: bool = False,
                 json_path: Path | None = None) -> None:
        self.console = console
        self.total_units = total_units
        self.show = not quiet and console.is_terminal
        self.bars = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), _Rate(), TimeElapsedColumn(),
            TextColumn("ETA"), TimeRemainingColumn(), _Info(), console=console, transient=False, disable=not self.show,
        )
        self.json_path = json_path
        self._json: TextIO | None = None
        self._t0 = time.perf_counter()
        self._overall: int | None = None
        self.units_done = 0

    def __enter__(self) -> RunProgress:
        if self.json_path is not None:
            self.json_path.parent.mkdir(parents=True, exist_ok=True)
            self._json = open(self.json_path, "a", encoding="utf-8")  # noqa: SIM115 - closed in __exit__
        self.bars.__enter__()
        if self.total_units:
            self._overall = self.bars.add_task(f"units (of {self.total_units} to compute)", total=self.total_units,
                                               unit="units")
        self.event("run_start", units=self.total_units)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.event("run_end" if exc[0] is None else "run_stopped", units_done=self.units_done,
                   **({"error": type(exc[1]).__name__} if exc[0] is not None else {}))
        self.bars.__exit__(*exc)
        if self._json is not None:
            self._json.close()
            self._json = None

    def event(self, name: str, **fields: Any) -> None:
        """One JSON line per event, flushed at once (a killed run leaves a readable log)."""
        if self._json is None:
            return
        rec = {"event": name, "t": round(time.perf_counter() - self._t0, 3), **fields}
        self._json.write(json.dumps(rec, default=str) + "\n")
        self._json.flush()

    def print(self, *args: Any, **kwargs: Any) -> None:
        self.console.print(*args, **kwargs)

    def unit(self, name: str, total_items: int) -> UnitBar:
        task_id = self.bars.add_task(name, total=total_items, unit="items") if self.show else None
        self.event("unit_start", unit=name, total=total_items)
        return UnitBar(self, name, total_items, task_id)

    def unit_done(self, name: str, **summary: Any) -> None:
        self.units_done += 1
        if self._overall is not None:
            self.bars.advance(self._overall, 1)
        self.event("unit_done", unit=name, units_done=self.units_done, units=self.total_units, **summary)

    def training(self, name: str, total_steps: int) -> TrainBar:
        task_id = self.bars.add_task(f"training {name}", total=max(total_steps, 1), unit="steps") if self.show else None
        self.event("train_start", unit=name, steps=total_steps)
        return TrainBar(self, name, total_steps, task_id)
