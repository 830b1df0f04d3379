"""Reading a task's items: local JSON/JSONL/CSV/parquet files (or a datasets builder), row fields to `Item`s with
one-line errors naming the file and row, and the seeded train/test split."""

from __future__ import annotations

import contextlib
import json
import logging
from pathlib import Path
from typing import Any

from evaluator.errors import UserError
from evaluator.tasks.spec import Item, TaskSpec

COMPRESSED = (".gz", ".bz2", ".xz", ".zst", ".lz4", ".zip", ".tar")


LOCAL_BUILDERS = {"json", "csv", "parquet", "text", "arrow"}


def _data_file_list(spec: TaskSpec, task_dir: Path, split: str, files: str | list[str]) -> list[Path]:
    """One split's data files, resolved against the task folder (a glob pattern expands to its files, sorted)."""
    names = [files] if isinstance(files, str) else files
    out: list[Path] = []
    for f in names:
        fp = (task_dir / f).resolve()
        if fp.is_dir():
            raise UserError(
                f"task {spec.name}: data file {fp} (split {split!r}) is a directory, not a file — name the file(s) "
                "inside it in data.data_files (e.g. data/train.jsonl or data/*.jsonl)"
            )
        if fp.is_file():
            found = [fp]
        elif any(c in str(f) for c in "*?["):
            found = sorted(p for p in fp.parent.glob(fp.name) if p.is_file())
            if not found:
                raise UserError(f"task {spec.name}: data file pattern {f!r} (split {split!r}) matches no file in "
                                f"{fp.parent} — fix data.data_files")
        else:
            raise UserError(f"task {spec.name}: data file {fp} (split {split!r}) does not exist — fix data.data_files")
        for p in found:
            with open(p, "rb") as fh:  # `datasets` fails on an empty file with a bare StopIteration
                if not fh.read(4096).strip():
                    raise UserError(f"task {spec.name}: split {split!r} is empty ({p}) — it needs at least one row")
        out.extend(found)
    return out


def _resolve_data_files(spec: TaskSpec, task_dir: Path) -> dict[str, list[Path]] | None:
    if spec.data.data_files is None:
        return None
    return {split: _data_file_list(spec, task_dir, split, files) for split, files in spec.data.data_files.items()}


def _decode(spec: TaskSpec, split: str, fp: Path) -> str:
    raw = fp.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise UserError(f"task {spec.name}: {fp} (split {split!r}) is not UTF-8 (line {line}, byte {exc.start}) — "
                        "re-encode it as UTF-8") from None
    return text.removeprefix("\ufeff")


def _unique_keys(where: str, spec: TaskSpec):
    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in pairs:
            if k in out:
                raise UserError(f"task {spec.name}: {where} has the key {k!r} twice — keep one")
            out[k] = v
        return out

    return hook


def _json_kind(v: Any) -> str:
    return {dict: "a JSON object", list: "a JSON list", str: "text", bool: "a boolean", type(None): "null"}.get(
        type(v), f"a JSON {type(v).__name__}")


