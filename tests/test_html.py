"""report.html: self-contained (no external requests), phone-readable, and — in headless Chromium — renders its
plots without console errors and fits the screen at 1280 px and 390 px: no horizontal overflow, every table column
on screen, plot text legible. Screenshots are saved as CI artifacts under ``$TUNECHECK_ARTIFACTS`` (default
``artifacts/`` under the repo root): ``report-1280.png``, ``report-390.png`` (and ``report-screenshot.png``, the
390 px one, the name CI prints)."""

from __future__ import annotations

import base64
import html as html_lib
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from evaluator.report.build import build_report, figures_for
from evaluator.report.html import CSP, render_html
from evaluator.store.run_store import RunStore
from tests.fake_runs import item_ids, old_run

REPO = Path(__file__).resolve().parents[1]
PHONE = (390, 2400)  # iPhone 12-15 CSS width
DESKTOP = (1280, 2400)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    run = old_run(tmp_path_factory.mktemp("runs"), item_ids(80))
    rep = build_report(RunStore.open(run))
    figs = figures_for(rep)
    html = render_html(rep, figs)
    path = run / "report.html"
    path.write_text(html, encoding="utf-8")
    return rep, figs, html, path


# -- static checks ------------------------------------------------------------------------------------------------


def test_figures_are_pngs(rendered):
    _, figs, _, _ = rendered
    assert set(figs) == {f"toy_intents/{n}" for n in ("learning_curves", "quality_vs_cost", "cost_vs_volume")}
    for data in figs.values():
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000


