"""Print the README's demo excerpt from a real run: `python docs/demo_excerpt.py runs/demo-snips-<id>`.

The README quotes a demo run's report.md; this cuts the quoted parts out of it verbatim (never retyped), so the
excerpt can be regenerated after any change: verdict through the units table, the paired comparisons, and the cost
table with its request line. Break-even lines, assumptions and "how" details stay in the report.
"""

from __future__ import annotations

import sys
from pathlib import Path


def excerpt(report_md: str) -> str:
    lines = report_md.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith("**Verdict:"))
    out: list[str] = []
    skip = False
    for ln in lines[start:]:
        if ln.startswith("Break-even volumes:"):
            break
        if ln.startswith("`max` for"):
            skip = False
        if ln.startswith("**What would settle it:**"):  # the verdict already says how many; the method is in the report
            skip = True
            continue
        if skip and not ln.strip():
            skip = False
            continue
        if not skip:
            out.append(ln.replace("### ", "#### "))
    return "\n".join(out).rstrip() + "\n"


if __name__ == "__main__":
    run = Path(sys.argv[1])
    sys.stdout.write(excerpt((run / "report.md").read_text(encoding="utf-8")))
