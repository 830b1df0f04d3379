"""`tunecheck samples`: a run's per-item results as lm-eval 0.4 samples JSONL.

Format tests use hand-made run dirs (no model); one test runs a real job on the tiny fixture model and compares the
export with lm-eval's own samples for the same items, demonstrations and model.
"""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from evaluator.cli.app import app
from evaluator.errors import UserError
from evaluator.report import samples as sx
from evaluator.report.samples import SAMPLE_KEYS, export_samples, jsonl_record, samples_file_name, unit_samples
from evaluator.tasks.spec import TaskSpec

LABELS = ["book", "play", "rate"]
PREFIX = "Pick the intent.\n\nUtterance: hi\nIntent: play\n\n"
CHOICE_UNIT = "toy__A__tiny__k1"
GEN_UNIT = "gen__A__tiny__k0"
OPEN_UNIT = "toy__A__tiny__k4"  # planned, not finished


def _sha(s: str) -> str:
    return hashlib.sha256(s.encode("utf-8")).hexdigest()


def _spec(**over) -> dict:
    base = dict(name="toy", data={"path": "json"}, input_field="text", target_field="label", choices=LABELS, prompt="p.j2")
    base.update(over)
    return TaskSpec(**base).model_dump(mode="json")


def choice_rows(n: int = 4, with_query: bool = True) -> list[dict]:
    rows = []
    for i in range(n):
        target = LABELS[i % 3]
        best = i % 3 if i < 3 else 1  # items 0-2 right, item 3 wrong
        ll = [-1.5 - j - 0.25 * i for j in range(3)]
        ll[best] = -0.123456
        row = {
            "item_id": f"it-{i}", "target": target, "prediction": LABELS[best], "score": float(LABELS[best] == target),
            "loglik": ll, "is_greedy": [j == best for j in range(3)],
            "item_tokens": 9, "prompt_tokens": 30, "output_tokens": 0, "seconds": 0.01,
        }
        if with_query:
            row["query"] = f"Utterance: say {i}\nIntent:"
        rows.append(row)
    return rows


def _unit_record(uid: str, task: str, shots: int, metric: str = "accuracy") -> dict:
    return {
        "unit": uid, "task": task, "arm": "A", "arm_name": "prompting (base)", "model": "tiny", "model_slug": "tiny",
        "point": {"shots_requested": shots, "shots": shots, "shots_how": "explicit", "train_size": None},
        "metric": metric, "value": 0.5, "n_items": 4, "engine": "packed", "finished_at": "2026-01-01T00:00:00+0000",
    }