def test_html_is_self_contained(rendered):
    _, figs, html, _ = rendered
    assert html.startswith("<!doctype html>")
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in html
    assert f'<meta http-equiv="Content-Security-Policy" content="{CSP}">' in html
    # nothing is fetched: no src/href/url() pointing anywhere but data: URIs or in-page anchors
    refs = re.findall(r'\b(?:src|href|srcset|action|poster|data)\s*=\s*["\']([^"\']*)["\']', html, flags=re.I)
    assert refs, "expected some images"
    for r in refs:
        assert r.startswith("data:image/") or r.startswith("#"), r
    assert not re.search(r"url\(\s*['\"]?(?!data:)", html), "CSS url() to a resource"
    assert "@import" not in html and "<script" not in html.lower() and "<link" not in html.lower()
    assert "http://" not in html and "https://" not in html
    # every figure embedded as a data URI, exactly once
    imgs = re.findall(r'<img class="plot" src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    assert len(imgs) == len(figs)
    assert sorted(base64.b64decode(i) for i in imgs) == sorted(figs.values())


def test_html_is_phone_friendly_and_complete(rendered):
    rep, _, html, _ = rendered
    assert "max-width: 1320px" in html  # container: wide enough that 1280 px is not capped
    tables = html.count('<table class="stack t')
    assert html.count('<div class="scroll">') == tables == html.count("<table") > 0  # every table scrolls on its own
    assert "overflow-x: auto" in html
    # every table stacks on a phone, each cell led by its column's name (from a per-table style sheet)
    assert html.count("<style>@media (max-width: 640px)") == tables
    assert 'td:nth-child(1)::before{content:"arm"}' in html
    v = rep["tasks"]["toy_intents"]["verdict"]
    assert f"Verdict: {v['title']}" in html
    assert "Paired comparisons" in html and "Crossover:" in html and "Break-even volumes" in html


def test_table_labels_are_safe_css():
    from evaluator.report.html import _table

    out = _table([('a "b" \\ </style><script>', "")], [[("x", "")]])
    style = out.split("</style>")[0]
    assert out.count("</style>") == 1 and "<script>" not in style
    assert '\\"b\\"' in style and "\\3c /style>" in style


def test_axis_ticks_are_compact():
    from evaluator.fmt import axis_short

    assert [axis_short(v, "$") for v in (80_000, 100_000, 1.5e6, 500, 0.05, 999.6)] == \
        ["$80k", "$100k", "$1.5M", "$500", "$0.05", "$1k"]
    assert axis_short(2.5e9) == "2.5B" and axis_short(None) == "" and axis_short("inf") == ""


def test_html_escapes_text():
    rep = {"run_id": "<script>alert(1)</script>", "job": {"name": "x & y"}, "tasks": {}, "complete": True}
    html = render_html(rep, {})
    assert "<script>alert" not in html and "&lt;script&gt;" in html and "x &amp; y" in html


def test_render_html_tolerates_minimal_reports():
    """An early/older report (no costs, no paired, v1 verdict with a string 'numbers') still renders."""
    rep = {
        "schema_version": "1.0", "run_id": "r", "job": {}, "environment": {}, "complete": False, "units_planned": 3,
        "tasks": {"t": {"units": [], "verdict": {"outcome": "inconclusive", "reason": "r", "numbers": "n"}}},
    }
    html = render_html(rep, {"t/learning_curves": b"\x89PNG\r\n\x1a\n" + b"\0" * 30})
    assert "Incomplete run" in html and "Verdict: Inconclusive" in html


def test_plots_edge_cases():
    from evaluator.costs.compute import compute_costs
    from evaluator.costs.inputs import ArmMeasurement, CostInputs
    from evaluator.report import plots

    png = b"\x89PNG\r\n\x1a\n"
    assert plots.learning_curves_png([]).startswith(png)  # no points yet: a labelled empty figure
    one = [{"arm": "A", "model": "m", "point": {"shots": 0, "shots_requested": 0}, "value": 0.5, "ci_low": 0.4,
            "ci_high": 0.6}]
    assert plots.learning_curves_png(one).startswith(png)
    # a lone point at 0 whose stored lower bound sits a rounding hair above it (Wilson at n=3 gave 5.6e-17): this
    # crashed report writing with matplotlib's "'yerr' must not contain negative values"
    zero = [dict(one[0], value=0.0, ci_low=5.551115123125783e-17, ci_high=0.56)]
    assert plots.learning_curves_png(zero).startswith(png)
    zero_pt = [{"label": "A k=0", "arm": "A", "quality": 0.0, "ci_low": 5.6e-17, "ci_high": 0.56, "monthly_usd": 1.0}]
    assert plots.quality_vs_cost_png(zero_pt).startswith(png)
    pts = [
        {"label": "A k=0", "arm": "A", "quality": 0.5, "ci_low": 0.4, "ci_high": 0.6, "monthly_usd": 100.0},
        {"label": "A k=8", "arm": "A", "quality": 0.6, "ci_low": 0.5, "ci_high": 0.7, "monthly_usd": 300.0},
        {"label": "C k=8", "arm": "C", "quality": 0.55, "ci_low": 0.45, "ci_high": 0.65, "monthly_usd": 400.0},
        {"label": "B n=64", "arm": "B", "quality": 0.7, "ci_low": 0.6, "ci_high": 0.8, "monthly_usd": 250.0},
        {"label": "no cost", "arm": "B", "quality": 0.9, "ci_low": 0.8, "ci_high": 0.95, "monthly_usd": None},
    ]
    # frontier: cheapest first, then only options better than everything cheaper
    assert [pts[i]["label"] for i in plots.pareto_frontier(pts)] == ["A k=0", "B n=64"]
    assert plots.quality_vs_cost_png(pts).startswith(png)
    assert plots.quality_vs_cost_png([]).startswith(png)
    # straight from the cost model (objects, not JSON), with a parallel pair ("inf" break-even)
    arms = [
        ArmMeasurement(name="A k=8", arm="A", requests=100, eval_seconds=10.0, device="cpu",
                       prompt_tokens_per_request=200.0, shared_prefix_tokens=180.0, output_tokens_per_request=0.0),
        ArmMeasurement(name="B n=64", arm="B", requests=100, eval_seconds=5.0, device="cpu",
                       prompt_tokens_per_request=20.0, shared_prefix_tokens=0.0, output_tokens_per_request=0.0,
                       train_seconds=60.0),
    ]
    rep = compute_costs(arms, CostInputs(volume_tokens_per_day=1e6))
    assert plots.cost_vs_volume_png(rep.lines(), rep.break_evens, current_requests_per_day=rep.requests_per_day,
                                    tokens_per_request=rep.baseline_tokens_per_request).startswith(png)
    json_lines = [{"name": "x", "kind": "API", "fixed_usd_per_month": 0.0, "usd_per_request": 1e-4, "label": "x [API]"}]
    bes = [{"a": "x [API]", "b": "y", "requests_per_day": "inf", "tokens_per_day": None, "how": ""}]
    assert plots.cost_vs_volume_png(json_lines, bes).startswith(png)
    assert plots.cost_vs_volume_png([], []).startswith(png)


# -- headless Chromium --------------------------------------------------------------------------------------------

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")

# Injected into a *copy* of the page for --dump-dom (the report itself has no script): after load, count images
# that decoded (complete, naturalWidth > 0), resources fetched from anything but data: URIs, and horizontal overflow.
PROBE = """<script>
window.addEventListener('load', function () {
  var imgs = Array.prototype.slice.call(document.images);
  var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
  var ext = performance.getEntriesByType('resource').filter(function (r) { return r.name.indexOf('data:') !== 0; });
  var over = document.documentElement.scrollWidth > window.innerWidth + 1 ? 1 : 0;
  document.title = 'imgs-ok:' + ok + ';imgs:' + imgs.length + ';ext:' + ext.length + ';overflow:' + over;
});
</script>"""


def _chromium(tmp: Path, url: str, *extra: str, size: tuple[int, int] = PHONE) -> subprocess.CompletedProcess:
    profile = tmp / f"profile-{len(list(tmp.glob('profile-*')))}"
    cmd = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--no-default-browser-check",
        f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0", "--hide-scrollbars",
        f"--window-size={size[0]},{size[1]}", *extra, url,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=90)


