"""Bad inputs found before any model loads: templates, values, data files, messages (see tests/bad_input_harness.py).

Every case exits 2 with one `error:` line containing its needle, prints no traceback, leaves an earlier finished
run byte-identical, and never reaches `load_model` (it is replaced by one that fails loudly). Plus unit tests of the
tokenisation check of `TokenizedPrompts` (piecewise vs whole-prompt ids).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.bad_input_harness import cases, check, make_finished_run
from tests.test_bad_inputs import REPO, _job, _row, _task

# --- helpers ---------------------------------------------------------------------------------------------------------


def _template(d: Path, text: str | bytes, name: str = "bad.j2", **task_over) -> None:
    """SNIPS with its prompt replaced by `text` (in d/tasks/prompts)."""
    _task(d, prompt=name, **task_over)
    p = d / "tasks" / "prompts" / name
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(text.encode() if isinstance(text, str) else text)


def _run(d: Path, m: str, **over) -> list[str]:
    return ["run", str(_job(d, m, **over))]


def _test_file(d: Path, name: str, content: str | bytes, path: str = "json") -> None:
    """SNIPS whose test split is the file `name` (in d/tasks/data) holding `content`."""
    _task(d, data={"path": path, "data_files": {"train": "data/snips_train.jsonl", "test": f"data/{name}"}})
    p = d / "tasks" / "data" / name
    p.write_bytes(content.encode() if isinstance(content, str) else content)


def _rows(*rows: dict) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


def _good(i: int = 0, **over) -> dict:
    return {"id": f"t{i}", "text": "play some jazz", "label": "play_music", **over}


def _per_row_choices(d: Path, test_rows: str) -> None:
    train = _rows(*({"id": f"r{i}", "text": "play some jazz", "label": "yes", "opts": ["yes", "no"]} for i in range(4)))
    _task(d, rows_train=train, rows_test=test_rows, choices=None, choices_field="opts")


def _job_text(d: Path, m: str, extra: str) -> list[str]:
    """A valid job file with raw YAML appended (to write what yaml.safe_dump cannot: repeated keys, `yes`)."""
    p = d / "job.yaml"
    p.write_text(
        f"name: bad\ntasks: [snips_intents]\nbase: {json.dumps(m)}\nlimit: 4\noutput_dir: {json.dumps(str(d / 'runs'))}\n{extra}"
    )
    return ["run", str(p)]


# --- A: the prompt template, rendered on every item when the task loads -------------------------------------------


def case_template_zero_division(d, m, existing):
    _template(d, "Utterance: {{ 1 / 0 }}\nIntent:")
    return _run(d, m), "ZeroDivisionError: division by zero"


def case_template_type_error(d, m, existing):
    _template(d, "Utterance: {{ input + 1 }}\nIntent:")
    return _run(d, m), "TypeError"


def case_template_latin1_file(d, m, existing):
    _template(d, "Utterance: {{ input }}\nIntention (caf\xe9):".encode("latin-1"))
    return _run(d, m), "bad.j2 is not UTF-8 text"


def case_template_missing_file(d, m, existing):
    _task(d, prompt="nope.j2")
    return _run(d, m), "prompt template 'nope.j2' not found"


def case_template_syntax_error(d, m, existing):
    _template(d, "Utterance: {{ input \nIntent:")
    return _run(d, m), "fix the template syntax"


def case_template_undefined_variable(d, m, existing):
    _template(d, "Utterance: {{ text }}\nIntent:")
    return _run(d, m), "'text' is undefined"


def case_template_sandbox_violation(d, m, existing):
    _template(d, "{{ ''.__class__.__mro__[1].__subclasses__() }}")
    return _run(d, m), "SecurityError"


def case_template_fails_on_one_test_item(d, m, existing):
    _template(d, "{% if id == 't2' %}{{ 1 // 0 }}{% endif %}Utterance: {{ input }}\nIntent:",
              rows_test=_rows(_good(0), _good(1), _good(2)))
    return _run(d, m), "failed on item t2 (split 'test')"


def case_template_fails_on_a_training_item(d, m, existing):
    train = _rows(*({"id": f"r{i}", "text": "play some jazz", "label": "play_music"} for i in range(5)))
    _template(d, "{{ input.missing_method() if id == 'r3' else '' }}Utterance: {{ input }}\nIntent:", rows_train=train)
    return _run(d, m), "failed on item r3 (split 'train')"


def case_template_is_a_directory(d, m, existing):
    _task(d, prompt="dir.j2")
    (d / "tasks" / "prompts" / "dir.j2").mkdir(parents=True)
    return _run(d, m), "dir.j2 is a directory"


def case_template_renders_empty(d, m, existing):
    _template(d, "{# nothing #}")
    return _run(d, m), "renders an empty query"


# --- B: values that were silently accepted ------------------------------------------------------------------------


def case_choices_field_is_a_string(d, m, existing):
    _per_row_choices(d, _rows({"id": "t0", "text": "play", "label": "a", "opts": "abc"}))
    return _run(d, m), "choices field 'opts' is text ('abc'), not a list of strings"


def case_choices_field_holds_a_number(d, m, existing):
    _per_row_choices(d, _rows({"id": "t0", "text": "play", "label": "a", "opts": ["a", 1]}))
    return _run(d, m), "choice 1 in 'opts' is a JSON int (1), not a string"


def case_choices_field_names_the_row(d, m, existing):
    _per_row_choices(d, _rows({"id": "t0", "text": "play", "label": "yes", "opts": ["yes", "no"]},
                              {"id": "t1", "text": "play", "label": "yes", "opts": {"yes": 1}}))
    return _run(d, m), "snips_test.jsonl line 2"


def case_shots_yaml_boolean(d, m, existing):
    return _job_text(d, m, "arms:\n  prompting: {shots: [yes]}\n  lora: {enabled: false}\n"), "field 'arms.prompting.shots.0': got the YAML boolean True — write a number"


def case_train_size_yaml_boolean(d, m, existing):
    return _job_text(d, m, "arms:\n  lora: {train_sizes: [8, on]}\n"), "field 'arms.lora.train_sizes.1': got the YAML boolean True"


def case_float_field_yaml_boolean(d, m, existing):
    return _job_text(d, m, "arms:\n  lora: {enabled: false, epochs: yes}\n"), "field 'arms.lora.epochs': got the YAML boolean"


def case_unknown_api_model(d, m, existing):
    return _run(d, m, costs={"api_model": "gpt-4o-minii"}), "field 'costs.api_model': no price for API model 'gpt-4o-minii' (provider 'openai') in the price table — did you mean gpt-4o-mini"


def case_api_model_of_another_provider(d, m, existing):
    return _run(d, m, costs={"api_model": "claude-3-5-haiku"}), "not priced under provider 'openai' but under 'anthropic'"


def case_unknown_api_provider(d, m, existing):
    return _run(d, m, costs={"api_provider": "opnai"}), "field 'costs.api_provider': unknown API provider 'opnai'"


def case_duplicate_key_in_job(d, m, existing):
    return _job_text(d, m, "seed: 1\nseed: 2\n"), "key 'seed' is given twice (first on line 6)"


def case_duplicate_nested_key_in_job(d, m, existing):
    return _job_text(d, m, "arms:\n  lora:\n    r: 4\n    r: 8\n"), "line 9: key 'r' is given twice"


def case_duplicate_key_in_task_yaml(d, m, existing):
    _task(d)
    p = d / "tasks" / "snips_intents.yaml"
    p.write_text(p.read_text() + "input_field: label\n")
    return _run(d, m), "key 'input_field' is given twice"


def case_repeated_shots(d, m, existing):
    return _run(d, m, arms={"prompting": {"shots": [0, 2, 2]}, "lora": {"enabled": False}}), "field 'arms.prompting.shots.2': 2 is listed twice"


def case_repeated_max_shots(d, m, existing):
    return _run(d, m, arms={"prompting": {"shots": ["max", 0, "max"]}, "lora": {"enabled": False}}), "'max' is listed twice"


def case_repeated_train_sizes(d, m, existing):
    return _run(d, m, arms={"lora": {"train_sizes": [5, 5]}}), "field 'arms.lora.train_sizes.1': 5 is listed twice"


def case_repeated_train_size_all(d, m, existing):
    return _run(d, m, arms={"lora": {"train_sizes": ["all", 8, "all"]}}), "'all' is listed twice"


def case_repeated_eval_shots(d, m, existing):
    return _run(d, m, arms={"lora": {"eval_shots": [0, 0]}}), "field 'arms.lora.eval_shots.1'"


def case_repeated_newer_shots(d, m, existing):
    return _run(d, m, arms={"newer": {"shots": [1, 1]}, "lora": {"enabled": False}}), "field 'arms.newer.shots.1'"


def case_repeated_newer_model(d, m, existing):
    return _run(d, m, newer=[m, m]), "is listed twice in newer"


def case_repeated_choice_in_task(d, m, existing):
    _task(d, choices=["play_music", "get_weather", "play_music"])
    return _run(d, m), "choice 'play_music' is listed twice"


# --- C: messages that did not say what was wrong -------------------------------------------------------------------


def case_json_array_with_null_id(d, m, existing):
    _test_file(d, "test.json", "[\n" + json.dumps(_good(0)) + ",\n" + json.dumps(_good(1, id=None)) + "\n]\n")
    return _run(d, m), "test.json line 3 (split 'test'): its id 'id' is null"


def case_json_array_of_non_objects(d, m, existing):
    _test_file(d, "test.json", '["play some jazz", "rain?"]')
    return _run(d, m), "test.json line 1 is text, not an object with fields"


def case_json_array_invalid(d, m, existing):
    _test_file(d, "test.json", "[\n" + json.dumps(_good(0)) + ",\n{oops}\n]\n")
    return _run(d, m), "test.json line 3 is not valid JSON"


def case_json_single_object_over_lines(d, m, existing):
    _test_file(d, "test.json", json.dumps(_good(0), indent=2))
    return _run(d, m), "holds one JSON object spread over several lines"


def case_null_id_names_the_test_file(d, m, existing):
    _task(d, rows_test=_row(0) + json.dumps({"id": None, "text": "x", "label": "play_music"}) + "\n")
    return _run(d, m), "snips_test.jsonl line 2 (split 'test'): its id 'id' is null"


def case_missing_id_in_a_row(d, m, existing):
    _task(d, rows_test=_row(0) + json.dumps({"text": "x", "label": "play_music"}) + "\n")
    return _run(d, m), "line 2 (split 'test') has no id field 'id'"


def case_nested_field(d, m, existing):
    _task(d, rows_test=_row(0) + json.dumps({"id": "x1", "text": {"en": "play jazz"}, "label": "play_music"}) + "\n")
    return _run(d, m), "field 'text' (the input) is a JSON object, not text"


def case_repeated_key_in_a_json_row(d, m, existing):
    _task(d, rows_test='{"id": "x0", "text": "a", "text": "b", "label": "play_music"}\n')
    return _run(d, m), "line 1 has the key 'text' twice"


def case_malformed_csv_extra_field(d, m, existing):
    _test_file(d, "test.csv", "id,text,label\nt0,play jazz,play_music\nt1,play, jazz,play_music\n", path="csv")
    _task(d, data={"path": "csv", "data_files": {"train": "data/train.csv", "test": "data/test.csv"}})
    (d / "tasks" / "data" / "train.csv").write_text("id,text,label\nr0,play jazz,play_music\n")
    return _run(d, m), "test.csv line 3 has 4 fields but the header has 3"


def case_malformed_csv_no_stray_pandas_line(d, m, existing):
    _task(d, data={"path": "csv", "data_files": {"train": "data/train.csv", "test": "data/test.csv"}})
    (d / "tasks" / "data" / "train.csv").write_text("id,text,label\nr0,play jazz,play_music\n")
    (d / "tasks" / "data" / "test.csv").write_text('id,text,label\nt0,play jazz,play_music\nt1,"unterminated,play_music\n')
    return _run(d, m), "cannot load split 'test'"  # the harness asserts this is the only line printed


def case_csv_missing_column(d, m, existing):
    _task(d, data={"path": "csv", "data_files": {"train": "data/train.csv", "test": "data/train.csv"}})
    (d / "tasks" / "data" / "train.csv").write_text("id,utterance,label\nr0,play jazz,play_music\n")
    return _run(d, m), "has no column 'text'"


def case_data_file_is_a_directory(d, m, existing):
    _task(d)
    (d / "tasks" / "data" / "snips_test.jsonl").unlink()
    (d / "tasks" / "data" / "snips_test.jsonl").mkdir()
    return _run(d, m), "(split 'test') is a directory, not a file"


def case_data_glob_matches_nothing(d, m, existing):
    _task(d, data={"path": "json", "data_files": {"train": "data/snips_train.jsonl", "test": "data/part-*.jsonl"}})
    return _run(d, m), "matches no file"


def case_job_file_is_a_directory(d, m, existing):
    (d / "job.yaml").mkdir()
    return ["run", str(d / "job.yaml")], "is a directory, not a file"


def case_task_file_is_a_directory(d, m, existing):
    (d / "mytask.yaml").mkdir()
    return _run(d, m, tasks=[str(d / "mytask.yaml")]), "mytask.yaml is a directory, not a file"


def case_empty_job_file(d, m, existing):
    (d / "job.yaml").write_text("# nothing yet\n")
    return ["run", str(d / "job.yaml")], f"job file {d / 'job.yaml'} is empty"


def case_empty_task_file(d, m, existing):
    _task(d)
    (d / "tasks" / "snips_intents.yaml").write_text("")
    return _run(d, m), "snips_intents.yaml is empty"


def case_clean_field_path(d, m, existing):
    return _run(d, m, arms={"lora": {"train_sizes": [0]}}), "field 'arms.lora.train_sizes.0': Input should be greater than or equal to 1 (got 0) — or 'all'"


def case_max_in_capitals(d, m, existing):
    return _run(d, m, arms={"prompting": {"shots": [0, "MAX"]}, "lora": {"enabled": False}}), "use 'max' (lower case)"


def case_all_in_capitals(d, m, existing):
    return _run(d, m, arms={"lora": {"train_sizes": ["All"]}}), "use 'all' (lower case)"


def case_shots_not_a_number(d, m, existing):
    return _run(d, m, arms={"prompting": {"shots": ["five"]}, "lora": {"enabled": False}}), "'five' is not a shot count — write a number or 'max'"


def case_yes_no_choices(d, m, existing):
    _task(d, rows_train=_rows(*({"id": f"r{i}", "text": "t", "label": "yes"} for i in range(3))),
          rows_test=_rows({"id": "t0", "text": "t", "label": "no"}))
    p = d / "tasks" / "snips_intents.yaml"
    spec = yaml.safe_load(p.read_text())
    spec.pop("choices")
    p.write_text(yaml.safe_dump(spec) + "choices: [yes, no]\n")
    return _run(d, m), 'field \'choices.0\': got the YAML boolean True — quote YAML booleans ("yes" / "no")'


def case_empty_required_field(d, m, existing):
    return _job_text(d, m, "description:\nseed:\n"), "field 'seed': Input should be a valid integer (got None) — the field is empty"


def case_lmeval_yaml_syntax_error(d, m, existing):
    (d / "lm").mkdir()
    (d / "lm" / "broken.yaml").write_text('task: broken\ndataset_path: json\ndoc_to_text: "{{text}}\noutput_type: [x\n')
    return _run(d, m, tasks=[f"lm-eval:{d / 'lm' / 'broken.yaml'}"]), "broken.yaml line 5 is not valid YAML"


def case_lmeval_yaml_syntax_error_in_include_folder(d, m, existing):
    (d / "lm").mkdir()
    (d / "lm" / "broken.yaml").write_text("task: broken\ndataset_path: json\n  output_type: x\n")
    return _run(d, m, tasks=["lm-eval:broken"], lm_eval_include=[str(d / "lm")]), "is not valid YAML"


def case_lmeval_reference_is_a_directory(d, m, existing):
    (d / "lm").mkdir()
    return _run(d, m, tasks=[f"lm-eval:{d / 'lm'}"]), "is a directory"


CASES = cases(globals())


@pytest.fixture(scope="module")
def finished(tmp_path_factory, tiny_llama_dir):
    return make_finished_run(tmp_path_factory.mktemp("fin"), tiny_llama_dir)


def test_at_least_35_cases():
    assert len(CASES) >= 35, len(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input_is_found_before_any_model_loads(name, tmp_path, tiny_llama_dir, finished, monkeypatch):
    """The bad-input contract, with `load_model` replaced by one that fails loudly: no case may reach a model."""
    import evaluator.models.load
    import evaluator.runner

    def no_model(*a, **k):
        raise AssertionError(f"case {name}: a model was loaded before the bad input was found")

    monkeypatch.setattr(evaluator.models.load, "load_model", no_model)
    monkeypatch.setattr(evaluator.runner, "load_model", no_model, raising=False)
    monkeypatch.chdir(tmp_path)
    check(name, CASES[name], tmp_path, str(tiny_llama_dir), finished)


# --- the good side of the same checks -----------------------------------------------------------------------------


def test_field_paths_carry_no_pydantic_tags():
    from pydantic import ValidationError

    from evaluator.config.job import Job
    from evaluator.config.validation import format_validation_error

    for arms in ({"lora": {"train_sizes": [0]}}, {"prompting": {"shots": [2.5]}}, {"lora": {"train_sizes": ["x"]}}):
        with pytest.raises(ValidationError) as ei:
            Job.model_validate({"name": "j", "tasks": ["t"], "base": "b", "arms": arms})
        line = format_validation_error(ei.value, "job.yaml")
        assert "constrained" not in line and "literal[" not in line and "more problem" not in line, line


def test_lenient_values_still_load(tmp_path):
    """Quoted numbers, 50e6 (a YAML string), `max`/`all` and real booleans are what they were."""
    from evaluator.config.job import load_job

    p = tmp_path / "job.yaml"
    p.write_text("name: j\ntasks: [t]\nbase: b\nseed: '7'\narms:\n  prompting: {shots: [0, '5', max]}\n"
                 "  lora: {enabled: no, train_sizes: [8, all]}\ncosts: {volume_tokens_per_day: 50e6}\n")
    job = load_job(p)
    assert job.seed == 7 and job.arms.prompting.shots == [0, 5, "max"] and job.arms.lora.enabled is False
    assert job.arms.lora.train_sizes == [8, "all"] and job.costs.volume_tokens_per_day == 5e7


def test_yaml_merge_keys_may_override(tmp_path):
    from evaluator.config.validation import load_yaml

    p = tmp_path / "x.yaml"
    p.write_text("base: &b {a: 1, b: 2}\nother:\n  <<: *b\n  b: 3\n")
    assert load_yaml(p, "file")["other"] == {"a": 1, "b": 3}


def test_api_model_with_both_prices_needs_no_table_entry():
    from evaluator.config.job import CostConfig

    c = CostConfig(api_model="my-private-model", api_input_usd_per_m=0.1, api_output_usd_per_m=0.4)
    assert c.api_model == "my-private-model"


def test_effective_train_sizes_and_dedupe_notes():
    from evaluator.config.arms import dedupe_units_note, effective_train_sizes

    sizes, notes = effective_train_sizes([16, 100, "all", 500], 100, "snips")
    assert sizes == [16, 100] and len(notes) == 2 and "'all' trains on the same 100 items" in notes[0]
    assert effective_train_sizes([8, 16], 100) == ([8, 16], [])

    class U:
        def __init__(self, uid):
            self.id = uid

    kept, notes = dedupe_units_note([U("a"), U("b"), U("a")])
    assert [u.id for u in kept] == ["a", "b"] and len(notes) == 1


def test_json_array_data_loads_like_json_lines(tmp_path):
    from evaluator.tasks.load import load_task

    rows = [_good(i) for i in range(3)]
    _test_file(tmp_path, "test.json", json.dumps(rows, indent=1))
    t = load_task("snips_intents", [tmp_path / "tasks"])
    assert [it.id for it in t.test] == ["t0", "t1", "t2"] and t.test[0].input == "play some jazz"
    ref = load_task("snips_intents")  # the repo's JSON Lines task: same items as datasets gave them before
    assert len(ref.train) == 493 and len(ref.test) == 200 and ref.test[0].id and ref.test[0].target in ref.test[0].choices


def test_queries_are_rendered_once_when_the_task_loads(monkeypatch):
    """load_task renders every item (train and test); the run reads those queries and never renders again."""
    from evaluator.tasks import layout as prompts
    from evaluator.tasks.load import load_task

    task = load_task("snips_intents")
    assert len(task.rendered) == len(set(task.train) | set(task.test))

    def no_render(*a, **k):
        raise AssertionError("rendered twice")

    monkeypatch.setattr(prompts, "render_query", no_render)
    b = prompts.PromptBuilder(task, 1234)
    assert b.query(task.test[0]) == f"Utterance: {task.test[0].input}\nIntent:"
    assert b.prefix(5).count("Utterance: ") == 5


# --- D: tokenisation, piecewise vs whole ----------------------------------------------------------------------------


def _sentencepiece_like(variant: str):
    """A tiny tokenizer with a SentencePiece dummy prefix: "llama2" = Llama-2's legacy fast tokenizer layout
    (normalizer Prepend("▁") + Replace(" ", "▁")), "metaspace" = Metaspace(prepend_scheme="always")."""
    from tokenizers import (
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        processors,
        trainers,
    )
    from transformers import PreTrainedTokenizerFast

    from tests.tiny_models import _corpus

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    if variant == "llama2":
        tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split("\n", behavior="isolated"), pre_tokenizers.Split("▁", behavior="merged_with_next"),
        ])
        tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.Strip(" ", 1, 0)])
    else:
        tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
        tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    alphabet = sorted(set("".join(_corpus())) | {"▁"})
    tok.train_from_iterator(_corpus(), trainer=trainers.BpeTrainer(
        vocab_size=600, special_tokens=["<unk>", "<s>", "</s>"], initial_alphabet=alphabet))
    bos = tok.token_to_id("<s>")
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", bos)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="</s>")


@pytest.fixture(scope="module")
def snips():
    from evaluator.tasks.load import load_task

    return load_task("snips_intents")


def _whole(tok, b, it, k, answer):
    return list(tok(b.prefix(k) + b.query(it) + b.continuation(answer), add_special_tokens=True)["input_ids"])


def test_tiny_tokenizer_stays_piecewise_with_unchanged_ids(snips, tiny_tokenizer_dir):
    from transformers import AutoTokenizer

    from evaluator.prompts.tokenized import TokenizedPrompts
    from evaluator.tasks.layout import PromptBuilder

    tok = AutoTokenizer.from_pretrained(tiny_tokenizer_dir)
    b = PromptBuilder(snips, 1234)
    tp = TokenizedPrompts(b, tok)
    for k in (0, 3):
        for it in snips.test[:20]:
            # the ids as they were built before the check existed
            old_item = list(tok(b.joiner(k) + b.query(it), add_special_tokens=False)["input_ids"])
            assert tp.item_ids(it, k) == old_item
            for c in it.choices:
                assert tp.continuation_ids(c) == tp.continuation_ids(c, it, k) == list(
                    tok(b.continuation(c), add_special_tokens=False)["input_ids"])
        assert tp.prefix_ids(k) == list(tok(b.prefix_core(k), add_special_tokens=True)["input_ids"])
    info = tp.tokenisation
    assert info["mode"] == "piecewise" and info["mismatches"] == 0 and info["items_checked"] == 8
    assert {0, 2, 3} <= set(info["shots_checked"]) and info["comparisons"] >= 8 * 7 * 3


@pytest.mark.parametrize("variant", ["llama2", "metaspace"])
def test_dummy_prefix_tokenizer_switches_to_whole_mode(snips, variant):
    from evaluator.prompts.tokenized import ANCHOR_CHARS, TokenizedPrompts
    from evaluator.tasks.layout import PromptBuilder

    tok = _sentencepiece_like(variant)
    b = PromptBuilder(snips, 1234)
    # the premise: tokenising the pieces separately differs from the whole prompt for this tokenizer
    it = snips.test[0]
    piece = (list(tok(b.prefix_core(0))["input_ids"]) + list(tok(b.joiner(0) + b.query(it), add_special_tokens=False)["input_ids"])
             + list(tok(b.continuation(it.target), add_special_tokens=False)["input_ids"]))
    assert piece != _whole(tok, b, it, 0, it.target)

    tp = TokenizedPrompts(b, tok)
    info = tp.tokenisation
    assert info["mode"] == "whole" and info["mismatches"] > 0 and info["residual_mismatches"] == 0
    assert info["prefix_boundary_merges"] == 0 and "whole" in info["note"]
    big = next(k for k in range(1, 60) if len(b.prefix_core(k)) > ANCHOR_CHARS)  # the anchored (long-prefix) path too
    for k in (0, 2, big):
        shared = tp.prefix_ids(k)
        assert shared == list(tok(b.prefix_core(k))["input_ids"])  # one prefix for every item: the KV cache still works
        for it in snips.test[:25]:
            for c in it.choices:
                ids = shared + tp.item_ids(it, k) + tp.continuation_ids(c, it, k)
                assert ids == _whole(tok, b, it, k, c), (variant, k, it.id, c)
    assert tp.longest_request(snips.test[:5], 2) > 0 and tp.tokenisation["residual_mismatches"] == 0


class _MergingTokenizer:
    """Greedy longest-match over a fixed vocabulary in which "c\\n\\n" is one token: the answer's last letter merges
    with the delimiter, across the shared prefix's end."""

    def __init__(self):
        chars = sorted(set("".join(_all_text())))
        self.vocab = {t: i for i, t in enumerate(["<s>", "c\n\n", *chars])}

    def _encode(self, text, special):
        ids = [0] if special else []
        i = 0
        while i < len(text):
            if text.startswith("c\n\n", i):
                ids.append(self.vocab["c\n\n"])
                i += 3
            else:
                ids.append(self.vocab[text[i]])
                i += 1
        return ids

    def __call__(self, text, add_special_tokens=True):
        if isinstance(text, list):
            return {"input_ids": [self._encode(t, add_special_tokens) for t in text]}
        return {"input_ids": self._encode(text, add_special_tokens)}


