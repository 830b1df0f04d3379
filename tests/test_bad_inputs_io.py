"""Bad inputs, part 2: damaged run files, file-system failures and bad command-line values.

Each ``case_<name>(d, model, existing)`` builds one situation (``existing`` is a finished run copied into
``d/runs/existing``) and returns ``(argv, needle)``; the shared harness (tests/bad_input_harness.py) asserts exit 2,
exactly one ``error:`` line containing the needle, no traceback, and every earlier run file byte-identical.

File-system failures (disk full, a read-only mount, permissions) cannot be made with chmod here — the tests run as
root — so those cases make the write itself fail (``MP`` is the test's monkeypatch) the way the kernel would: the
same errno, where the kernel names a file the same file name, and at the same call (mkstemp, write/fsync, rename).
"""

from __future__ import annotations

import errno
import json
import os
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from evaluator.cli.app import app
from tests.bad_input_harness import cases, check, make_finished_run
from tests.test_bad_inputs import _job

MP: dict[str, pytest.MonkeyPatch] = {}  # the running test's monkeypatch, for the cases that make writes fail


@pytest.fixture(scope="module")
def finished(tmp_path_factory, tiny_llama_dir):
    return make_finished_run(tmp_path_factory.mktemp("fin"), tiny_llama_dir)


# -- helpers ----------------------------------------------------------------------------------------------------------
def _uid(existing: Path, i: int = 0) -> str:
    """The finished run's units, in name order: 0 = arm A k=0, 1 = arm A k=2."""
    return sorted(p.stem for p in (existing / "results").glob("*.jsonl"))[i]


def _unit(existing: Path, i: int = 0) -> Path:
    return existing / "units" / f"{_uid(existing, i)}.json"


def _results(existing: Path, i: int = 0) -> Path:
    return existing / "results" / f"{_uid(existing, i)}.jsonl"


def _edit_json(path: Path, fn) -> None:
    data = json.loads(path.read_text())
    fn(data)
    path.write_text(json.dumps(data))


def _edit_lines(path: Path, i: int, new: str) -> None:
    lines = path.read_text().splitlines()
    lines[i] = new
    path.write_text("\n".join(lines) + "\n")


def _resume_job(d: Path, model: str) -> Path:
    """The job that made `existing` (same fingerprint), writing under d/runs: `run JOB --run-id existing` resumes it."""
    return _job(d, model, arms={"prompting": {"shots": [0, 2]}, "lora": {"enabled": False}})


def _lora_job(d: Path, model: str, adapters_dir: str) -> Path:
    return _job(d, model, arms={"prompting": {"shots": [0]}, "lora": {"train_sizes": [4], "max_steps": 1}},
                adapters_dir=adapters_dir)


def _fd_path(fd: int) -> str:
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return ""


def _fail_fsync(code: int, where: str | None = None) -> None:
    """The disk fills (or the mount fails) while a file is flushed: fsync raises, naming no file, as the kernel does.
    `where` limits it to files whose path contains that text."""
    real = os.fsync

    def fsync(fd):
        if where is None or where in _fd_path(fd):
            raise OSError(code, os.strerror(code))
        return real(fd)

    MP["mp"].setattr(os, "fsync", fsync)


def _fail_mkstemp(code: int, where: str | None = None) -> None:
    """Creating the temporary file fails (read-only mount, no permission, ...): mkstemp raises naming its temp path."""
    import tempfile

    real = tempfile.mkstemp

    def mkstemp(suffix=None, prefix=None, dir=None, text=False):
        if where is None or where in f"{dir}/{prefix}":
            raise OSError(code, os.strerror(code), os.path.join(str(dir), f"{prefix}abc123{suffix}"))
        return real(suffix=suffix, prefix=prefix, dir=dir, text=text)

    MP["mp"].setattr(tempfile, "mkstemp", mkstemp)


def _no_eval() -> None:
    """`eval` must refuse a bad --output before evaluating: an evaluation here would exit 1, not 2."""
    import evaluator.cli.eval

    def boom(**kw):
        raise AssertionError("the evaluation ran before --output was checked")

    MP["mp"].setattr(evaluator.cli.eval, "eval_command", boom)