def _console_problems(stderr: str) -> list[str]:
    """Console messages (Chromium logs every console message, any level, as ':CONSOLE'), uncaught errors, CSP
    violations. The report has no script, so any console message at all means something went wrong."""
    return [ln for ln in stderr.splitlines()
            if ":CONSOLE" in ln or "Uncaught" in ln or "Content Security Policy" in ln]


def _probe_copy(html: str, path: Path) -> Path:
    page = html.replace(CSP, CSP + "; script-src 'unsafe-inline'").replace("</body>", PROBE + "</body>")
    path.write_text(page, encoding="utf-8")
    return path


def _title(dom: str) -> str:
    m = re.search(r"<title>(.*?)</title>", dom, flags=re.S)
    return m.group(1) if m else ""


# A real viewport of any width: headless Chromium will not make a window narrower than 500 px (innerWidth stays 500
# at --window-size=390,…), so the page is laid out in an iframe of exactly the width wanted. The srcdoc iframe keeps
# the report's own CSP; the measuring script runs in the wrapper, which reads the iframe's DOM (same origin).
LAYOUT_PROBE = """<script>
window.addEventListener('load', function () {
  var w = document.getElementById('f').contentWindow, d = w.document, W = w.innerWidth, out = [], unlabelled = [];
  var pageHeight = d.documentElement.scrollHeight;  // as shown, before unfolding
  d.querySelectorAll('details').forEach(function (x) { x.open = true; });  // measure the folded tables too
  var tables = Array.prototype.slice.call(d.querySelectorAll('table'));
  var overTables = tables.filter(function (t) { return t.scrollWidth > t.parentElement.clientWidth + 1; }).length;
  tables.forEach(function (t, ti) {
    t.querySelectorAll('th, td').forEach(function (c) {
      var r = c.getBoundingClientRect();
      if (r.width > 0 && (r.left < -0.5 || r.right > W + 0.5)) { out.push(ti + ':' + c.textContent.slice(0, 30)); }
    });
    var ths = t.querySelectorAll('thead th');
    ths.forEach(function (th, i) {  // a header not shown must lead each of its column's cells instead
      if (th.getBoundingClientRect().width > 0) { return; }
      t.querySelectorAll('tbody tr > :nth-child(' + (i + 1) + ')').forEach(function (td) {
        if (w.getComputedStyle(td, '::before').content !== JSON.stringify(th.textContent)) {
          unlabelled.push(ti + ':' + th.textContent);
        }
      });
    });
  });
  var scales = Array.prototype.map.call(d.images, function (i) {
    return i.getBoundingClientRect().width / i.naturalWidth; });
  var imgOut = Array.prototype.filter.call(d.images, function (i) {
    return i.getBoundingClientRect().right > W + 0.5; });
  document.getElementById('m').textContent = JSON.stringify({
    innerWidth: W, scrollWidth: d.documentElement.scrollWidth, tables: tables.length, tablesOverflowing: overTables,
    cellsOffScreen: out.length, offScreen: out.slice(0, 10), unlabelled: unlabelled.slice(0, 10),
    imgScale: scales.length ? Math.min.apply(null, scales) : null, imgsOffScreen: imgOut.length,
    mainWidth: d.querySelector('main').getBoundingClientRect().width, pageHeight: pageHeight});
});
</script>"""


