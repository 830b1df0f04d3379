"""One harness for every bad-input table: a case builds a bad situation, the CLI must exit 2 with exactly one
`error:` line that contains the case's needle, print no traceback, and leave every file of an earlier, finished run
byte-identical.

A table module defines ``case_<name>(d: Path, model: str, existing: Path) -> (argv, needle)`` functions (``d`` is the
case's working folder, the cwd; ``model`` a tiny model folder; ``existing`` a finished run dir copied into
``d/runs/existing`` that the case may point commands at or damage on purpose) and calls :func:`cases` and
:func:`check` from a parametrised test. Files the case itself damaged are part of the snapshot, taken after the
case has set up, so "nothing changed" means the failing command wrote nothing.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable

import yaml
from typer.testing import CliRunner

from evaluator.cli.app import app

Case = Callable[[Path, str, Path], tuple[list[str], str]]
IGNORED = {"env.json", "last_invocation.json"}  # rewritten by design on every invocation that opens the run


def cases(namespace: dict) -> dict[str, Case]:
    return {name[5:]: fn for name, fn in sorted(namespace.items()) if name.startswith("case_") and callable(fn)}


def make_finished_run(root: Path, model_dir: Path) -> Path:
    """A small finished run (arm A, k=0 and k=2, 4 items) to copy into every case."""
    from tests.test_bad_inputs import _job

    root.mkdir(parents=True, exist_ok=True)
    job = _job(root, str(model_dir), arms={"prompting": {"shots": [0, 2]}, "lora": {"enabled": False}})
    res = CliRunner().invoke(app, ["run", str(job), "--run-id", "existing"])
    assert res.exit_code == 0, res.output
    return root / "runs" / "existing"


def _snapshot(d: Path) -> dict[Path, bytes]:
    runs = d / "runs"
    if not runs.is_dir():
        return {}
    return {p.relative_to(d): p.read_bytes() for p in runs.rglob("*") if p.is_file() and p.name not in IGNORED}


def check(name: str, case: Case, d: Path, model: str, finished: Path, *, mid_run: bool = False) -> None:
    """Run one case and assert the bad-input contract (see the module docstring)."""
    existing = d / "runs" / "existing"
    shutil.copytree(finished, existing)
    argv, needle = case(d, model, existing)
    before = _snapshot(d)
    res = CliRunner().invoke(app, argv)
    err = res.stderr if hasattr(res, "stderr") else res.output
    errors = [x for x in err.splitlines() if x.startswith("error:")]
    assert res.exit_code == 2, (name, res.exit_code, res.output, repr(res.exception))
    assert "Traceback" not in res.output and "Traceback" not in err, (name, err)
    assert len(errors) == 1, (name, err)
    assert needle in errors[0], (name, errors[0])
    if not mid_run:
        assert len([x for x in err.splitlines() if x.strip()]) == 1, (name, err)
    after = _snapshot(d)
    for rel, data in before.items():
        assert rel in after and after[rel] == data, (name, f"{rel} changed or vanished")


def write_yaml(path: Path, data) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data))
    return path