# -- config.json of the wrong shape -----------------------------------------------------------------------------------
def case_config_is_a_list(d, m, existing):
    (existing / "config.json").write_text("[]")
    return ["report", str(existing)], "config.json is damaged (it holds an array, not an object)"


def case_config_is_an_empty_object(d, m, existing):
    (existing / "config.json").write_text("{}")
    return ["cost", str(existing)], "config.json is damaged (no 'fingerprint')"


def case_config_without_units(d, m, existing):
    _edit_json(existing / "config.json", lambda c: c.pop("units"))
    return ["samples", str(existing)], "(no 'units')"


def case_config_job_is_a_string(d, m, existing):
    _edit_json(existing / "config.json", lambda c: c.update(job="bad"))
    return ["compare", str(existing), str(existing)], "'job' is a string, not an object"


def case_config_tasks_is_a_list(d, m, existing):
    _edit_json(existing / "config.json", lambda c: c.update(tasks=[]))
    return ["report", str(existing)], "'tasks' is an array, not an object"


def case_config_margin_is_text(d, m, existing):
    _edit_json(existing / "config.json", lambda c: c["job"]["verdict"].update(margin="two points"))
    return ["cost", str(existing)], "'job.verdict.margin' is a string, not a number"


def case_config_damaged_on_resume(d, m, existing):
    (existing / "config.json").write_text("[]")
    return ["run", str(_resume_job(d, m)), "--run-id", "existing"], "config.json is damaged"


# -- units/<unit>.json of the wrong shape -----------------------------------------------------------------------------
def case_unit_record_empty_object(d, m, existing):
    _unit(existing).write_text("{}")
    return ["report", str(existing)], f"{_unit(existing).name} is damaged (no 'unit')"


def case_unit_record_is_a_list(d, m, existing):
    _unit(existing).write_text("[1, 2]")
    return ["cost", str(existing)], "is damaged (it holds an array, not an object) — delete it to recompute that unit"


def case_unit_record_without_timings(d, m, existing):
    _edit_json(_unit(existing), lambda u: u.pop("timings"))
    return ["cost", str(existing)], "(no 'timings')"


def case_unit_record_value_is_text(d, m, existing):
    _edit_json(_unit(existing), lambda u: u.update(value="0.5"))
    return ["report", str(existing)], "'value' is a string, not a number"


def case_unit_record_without_shots(d, m, existing):
    _edit_json(_unit(existing), lambda u: u["point"].pop("shots"))
    return ["report", str(existing)], "(no 'point.shots')"


def case_unit_record_unknown_arm(d, m, existing):
    _edit_json(_unit(existing), lambda u: u.update(arm="Z"))
    return ["compare", str(existing), str(existing)], "'arm' is a string, not A, B or C"


def case_unit_record_tokens_null(d, m, existing):
    _edit_json(_unit(existing), lambda u: u["tokens"].update(prompt_tokens_per_request=None))
    return ["cost", str(existing)], "'tokens.prompt_tokens_per_request' is null, not a number"


def case_unit_record_of_another_unit(d, m, existing):
    _edit_json(_unit(existing), lambda u: u.update(unit=_uid(existing, 1)))
    return ["report", str(existing)], f"it records unit '{_uid(existing, 1)}'"


def case_unit_record_names_look_like_markup(d, m, existing):
    _edit_json(_unit(existing), lambda u: u.update(unit="[bold]x[/bold]"))
    return ["report", str(existing)], "it records unit '[bold]x[/bold]'"  # printed as is, not as rich markup


def case_unit_record_count_is_boolean(d, m, existing):
    _edit_json(_unit(existing), lambda u: u.update(n_items=True))
    return ["samples", str(existing)], "'n_items' is a boolean, not a count"


def case_unit_record_is_a_folder(d, m, existing):
    _unit(existing).unlink()
    _unit(existing).mkdir()
    return ["cost", str(existing)], "unreadable or corrupted (IsADirectoryError)"


def case_unit_record_torn(d, m, existing):
    _unit(existing).write_text('{"unit": ')
    return ["samples", str(existing)], "corrupted"


def case_unit_record_damaged_on_resume(d, m, existing):
    _unit(existing).write_text("{}")
    return ["run", str(_resume_job(d, m)), "--run-id", "existing"], "(no 'unit')"