def _framed(html: str, width: int, height: int, path: Path, probe: bool) -> Path:
    page = (f'<!doctype html><html><head><meta charset="utf-8"><title>frame</title></head><body style="margin:0">'
            f'<iframe id="f" style="border:0;display:block;width:{width}px;height:{height}px" '
            f'srcdoc="{html_lib.escape(html, quote=True)}"></iframe><pre id="m"></pre>'
            + (LAYOUT_PROBE if probe else "") + "</body></html>")
    path.write_text(page, encoding="utf-8")
    return path


def layout_at(html: str, width: int, tmp: Path) -> dict:
    """Layout numbers of the page at a viewport ``width`` (see LAYOUT_PROBE)."""
    frame = _framed(html, width, 3000, tmp / f"frame-{width}.html", probe=True)
    dom = _chromium(tmp, frame.as_uri(), "--dump-dom", size=(max(width, 500), 3000))
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert _console_problems(dom.stderr) == []
    m = re.search(r'<pre id="m">(.*?)</pre>', dom.stdout, flags=re.S)
    assert m and m.group(1), dom.stdout[-2000:]
    return json.loads(html_lib.unescape(m.group(1)))


def screenshot_at(html: str, width: int, height: int, tmp: Path, shot: Path) -> subprocess.CompletedProcess:
    """A ``width`` × ``height`` screenshot of the page laid out at that width (the window is cropped to it)."""
    frame = _framed(html, width, height, tmp / f"shot-{width}.html", probe=False)
    return _chromium(tmp, frame.as_uri(), f"--screenshot={shot}", size=(width, height))


def _artifacts_dir() -> Path:
    d = Path(os.environ.get("TUNECHECK_ARTIFACTS") or REPO / "artifacts")
    d.mkdir(parents=True, exist_ok=True)
    return d


