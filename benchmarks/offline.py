"""What every benchmark script does first: no hub or dataset downloads (this machine is offline; the GPU machine
too), no tokenizer thread pool fighting the model's threads, and the repository importable when a script is run as
`python benchmarks/<script>.py`. Import it before anything from transformers or evaluator: `from offline import REPO`."""

from __future__ import annotations

import os
import sys
from pathlib import Path

for _var, _value in (("HF_HUB_OFFLINE", "1"), ("HF_DATASETS_OFFLINE", "1"), ("TRANSFORMERS_OFFLINE", "1"),
                     ("TOKENIZERS_PARALLELISM", "false")):
    os.environ.setdefault(_var, _value)

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