# -- results/<unit>.jsonl lines of the wrong shape ----------------------------------------------------------------------
def case_results_line_without_item_id(d, m, existing):
    _edit_lines(_results(existing), 0, json.dumps({"score": 1.0}))
    return ["report", str(existing)], f"{_results(existing).name} line 1 is damaged (no 'item_id')"


def case_results_score_is_text(d, m, existing):
    _edit_lines(_results(existing), 1, json.dumps({"item_id": "x", "score": "1"}))
    return ["cost", str(existing)], "line 2 is damaged ('score' is a string, not a number)"


def case_results_line_without_score(d, m, existing):
    _edit_lines(_results(existing, 1), 2, json.dumps({"item_id": "x"}))
    return ["samples", str(existing)], "line 3 is damaged (no 'score')"


def case_results_bad_line_in_the_middle(d, m, existing):
    _edit_lines(_results(existing), 1, '{"item_id": "snips-0191", "sco')
    return ["compare", str(existing), str(existing)], "line 2 is not valid JSON"


def case_results_line_is_a_list(d, m, existing):
    _edit_lines(_results(existing), 3, "[1, 2, 3]")
    return ["report", str(existing)], "line 4 is damaged (it holds an array, not an object)"


def case_results_item_id_is_boolean(d, m, existing):
    _edit_lines(_results(existing), 0, json.dumps({"item_id": True, "score": 1}))
    return ["report", str(existing)], "'item_id' is a boolean, not an item id"


def case_results_not_utf8(d, m, existing):
    _results(existing).write_bytes(b'{"item_id": "caf\xe9", "score": 1}\n')
    return ["cost", str(existing)], "is corrupted (not UTF-8)"


def case_results_fix_names_the_unit_record(d, m, existing):
    _edit_lines(_results(existing), 0, "{}")
    return ["report", str(existing)], f"delete it and {_unit(existing)} to recompute that unit"


def case_results_damaged_on_resume(d, m, existing):
    _edit_lines(_results(existing), 1, "not json at all")
    return ["run", str(_resume_job(d, m)), "--run-id", "existing"], "line 2 is not valid JSON"


def case_env_json_is_a_list(d, m, existing):
    (existing / "env.json").write_text("[]")
    return ["report", str(existing)], "env.json is damaged (it holds an array, not an object)"


# -- file-system failures: one line naming the file, the errno's meaning and what was kept --------------------------
def case_report_disk_full(d, m, existing):
    _fail_fsync(errno.ENOSPC)
    return ["report", str(existing)], (f"{existing / 'report.json'}: no space left on device (ENOSPC) — the run's "
                                       "stored results are untouched; free space and run the same command again")


def case_report_read_only_mount(d, m, existing):
    _fail_mkstemp(errno.EROFS)
    return ["report", str(existing)], f"{existing / 'report.json'}: read-only file system (EROFS)"


def case_report_permission_denied(d, m, existing):
    _fail_mkstemp(errno.EACCES)
    return ["report", str(existing)], "report.json: permission denied (EACCES)"


def case_report_json_is_a_folder(d, m, existing):
    (existing / "report.json").unlink()
    (existing / "report.json").mkdir()
    return ["report", str(existing)], f"{existing / 'report.json'}: it is a folder, not a file (EISDIR)"


def case_report_file_in_the_way(d, m, existing):
    _fail_mkstemp(errno.EEXIST)
    return ["report", str(existing)], "a file is in the way where a folder is needed (EEXIST)"


def case_report_quota_exceeded(d, m, existing):
    _fail_fsync(errno.EDQUOT)
    return ["report", str(existing)], "disk quota exceeded (EDQUOT)"


def case_compare_read_only_mount(d, m, existing):
    _fail_mkstemp(errno.EROFS)
    return ["compare", str(existing), str(existing)], "compare-existing-vs-existing.md: read-only file system (EROFS)"


def case_compare_disk_full(d, m, existing):
    _fail_fsync(errno.ENOSPC)
    return ["compare", str(existing), str(existing)], "no space left on device (ENOSPC) — both runs' stored results"


def case_compare_not_a_directory(d, m, existing):
    _fail_mkstemp(errno.ENOTDIR)
    return ["compare", str(existing), str(existing)], "a part of that path is a file, not a folder (ENOTDIR)"


