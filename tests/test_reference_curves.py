"""Published reference curves (Bertsch et al. 2024) as an optional layer of the learning-curves figure: the numbers
are the product brief's table, lookup by name fails with one clear line, and the layer changes the PNG only when
asked for."""

from __future__ import annotations

import io

import pytest

from evaluator.analysis.references import BERTSCH_2024, ReferenceCurve, reference, reference_names, references
from evaluator.errors import UserError
from evaluator.report import plots

PNG = b"\x89PNG\r\n\x1a\n"

# PRODUCT.md, "Reference numbers (Bertsch et al. 2024 ...; Llama-2-7b-80k ICL vs fine-tuning)", typed in by hand:
# | dataset | ICL@100 | ICL@1000 | best ICL | FT@1024 | FT@4096 | FT@16384 |
TABLE = {
    "banking77": ("Banking77", 0.586, 0.867, 0.881, 0.691, 0.870, 0.920),
    "clinic150": ("Clinic150", 0.588, 0.859, 0.893, 0.628, 0.800, 0.870),
    "trec": ("TREC", 0.856, 0.886, 0.900, 0.951, 0.970, 0.973),
}


def _units() -> list[dict]:
    units = [{"arm": "A", "model": "m", "point": {"shots": k, "shots_requested": k}, "value": q, "ci_low": q - 0.07,
              "ci_high": q + 0.07} for k, q in [(0, 0.2), (8, 0.4), (64, 0.6), (256, 0.7)]]
    units += [{"arm": "B", "model": "m", "point": {"shots": 0, "train_size": n}, "value": q, "ci_low": q - 0.07,
               "ci_high": q + 0.07} for n, q in [(16, 0.3), (64, 0.5), (256, 0.72), (493, 0.8)]]
    return units


@pytest.mark.parametrize("name", sorted(TABLE))
def test_reference_values_are_the_product_table(name):
    dataset, icl100, icl1000, best, ft1024, ft4096, ft16384 = TABLE[name]
    r = reference(name)
    assert r.dataset == dataset and r.model == "Llama-2-7b-80k"
    assert r.icl == ((100, icl100), (1000, icl1000))
    assert r.best_icl == best
    assert r.ft == ((1024, ft1024), (4096, ft4096), (16384, ft16384))
    assert "Bertsch et al. 2024" in r.citation and "In-Context Learning with Long-Context Models" in r.citation
    assert "no k" in r.note  # best ICL has no stated k: a level, not a point
    assert r.label == f"Bertsch 2024 {dataset} ICL / FT (Llama-2-7b-80k)"


def test_the_table_has_exactly_these_datasets():
    assert sorted(reference_names()) == sorted(TABLE) == sorted(BERTSCH_2024)


def test_lookup_by_name():
    assert reference("Banking77") is reference("banking77") is reference("banking-77") is BERTSCH_2024["banking77"]
    assert isinstance(reference("TREC"), ReferenceCurve)
    assert [r.name for r in references("banking77, clinic150,trec,banking77")] == ["banking77", "clinic150", "trec"]
    assert [r.name for r in references(["trec"])] == ["trec"]
    assert [r.name for r in references("all")] == list(BERTSCH_2024)
    assert references(None) == () == references("") == references([])


@pytest.mark.parametrize("bad", ["banking", "snips", "", "clinic-151"])
def test_unknown_name_is_a_user_error_listing_the_valid_ones(bad):
    with pytest.raises(UserError) as exc:
        reference(bad)
    msg = str(exc.value)
    assert repr(bad) in msg and "\n" not in msg
    for name in TABLE:
        assert name in msg
    with pytest.raises(UserError):
        references(f"trec,{bad or 'x'}")
    with pytest.raises(UserError):
        plots.learning_curves_png(_units(), references=[bad or "x"])
    with pytest.raises(UserError):  # checked before the "no finished arm points yet" figure too
        plots.learning_curves_png([], references=[bad or "x"])