def _read_json_rows(spec: TaskSpec, split: str, fp: Path) -> list[tuple[Any, str]]:
    """Rows of a JSON Lines file or of a JSON file holding one list of objects, each with where it is (file and
    line), read here rather than by `datasets` so a bad row is named by its file and line — not as a generic dataset
    build error of another split — and no type is coerced (a null id or a nested field is refused, not stringified)."""
    text = _decode(spec, split, fp)
    body = text.lstrip()
    rows: list[tuple[Any, str]] = []
    if body.startswith("["):
        dec = json.JSONDecoder(object_pairs_hook=_unique_keys(f"{fp}", spec))
        pos = len(text) - len(body) + 1
        n = 0
        while True:
            while pos < len(text) and text[pos].isspace():
                pos += 1
            if pos < len(text) and text[pos] == "]" and n == 0:
                pos += 1
                break
            line = text.count("\n", 0, pos) + 1
            try:
                obj, end = dec.raw_decode(text, pos)
            except json.JSONDecodeError as exc:
                raise UserError(f"task {spec.name}: {fp} line {exc.lineno} is not valid JSON ({exc.msg}) — fix the "
                                "file (a JSON data file holds one list of objects)") from None
            rows.append((obj, f"{fp} line {line}"))
            n += 1
            pos = end
            while pos < len(text) and text[pos].isspace():
                pos += 1
            if pos < len(text) and text[pos] == ",":
                pos += 1
                continue
            if pos < len(text) and text[pos] == "]":
                pos += 1
                break
            line = text.count("\n", 0, pos) + 1
            raise UserError(f"task {spec.name}: {fp} line {line} is not valid JSON (expected ',' or ']' after a row) "
                            "— fix the file")
        if text[pos:].strip():
            line = text.count("\n", 0, pos) + 1
            raise UserError(f"task {spec.name}: {fp} line {line}: more data after the list of rows — a .json data "
                            "file holds one list of objects; for one object per line use JSON Lines")
    else:
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            where = f"{fp} line {n}"
            try:
                obj = json.loads(line, object_pairs_hook=_unique_keys(where, spec))
            except json.JSONDecodeError as exc:
                if n == 1 or not rows:
                    try:
                        whole = json.loads(text)
                    except json.JSONDecodeError:
                        whole = None
                    if isinstance(whole, dict):
                        raise UserError(
                            f"task {spec.name}: {fp} holds one JSON object spread over several lines, not rows — write "
                            "one object per line (JSON Lines) or a list of objects"
                        ) from None
                raise UserError(f"task {spec.name}: {fp} line {n} is not valid JSON ({exc.msg}) — fix the line") from None
            rows.append((obj, where))
    for obj, where in rows:
        if not isinstance(obj, dict):
            raise UserError(f"task {spec.name}: {where} is {_json_kind(obj)}, not an object with fields — each row "
                            'must be a JSON object, e.g. {"id": "1", "text": "...", "label": "..."}')
    return rows


def _csv_lines(spec: TaskSpec, split: str, fp: Path) -> list[str]:
    """Check a CSV file the way pandas will read it (header, then rows of at most as many fields), naming the file and
    line of a bad row — `datasets` reports it as a generic build error, logged twice. Returns where each row is."""
    import csv
    import io

    text = _decode(spec, split, fp)
    reader = csv.reader(io.StringIO(text))
    header: list[str] | None = None
    where: list[str] = []
    try:
        for row in reader:
            if not row or not any(c.strip() for c in row):
                continue
            if header is None:
                header = row
                needed = [f for f in (spec.id_field, spec.input_field, spec.target_field, spec.choices_field) if f]
                missing = [f for f in needed if f not in header]
                if missing:
                    raise UserError(f"task {spec.name}: {fp} (split {split!r}) has no column {missing[0]!r} (its "
                                    f"header: {', '.join(header)}) — fix the header or the task's field names")
                continue
            if len(row) > len(header):
                raise UserError(f"task {spec.name}: {fp} line {reader.line_num} has {len(row)} fields but the header "
                                f"has {len(header)} — quote fields that contain commas (\"a, b\")")
            where.append(f"{fp} line {reader.line_num}")
    except csv.Error as exc:
        raise UserError(f"task {spec.name}: {fp} line {reader.line_num} is not valid CSV ({exc}) — fix the line") from None
    return where


def _cause_line(exc: BaseException) -> str:
    """The most specific first line of an exception chain (`datasets` wraps the real cause in a generic error)."""
    seen = []
    e: BaseException | None = exc
    while e is not None and e not in seen:
        seen.append(e)
        e = e.__cause__ or e.__context__
    for e in reversed(seen):
        text = str(e).strip()
        if text and "An error occurred while generating the dataset" not in text:
            return text.splitlines()[0]
    return type(exc).__name__


@contextlib.contextmanager
def _quiet_datasets():
    """`datasets` logs a failed file read at ERROR level (and pandas warns) before raising: one line is ours to print."""
    import warnings

    loggers = [logging.getLogger(n) for n in ("datasets", "fsspec", "huggingface_hub")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL + 1)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, lv in zip(loggers, levels):
            lg.setLevel(lv)


