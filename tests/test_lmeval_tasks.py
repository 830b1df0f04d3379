"""`lm-eval:<task>` jobs: docs, prompt, choices and targets from lm-eval's Task object, scored by our engine."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from evaluator.cli.app import app
from evaluator.errors import UserError
from evaluator.tasks.layout import PromptBuilder
from evaluator.tasks.load import load_task

REPO = Path(__file__).resolve().parents[1]
LABELS = ["add_to_playlist", "book_restaurant", "get_weather", "play_music", "search_screening_event", "search_creative_work", "rate_book"]


def lmeval_yaml(folder: Path, name: str = "snips_lm", **over) -> Path:
    """A local lm-eval task over the SNIPS files: Jinja doc_to_text, a label list, a string target."""
    folder.mkdir(parents=True, exist_ok=True)
    cfg = {
        "task": name,
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {
            "train": str(REPO / "tasks" / "data" / "snips_train.jsonl"),
            "test": str(REPO / "tasks" / "data" / "snips_test.jsonl"),
        }},
        "training_split": "train",
        "test_split": "test",
        "output_type": "multiple_choice",
        "description": "Predict the intent of the utterance.\n\n",
        "doc_to_text": "Utterance: {{text}}\nIntent:",
        "doc_to_choice": LABELS,
        "doc_to_target": "{{label}}",
        "metric_list": [{"metric": "acc"}],
        "metadata": {"version": 1.0},
    }
    cfg.update(over)
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def lm_folder(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("lmeval_tasks")
    lmeval_yaml(d)
    return d


def test_items_come_from_lmeval_task_object(lm_folder):
    from evaluator.tasks.lmeval import load_lmeval_object

    task = load_task("lm-eval:snips_lm", lmeval_include=[lm_folder])
    obj = load_lmeval_object("lm-eval:snips_lm", [lm_folder], [])
    docs = list(obj.test_docs())
    assert task.spec.lmeval_task == "snips_lm" and len(task.test) == len(docs) == 200 and len(task.train) == 493
    first = task.test[0]
    assert first.input == obj.doc_to_text(docs[0]) == f"Utterance: {docs[0]['text']}\nIntent:"
    assert first.choices == tuple(obj.doc_to_choice(docs[0])) and first.target == docs[0]["label"]
    b = PromptBuilder(task, 3)
    assert b.prefix(0) + b.query(first) == obj.fewshot_context(docs[0], 0)  # lm-eval's own zero-shot context
    demo = b.demos(1)[0]
    assert b.prefix(1) == "Predict the intent of the utterance.\n\n" + demo.input + " " + demo.target + "\n\n"


def test_yaml_path_reference_and_integer_targets(tmp_path):
    path = lmeval_yaml(tmp_path / "t", name="snips_idx", doc_to_target="{{['add_to_playlist', 'book_restaurant', 'get_weather', 'play_music', 'search_screening_event', 'search_creative_work', 'rate_book'].index(label)}}")
    task = load_task(f"lm-eval:{path}")
    assert task.name == "snips_idx" and task.test[0].target == json.loads((REPO / "tasks/data/snips_test.jsonl").read_text().splitlines()[0])["label"]


@pytest.mark.parametrize(
    "over, needle",
    [
        ({"output_type": "loglikelihood"}, "output_type 'loglikelihood'"),
        ({"description": "{{text}}\n\n"}, "description changes per doc"),
        ({"doc_to_target": "{{'order_pizza'}}"}, "not among its choices"),
    ],
)
def test_unsupported_lmeval_tasks_are_refused(tmp_path, over, needle):
    path = lmeval_yaml(tmp_path / "t", **over)
    with pytest.raises(UserError, match=needle):
        load_task(f"lm-eval:{path}")


def test_unknown_lmeval_task_suggests_close_names(lm_folder):
    with pytest.raises(UserError, match="did you mean snips_lm"):
        load_task("lm-eval:snips_ml", lmeval_include=[lm_folder])


def _job(tmp: Path, base: Path, newer_dir: Path, lm_folder: Path, **over) -> Path:
    job = {
        "name": "lmtask", "tasks": ["lm-eval:snips_lm"], "lm_eval_include": [str(lm_folder)],
        "base": str(base), "newer": [str(newer_dir)], "seed": 3, "limit": 10,
        "arms": {"prompting": {"shots": [0, 3]}, "lora": {"train_sizes": [16], "epochs": 1, "r": 4}},
        "output_dir": str(tmp / "runs"), "adapters_dir": str(tmp / "adapters"),
    }
    job.update(over)
    tmp.mkdir(parents=True, exist_ok=True)
    p = tmp / "job.yaml"
    p.write_text(yaml.safe_dump(job))
    return p


def _rows(run_dir: Path) -> dict[str, dict[str, dict]]:
    return {
        p.stem: {json.loads(x)["item_id"]: json.loads(x) for x in p.read_text().splitlines()}
        for p in (run_dir / "results").glob("*.jsonl")
    }


def test_lmeval_task_job_runs_end_to_end_and_lmeval_engine_agrees(tmp_path, tiny_llama_dir, tiny_gemma_dir, lm_folder):
    ours_job = _job(tmp_path / "ours", tiny_llama_dir, tiny_gemma_dir, lm_folder)
    res = CliRunner().invoke(app, ["run", str(ours_job)])
    assert res.exit_code == 0, res.output
    (ours_dir,) = list((tmp_path / "ours" / "runs").iterdir())
    rep = json.loads((ours_dir / "report.json").read_text())
    assert rep["complete"] and set(rep["tasks"]) == {"snips_lm"}
    units = [json.loads(p.read_text()) for p in (ours_dir / "units").glob("*.json")]
    assert sorted(u["arm"] for u in units) == ["A", "A", "B", "C", "C"]
    assert all(u["n_items"] == 10 and u["engine"] != "lm-eval" for u in units)
    cfg = json.loads((ours_dir / "config.json").read_text())
    assert cfg["tasks"]["snips_lm"]["spec"]["lmeval_task"] == "snips_lm"

    ref_job = _job(tmp_path / "ref", tiny_llama_dir, tiny_gemma_dir, lm_folder, newer=[])
    res = CliRunner().invoke(app, ["run", str(ref_job), "--engine", "lm-eval"])
    assert res.exit_code == 0, res.output
    (ref_dir,) = list((tmp_path / "ref" / "runs").iterdir())
    ref_units = [json.loads(p.read_text()) for p in (ref_dir / "units").glob("*.json")]
    assert {u["engine"] for u in ref_units} == {"lm-eval"} and sorted(u["arm"] for u in ref_units) == ["A", "A", "B"]
    ours, ref = _rows(ours_dir), _rows(ref_dir)
    assert set(ref) <= set(ours)
    for unit, rows in ref.items():  # prompting and adapter arms: same predictions, log-likelihoods to float noise
        assert rows.keys() == ours[unit].keys()
        assert [rows[i]["prediction"] for i in rows] == [ours[unit][i]["prediction"] for i in rows], unit
        assert max(abs(a - b) for i in rows for a, b in zip(rows[i]["loglik"], ours[unit][i]["loglik"])) < 1e-3, unit


def test_shipped_example_lmeval_task_loads(monkeypatch):
    monkeypatch.chdir(REPO)  # its data paths are relative to the repository root
    from evaluator.config.job import load_job

    job = load_job(REPO / "examples" / "lmeval_job.yaml")
    include = [(REPO / "examples" / d).resolve() for d in job.lm_eval_include]
    task = load_task(job.tasks[0], lmeval_include=include)
    assert task.name == "snips_lmeval" and len(task.test) == 200 and len(task.train) == 493


def test_generate_until_task_runs_with_its_stop_strings(tmp_path, tiny_llama_dir):
    """A generate_until lm-eval task: kind generate, lm-eval's `until` and `max_gen_toks`, answers cut at `until`."""
    path = lmeval_yaml(
        tmp_path / "g", name="snips_gen", output_type="generate_until", doc_to_choice=None, doc_to_target="{{label}}",
        generation_kwargs={"until": ["\n", "Utterance:"], "max_gen_toks": 5, "do_sample": False},
        metric_list=[{"metric": "exact_match"}],
    )
    task = load_task(f"lm-eval:{path}")
    assert task.spec.kind == "generate" and task.spec.stops == ["\n", "Utterance:"] and task.spec.max_new_tokens == 5
    assert task.test[0].choices == () and task.test[0].target in LABELS
    job = {"name": "gen", "tasks": [f"lm-eval:{path}"], "base": str(tiny_llama_dir), "limit": 3,
           "arms": {"prompting": {"shots": [2]}, "lora": {"enabled": False}}, "output_dir": str(tmp_path / "runs")}
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(job))
    res = CliRunner().invoke(app, ["run", str(tmp_path / "job.yaml")])
    assert res.exit_code == 0, res.output
    (run,) = list((tmp_path / "runs").iterdir())
    rows = [r for unit in _rows(run).values() for r in unit.values()]
    assert len(rows) == 3 and all(0 < r["output_tokens"] <= 5 and "\n" not in r["prediction"] for r in rows)
    unit = json.loads(next((run / "units").glob("*.json")).read_text())
    assert unit["metric"] == "exact_match"


