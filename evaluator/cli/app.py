"""`tunecheck`: the application and its verbs, one module each (run, demo, report, cost, compare, tasks, schema,
train, eval, samples). Importing a verb module registers it on `app`; `main` is the console entry point."""

from __future__ import annotations

import sys

# isort: off  (the order of registration is the order `tunecheck --help` lists the verbs)
from evaluator.cli import compare, cost, demo, eval, report, run, samples, schema, tasks, train  # noqa: F401

# isort: on
from evaluator.cli.base import app

__all__ = ["app", "main"]


def main() -> None:  # pragma: no cover - entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