def _load_split(spec: TaskSpec, task_dir: Path, split: str) -> list[tuple[dict[str, Any], str]]:
    """The rows of one split, each with where it is (file and line when known), reading only that split's files."""
    import datasets

    data_files = _resolve_data_files(spec, task_dir)
    if data_files is not None and split not in data_files:
        raise UserError(f"task {spec.name}: split {split!r} is not in data.data_files ({', '.join(data_files)})")
    if data_files is None and spec.data.path in LOCAL_BUILDERS:
        raise UserError(f"task {spec.name}: data.path {spec.data.path!r} reads local files — give data.data_files "
                        f"(split name → file, relative to the task file)")
    files = data_files[split] if data_files is not None else None
    if spec.data.path == "json" and files and not any(str(f).endswith(COMPRESSED) for f in files):
        return [r for f in files for r in _read_json_rows(spec, split, f)]
    where: list[str] | None = None
    if spec.data.path == "csv" and files and not any(str(f).endswith(COMPRESSED) for f in files):
        where = [w for f in files for w in _csv_lines(spec, split, f)]
    datasets.disable_progress_bars()
    try:
        with _quiet_datasets():
            ds = datasets.load_dataset(
                spec.data.path, name=spec.data.name, data_files={split: [str(f) for f in files]} if files else None,
                split=split, revision=spec.data.revision,
            )
    except UserError:
        raise
    except UnicodeDecodeError:
        raise UserError(f"task {spec.name}: data for split {split!r} is not UTF-8 — re-encode the file") from None
    except Exception as exc:  # noqa: BLE001 - datasets raises many types; the user needs one line
        src = ", ".join(str(f) for f in files) if files else spec.data.path
        raise UserError(f"task {spec.name}: cannot load split {split!r} from {src}: {_cause_line(exc)}") from None
    rows = [dict(r) for r in ds]
    if where is None or len(where) != len(rows):
        where = [f"row {i} of split {split!r}" for i in range(len(rows))]
    return list(zip(rows, where))


SCALARS = (str, int, float)


def _scalar(spec: TaskSpec, where: str, field_name: str, what: str, value: Any) -> str:
    """A field's value as text: text, a number or a boolean (as `datasets` gave them); a nested value is refused."""
    if isinstance(value, (dict, list, tuple)):
        raise UserError(
            f"task {spec.name}: {where}: field {field_name!r} ({what}) is {_json_kind(value)}, not text — tunecheck "
            "reads top-level text fields: flatten the data or point the task at a text field"
        )
    if not isinstance(value, SCALARS):  # bool is an int
        raise UserError(f"task {spec.name}: {where}: field {field_name!r} ({what}) is {type(value).__name__}, not "
                        "text — fix the data")
    return str(value)


def _row_choices(spec: TaskSpec, where: str, value: Any) -> tuple[str, ...]:
    f = spec.choices_field
    if not isinstance(value, (list, tuple)):
        raise UserError(
            f"task {spec.name}: {where}: choices field {f!r} is {_json_kind(value)} ({str(value)[:40]!r}), not a list "
            f'of strings — write it as a list, e.g. ["yes", "no"]'
        )
    for j, c in enumerate(value):
        if not isinstance(c, str):
            raise UserError(f"task {spec.name}: {where}: choice {j} in {f!r} is {_json_kind(c)} ({c!r}), not a string "
                            '— write every choice as a string, e.g. "1"')
    if len(value) < 2:
        raise UserError(f"task {spec.name}: {where}: choices field {f!r} has {len(value)} choice(s) — a choice task "
                        "needs at least 2")
    if len(set(value)) != len(value):
        dup = next(c for j, c in enumerate(value) if c in value[:j])
        raise UserError(f"task {spec.name}: {where}: choice {dup!r} is listed twice in {f!r} — choices must be distinct")
    return tuple(value)