def make_run(root: Path, *, choice_spec: dict | None = None, task_path: str | None = None, rows: list[dict] | None = None) -> Path:
    """A finished choice unit, a finished generate unit and one planned-but-unfinished unit."""
    run = root / "run1"
    for d in ("units", "results", "prefixes"):
        (run / d).mkdir(parents=True)
    gen_spec = _spec(name="gen", kind="generate", choices=None, metric="exact_match", max_new_tokens=7, fewshot_delimiter="\n")
    config = {
        "fingerprint": "fp", "run_id": "run1", "job": {"name": "run1", "seed": 3},
        "tasks": {
            "toy": {"path": task_path or str(root / "nowhere.yaml"), "spec": choice_spec or _spec(), "n_train": 5, "n_test": 4},
            "gen": {"path": str(root / "nowhere.yaml"), "spec": gen_spec, "n_train": 5, "n_test": 2},
        },
        "units": [CHOICE_UNIT, OPEN_UNIT, GEN_UNIT],
    }
    (run / "config.json").write_text(json.dumps(config))
    rows = rows if rows is not None else choice_rows()
    (run / "results" / f"{CHOICE_UNIT}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (run / "prefixes" / f"{CHOICE_UNIT}.txt").write_text(PREFIX)
    (run / "units" / f"{CHOICE_UNIT}.json").write_text(json.dumps(_unit_record(CHOICE_UNIT, "toy", 1)))
    (run / "results" / f"{OPEN_UNIT}.jsonl").write_text(json.dumps(rows[0]) + "\n")  # partial, no unit record
    gen_rows = [
        {"item_id": "g-0", "query": "Q: 2+2?\nA:", "target": "4", "prediction": "4", "score": 1.0,
         "item_tokens": 5, "prompt_tokens": 5, "output_tokens": 2, "seconds": 0.1},
        {"item_id": "g-1", "query": "Q: capital of France?\nA:", "target": "Paris", "prediction": "Lyon", "score": 0.0,
         "item_tokens": 7, "prompt_tokens": 7, "output_tokens": 3, "seconds": 0.1},
    ]
    (run / "results" / f"{GEN_UNIT}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in gen_rows))
    (run / "prefixes" / f"{GEN_UNIT}.txt").write_text("")
    (run / "units" / f"{GEN_UNIT}.json").write_text(json.dumps(_unit_record(GEN_UNIT, "gen", 0, "exact_match")))
    return run


def lmeval_tracker_jsonl(samples: list[dict], tmp: Path, task_name: str = "t") -> str:
    """What lm-eval's own EvaluationTracker writes for these in-memory samples."""
    from lm_eval.loggers import EvaluationTracker

    tmp.mkdir(parents=True, exist_ok=True)
    tracker = EvaluationTracker(output_path=str(tmp / "results.json"))  # *.json: samples go next to it
    tracker.date_id = "D"
    tracker.save_results_samples(task_name, copy.deepcopy(samples))
    return (tmp / f"samples_{task_name}_D.jsonl").read_text(encoding="utf-8")


# --------------------------------------------------------------------------------------------------------------------


def test_choice_records_have_lmeval_shape(tmp_path):
    run = make_run(tmp_path)
    rows = choice_rows()
    got = unit_samples(run, CHOICE_UNIT)
    assert len(got) == len(rows)
    for i, (s, row) in enumerate(zip(got, rows)):
        assert tuple(s) == SAMPLE_KEYS + ("acc",)  # lm-eval's key order, metric last
        ctx = PREFIX + row["query"]
        assert s["doc_id"] == i
        assert s["doc"] == {"id": row["item_id"], "query": row["query"], "choices": LABELS, "target": row["target"]}
        assert s["target"] == row["target"]  # a native task's doc_to_target is its label text, as lm-eval logs it
        assert s["arguments"] == [(ctx, " " + c) for c in LABELS]
        assert s["resps"] == [[(ll, g)] for ll, g in zip(row["loglik"], row["is_greedy"])]
        assert s["filtered_resps"] == [(ll, g) for ll, g in zip(row["loglik"], row["is_greedy"])]
        assert s["filter"] == "none" and s["metrics"] == ["acc"] and s["acc"] == row["score"]
        assert s["doc_hash"] == _sha(json.dumps(s["doc"], indent=2, ensure_ascii=False))
        assert s["prompt_hash"] == _sha(ctx)
        assert s["target_hash"] == _sha(row["target"])
    assert [s["acc"] for s in got] == [r["score"] for r in rows] and 0 < sum(s["acc"] for s in got) < len(rows)


def test_written_file_is_byte_identical_to_lmeval_tracker_output(tmp_path):
    run = make_run(tmp_path)
    res = export_samples(run)
    assert res.out_dir == run / "samples"
    assert sorted(p.name for p in res.written) == sorted([samples_file_name(CHOICE_UNIT), samples_file_name(GEN_UNIT)])
    assert samples_file_name(CHOICE_UNIT) == f"samples_{CHOICE_UNIT}.jsonl"
    for uid in (CHOICE_UNIT, GEN_UNIT):
        ours = (run / "samples" / samples_file_name(uid)).read_text(encoding="utf-8")
        assert ours == lmeval_tracker_jsonl(unit_samples(run, uid), tmp_path / f"lm-{uid}")
    line = json.loads((run / "samples" / samples_file_name(CHOICE_UNIT)).read_text().splitlines()[0])
    assert list(line["arguments"]) == ["gen_args_0", "gen_args_1", "gen_args_2"]
    assert line["arguments"]["gen_args_1"] == {"arg_0": PREFIX + "Utterance: say 0\nIntent:", "arg_1": " play"}
    assert line["target"] == "book" and line["target_hash"] == _sha("book") and line["filtered_resps"][0] == ["-0.123456", "True"]
    assert line["resps"][0] == [["-0.123456", "True"]]


def test_generate_unit_records(tmp_path):
    run = make_run(tmp_path)
    got = unit_samples(run, GEN_UNIT)
    assert [tuple(s) for s in got] == [SAMPLE_KEYS + ("exact_match",)] * 2
    s = got[1]
    assert s["doc"] == {"id": "g-1", "query": "Q: capital of France?\nA:", "target": "Paris"}
    assert s["target"] == "Paris" and s["target_hash"] == _sha("Paris")
    assert s["arguments"] == [("Q: capital of France?\nA:", {"temperature": 0.0, "do_sample": False, "max_gen_toks": 7, "until": ["\n"]})]
    assert s["resps"] == [["Lyon"]] and s["filtered_resps"] == ["Lyon"]
    assert s["metrics"] == ["exact_match"] and s["exact_match"] == 0.0 and got[0]["exact_match"] == 1.0


def test_hash_and_sanitise_helpers_equal_lmevals():
    import numpy as np
    from lm_eval.defaults import default_gen_kwargs
    from lm_eval.utils import handle_non_serializable, hash_string, sanitize_list

    for s in ("", "abc", "Intent: ünïcode ✓\n\n", PREFIX):
        assert sx._hash_string(s) == hash_string(s)
    nested = [[(-1.25, True)], [(-3.0, False)], ["text"], (1, [2.5, None])]
    assert sx._sanitize_list(nested) == sanitize_list(nested)
    for o in (np.bool_(True), np.int64(3), np.float32(0.5), {1}, object):
        assert sx._handle_non_serializable(o) == handle_non_serializable(o)
    assert sx._gen_kwargs("\n\n", 9) == default_gen_kwargs("\n\n", 9)
    assert sx.hash_string is hash_string  # the real one is used when lm-eval is installed


def test_unfinished_units_skipped_and_unit_filter(tmp_path):
    run = make_run(tmp_path)
    notes: list[str] = []
    res = export_samples(run, units=None, log=notes.append)
    assert res.skipped == [(OPEN_UNIT, res.skipped[0][1])] and "unfinished" in res.skipped[0][1]
    assert notes and OPEN_UNIT in notes[0]
    only = export_samples(run, tmp_path / "only", [GEN_UNIT])
    assert [p.name for p in only.written] == [samples_file_name(GEN_UNIT)] and not only.skipped
    assert sorted(p.name for p in (tmp_path / "only").iterdir()) == [samples_file_name(GEN_UNIT)]
    with pytest.raises(UserError, match="unknown unit 'nope'"):
        export_samples(run, units=["nope"])
    with pytest.raises(UserError, match="not finished"):
        unit_samples(run, OPEN_UNIT)


def test_export_is_read_only_repeatable_and_leaves_no_temp_files(tmp_path):
    run = make_run(tmp_path)
    results = run / "results" / f"{CHOICE_UNIT}.jsonl"
    with results.open("a") as fh:
        fh.write('{"item_id": "torn", "tar')  # a torn last line: ignored, and the results file is not rewritten
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    first = export_samples(run)
    texts = [p.read_bytes() for p in first.written]
    second = export_samples(run)
    assert [p.read_bytes() for p in second.written] == texts
    assert {p: p.read_bytes() for p in before} == before
    assert sorted(p.name for p in (run / "samples").iterdir()) == sorted(p.name for p in first.written)
    assert len(texts[0].decode().splitlines()) == 4


def test_per_row_choices_are_read_from_the_task_data(tmp_path):
    tdir = tmp_path / "tasks"
    (tdir / "prompts").mkdir(parents=True)
    (tdir / "prompts" / "q.j2").write_text("Q: {{ input }}\nA:")
    data = [
        {"id": "it-0", "text": "first", "label": "yes", "opts": ["yes", "no", "maybe"]},
        {"id": "it-1", "text": "second", "label": "blue", "opts": ["red", "blue", "green"]},
    ]
    (tdir / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in data))
    task_yaml = tdir / "toy.yaml"
    task_yaml.write_text(yaml.safe_dump({
        "name": "toy", "data": {"path": "json", "data_files": {"train": "data.jsonl", "test": "data.jsonl"}},
        "id_field": "id", "input_field": "text", "target_field": "label", "choices_field": "opts", "prompt": "q.j2",
    }))
    spec = TaskSpec(name="toy", data={"path": "json"}, input_field="text", target_field="label", choices_field="opts", prompt="q.j2").model_dump(mode="json")
    rows = [
        {"item_id": "it-0", "target": "yes", "prediction": "yes", "score": 1.0, "loglik": [-0.5, -2.0, -3.0],
         "is_greedy": [True, False, False], "item_tokens": 3, "prompt_tokens": 3, "output_tokens": 0, "seconds": 0.0},
        {"item_id": "it-1", "target": "blue", "prediction": "red", "score": 0.0, "loglik": [-0.5, -2.0, -3.0],
         "is_greedy": [True, False, False], "item_tokens": 3, "prompt_tokens": 3, "output_tokens": 0, "seconds": 0.0},
    ]  # no query either: rebuilt from the task's prompt
    run = make_run(tmp_path / "a", choice_spec=spec, task_path=str(task_yaml), rows=rows)
    got = unit_samples(run, CHOICE_UNIT)
    assert [s["doc"]["choices"] for s in got] == [r["opts"] for r in data]
    assert [s["target"] for s in got] == ["yes", "blue"]
    assert got[1]["arguments"] == [(PREFIX + "Q: second\nA:", " " + c) for c in data[1]["opts"]]

    # rows that carry their choices (and query) need no task data
    carried = [dict(r, choices=d["opts"], query=f"Q: {d['text']}\nA:") for r, d in zip(rows, data)]
    run_b = make_run(tmp_path / "b", choice_spec=spec, task_path=str(tmp_path / "gone.yaml"), rows=carried)
    assert unit_samples(run_b, CHOICE_UNIT) == got

    # neither: one clear error naming what is missing
    no_choices = [dict(r, query=f"Q: {d['text']}\nA:") for r, d in zip(rows, data)]
    run_c = make_run(tmp_path / "c", choice_spec=spec, task_path=str(tmp_path / "gone.yaml"), rows=no_choices)
    with pytest.raises(UserError, match="per-item choices are not stored") as exc:
        export_samples(run_c)
    assert "\n" not in str(exc.value)
    assert not (run_c / "samples").exists()  # nothing half-written


def test_old_run_without_task_specs_is_a_user_error(tmp_path):
    from tests.fake_runs import item_ids, old_run

    run = old_run(tmp_path, item_ids(5))
    with pytest.raises(UserError, match="records no spec for task 'toy_intents'"):
        export_samples(run)


def test_cli_writes_and_lists_files_and_rejects_non_run_dirs(tmp_path):
    run = make_run(tmp_path)
    res = CliRunner().invoke(app, ["samples", str(run), "--out", str(tmp_path / "out"), "--unit", CHOICE_UNIT, "--unit", OPEN_UNIT])
    assert res.exit_code == 0, res.output
    assert res.stdout.splitlines() == [str(tmp_path / "out" / samples_file_name(CHOICE_UNIT))]
    assert f"skip {OPEN_UNIT}" in res.stderr
    bad = CliRunner().invoke(app, ["samples", str(tmp_path)])
    assert bad.exit_code == 2
    assert bad.stderr.count("\n") == 1 and "not a tunecheck run directory" in bad.stderr
    assert "Export per-item results as lm-eval samples JSONL" in CliRunner().invoke(app, ["--help"]).stdout


# --------------------------------------------------------------------------------------------------------------------
# Against the real lm-eval
# --------------------------------------------------------------------------------------------------------------------

K, LIMIT, SEED = 2, 5, 7


def _run_and_export(tmp_path, job: dict):
    """Run a one-unit job through the CLI, export it with `tunecheck samples`: (run dir, unit id, the unit's samples
    in memory, the exported JSONL records)."""
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(job))
    res = CliRunner().invoke(app, ["run", str(tmp_path / "job.yaml")])
    assert res.exit_code == 0, res.output
    (run,) = list((tmp_path / "runs").iterdir())
    exp = CliRunner().invoke(app, ["samples", str(run)])
    assert exp.exit_code == 0, exp.output
    (path,) = [Path(p) for p in exp.stdout.splitlines()]
    (uid,) = [json.loads(p.read_text())["unit"] for p in (run / "units").glob("*.json")]
    return run, uid, unit_samples(run, uid), [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]