def _all_text():
    spec = yaml.safe_load((REPO / "tasks" / "snips_intents.yaml").read_text())
    text = spec["instruction"] + "Utterance: \nIntent: " + "".join(spec["choices"])
    for f in ("snips_train.jsonl", "snips_test.jsonl"):
        text += (REPO / "tasks" / "data" / f).read_text()
    return [text]


def test_a_token_merging_across_the_prefix_cut_is_reported(snips):
    from evaluator.prompts.tokenized import TokenizedPrompts
    from evaluator.tasks.layout import PromptBuilder

    b = PromptBuilder(snips, 1234)
    tp = TokenizedPrompts(b, _MergingTokenizer())
    ends_in_c = next(k for k in range(1, 40) if b.prefix_core(k).endswith("c"))  # an answer such as play_music last
    tp.item_ids(snips.test[0], ends_in_c)
    info = tp.tokenisation
    assert info["mode"] == "whole" and info["prefix_boundary_merges"] > 0
    assert "merges across the shared prefix's end" in info["note"]
    assert tp.prefix_ids(ends_in_c) == tp._tok(b.prefix_core(ends_in_c), True)  # the shared prefix is unchanged


def test_check_task_for_job(snips):
    from evaluator.config.job import Job
    from evaluator.errors import UserError
    from evaluator.tasks.load import check_task_for_job

    def job(**arms):
        return Job.model_validate({"name": "j", "tasks": ["snips_intents"], "base": "b", "arms": arms})

    assert check_task_for_job(snips, job(prompting={"shots": [0, 5, "max"]}, lora={"train_sizes": [8, 64]})) == []
    notes = check_task_for_job(snips, job(lora={"train_sizes": [493, "all", 1000]}))
    assert len(notes) == 2 and all("planned once" in n for n in notes)
    with pytest.raises(UserError, match=r"arms.prompting.shots: shots=600 but task snips_intents has only 493"):
        check_task_for_job(snips, job(prompting={"shots": [0, 600]}))
    with pytest.raises(UserError, match="arms.lora.eval_shots"):
        check_task_for_job(snips, job(lora={"eval_shots": [0, 999]}))