def _to_items(spec: TaskSpec, rows: list[tuple[dict[str, Any], str]], split: str) -> tuple[Item, ...]:
    if not rows:
        raise UserError(f"task {spec.name}: split {split!r} is empty — it needs at least one row")
    items: list[Item] = []
    seen: dict[str, str] = {}
    for i, (row, where) in enumerate(rows):
        place = where if "split" in where else f"{where} (split {split!r})"
        if spec.id_field:
            if spec.id_field not in row:
                raise UserError(f"task {spec.name}: {place} has no id field {spec.id_field!r} — give every row an id, "
                                "or remove id_field from the task")
            rid_value = row[spec.id_field]
            if rid_value is None:
                raise UserError(f"task {spec.name}: {place}: its id {spec.id_field!r} is null — give every row an id")
            if isinstance(rid_value, bool):
                raise UserError(f"task {spec.name}: {place}: its id {spec.id_field!r} is a boolean — use text or a number")
            rid = _scalar(spec, place, spec.id_field, "the id", rid_value)
        else:
            rid = f"{split}-{i}"
        for fld in (spec.input_field, spec.target_field, spec.choices_field):
            if fld and row.get(fld) is None:
                raise UserError(f"task {spec.name}: {place} has no field {fld!r} (row {rid}) — fix the data or the "
                                "task's field names")
        if rid in seen:
            raise UserError(f"task {spec.name}: duplicate id {rid!r} in split {split!r} ({seen[rid]} and {where}) — "
                            "ids must be unique")
        seen[rid] = where
        text = _scalar(spec, place, spec.input_field, "the input", row[spec.input_field])
        target = _scalar(spec, place, spec.target_field, "the target", row[spec.target_field])
        choices = _row_choices(spec, place, row[spec.choices_field]) if spec.choices_field else tuple(spec.choices or ())
        if spec.kind == "choice" and target not in choices:
            raise UserError(f"task {spec.name}: row {rid} ({where}) target {target!r} is not among the choices — fix "
                            "the data or `choices`")
        items.append(Item(id=rid, input=text, target=target, choices=choices))
    return tuple(items)


def _split_source(spec: TaskSpec) -> str:
    """The one data split `split:` divides: `split.source`, else the only key of data.data_files."""
    sp, files = spec.split, spec.data.data_files
    if sp.source is not None:
        if files is not None and sp.source not in files:
            raise UserError(f"task {spec.name}: split.source {sp.source!r} is not in data.data_files "
                            f"({', '.join(files)}) — name one of them")
        return sp.source
    if files is None:
        raise UserError(f"task {spec.name}: split.source is needed without data.data_files — name the data split to "
                        "divide (e.g. split: {source: train, test_fraction: 0.4})")
    if len(files) != 1:
        raise UserError(f"task {spec.name}: split divides one data split but data.data_files has {len(files)} "
                        f"({', '.join(files)}) — set split.source to the one to divide, or remove split")
    return next(iter(files))


def split_items(spec: TaskSpec, items: tuple[Item, ...]) -> tuple[tuple[Item, ...], tuple[Item, ...]]:
    """(train, test) of one split's items by `spec.split` (see SplitSpec); both keep file order. A size that would
    leave either part empty is one UserError line naming the field."""
    import math
    import random

    sp = spec.split
    field_name, value = sp.how_many
    n = len(items)
    count = math.floor(n * value + 0.5) if field_name.endswith("fraction") else int(value)
    side = field_name.split("_")[0]
    if not 1 <= count <= n - 1:
        other = "test" if side == "train" else "train"
        what = f"gives no {side} items" if count < 1 else f"leaves {max(0, n - count)} {other} items"
        raise UserError(f"task {spec.name}: split.{field_name} {value} of {n} rows "
                        f"{what} — both parts need at least one item ("
                        + (f"1 to {n - 1} {side} items)" if n >= 2 else "the data needs at least 2 rows)"))
    n_test = count if side == "test" else n - count
    if sp.mode == "first":
        return items[: n - n_test], items[n - n_test :]
    order = list(range(n))
    random.Random(sp.seed).shuffle(order)
    held = set(order[:n_test])
    return (tuple(it for i, it in enumerate(items) if i not in held), tuple(it for i, it in enumerate(items) if i in held))
