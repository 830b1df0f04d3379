"""The few lines `run` and `demo` end with: the verdict, each arm's operating point with its interval and $/month,
and where the reports are — recomputed here by hand from the report dict."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from evaluator.analysis.intervals import wilson_interval
from evaluator.cli.app import app
from evaluator.report.summary import summary_lines
from tests.test_run import write_job


def test_run_ends_with_the_summary_not_the_whole_markdown(tmp_path, tiny_llama_dir, tiny_gemma_dir):
    job = write_job(tmp_path, tiny_llama_dir, tiny_gemma_dir)
    res = CliRunner().invoke(app, ["run", str(job)])
    assert res.exit_code == 0, res.output
    (rd,) = list((tmp_path / "runs").iterdir())
    report = json.loads((rd / "report.json").read_text())
    lines = summary_lines(report, rd)
    out = res.output
    assert all(line in out for line in lines)
    assert "| arm |" not in out and "**Verdict" not in out  # no Markdown tables on the screen
    sec = report["tasks"]["snips_intents"]
    assert lines[0].startswith(f"snips_intents: {sec['verdict']['title']} — ")
    for arm, label in sec["selection"]["chosen"].items():
        row = next(line for line in lines if f" {label} " in line)
        info = sec["selection"]["arms"][arm]
        lo, hi = wilson_interval(round(info["test_value"] * info["test_items"]), info["test_items"], 0.05)
        assert f"{info['test_value']:.3f} [{lo:.3f}, {hi:.3f}] on {info['test_items']} test items" in row
        cost = next(a for a in sec["costs"]["arms"] if a["name"] == label)
        assert f"self-host ${cost['monthly_selfhost_cached']:,.0f}/month" in row
    assert lines[-2] == f"report: {rd / 'report.html'} (open in a browser)"
    assert str(rd / "report.md") in lines[-1] and str(rd / "report.json") in lines[-1]


def test_summary_of_an_incomplete_report_says_so(tmp_path):
    lines = summary_lines({"complete": False, "tasks": {}}, tmp_path)
    assert lines[0].startswith("run incomplete") and lines[-2].endswith("(open in a browser)")
