"""Help a new user can read: every verb's --help wrapped at 80 columns, nothing cut."""

from __future__ import annotations

from typer.testing import CliRunner

from evaluator.cli.app import app


def test_help_fits_80_columns_with_nothing_cut():
    """Every verb's --help at 80 columns: no line wider than 80, no option name or word cut with an ellipsis."""
    verbs = ["run", "demo", "cost", "compare", "report", "tasks", "schema", "train", "eval", "samples"]
    for argv in [[], *[[v] for v in verbs]]:
        res = CliRunner().invoke(app, [*argv, "--help"], terminal_width=80, env={"COLUMNS": "80"})
        assert res.exit_code == 0, (argv, res.output)
        lines = res.output.splitlines()
        assert max(len(line) for line in lines) <= 80, (argv, max(lines, key=len))
        cut = [ln for ln in lines if "…" in ln or ("..." in ln and not ln.startswith("Usage:"))]  # click cuts with "..."
        assert not cut, (argv, cut)
        # no word or option broken at a hyphen across lines ("--lm-" / "eval")
        assert not [ln for ln in lines if ln.rstrip().endswith("-") and ln.rstrip()[-2:-1].isalnum()], (argv, lines)
    train = CliRunner().invoke(app, ["train", "--help"], terminal_width=80, env={"COLUMNS": "80"}).output
    assert "--gradient-checkpointing / --no-gradient-checkpointing" in train


def test_cost_help_states_every_default():
    text = " ".join(CliRunner().invoke(app, ["cost", "--help"], terminal_width=80, env={"COLUMNS": "80"}).output.split())
    for opt, default in [("--gpu-hourly", "2"), ("--gpus", "1"), ("--utilisation", "0.5"), ("--refresh-months", "5"),
                         ("--api-model", "gpt-4o-mini"), ("--volume", "50,000,000"), ("--prefix-cache-hours", "24")]:
        after = text.split(opt + " ", 1)[1].split(" --", 1)[0]
        assert f"(default: the run's recorded value, else {default})" in after, (opt, after)


def test_the_verb_list_reads_in_the_order_a_user_meets_them():
    out = CliRunner().invoke(app, ["--help"], terminal_width=80, env={"COLUMNS": "80"}).output
    listed = [ln.split()[0] for ln in out.split("Commands:")[1].splitlines() if ln.startswith("  ") and not ln.startswith("   ")]
    assert listed == ["run", "demo", "report", "cost", "compare", "tasks", "schema", "train", "eval", "samples"]
    assert "report.html" in " ".join(CliRunner().invoke(app, ["report", "--help"]).output.split())