def case_samples_read_only_mount(d, m, existing):
    _fail_mkstemp(errno.EROFS)
    return ["samples", str(existing)], "cannot write"


def case_samples_out_is_a_file(d, m, existing):
    (d / "a-file").write_text("x")
    return ["samples", str(existing), "--out", str(d / "a-file")], "pass a writable --out folder"


def case_cost_throughput_from_a_damaged_run(d, m, existing):
    import shutil

    other = d / "runs" / "other"
    shutil.copytree(existing, other)
    _edit_json(_unit(other, 1), lambda u: u["timings"].pop("requests"))
    return ["cost", str(existing), "--throughput-from", str(other)], f"{_unit(other, 1)} is damaged (no 'timings.requests')"


def case_run_disk_full_writing_results(d, m, existing):
    _fail_fsync(errno.ENOSPC, where="/results/")
    job = _job(d, m, arms={"prompting": {"shots": [1]}, "lora": {"enabled": False}})
    return ["run", str(job), "--run-id", "new"], "no space left on device (ENOSPC) — finished units are saved; free space"


def case_run_disk_full_writing_a_unit_record(d, m, existing):
    _fail_fsync(errno.ENOSPC, where="/units/")
    job = _job(d, m, arms={"prompting": {"shots": [1]}, "lora": {"enabled": False}})
    return ["run", str(job), "--run-id", "new"], f"{d / 'runs' / 'new' / 'units'}"


def case_run_read_only_report_at_the_end(d, m, existing):
    _fail_mkstemp(errno.EROFS, where="report.json")
    return ["run", str(_resume_job(d, m)), "--run-id", "existing"], "report.json: read-only file system (EROFS) — finished units are saved"


def case_run_adapters_dir_is_a_file(d, m, existing):
    (d / "adapters-file").write_text("x")
    return ["run", str(_lora_job(d, m, str(d / "adapters-file")))], "is a file, not a folder — set adapters_dir to a folder"


def case_run_adapters_dir_below_a_file(d, m, existing):
    (d / "adapters-file").write_text("x")
    return ["run", str(_lora_job(d, m, str(d / "adapters-file" / "sub")))], "is a file, so"


def case_train_adapters_dir_is_a_file(d, m, existing):
    (d / "adapters-file").write_text("x")
    return ["train", "--model", m, "--task", "snips_intents", "--adapters-dir", str(d / "adapters-file")], \
        "--adapters-dir: "


def case_eval_output_below_a_file(d, m, existing):
    _no_eval()
    (d / "FILE").write_text("x")
    return ["eval", "--adapter", str(d / "ad"), "--output", str(d / "FILE" / "out.json")], \
        f"--output: {d / 'FILE'} is a file, not a folder"


def case_eval_output_is_a_folder(d, m, existing):
    _no_eval()
    (d / "outdir").mkdir()
    return ["eval", "--adapter", str(d / "ad"), "--output", str(d / "outdir")], "is a folder — give a file path"


def case_eval_output_folder_not_writable(d, m, existing):
    _no_eval()
    import evaluator.cli.base

    MP["mp"].setattr(evaluator.cli.base.os, "access", lambda p, mode: False)
    return ["eval", "--adapter", str(d / "ad"), "--output", str(d / "out.json")], "is not writable"


# -- command-line values: one line, not click's usage box ---------------------------------------------------------------
def case_cli_run_limit_zero(d, m, existing):
    return ["run", str(_job(d, m)), "--limit", "0"], "Invalid value for '--limit'"


def case_cli_cost_volume_not_a_number(d, m, existing):
    return ["cost", str(existing), "--volume", "abc"], "Invalid value for '--volume'"


def case_cli_compare_one_argument(d, m, existing):
    return ["compare", str(existing)], "Missing argument 'run_b' (see tunecheck compare --help)"


def case_cli_run_unknown_option(d, m, existing):
    return ["run", str(_job(d, m)), "--colour", "blue"], "No such option: --colour (see tunecheck run --help)"


def case_cli_demo_negative_limit(d, m, existing):
    return ["demo", "--limit", "-1"], "Invalid value for '--limit'"


def case_cli_run_missing_job(d, m, existing):
    return ["run"], "Missing argument"