@needs_chromium
def test_chromium_renders_report_on_a_phone(rendered, tmp_path):
    _, figs, html, path = rendered
    shot = tmp_path / "report-screenshot.png"
    proc = _chromium(tmp_path, path.as_uri(), f"--screenshot={shot}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert _console_problems(proc.stderr) == []
    assert shot.is_file() and shot.stat().st_size > 20_000
    # (the saved artifacts come from test_chromium_report_fits_the_screen, laid out at a true 390 px)
    # non-trivial: the right size and not a blank page
    from matplotlib.image import imread

    img = imread(str(shot))
    assert img.shape[1] == PHONE[0] and img.shape[0] == PHONE[1]
    assert float(img[..., :3].std()) > 0.05

    probe = _probe_copy(html, tmp_path / "probe.html")
    dom = _chromium(tmp_path, probe.as_uri(), "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert _console_problems(dom.stderr) == []
    n = len(figs)
    assert _title(dom.stdout) == f"imgs-ok:{n};imgs:{n};ext:0;overflow:0"
    assert dom.stdout.count('<img class="plot" src="data:image/png;base64,') == n


@needs_chromium
def test_chromium_probe_catches_external_requests(rendered, tmp_path):
    """Negative control: the same checks flag a page that tries to fetch something (so a pass means something)."""
    _, figs, html, _ = rendered
    bad = html.replace("</main>", '<img src="https://example.invalid/x.png" alt="x"></main>')
    probe = _probe_copy(bad, tmp_path / "bad.html")
    dom = _chromium(tmp_path, probe.as_uri(), "--dump-dom")
    assert any("example.invalid" in ln for ln in _console_problems(dom.stderr)), dom.stderr[-2000:]
    assert f"imgs-ok:{len(figs)};imgs:{len(figs) + 1};ext:1" in _title(dom.stdout)


@needs_chromium
@pytest.mark.parametrize("size", [DESKTOP, PHONE], ids=["1280px", "390px"])
def test_chromium_report_fits_the_screen(rendered, tmp_path, size):
    """At 1280 px and 390 px: no horizontal overflow, every table column on screen (no table wider than its
    scrolling wrapper, every cell inside the viewport, a header hidden by the phone layout leading each of its
    cells instead), plots scaled to the viewport with legible text; the screenshot is saved."""
    from matplotlib.image import imread

    from evaluator.report import plots

    _, figs, html, _ = rendered
    m = layout_at(html, size[0], tmp_path)
    assert m["innerWidth"] == size[0], m
    assert m["scrollWidth"] <= m["innerWidth"], m  # no horizontal scroll of the page
    assert m["tables"] >= 5 and m["tablesOverflowing"] == 0, m  # no column hidden behind a table's own scroll
    assert m["cellsOffScreen"] == 0 and m["unlabelled"] == [], m
    assert m["imgsOffScreen"] == 0, m
    if size == DESKTOP:
        assert m["mainWidth"] > 1200, m  # not capped at 980 px
    # plot text as shown: the smallest font (ticks, legend) scaled by how much the page shrinks the image
    smallest_pt = min(plots._RC["legend.fontsize"], plots._RC["xtick.labelsize"])
    assert m["imgScale"] * smallest_pt * plots._DPI / 72 >= 9.5, m  # px as shown; was ≈ 5

    shot = tmp_path / f"report-{size[0]}.png"
    height = min(max(m["pageHeight"], size[1]), 16_000)  # the whole page, tables included
    proc = screenshot_at(html, size[0], height, tmp_path, shot)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert _console_problems(proc.stderr) == []
    img = imread(str(shot))
    assert img.shape[1] == size[0] and img.shape[0] == height
    assert float(img[..., :3].std()) > 0.05  # not blank
    shutil.copyfile(shot, _artifacts_dir() / shot.name)
    if size == PHONE:
        shutil.copyfile(shot, _artifacts_dir() / "report-screenshot.png")


@needs_chromium
def test_chromium_layout_probe_catches_overflow(rendered, tmp_path):
    """Negative control: a page that forces a wide table is caught (so a pass means something)."""
    _, _, html, _ = rendered
    bad = html.replace("</style></head>", "table.stack td { white-space: nowrap !important; min-width: 900px; }"
                       "table.stack { display: table !important; }</style></head>")
    m = layout_at(bad, PHONE[0], tmp_path)
    assert m["tablesOverflowing"] > 0 and m["cellsOffScreen"] > 0, m
