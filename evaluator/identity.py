"""What a run measured, as fingerprints: task data, template, demonstration order, model weights, scoring engine.

A run's id and every unit record carry these, so a re-run skips a finished unit only when the inputs that produced
it are unchanged: edit the task's data or template, swap the weights in a model folder, or change the scoring code,
and the run no longer resumes silently — it refuses with one line naming what changed, or recomputes the units
whose inputs changed when the user asks (``tunecheck run --recompute``). Nothing here loads a model: weights are
identified by their safetensors headers (tensor names, dtypes, shapes, offsets) and file sizes, plus the config and
tokenizer files.
"""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path
from typing import Any, Iterable

#: Bump when a change to prompts, tokenisation or scoring can move a per-item result: runs recorded under another
#: version stop resuming silently.
SCORING_VERSION = "2026-12-01.2"  # .2: whole-string tokenisation where piecewise ids differ

_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model",
                    "vocab.json", "merges.txt", "chat_template.jinja", "generation_config.json")
_HEADER_MAX = 100 * 1024 * 1024  # a safetensors header is JSON; anything bigger is not one (the loader says so)


def _h(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, ensure_ascii=False, default=str).encode()).hexdigest()[:16]


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def _safetensors_header(path: Path) -> str:
    """Digest of a safetensors file's header (names, dtypes, shapes, data offsets) and its size: changes when any
    tensor is added, removed, reshaped or the file is truncated, without reading the weights."""
    size = path.stat().st_size
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
            n = struct.unpack("<Q", head)[0] if len(head) == 8 else -1
            header = fh.read(n) if 0 <= n <= _HEADER_MAX else b""
    except OSError:
        header = b""
    return _h(path.name, size, hashlib.sha256(header).hexdigest())


def model_fingerprint(kind: str, ref: str, api: dict[str, Any] | None = None) -> dict[str, Any]:
    """Identity of a model source without loading it (see the module docstring). Hub ids are identified by id alone
    (the weights are not here to inspect); built-in models by their pinned registry package and GGUF checksum; API
    models by endpoint, model name and the settings that change their answers (`api`: endpoint, choice_scoring)."""
    if kind == "api":
        from evaluator.api.spec import parse_api_spec

        m = parse_api_spec(ref)
        how_asked = {k: (api or {}).get(k, "auto") for k in ("endpoint", "choice_scoring")}
        return {"kind": kind, "ref": ref, "fingerprint": _h("api", m.base_url, m.model, how_asked),
                "how": (f"endpoint {m.base_url}, model {m.model}, endpoint {how_asked['endpoint']}, choice scoring "
                        f"{how_asked['choice_scoring']} (an API model's weights cannot be inspected; each unit records "
                        "the model names the responses report)")}
    if kind == "builtin":
        from evaluator.models import zoo

        m = zoo.get(ref)
        return {"kind": kind, "ref": ref, "fingerprint": _h(m.package, m.version, m.gguf_file, m.gguf_sha256),
                "how": f"built-in {m.package}=={m.version}, GGUF sha256 {m.gguf_sha256[:12] or '?'}"}
    if kind == "hub":
        return {"kind": kind, "ref": ref, "fingerprint": _h("hub", ref),
                "how": "hub id only (its files are not inspected before loading)"}
    folder = Path(ref)
    parts: list[Any] = []
    cfg = folder / "config.json"
    parts.append(("config.json", _file_digest(cfg) if cfg.is_file() else None))
    weights = sorted(folder.glob("*.safetensors"))
    for w in weights:
        parts.append((w.name, _safetensors_header(w)))
    for idx in sorted(folder.glob("*.index.json")):
        parts.append((idx.name, _file_digest(idx)))
    for other in sorted(p for p in folder.iterdir() if p.suffix in {".bin", ".pt", ".pth"}):  # allow_pickle folders
        parts.append((other.name, other.stat().st_size))
    for name in _TOKENIZER_FILES:
        p = folder / name
        if p.is_file():
            parts.append((name, _file_digest(p)))
    return {"kind": kind, "ref": ref, "fingerprint": _h(parts),
            "how": f"config, {len(weights)} safetensors header(s) and sizes, tokenizer files"}


def task_fingerprint(task) -> dict[str, Any]:
    """Identity of a task's content: every train and test item (id, input, target, choices), the spec (fields,
    delimiters, instruction, demonstration order), the prompt template's text, and the demonstration pool."""
    from evaluator.tasks.templates import find_prompt

    spec = task.spec.model_dump(mode="json")
    template = None
    if not task.spec.prerendered:
        try:
            template = find_prompt(task).read_bytes().hex()
        except Exception:  # noqa: BLE001 - a missing template is reported by the task checks; identity stays defined
            template = None

    def items(seq: Iterable) -> str:
        h = hashlib.sha256()
        for it in seq:
            h.update(json.dumps([it.id, it.input, it.target, list(it.choices)], ensure_ascii=False).encode())
        return h.hexdigest()[:16]

    pool = getattr(task, "demo_pool", task.train)
    return {
        "fingerprint": _h(spec, template, items(task.train), items(task.test), items(pool)),
        "train": items(task.train), "test": items(task.test), "template": _h(template), "spec": _h(spec),
    }


def run_inputs(tasks: dict, models: dict[str, tuple[str, str]], api: dict[str, Any] | None = None) -> dict[str, Any]:
    """Everything a run measured beyond the job file: {tasks: {name: fp}, models: {spec: fp}, scoring_version}.
    `api`: the job's api settings (what changes an API model's answers is part of its fingerprint)."""
    return {
        "tasks": {name: task_fingerprint(t) for name, t in tasks.items()},
        "models": {spec: model_fingerprint(kind, ref, api) for spec, (kind, ref) in models.items()},
        "scoring_version": SCORING_VERSION,
    }


def inputs_digest(inputs: dict[str, Any]) -> str:
    return _h(inputs)


def unit_fingerprint(job_fp: str, unit_id: str, task: str, model: str, inputs: dict[str, Any]) -> str:
    """What one unit's results depend on: the job, the unit, its task's and model's content, the scoring version."""
    t = inputs["tasks"][task]["fingerprint"]
    m = inputs["models"][model]["fingerprint"]
    return _h(job_fp, unit_id, t, m, inputs["scoring_version"])


def changed(old: dict[str, Any] | None, new: dict[str, Any]) -> list[str]:
    """Human names of what differs between two run_inputs records (empty when equal)."""
    if not old:
        return ["the run has no record of its inputs (recorded before inputs were tracked)"]
    out = []
    for name, t in new["tasks"].items():
        o = (old.get("tasks") or {}).get(name)
        if not o or o.get("fingerprint") != t["fingerprint"]:
            what = [k for k in ("train", "test", "template", "spec") if not o or o.get(k) != t.get(k)]
            out.append(f"task {name} ({', '.join(what) or 'demonstrations'})")
    for spec, m in new["models"].items():
        o = (old.get("models") or {}).get(spec)
        if not o or o.get("fingerprint") != m["fingerprint"]:
            out.append(f"model {spec} ({m['how']})")
    if old.get("scoring_version") != new["scoring_version"]:
        out.append(f"the scoring code (version {old.get('scoring_version')} → {new['scoring_version']})")
    return out
