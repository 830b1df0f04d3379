"""report.html's fixed parts: the Content-Security-Policy, figure titles and captions, verdict colour classes, and
the inline style sheet (wide container, wrapping tables that stack into cards at ≤ 640 px, a figure grid; why:
``evaluator.report.html``'s docstring)."""

from __future__ import annotations

__all__ = ["CSP", "FIGURE_TITLES", "OUTCOME_CLASS", "CSS"]

CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"

FIGURE_TITLES = {
    "learning_curves": (
        "Learning curves",
        "Quality vs examples used: prompting vs k demonstrations (A, and each newer base C), LoRA vs n training "
        "examples (B). Bands: 95% CIs. Dotted: best prompting point of the base; star: crossover.",
    ),
    "quality_vs_cost": (
        "Quality vs monthly cost",
        "Each option at its best point at the stated volume, as it is served: self-hosted (circles) or a hosted API "
        "at the usage measured in this run (diamonds); dashed: the Pareto frontier (no cheaper option is better).",
    ),
    "cost_vs_volume": (
        "Monthly cost vs volume",
        "Self-hosted (solid; dotted: without prefix cache, estimate), the API with the same prompts (dashed) and "
        "each API option at its measured usage (dash-dot) monthly cost as traffic grows; circles: break-even volumes.",
    ),
}

OUTCOME_CLASS = {
    "no_option_works": "warn",
    "not_needed": "good",
    "not_needed_newer_base": "good",
    "justified": "warn",
    "inconclusive": "neutral",
}

CSS = """
:root { --fg:#1d1f23; --muted:#5b6270; --line:#d9dde3; --bg:#ffffff; --soft:#f5f7fa; --accent:#1f5fbf; }
* { box-sizing: border-box; }
html { -webkit-text-size-adjust: 100%; text-size-adjust: 100%; }
body { margin:0; background:var(--bg); color:var(--fg);
  font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width: 1320px; margin: 0 auto; padding: 16px; }
h1 { font-size: 1.45rem; margin: 0.2em 0 0.3em; line-height: 1.25; }
h2 { font-size: 1.2rem; margin: 1.6em 0 0.5em; padding-top: 0.6em; border-top: 2px solid var(--line); }
h3 { font-size: 1.02rem; margin: 1.3em 0 0.4em; }
p, li { overflow-wrap: anywhere; }
p, ul, figcaption { max-width: 110ch; }
code { font: 0.9em ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; background: var(--soft);
  padding: 0 0.25em; border-radius: 3px; overflow-wrap: anywhere; }
.meta { color: var(--muted); font-size: 0.9rem; }
.banner { padding: 10px 12px; border-radius: 6px; background: #fff4e5; border: 1px solid #f0c27a; margin: 12px 0; }
.verdict { padding: 12px 14px; border-radius: 8px; border: 1px solid var(--line); background: var(--soft);
  margin: 10px 0 14px; border-left-width: 6px; }
.verdict.good { border-left-color: #2e8b57; } .verdict.warn { border-left-color: #c0392b; }
.verdict.neutral { border-left-color: #7f8c8d; }
.verdict .title { font-size: 1.1rem; font-weight: 700; margin: 0 0 4px; }
.verdict ul { margin: 6px 0 0; padding-left: 1.2em; }
.figs { display: grid; grid-template-columns: repeat(auto-fill, minmax(min(100%, 480px), 1fr)); gap: 4px 20px;
  align-items: start; }
figure { margin: 14px 0 18px; min-width: 0; }
figure img { display: block; width: 100%; max-width: 100%; height: auto; border: 1px solid var(--line);
  border-radius: 4px; background: #fff; }
figcaption { color: var(--muted); font-size: 0.85rem; margin-top: 4px; }
.scroll { width: 100%; overflow-x: auto; -webkit-overflow-scrolling: touch; margin: 6px 0 12px;
  border: 1px solid var(--line); border-radius: 4px; }
table { border-collapse: collapse; min-width: 100%; font-size: 0.86rem; font-variant-numeric: tabular-nums; }
th, td { padding: 5px 8px; border-bottom: 1px solid var(--line); text-align: left; white-space: nowrap;
  vertical-align: top; }
th { background: var(--soft); font-weight: 600; position: sticky; top: 0; white-space: normal; vertical-align: bottom;
  overflow-wrap: normal; }
td.num, th.num { text-align: right; }
td.wrap { white-space: normal; min-width: 12em; overflow-wrap: anywhere; }  /* URLs and paths break too */
details { margin: 8px 0; } summary { cursor: pointer; color: var(--accent); }
.small { font-size: 0.85rem; color: var(--muted); }
footer { margin-top: 2.5em; padding-top: 0.8em; border-top: 1px solid var(--line); color: var(--muted);
  font-size: 0.8rem; }
@media (max-width: 600px) { main { padding: 10px; } body { font-size: 14px; } h1 { font-size: 1.25rem; } }
@media (max-width: 640px) {
  .scroll { border: 0; }
  table.stack, table.stack tbody, table.stack tr { display: block; min-width: 0; width: 100%; }
  table.stack thead { display: none; }
  table.stack tr { border: 1px solid var(--line); border-radius: 4px; margin: 0 0 8px; }
  /* each cell a two-cell row: the label (::before) and, in one anonymous cell, all of the value (text, <br>, <strong>)
     so a long value wraps in its own column instead of under the label */
  table.stack td { display: table; table-layout: fixed; width: 100%; border-collapse: separate; border-spacing: 0;
    white-space: normal; text-align: left;
    overflow-wrap: anywhere; }
  table.stack tr td:last-child { border-bottom: 0; }
  table.stack td::before { display: table-cell; width: 42%; padding-right: 10px; color: var(--muted);
    font-weight: 600; overflow-wrap: normal; }
}
"""
