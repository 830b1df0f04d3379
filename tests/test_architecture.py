"""The layer rule of docs/ARCHITECTURE.md holds, and breaking it fails: `lint-imports` with the contracts in
pyproject.toml, on the package as it is and on a copy with one deliberate violation per contract."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).with_name("lint-imports")


def _lint(root: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"PYTHONPATH": str(root)}
    return subprocess.run([str(LINT), "--config", str(root / "pyproject.toml"), "--no-cache"], cwd=root, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def lint_available() -> None:
    if not LINT.exists():
        pytest.fail(f"{LINT} missing: install the test extras (pip install -e '.[test]')")


def test_the_package_keeps_every_contract(lint_available):
    res = _lint(REPO)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "5 kept, 0 broken" in res.stdout


VIOLATIONS = {
    # (file, line appended, contract that must break)
    "analysis imports torch": ("evaluator/analysis/estimates.py", "import torch  # noqa\n",
                               "analysis and costs are pure"),
    "costs import model code": ("evaluator/costs/selfhost.py", "from evaluator.models import load  # noqa\n",
                                "analysis and costs are pure"),
    "report imports the engine": ("evaluator/report/plots.py", "from evaluator.engine import scorer  # noqa\n",
                                  "the report never reaches into model code"),
    "a lower layer imports a higher one": ("evaluator/tasks/spec.py", "from evaluator.arms import rows  # noqa\n",
                                           "pipeline layers"),
    "the API client imports torch": ("evaluator/api/client.py", "import torch  # noqa\n",
                                     "API models are HTTP only"),
    "a cycle": ("evaluator/store/files.py", "from evaluator.cli import base  # noqa\n",
                "no import cycles"),
}


@pytest.mark.parametrize("case", sorted(VIOLATIONS))
def test_a_deliberate_violation_fails(lint_available, tmp_path, case):
    rel, line, contract = VIOLATIONS[case]
    root = tmp_path / "copy"
    shutil.copytree(REPO / "evaluator", root / "evaluator", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", root / "pyproject.toml")
    with open(root / rel, "a", encoding="utf-8") as fh:
        fh.write(line)
    res = _lint(root)
    assert res.returncode != 0, res.stdout
    broken = [ln for ln in res.stdout.splitlines() if ln.endswith("BROKEN")]
    assert any(ln.startswith(contract) for ln in broken), res.stdout
