"""Extract the shipped BIG-bench tasks (Apache-2.0) into `tasks/data/<task>_{train,test}.jsonl`.

Reproducible: downloads the `bigbench==1.0.0` sdist from PyPI (or reads a local copy given with `--sdist`), checks
its sha256, reads each task's task.json with `tarfile` (one pass over the archive) and writes a fixed, seeded split.

    python tasks/data/extract_bigbench.py                          # every task below, sdist fetched from PyPI
    python tasks/data/extract_bigbench.py --sdist bigbench-1.0.0.tar.gz restaurant_json proverbs

(`pip download bigbench` itself fails: the sdist declares a direct-URL dependency, so we fetch the file.)
Per-task provenance, licences, counts and split rules: tasks/data/README.md. The row builders (`rows_<task>`) and
split functions are pure (no I/O), so tests call them on small synthetic task dicts.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import re
import sys
import tarfile
import tempfile
import urllib.request
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

SDIST_URL = (
    "https://files.pythonhosted.org/packages/95/f8/c019b3579df548a04cac12342cfcb878e50ddf6cfcd7fddba8cfc721c157/"
    "bigbench-1.0.0.tar.gz"
)
SDIST_SHA256 = "1bb398a5512c6d798cdebe0dfa0ac03f67f6033fa6b39c6ef71df978c7cbc5c2"
TASKS_PREFIX = "bigbench-1.0.0/bigbench/benchmark_tasks/"
SEED = 20240601
OUT = Path(__file__).resolve().parent

Row = dict
Split = dict  # {"train": [...], "test": [...]}


# --------------------------------------------------------------------------------------------- generic helpers


def the_label(ex: dict) -> str:
    """The one choice of a BIG-bench multiple-choice example whose target score is 1."""
    labels = [k for k, v in ex["target_scores"].items() if v == 1]
    if len(labels) != 1:
        raise ValueError(f"expected exactly one correct choice, got {labels!r}: {str(ex)[:120]}")
    return labels[0]


def seeded_split(rows: list[Row], n_test: int, seed: int = SEED, n_train: int | None = None) -> Split:
    """One seeded shuffle: the first `n_test` rows test, the next `n_train` (default: all the rest) train — both in
    shuffled order, so "the first n training items" are a random sample (SNIPS's rule; with `n_train` a subsample)."""
    rows = list(rows)
    if n_test + (n_train or 0) > len(rows):
        raise ValueError(f"asked for {n_test} test + {n_train or 0} train rows, have {len(rows)}")
    random.Random(seed).shuffle(rows)
    end = None if n_train is None else n_test + n_train
    return {"test": rows[:n_test], "train": rows[n_test:end]}


def grouped_split(rows: list[Row], group: Callable[[Row], str], n_test: int, seed: int = SEED) -> Split:
    """Whole groups go to one side: the groups (in first-seen order) are shuffled with the seed and taken into the test
    split until it holds at least `n_test` rows; the other groups train. Both sides are then shuffled (same generator)
    so rows of one group are not adjacent."""
    rng = random.Random(seed)
    by_group: dict[str, list[Row]] = {}
    for r in rows:
        by_group.setdefault(group(r), []).append(r)
    keys = list(by_group)
    rng.shuffle(keys)
    test: list[Row] = []
    train: list[Row] = []
    for k in keys:
        (test if len(test) < n_test else train).extend(by_group[k])
    if not train:
        raise ValueError(f"{len(rows)} rows in {len(keys)} groups leave no training group for {n_test} test rows")
    rng.shuffle(test)
    rng.shuffle(train)
    return {"test": test, "train": train}


def stratified_split(rows: list[Row], label: Callable[[Row], str], n_test_per_class: int, seed: int = SEED) -> Split:
    """`n_test_per_class` seeded rows of every class test, the rest train. The training rows are dealt round-robin —
    each round one row of every class that has rows left, classes in a fresh seeded order — so the first C training
    rows cover all C classes (with 100 classes a plain shuffle would need several hundred). Test rows are shuffled."""
    rng = random.Random(seed)
    by_class: dict[str, list[Row]] = defaultdict(list)
    for r in rows:
        by_class[label(r)].append(r)
    test: list[Row] = []
    rest: dict[str, list[Row]] = {}
    for c in sorted(by_class):
        members = list(by_class[c])
        if len(members) <= n_test_per_class:
            raise ValueError(f"class {c!r} has {len(members)} rows: none left to train after {n_test_per_class} test")
        rng.shuffle(members)
        test.extend(members[:n_test_per_class])
        rest[c] = members[n_test_per_class:]
    train: list[Row] = []
    while any(rest.values()):
        order = sorted(c for c in rest if rest[c])
        rng.shuffle(order)
        train.extend(rest[c].pop() for c in order)
    rng.shuffle(test)
    return {"test": test, "train": train}


# --------------------------------------------------------------------------------------------- snips (SNIPS intents)


def rows_snips(task: dict) -> list[Row]:
    rows = []
    for i, ex in enumerate(task["examples"]):
        text = re.sub(r"^Utterance:\s*", "", ex["input"]).strip()
        rows.append({"id": f"snips-{i:04d}", "text": text, "label": the_label(ex)})
    return rows


def split_snips(rows: list[Row]) -> Split:
    return seeded_split(rows, n_test=200)


# --------------------------------------------------------------------------------------------- restaurant_json (E2E)

# E2E attribute in the meaning representation → the JSON key, in the answer's fixed key order.
E2E_KEYS = {
    "name": "name",
    "eatType": "eat_type",
    "food": "food",
    "priceRange": "price_range",
    "customer rating": "customer_rating",
    "area": "area",
    "familyFriendly": "family_friendly",
    "near": "near",
}
FAMILY_FRIENDLY = {"yes": True, "no": False}
_MR_SPLIT = re.compile(r", (?=(?:" + "|".join(map(re.escape, E2E_KEYS)) + r"):)")
_STRAY_ATTRIBUTE = re.compile(r", [^,:]+:")  # "…, colour: red" left inside a value: an attribute E2E does not have


def parse_mr(mr: str) -> dict:
    """A GEM/E2E meaning representation ("name: Blue Spice, eatType: coffee shop, area: city centre") → a dict with
    all 8 keys of E2E_KEYS in their fixed order: the MR's value text as is (family_friendly: yes → true, no → false),
    null for an attribute the MR does not give. An unknown or repeated attribute, or an empty value, is an error."""
    out: dict = dict.fromkeys(E2E_KEYS.values())
    seen: set[str] = set()
    for part in _MR_SPLIT.split(mr.strip()):
        attr, sep, value = part.partition(":")
        value = value.strip()
        if not sep or attr not in E2E_KEYS or _STRAY_ATTRIBUTE.search(value):
            raise ValueError(f"MR {mr!r}: unknown attribute in {part!r} (known: {', '.join(E2E_KEYS)})")
        if attr in seen:
            raise ValueError(f"MR {mr!r}: attribute {attr!r} given twice")
        if not value:
            raise ValueError(f"MR {mr!r}: attribute {attr!r} has no value")
        seen.add(attr)
        if attr == "familyFriendly":
            if value not in FAMILY_FRIENDLY:
                raise ValueError(f"MR {mr!r}: familyFriendly must be yes or no, got {value!r}")
            out["family_friendly"] = FAMILY_FRIENDLY[value]
        else:
            out[E2E_KEYS[attr]] = value
    if out["name"] is None:
        raise ValueError(f"MR {mr!r} has no name")
    return out


def mr_json(mr: str) -> str:
    """The answer text: the parsed MR as one line of JSON (fixed key order, UTF-8 as is: "Café", "£")."""
    return json.dumps(parse_mr(mr), ensure_ascii=False)


def repeats_an_attribute(mr: str) -> bool:
    attrs = [part.partition(":")[0] for part in _MR_SPLIT.split(mr.strip())]
    return len(attrs) != len(set(attrs))


def rows_restaurant_json(task: dict) -> list[Row]:
    """One row per example; an MR that gives an attribute twice (4 in GEM's E2E test set: "area: city centre, area:
    riverside") has no one-value-per-key answer and is left out. The id keeps the example's index in task.json."""
    rows = []
    for i, ex in enumerate(task["examples"]):
        if repeats_an_attribute(ex["input"]):
            continue
        rows.append({"id": f"e2e-{i:04d}", "text": " ".join(ex["target"].split()), "json": mr_json(ex["input"]),
                     "mr": ex["input"].strip()})
    return rows


def split_restaurant_json(rows: list[Row]) -> Split:
    return grouped_split(rows, group=lambda r: r["mr"], n_test=250)


# --------------------------------------------------------------------------------------------- proverbs


def proverb_choices(task: dict) -> list[str]:
    """The one label set every example offers (in task.json order); an example with another set is an error."""
    first = list(task["examples"][0]["target_scores"])
    for i, ex in enumerate(task["examples"]):
        if set(ex["target_scores"]) != set(first):
            raise ValueError(f"example {i} offers other choices than example 0 — use choices_field instead")
    return first


def rows_proverbs(task: dict) -> list[Row]:
    proverb_choices(task)
    return [{"id": f"proverb-{i:04d}", "text": ex["input"].strip(), "label": the_label(ex)}
            for i, ex in enumerate(task["examples"])]


def split_proverbs(rows: list[Row]) -> Split:
    return stratified_split(rows, label=lambda r: r["label"], n_test_per_class=3)


# --------------------------------------------------------------------------------------------- language_id


LANGID_CHARS = (20, 400)  # drops placeholders ("(-)", "+", "") and the longest passages (up to 1,587 characters)


def rows_language_id(task: dict) -> list[Row]:
    """Each sentence of LANGID_CHARS characters with its own 11 candidate languages, sorted alphabetically (the prompt
    shows them; task.json's order would be kept otherwise, sorted the position carries no information). The id keeps
    the example's index in task.json."""
    lo, hi = LANGID_CHARS
    return [{"id": f"langid-{i:05d}", "text": ex["input"].strip(), "label": the_label(ex),
             "choices": sorted(ex["target_scores"])}
            for i, ex in enumerate(task["examples"]) if lo <= len(ex["input"].strip()) <= hi]


def split_language_id(rows: list[Row]) -> Split:
    return seeded_split(rows, n_test=300, n_train=700)


# --------------------------------------------------------------------------------------------- review_sentiment

# Drops fragments (an empty review, "P", '" by t') and keeps 32-shot prompts of whole reviews within a small model's
# context (the longest review has 5,028 characters).
REVIEW_CHARS = (20, 1000)


def rows_review_sentiment(task: dict) -> list[Row]:
    """Whole reviews of REVIEW_CHARS characters (the id keeps the example's index in task.json)."""
    lo, hi = REVIEW_CHARS
    rows = []
    for i, ex in enumerate(task["examples"]):
        text = ex["input"].strip()
        if lo <= len(text) <= hi:
            rows.append({"id": f"multiemo-{i:04d}", "text": text, "label": the_label(ex)})
    return rows


def split_review_sentiment(rows: list[Row]) -> Split:
    return seeded_split(rows, n_test=300, n_train=700)


# --------------------------------------------------------------------------------------------- registry and I/O


@dataclass(frozen=True)
class Extraction:
    member: str  # task.json path under TASKS_PREFIX
    rows: Callable[[dict], list[Row]]
    split: Callable[[list[Row]], Split]


TASKS: dict[str, Extraction] = {
    "snips": Extraction("intent_recognition/task.json", rows_snips, split_snips),
    "restaurant_json": Extraction("gem/e2e_nlg/task.json", rows_restaurant_json, split_restaurant_json),
    "proverbs": Extraction("abstract_narrative_understanding/99_distractors/task.json", rows_proverbs,
                           split_proverbs),
    "language_id": Extraction("language_identification/task.json", rows_language_id, split_language_id),
    "review_sentiment": Extraction("multiemo/all_text_en/task.json", rows_review_sentiment, split_review_sentiment),
}


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def fetch(dest: Path) -> Path:
    path = dest / "bigbench-1.0.0.tar.gz"
    with urllib.request.urlopen(SDIST_URL, timeout=120) as resp, open(path, "wb") as fh:
        while chunk := resp.read(1 << 20):
            fh.write(chunk)
    return path


def read_members(sdist: Path, members: list[str]) -> dict[str, dict]:
    """The task.json files named (paths under TASKS_PREFIX), read in one pass over the gzip archive."""
    want = {TASKS_PREFIX + m: m for m in members}
    found: dict[str, dict] = {}
    with tarfile.open(sdist, "r:gz") as tar:
        for info in tar:
            if info.name in want:
                found[want[info.name]] = json.load(tar.extractfile(info))
                if len(found) == len(want):
                    break
    missing = sorted(set(members) - set(found))
    if missing:
        sys.exit(f"{sdist}: no member {', '.join(TASKS_PREFIX + m for m in missing)}")
    return found


def write_jsonl(path: Path, rows: list[Row]) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")


def extract(names: list[str], sdist: Path, out: Path = OUT) -> None:
    out.mkdir(parents=True, exist_ok=True)
    digest = sha256_of(sdist)
    if digest != SDIST_SHA256:
        sys.exit(f"sha256 mismatch for {sdist}: {digest} (expected {SDIST_SHA256})")
    tasks = read_members(sdist, sorted({TASKS[n].member for n in names}))
    for name in names:
        spec = TASKS[name]
        parts = spec.split(spec.rows(tasks[spec.member]))
        for part in ("train", "test"):
            write_jsonl(out / f"{name}_{part}.jsonl", parts[part])
        print(f"{name}: {len(parts['train'])} train, {len(parts['test'])} test rows")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sdist", type=Path, help="a local bigbench-1.0.0.tar.gz (default: download it from PyPI)")
    ap.add_argument("--out", type=Path, default=OUT, help="folder for the JSONL files (default: this folder)")
    ap.add_argument("tasks", nargs="*", metavar="TASK", help=f"tasks to extract (default: all of {', '.join(TASKS)})")
    args = ap.parse_args(argv)
    unknown = [t for t in args.tasks if t not in TASKS]
    if unknown:
        ap.error(f"unknown task(s) {', '.join(unknown)} — choose from {', '.join(TASKS)}")
    names = args.tasks or list(TASKS)
    if args.sdist is not None:
        extract(names, args.sdist, args.out)
        return
    with tempfile.TemporaryDirectory() as tmp:
        extract(names, fetch(Path(tmp)), args.out)


if __name__ == "__main__":
    main()