def case_cli_unknown_command(d, m, existing):
    return ["rn", "job.yaml"], "No such command 'rn'"


def case_cli_eval_negative_shots(d, m, existing):
    return ["eval", "--adapter", str(d), "--shots", "-2"], "Invalid value for '--shots'"


def case_cli_option_without_value(d, m, existing):
    return ["samples", str(existing), "--out"], "Option '--out' requires an argument"


CASES = cases(globals())
FS_CASES = {n for n in CASES if n.startswith(("report_", "compare_", "samples_read", "run_disk", "run_read", "eval_"))}
MID_RUN = {"run_disk_full_writing_results", "run_disk_full_writing_a_unit_record", "run_read_only_report_at_the_end"}


def test_there_are_at_least_30_cases():
    assert len(CASES) >= 30


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input_exits_2_with_one_line(name, tmp_path, tiny_llama_dir, finished, monkeypatch):
    monkeypatch.chdir(tmp_path)
    MP["mp"] = monkeypatch
    try:
        check(name, CASES[name], tmp_path, str(tiny_llama_dir), finished, mid_run=name in MID_RUN)
    finally:
        MP.clear()
    assert not list((tmp_path / "runs").rglob("*.tmp")), "a failed atomic write left its temporary file"


# -- what must keep working ------------------------------------------------------------------------------------------
def test_a_torn_last_results_line_is_not_an_error_and_report_does_not_rewrite_it(tmp_path, finished, monkeypatch):
    import shutil

    monkeypatch.chdir(tmp_path)
    run = tmp_path / "run"
    shutil.copytree(finished, run)
    with _results(run).open("a") as fh:
        fh.write('{"item_id": "snips-9999", "sco')  # a kill mid-append
    before = _results(run).read_bytes()
    res = CliRunner().invoke(app, ["report", str(run)])
    assert res.exit_code == 0, res.output
    assert _results(run).read_bytes() == before  # `report` only reads

    from evaluator.store.run_store import RunStore

    store = RunStore.open(run)
    assert len(store.finished_items(_uid(run))) == 4  # the runner's read drops the torn line ...
    assert _results(run).read_text().count("\n") == 4 and "snips-9999" not in _results(run).read_text()  # ... and rewrites it


def test_a_run_resumed_after_a_full_disk_finishes(tmp_path, tiny_llama_dir, finished, monkeypatch):
    """Disk full mid-run: one line; after space is freed the same command resumes and finishes."""
    monkeypatch.chdir(tmp_path)
    job = _job(tmp_path, str(tiny_llama_dir), arms={"prompting": {"shots": [0, 1]}, "lora": {"enabled": False}})
    real = os.fsync
    calls = {"n": 0}

    def fsync(fd):
        if "/units/" in _fd_path(fd):
            calls["n"] += 1
            if calls["n"] == 2:  # the second unit's record: the first unit is finished
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    res = CliRunner().invoke(app, ["run", str(job), "--run-id", "full"])
    assert res.exit_code == 2 and "ENOSPC" in res.output and "Traceback" not in res.output, res.output
    run = tmp_path / "runs" / "full"
    assert len(list((run / "units").glob("*.json"))) == 1 and not list(run.rglob("*.tmp"))
    monkeypatch.setattr(os, "fsync", real)
    res = CliRunner().invoke(app, ["run", str(job), "--run-id", "full"])
    assert res.exit_code == 0, res.output
    assert len(list((run / "units").glob("*.json"))) == 2


def test_written_files_get_the_mode_open_would_give(tmp_path, finished):
    from evaluator.store.files import FILE_MODE, UMASK, atomic_write_text

    assert FILE_MODE == 0o666 & ~UMASK
    for rel in ("report.html", "report.json", "report.md", "config.json", f"units/{_uid(finished)}.json", f"results/{_uid(finished)}.jsonl"):
        assert stat.S_IMODE((finished / rel).stat().st_mode) == FILE_MODE, rel
    p = tmp_path / "x.txt"
    atomic_write_text(p, "a")
    assert stat.S_IMODE(p.stat().st_mode) == FILE_MODE
    p.chmod(0o600)  # a file an earlier version left 0600 is readable again once rewritten
    atomic_write_text(p, "b")
    assert stat.S_IMODE(p.stat().st_mode) == FILE_MODE and p.read_text() == "b"


