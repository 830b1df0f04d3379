"""Fault injection for resume tests: `TUNECHECK_KILL_AT=<event>:<n>` SIGKILLs the process at the n-th <event>.

Events are the durable steps of a run (`append_items`, `finish_unit`, `adapter_saved`, `train_step`, and
`report_write`: a report file written to its temporary file but not yet renamed). Off unless the
variable is set; it exists so tests can kill a real run at exact points instead of racing a timer.
"""

from __future__ import annotations

import os
import signal
from collections import Counter

_counts: Counter[str] = Counter()


def checkpoint(event: str) -> None:
    spec = os.environ.get("TUNECHECK_KILL_AT")
    if not spec:
        return
    _counts[event] += 1
    name, _, n = spec.partition(":")
    if name == event and _counts[event] == int(n or 1):
        os.kill(os.getpid(), signal.SIGKILL)