def test_generate_until_with_answer_filters_is_scored_by_lmeval(tmp_path):
    """No longer refused: lm-eval's filters and metric score it (parity: tests/test_lmeval_filters.py)."""
    path = lmeval_yaml(
        tmp_path / "g", name="snips_filtered", output_type="generate_until", doc_to_choice=None,
        filter_list=[{"name": "strict", "filter": [{"function": "regex", "regex_pattern": "(\\w+)"}, {"function": "take_first"}]}],
        metric_list=[{"metric": "exact_match"}],
    )
    task = load_task(f"lm-eval:{path}")
    assert task.spec.lmeval_filters[0]["name"] == "strict" and task.spec.lmeval_metric["metric"] == "exact_match"


def test_cut_at_stop():
    from evaluator.arms.rows import _cut_at_stop

    assert _cut_at_stop("play_music\nUtterance: x", ["Utterance:", "\n"]) == "play_music"
    assert _cut_at_stop("abc", ["\n"]) == "abc" and _cut_at_stop("a\n\nb", []) == "a\n\nb"


def test_tasks_command_lists_lmeval_folder(lm_folder):
    res = CliRunner().invoke(app, ["tasks", "--lm-eval", str(lm_folder)], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    assert "lm-eval:snips_lm" in res.output and "multiple_choice" in res.output
