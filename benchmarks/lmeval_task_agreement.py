#!/usr/bin/env python3
"""An `lm-eval:<task>` job scored by our engine vs `--engine lm-eval` (simple_evaluate; peft= for the adapter arm).

Offline, CPU, tiny fixture models (tests/tiny_models.py) and the fixture lm-eval task of tests/test_lmeval_tasks.py
(SNIPS written as an lm-eval YAML). Prints, per unit, how many predictions agree and the largest log-likelihood
difference.   python benchmarks/lmeval_task_agreement.py [--limit 40]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--limit", type=int, default=40)
    args = p.parse_args(argv)
    os.environ.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", HF_HOME=tempfile.mkdtemp(prefix="tunecheck-hf-"))
    sys.path.insert(0, str(REPO))
    from typer.testing import CliRunner

    from evaluator.cli.app import app
    from tests.test_lmeval_tasks import _job, _rows, lmeval_yaml
    from tests.tiny_models import build_tiny_model, build_tokenizer

    tmp = Path(tempfile.mkdtemp(prefix="tunecheck-agree-"))
    tok = build_tokenizer(tmp / "tok")
    llama = build_tiny_model(tmp / "llama", "llama", tok, seed=0)
    lmeval_yaml(tmp / "lm")
    for name, extra in (("ours", []), ("ref", ["--engine", "lm-eval"])):
        job = _job(tmp / name, llama, llama, tmp / "lm", newer=[], limit=args.limit)
        res = CliRunner().invoke(app, ["run", str(job), *extra])
        if res.exit_code != 0:
            print(res.output)
            return 1
    ours, ref = (_rows(next((tmp / n / "runs").iterdir())) for n in ("ours", "ref"))
    for unit, rows in sorted(ref.items()):
        o = ours[unit]
        same = sum(rows[i]["prediction"] == o[i]["prediction"] for i in rows)
        worst = max(abs(a - b) for i in rows for a, b in zip(rows[i]["loglik"], o[i]["loglik"]))
        print(f"{unit}: items {len(rows)}, same predictions {same}/{len(rows)}, max |Δ log-lik| {worst:.1e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