def test_reference_layer_changes_the_png_only_when_asked():
    units = _units()
    cx = {"n": 240.0, "best_prompting": {"k": 256, "quality": 0.7}, "interval": [100.0, None],
          "distinguishable": False}
    plain = plots.learning_curves_png(units, crossover=cx)
    assert plain == plots.learning_curves_png(units, crossover=cx, references=())  # the default: no layer
    with_refs = plots.learning_curves_png(units, crossover=cx, references=["banking77", "clinic150", "trec"])
    by_object = plots.learning_curves_png(units, crossover=cx, references=tuple(BERTSCH_2024.values()))
    assert with_refs.startswith(PNG) and plain.startswith(PNG)
    assert with_refs != plain
    assert by_object == with_refs  # names and objects draw the same layer
    one = plots.learning_curves_png(units, crossover=cx, references=["trec"])
    assert one not in (plain, with_refs)


def test_reference_png_is_a_valid_image_widened_to_the_references():
    import matplotlib.image
    from matplotlib.figure import Figure

    png = plots.learning_curves_png(_units(), references=["banking77"])
    img = matplotlib.image.imread(io.BytesIO(png), format="png")
    assert img.ndim == 3 and img.shape[0] > 300 and img.shape[1] > 300
    # the layer's own drawing: every point at its published x (no invented x for best ICL), axis wide enough
    fig = Figure()
    ax = fig.add_subplot()
    xs = plots.draw_references(ax, ["banking77"])
    assert sorted(xs) == [100.0, 1000.0, 1024.0, 4096.0, 16384.0]
    labels = ax.get_legend_handles_labels()[1]
    assert "Bertsch 2024 Banking77 ICL / FT (Llama-2-7b-80k)" in labels
    assert any("best ICL" in lb and "no k" in lb for lb in labels)
    assert plots.draw_references(ax, ()) == []


# --- the job field and the report option ---------------------------------------------------------------------------


def test_job_reference_curves_validated_in_one_line(tmp_path):
    from evaluator.config.job import load_job

    p = tmp_path / "job.yaml"
    p.write_text("name: x\ntasks: [a]\nbase: m\nreference_curves: [Banking77, trec]\n")
    job = load_job(p)
    assert job.reference_curves == ["banking77", "trec"]
    plain = tmp_path / "plain.yaml"
    plain.write_text("name: x\ntasks: [a]\nbase: m\n")
    assert load_job(plain).fingerprint() == job.fingerprint()  # a drawing option, not part of the run id
    p.write_text("name: x\ntasks: [a]\nbase: m\nreference_curves: [banking78]\n")
    with pytest.raises(UserError) as ei:
        load_job(p)
    assert "reference_curves" in str(ei.value) and "banking77" in str(ei.value) and "\n" not in str(ei.value)


def test_report_overlays_the_job_or_the_option(tmp_path):
    import json

    from typer.testing import CliRunner

    from evaluator.cli.app import app
    from evaluator.report.build import build_report, figures_for
    from evaluator.store.run_store import RunStore
    from tests.fake_runs import item_ids, make_run

    run = make_run(tmp_path, "r", item_ids(40), [
        {"arm": "A", "model": "old-base", "shots": 0, "q": .5}, {"arm": "A", "model": "old-base", "shots": 8, "q": .6},
        {"arm": "B", "model": "old-base", "shots": 0, "train_size": 8, "q": .55},
        {"arm": "B", "model": "old-base", "shots": 0, "train_size": 32, "q": .7}])
    store = RunStore.open(run)
    plain = build_report(store)
    assert "reference_curves" not in plain
    cfg = json.loads((run / "config.json").read_text())
    cfg["job"]["reference_curves"] = ["trec"]
    (run / "config.json").write_text(json.dumps(cfg))
    rep = build_report(store)
    assert [r["name"] for r in rep["reference_curves"]] == ["trec"] and rep["reference_curves"][0]["ft"][0] == [1024, 0.951]
    key = next(k for k in figures_for(rep) if k.endswith("learning_curves"))
    assert figures_for(rep)[key] != figures_for(plain)[key]
    assert build_report(store, reference_curves=[]).get("reference_curves") is None  # --reference-curves none
    res = CliRunner().invoke(app, ["report", str(run), "--reference-curves", "banking77,clinic150"])
    assert res.exit_code == 0, res.output
    assert "**Reference curves**" in res.output and "Banking77: ICL 0.586 at k=100" in res.output
    saved = json.loads((run / "report.json").read_text())
    assert [r["name"] for r in saved["reference_curves"]] == ["banking77", "clinic150"]
    res = CliRunner().invoke(app, ["report", str(run), "--reference-curves", "imdb"])
    assert res.exit_code == 2 and "unknown reference curve 'imdb'" in res.output