def test_help_still_works_and_exits_0():
    for argv in (["--help"], ["run", "--help"], ["cost", "--help"], ["eval", "--help"]):
        res = CliRunner().invoke(app, argv)
        assert res.exit_code == 0 and "Usage" in res.output and "error:" not in res.output, (argv, res.output)
    assert "--recompute" in CliRunner().invoke(app, ["run", "--help"]).output


def test_recompute_is_passed_to_the_runner(tmp_path, tiny_llama_dir, monkeypatch):
    import evaluator.runner

    seen = []

    def fake_run_job(job, job_dir, job_text, run_id=None, *, recompute=False, **progress):
        seen.append(recompute)
        (tmp_path / "r").mkdir(exist_ok=True)
        (tmp_path / "r" / "report.json").write_text('{"tasks": {}}')  # run ends with the report's summary
        return tmp_path / "r"

    monkeypatch.setattr(evaluator.runner, "run_job", fake_run_job)
    job = str(_job(tmp_path, str(tiny_llama_dir)))
    assert CliRunner().invoke(app, ["run", job]).exit_code == 0
    assert CliRunner().invoke(app, ["run", job, "--recompute"]).exit_code == 0
    assert seen == [False, True]


def test_eval_output_is_written_after_a_valid_check(tmp_path, monkeypatch):
    import evaluator.cli.eval

    summary = {"task": "t", "metric": "accuracy", "value": 0.5, "ci_low": 0.1, "ci_high": 0.9, "n_items": 2,
               "shots": 0, "model": "m", "adapter": "a"}
    monkeypatch.setattr(evaluator.cli.eval, "eval_command", lambda **kw: (summary, [{"item_id": "1", "score": 1.0}]))
    out = tmp_path / "new" / "deeper" / "eval.json"
    res = CliRunner().invoke(app, ["eval", "--adapter", str(tmp_path), "--output", str(out)])
    assert res.exit_code == 0, res.output
    assert json.loads(out.read_text())["summary"] == summary


def test_os_error_line_names_the_file_and_the_errno():
    from evaluator.errors import os_error_line

    line = os_error_line(OSError(errno.ENOSPC, "No space left on device", "/x/report.html"), "finished units are saved")
    assert line == ("/x/report.html: no space left on device (ENOSPC) — finished units are saved; free space and run "
                    "the same command again")
    assert "(EROFS)" in os_error_line(OSError(errno.EROFS, "Read-only file system", "/ro"))
    assert os_error_line(OSError(errno.ENOSPC, "No space")).startswith("a file: ")
    assert "(ELOOP)" in os_error_line(OSError(errno.ELOOP, "Too many levels of symbolic links", "/l"))


def test_damaged_report_json_does_not_stop_compare(tmp_path, finished, monkeypatch):
    import shutil

    monkeypatch.chdir(tmp_path)
    run = tmp_path / "run"
    shutil.copytree(finished, run)
    (run / "report.json").write_text(json.dumps({"tasks": {"snips_intents": []}}))
    res = CliRunner().invoke(app, ["compare", str(run), str(run)])
    assert res.exit_code == 0, res.output


def test_store_names_the_file_when_a_write_fails_without_a_name(tmp_path, monkeypatch):
    from evaluator.store.files import atomic_write_text

    def fsync(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(OSError) as ei:
        atomic_write_text(tmp_path / "r.json", "x")
    assert ei.value.errno == errno.ENOSPC and ei.value.filename == str(tmp_path / "r.json")
    assert list(tmp_path.iterdir()) == []



def test_store_reads_a_damaged_prefix_as_one_line(tmp_path, finished):
    import shutil

    from evaluator.errors import UserError
    from evaluator.store.run_store import RunStore

    run = tmp_path / "run"
    shutil.copytree(finished, run)
    store = RunStore.open(run)
    uid = _uid(run)
    assert store.read_prefix(uid) == store.prefix_path(uid).read_text()
    assert store.read_prefix("no-such-unit") is None
    store.prefix_path(uid).write_bytes(b"\xe9\xff")
    with pytest.raises(UserError, match="prefixes/.* is unreadable or corrupted .UnicodeDecodeError. — delete it and"):
        store.read_prefix(uid)
