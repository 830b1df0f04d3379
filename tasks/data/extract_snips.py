"""Extract SNIPS intent recognition (BIG-bench `intent_recognition`, Apache-2.0) into train/test JSONL.

Reproducible: downloads the `bigbench==1.0.0` sdist from PyPI (sha256 checked), reads the task's
task.json with `tarfile`, and writes a fixed, seeded split. Run: `python tasks/data/extract_snips.py`.
(`pip download bigbench` itself fails: the sdist declares a direct-URL dependency, so we fetch the file.)
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import sys
import tarfile
import tempfile
import urllib.request
from pathlib import Path

SDIST_URL = (
    "https://files.pythonhosted.org/packages/95/f8/c019b3579df548a04cac12342cfcb878e50ddf6cfcd7fddba8cfc721c157/"
    "bigbench-1.0.0.tar.gz"
)
SDIST_SHA256 = "1bb398a5512c6d798cdebe0dfa0ac03f67f6033fa6b39c6ef71df978c7cbc5c2"
MEMBER = "bigbench-1.0.0/bigbench/benchmark_tasks/intent_recognition/task.json"
SEED = 20240601
N_TEST = 200
OUT = Path(__file__).resolve().parent


def fetch(dest: Path) -> Path:
    path = dest / "bigbench-1.0.0.tar.gz"
    with urllib.request.urlopen(SDIST_URL, timeout=120) as resp, open(path, "wb") as fh:
        while chunk := resp.read(1 << 20):
            fh.write(chunk)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != SDIST_SHA256:
        sys.exit(f"sha256 mismatch for {SDIST_URL}: {digest}")
    return path


def rows_from_task(task: dict) -> list[dict]:
    rows = []
    for i, ex in enumerate(task["examples"]):
        labels = [k for k, v in ex["target_scores"].items() if v == 1]
        assert len(labels) == 1, ex
        text = re.sub(r"^Utterance:\s*", "", ex["input"]).strip()
        rows.append({"id": f"snips-{i:04d}", "text": text, "label": labels[0]})
    return rows


def main(sdist: str | None = None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(sdist) if sdist else fetch(Path(tmp))
        with tarfile.open(path) as tar:
            task = json.load(tar.extractfile(MEMBER))
    rows = rows_from_task(task)
    rng = random.Random(SEED)
    rng.shuffle(rows)
    splits = {"test": rows[:N_TEST], "train": rows[N_TEST:]}
    for name, part in splits.items():
        with open(OUT / f"snips_{name}.jsonl", "w", encoding="utf-8") as fh:
            for row in part:
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
        print(f"{name}: {len(part)} rows")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else None)
