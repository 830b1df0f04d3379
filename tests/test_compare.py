"""`tunecheck compare RUN_A RUN_B`: paired comparison of two run dirs on the same items; refuses different items."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from evaluator.errors import UserError
from evaluator.report.compare import compare_runs, format_compare, write_compare
from tests.fake_runs import item_ids, make_run, new_run, old_run


@pytest.fixture()
def runs(tmp_path):
    items = item_ids(120)
    return old_run(tmp_path, items), new_run(tmp_path, items)


def test_same_items_gives_paired_table(runs, tmp_path):
    a, b = runs
    r = compare_runs(a, b)
    assert r["run_a"]["run_id"] == "q1-adapter" and r["run_b"]["run_id"] == "q2-new-base"
    t = r["tasks"]["toy_intents"]
    assert t["n_items"] == 120
    kinds = [p["kind"] for p in t["pairs"]]
    # every adapter of the old run vs the best prompting point of the new base
    adapters = [p for p in t["pairs"] if p["kind"] == "adapter_vs_prompting"]
    assert [p["label_a"] for p in adapters] == ["B n=16", "B n=64", "B n=256"]
    assert {p["label_b"] for p in adapters} == {"A k=32"}
    assert "prompting_vs_prompting" in kinds
    for p in t["pairs"]:
        assert p["n"] == 120 and p["ci_low"] <= p["diff"] <= p["ci_high"]
        assert p["diff"] == pytest.approx(p["mean_b"] - p["mean_a"])  # RUN_B minus RUN_A
        assert p["mcnemar_p"] is not None
    # the headline: last quarter's best adapter (0.75) vs the new base's best prompting point (0.80), both chosen on
    # the 36 selection items and tested on the other 84: +0.05 there does not yet show "no worse by 0.02"
    h = t["headline"]
    assert h["a"].startswith("B n=256") and h["b"].startswith("A k=32")
    assert h["selection"]["method"] == "split" and h["selection"]["test_items"] == 84
    assert h["outcome"] == "inconclusive" and h["judged"]["lean"] == "within"
    assert h["items_needed"]["n"] > 84
    assert "q2-new-base" in h["statement"] and "q1-adapter" in h["statement"]
    assert t["same_point"] == []  # different models: no unit in common
    md = format_compare(r)
    assert md.startswith("# tunecheck compare — q1-adapter vs q2-new-base")
    assert ("| comparison | before option | after option | before | after | after − before | 95% CI | McNemar p "
            "| right only after / only before |") in md
    assert "- **before** (the first run given): `q1-adapter`" in md and "- **after** (the second run given): `q2-new-base`" in md
    assert "| adapter (before) vs prompting (after) | B n=16 | A k=32 |" in md
    assert h["statement"].startswith("Inconclusive: A k=32 in q2-new-base (after) vs the adapter B n=256 in "
                                     "q1-adapter (before): difference (after − before) +")
    assert r["same_run"] is False and r["note"] is None and "**Note:**" not in md
    assert "Newcombe" in md
    assert "**Headline:**" in md
    json.dumps(r)  # plain data
    md_path, js_path = write_compare(r, tmp_path / "out")
    assert md_path == tmp_path / "out" / "compare-q1-adapter-vs-q2-new-base.md"
    assert not list(b.glob("compare-*")) and not list(a.glob("compare-*"))  # never into a run's folder
    assert md_path.read_text(encoding="utf-8") == md
    assert json.loads(js_path.read_text())["tasks"]["toy_intents"]["n_items"] == 120


def test_headline_when_adapter_is_still_better(tmp_path):
    items = item_ids(200)
    a = old_run(tmp_path, items)
    b = make_run(tmp_path, "weak-new-base", items, [{"arm": "A", "model": "nb", "shots": 8, "q": 0.40}], seed=1)
    h = compare_runs(a, b)["tasks"]["toy_intents"]["headline"]
    assert h["outcome"] == "run_a_better" and h["ci_high"] < -0.02
    assert h["statement"].startswith("The adapter B n=256 in q1-adapter (before) is still better than A k=8 in "
                                     "weak-new-base (after): difference (after − before) -")


def test_inconclusive_headline_says_how_many_items(tmp_path):
    items = item_ids(40)
    a = make_run(tmp_path, "old", items, [{"arm": "B", "model": "m", "shots": 0, "train_size": 64, "q": 0.60}], seed=2)
    b = make_run(tmp_path, "new", items, [{"arm": "A", "model": "n", "shots": 8, "q": 0.50}], seed=3)
    h = compare_runs(a, b)["tasks"]["toy_intents"]["headline"]
    assert h["outcome"] == "inconclusive"
    assert h["items_needed"]["n"] > 40 and "paired test items would settle it" in h["statement"]
    assert h["selection"]["method"] == "none"  # one point each side: nothing chosen, every item tests


def test_headline_matches_when_the_interval_is_within_the_margin(tmp_path):
    items = item_ids(600)
    a = make_run(tmp_path, "old", items, [{"arm": "B", "model": "m", "shots": 0, "train_size": 64, "q": 0.60}], seed=2)
    b = make_run(tmp_path, "new", items, [{"arm": "A", "model": "n", "shots": 8, "q": 0.70}], seed=2)
    h = compare_runs(a, b)["tasks"]["toy_intents"]["headline"]
    assert h["outcome"] == "matches_or_beats" and h["significantly_better"] and h["ci_low"] > 0


def test_compare_and_verdict_give_the_same_items_needed_for_the_same_pair(tmp_path):
    """A run compared with itself: the headline pair (best adapter vs best prompting) is the verdict's pair, and both
    size the test the same way (same criterion, same items, same simulation)."""
    from evaluator.report.build import build_report
    from evaluator.store.run_store import RunStore

    items = item_ids(90)
    run = make_run(tmp_path, "solo", items, [
        {"arm": "A", "model": "m", "shots": 0, "q": 0.40}, {"arm": "A", "model": "m", "shots": 8, "q": 0.58},
        {"arm": "B", "model": "m", "shots": 0, "train_size": 16, "q": 0.50},
        {"arm": "B", "model": "m", "shots": 0, "train_size": 64, "q": 0.62},
    ], seed=4)
    v = build_report(RunStore.open(run))["tasks"]["toy_intents"]["verdict"]
    h = compare_runs(run, run)["tasks"]["toy_intents"]["headline"]
    assert v["outcome"] == "inconclusive" and h["outcome"] == "inconclusive"
    assert v["selection"]["chosen"]["A"] in h["b"] and v["selection"]["chosen"]["B"] in h["a"]
    assert v["items_needed"]["n"] == h["items_needed"]["n"] and v["items_needed"]["n"] is not None
    assert v["items_needed"]["criterion"] == h["items_needed"]["criterion"]


def test_same_run_twice_pairs_identical_points(runs):
    a, _ = runs
    r = compare_runs(a, a)
    same = r["tasks"]["toy_intents"]["same_point"]
    assert len(same) == 8
    assert all(p["diff"] == 0 and p["mcnemar_p"] == 1.0 for p in same)
    assert r["run_a"]["name"] != r["run_b"]["name"]  # disambiguated labels
    assert (r["run_a"]["name"], r["run_b"]["name"]) == ("q1-adapter (before)", "q1-adapter (after)")
    assert r["same_run"] is True
    assert r["note"].startswith("the same run on both sides (q1-adapter is both before and after): nothing to compare")
    md = format_compare(r).splitlines()
    assert md[0] == "# tunecheck compare — q1-adapter (before) vs q1-adapter (after)"
    assert md[2].startswith("> **Note:** The same run on both sides (q1-adapter is both before and after): nothing "
                            "to compare — every same-point difference is 0 by construction")
    assert "in q1-adapter (before)" in r["tasks"]["toy_intents"]["headline"]["statement"]
    assert "(run A)" not in "\n".join(md) and "(run B)" not in "\n".join(md)


def test_runs_are_before_and_after_never_arm_letters(runs, tmp_path):
    """Issue 15: the runs are "before"/"after" (or their names) everywhere a person reads; A/B/C are the arms only."""
    import re

    a, b = runs
    r = compare_runs(a, b)
    md = format_compare(r)
    text = md + "\n".join(str(p.get("summary")) for t in r["tasks"].values() for p in t["pairs"] + t["same_point"])
    assert "RUN_A" not in md and "RUN_B" not in md and "run A" not in text and "run B" not in text
    # a column or a difference named by a bare letter would be a run called like an arm
    assert not re.search(r"\| (A|B) \||B − A|B only / A only| [AB] \$/month", md)
    # an arm letter in the Markdown is always an option label (A k=…, B n=…, C model k=…)
    for m in re.finditer(r"(?<![\w`/-])([ABC])(?![\w`/-])", md):
        assert re.match(r" (k=|n=|mid-base k=)", md[m.end():]), md[m.start() - 40:m.end() + 20]
    # two different folders that carry the same run id: told apart by role, and not "the same run"
    import shutil

    copy = tmp_path / "copy" / "q1-adapter"
    shutil.copytree(a, copy)
    r2 = compare_runs(a, copy)
    assert (r2["run_a"]["name"], r2["run_b"]["name"]) == ("q1-adapter (before)", "q1-adapter (after)")
    assert r2["same_run"] is False and r2["note"] is None


def test_different_item_sets_refused_with_one_line(tmp_path):
    a = old_run(tmp_path, item_ids(120))
    b = new_run(tmp_path, item_ids(100, start=50))  # 70 in common
    with pytest.raises(UserError) as ei:
        compare_runs(a, b)
    msg = str(ei.value)
    assert "\n" not in msg
    assert "q1-adapter" in msg and "q2-new-base" in msg
    assert "different test items" in msg and "120 in q1-adapter" in msg and "100 in q2-new-base" in msg
    assert "70 in common" in msg
    assert UserError.exit_code == 2


def test_no_common_task_refused(tmp_path):
    a = old_run(tmp_path, item_ids(30))
    b = make_run(tmp_path, "other", item_ids(30), [{"arm": "A", "model": "x", "shots": 0, "q": 0.5}], task="other_task")
    with pytest.raises(UserError, match="share no task"):
        compare_runs(a, b)


def test_not_a_run_dir(tmp_path):
    a = old_run(tmp_path, item_ids(10))
    with pytest.raises(UserError, match="not a tunecheck run directory"):
        compare_runs(a, tmp_path / "nope")


def _cli_has_compare() -> bool:
    from evaluator.cli.app import app

    names = {c.name or (c.callback.__name__ if c.callback else None) for c in app.registered_commands}
    return "compare" in names


def test_cli_compare_exits_2_with_one_line(tmp_path, repo_root):
    """Acceptance: `tunecheck compare` on two runs with different items exits 2 with one clear line."""
    if not _cli_has_compare():
        pytest.skip("the `compare` CLI command is not wired yet (evaluator/cli/)")
    a = old_run(tmp_path, item_ids(60))
    b = new_run(tmp_path, item_ids(60, start=10))
    proc = subprocess.run([sys.executable, "-m", "evaluator.cli", "compare", str(a), str(b)], cwd=repo_root,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert "different test items" in lines[0]
    out = tmp_path / "reports"
    ok = subprocess.run([sys.executable, "-m", "evaluator.cli", "compare", str(a), str(a), "--out", str(out)],
                        cwd=repo_root, capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert "tunecheck compare" in ok.stdout
    assert "the same run on both sides" in ok.stdout.lower() and "nothing to compare" in ok.stdout
    assert (out / "compare-q1-adapter-vs-q1-adapter.md").is_file() and (out / "compare-q1-adapter-vs-q1-adapter.json").is_file()
    assert not list(a.glob("compare-*"))  # --out, not RUN_B's folder


# --- where compare writes, incomplete runs, numeric order ------------------------------------------------------------


def test_cli_compare_writes_to_the_current_directory_by_default(runs, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from evaluator.cli.app import app

    a, b = runs
    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    res = CliRunner().invoke(app, ["compare", str(a), str(b)])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in here.iterdir()) == ["compare-q1-adapter-vs-q2-new-base.json",
                                                      "compare-q1-adapter-vs-q2-new-base.md"]
    assert not list(a.glob("compare-*")) and not list(b.glob("compare-*"))


def test_cli_compare_out_that_is_a_file_is_one_line_before_any_work(runs, tmp_path):
    from typer.testing import CliRunner

    from evaluator.cli.app import app

    a, b = runs
    (tmp_path / "a-file").write_text("x")
    res = CliRunner().invoke(app, ["compare", str(a), str(b), "--out", str(tmp_path / "a-file")])
    assert res.exit_code == 2
    errors = [ln for ln in res.output.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "--out" in errors[0] and "is a file" in errors[0], res.output


def test_incomplete_run_is_refused_with_one_line(tmp_path):
    items = item_ids(60)
    a = old_run(tmp_path, items)
    b = make_run(tmp_path, "killed", items, [{"arm": "A", "model": "nb", "shots": 8, "q": 0.7}], planned_extra=2)
    with pytest.raises(UserError) as ei:
        compare_runs(a, b)
    msg = str(ei.value)
    assert "\n" not in msg
    assert "run killed is incomplete: 2 of 3 planned units unfinished" in msg and "--allow-incomplete" in msg


def test_incomplete_run_allowed_is_flagged_loudly(tmp_path):
    from typer.testing import CliRunner

    from evaluator.cli.app import app

    items = item_ids(60)
    a = old_run(tmp_path, items)
    b = make_run(tmp_path, "killed", items, [{"arm": "A", "model": "nb", "shots": 8, "q": 0.7}], planned_extra=2)
    r = compare_runs(a, b, allow_incomplete=True)
    assert r["run_b"]["complete"] is False and r["run_b"]["unfinished_units"] == ["planned-0", "planned-1"]
    assert r["run_a"]["complete"] is True and r["run_a"]["unfinished_units"] == []
    assert len(r["incomplete"]) == 1 and "killed is incomplete" in r["incomplete"][0]
    md = format_compare(r)
    assert md.splitlines()[2].startswith("> **WARNING — INCOMPLETE RUN:** run killed is incomplete: 2 of 3")
    assert "2 of 3 planned units unfinished" in md
    res = CliRunner().invoke(app, ["compare", str(a), str(b)])
    assert res.exit_code == 2 and "--allow-incomplete" in res.output
    res = CliRunner().invoke(app, ["compare", str(a), str(b), "--allow-incomplete", "--out", str(tmp_path / "o")])
    assert res.exit_code == 0, res.output
    assert "warning:" in res.output and "INCOMPLETE RUN" in res.output
    assert "WARNING — INCOMPLETE RUN" in (tmp_path / "o" / "compare-q1-adapter-vs-killed.md").read_text()


def test_points_are_listed_in_numeric_order(tmp_path):
    """Unit files sort k32 before k8 and n256 before n64; compare lists k and n as numbers everywhere."""
    items = item_ids(60)
    new = new_run(tmp_path, items)  # A k=0, 8, 32
    same = compare_runs(new, new)["tasks"]["toy_intents"]["same_point"]
    assert [p["label_a"] for p in same] == ["A k=0", "A k=8", "A k=32"]
    old = old_run(tmp_path, items)
    r = compare_runs(old, old)
    labels = [p["label_a"] for p in r["tasks"]["toy_intents"]["same_point"]]
    assert [x for x in labels if x.startswith("B")] == ["B n=16", "B n=64", "B n=256"]
    assert labels == ["A k=0", "A k=8", "A k=64", "B n=16", "B n=64", "B n=256", "C mid-base k=0", "C mid-base k=8"]
    md = format_compare(r)
    assert md.index("| B n=16 |") < md.index("| B n=64 |") < md.index("| B n=256 |")