def test_export_matches_real_lmeval_samples(tmp_path, tiny_llama_dir):
    """A real run (our engine) exported, vs lm-eval's simple_evaluate on the same model, items and demonstrations."""
    from evaluator.arms.lmeval import run_lmeval
    from evaluator.tasks.layout import PromptBuilder
    from evaluator.tasks.load import load_task

    job = {
        "name": "samples", "tasks": ["snips_intents"], "base": str(tiny_llama_dir), "newer": [], "seed": SEED,
        "limit": LIMIT, "device": "cpu", "arms": {"prompting": {"shots": [K]}, "lora": {"enabled": False}},
        "output_dir": str(tmp_path / "runs"), "adapters_dir": str(tmp_path / "adapters"),
    }
    run, uid, ours_mem, ours_jsonl = _run_and_export(tmp_path, job)

    task = load_task("snips_intents")
    ref = run_lmeval(str(tiny_llama_dir), None, task, PromptBuilder(task, SEED), list(task.test[:LIMIT]), K,
                     device="cpu", work_dir=tmp_path / "lm", return_details=True)
    ref_mem = ref.raw["samples"][ref.task_name]
    ref_jsonl = [json.loads(x) for x in lmeval_tracker_jsonl(ref_mem, tmp_path / "lm-out", ref.task_name).splitlines()]

    assert len(ours_mem) == len(ref_mem) == len(ours_jsonl) == len(ref_jsonl) == LIMIT
    for o, r, oj, rj in zip(ours_mem, ref_mem, ours_jsonl, ref_jsonl):
        assert list(o) == list(r) and list(oj) == list(rj)  # same keys, same order
        assert o["doc_id"] == r["doc_id"] and o["doc"]["id"] == r["doc"]["id"]
        assert o["doc"]["query"] == r["doc"]["query"] and o["doc"]["choices"] == r["doc"]["choices"]
        assert [tuple(a) for a in o["arguments"]] == [tuple(a) for a in r["arguments"]]  # context strings identical
        assert oj["arguments"] == rj["arguments"]
        # The bridge's task file scores with `doc_to_target: label`, the gold *index*: lm-eval logs that index. A
        # native task's own lm-eval form would have the label text there, which is what the export writes — so
        # target/target_hash are compared through the choice (this test once compared index with index, and missed
        # that an lm-eval task with a text target logs the text; see test_lmeval_task_export_equals_lmeval_log).
        assert r["doc"]["choices"][r["target"]] == o["target"] == oj["target"] == o["doc"]["target"]
        assert o["target_hash"] == _sha(o["target"]) and r["target_hash"] == _sha(str(r["target"]))
        assert o["prompt_hash"] == r["prompt_hash"]
        assert o["filter"] == r["filter"] and o["metrics"] == r["metrics"] == ["acc"]
        assert o["acc"] == r["acc"] and oj["acc"] == rj["acc"]
        for mine, theirs in ((o["filtered_resps"], r["filtered_resps"]), ([x[0] for x in o["resps"]], [x[0] for x in r["resps"]]),
                             ([[float(a), b] for a, b in oj["filtered_resps"]], [[float(a), b] for a, b in rj["filtered_resps"]])):
            assert len(mine) == len(theirs) == len(task.spec.choices)
            assert max(abs(float(a[0]) - float(b[0])) for a, b in zip(mine, theirs)) < 1e-3
            assert [a[1] for a in mine] == [b[1] for b in theirs]
        # the doc is ours (lm-eval's holds the bridge's columns), hashed lm-eval's way
        assert o["doc_hash"] == _sha(json.dumps(o["doc"], indent=2, ensure_ascii=False))


def test_lmeval_raw_target_carried_by_rows_or_fallback_to_text(tmp_path):
    """An lm-eval task: a row's `lmeval_target` (lm-eval's raw doc_to_target) is what is logged and hashed; without it
    and without the task any more, the gold text."""
    spec = _spec(lmeval_task="toy", prompt=None, choices=None)
    rows = [dict(r, choices=LABELS, lmeval_target=LABELS.index(r["target"])) for r in choice_rows()]
    run = make_run(tmp_path / "a", choice_spec=spec, rows=rows)
    got = unit_samples(run, CHOICE_UNIT)
    assert [s["target"] for s in got] == [0, 1, 2, 0] and [s["target_hash"] for s in got] == [_sha(str(i)) for i in (0, 1, 2, 0)]
    assert json.loads(jsonl_record(got[1])["target"]) == 1 and got[1]["doc"]["target"] == "play"
    bare = [dict(r, choices=LABELS) for r in choice_rows()]
    run_b = make_run(tmp_path / "b", choice_spec=spec, rows=bare)  # its task file does not exist
    assert [s["target"] for s in unit_samples(run_b, CHOICE_UNIT)] == [r["target"] for r in bare]


@pytest.mark.parametrize("target_kind", ["text", "index"])
def test_lmeval_task_export_equals_lmeval_log(target_kind, tmp_path, tiny_llama_dir):
    """An `lm-eval:` task (first_n sampler) run by our engine and exported, vs lm-eval's own log_samples for the same
    task file, model and k: target (text or index, as its doc_to_target gives), every hash but doc_hash, contexts."""
    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    from tests.test_lmeval_tasks import LABELS as SNIPS_LABELS
    from tests.test_lmeval_tasks import lmeval_yaml

    over = {"fewshot_config": {"sampler": "first_n"}}
    if target_kind == "index":
        over["doc_to_target"] = "{{" + json.dumps(SNIPS_LABELS) + ".index(label)}}"
    path = lmeval_yaml(tmp_path / "lm", name=f"snips_{target_kind}", **over)
    job = {
        "name": "lmsamples", "tasks": [f"lm-eval:{path}"], "base": str(tiny_llama_dir), "newer": [], "seed": SEED,
        "limit": LIMIT, "device": "cpu", "arms": {"prompting": {"shots": [K]}, "lora": {"enabled": False}},
        "output_dir": str(tmp_path / "runs"), "adapters_dir": str(tmp_path / "adapters"),
    }
    run, uid, ours, ours_jsonl = _run_and_export(tmp_path, job)

    name = f"snips_{target_kind}"
    raw = lm_eval.simple_evaluate(
        model=HFLM(pretrained=str(tiny_llama_dir), device="cpu", batch_size=8), tasks=[name], num_fewshot=K,
        limit=LIMIT, log_samples=True, bootstrap_iters=0, task_manager=TaskManager(include_path=str(path.parent)),
        random_seed=None, numpy_random_seed=None, torch_random_seed=None,
    )
    ref = sorted(raw["samples"][name], key=lambda x: x["doc_id"])
    ref_jsonl = [json.loads(x) for x in lmeval_tracker_jsonl(ref, tmp_path / "lm-out", name).splitlines()]
    assert len(ours) == len(ref) == len(ours_jsonl) == len(ref_jsonl) == LIMIT
    for o, r, oj, rj in zip(ours, ref, ours_jsonl, ref_jsonl):
        assert type(o["target"]) is (int if target_kind == "index" else str)
        assert o["target"] == r["target"] and oj["target"] == rj["target"]
        assert o["target_hash"] == r["target_hash"] == oj["target_hash"] == rj["target_hash"]
        assert o["prompt_hash"] == r["prompt_hash"]  # first_n: lm-eval's prefix is ours
        assert [tuple(a) for a in o["arguments"]] == [tuple(a) for a in r["arguments"]] and oj["arguments"] == rj["arguments"]
        assert o["acc"] == r["acc"] and o["metrics"] == r["metrics"] and o["filter"] == r["filter"]
        assert max(abs(a[0] - b[0]) for a, b in zip(o["filtered_resps"], r["filtered_resps"])) < 1e-3
