#!/usr/bin/env bash
# Many-shot benchmark on a GPU machine (no internet): lm-eval vs our shared-prefix engine on a randomly initialised
# Qwen2.5-0.5B-shaped model, bf16, k=256 (~7,000-token prefix with the SmolLM2 tokenizer).
#
# Run from the repository root with the ignored folders .whl (wheels of lm-eval, datasets, pydantic, ... for
# Python 3.12 — what that machine lacks) and .gpu/tokenizer (SmolLM2's tokenizer files) present:
#     bash benchmarks/gpu_many_shot.sh
# Environment: OUT (log folder; default benchmarks/out), LIMIT (test items, default 150), KS (default 32,256),
# BENCH_TIMEOUT (seconds for the benchmark step, default 420), PYTHON (default python3), DEVICE / DTYPE (default
# cuda / bfloat16; cpu / float32 for a dry run of the whole flow on a CPU machine).
set -euo pipefail

OUT="${OUT:-$PWD/benchmarks/out}"
LIMIT="${LIMIT:-150}"
KS="${KS:-32,256}"
BENCH_TIMEOUT="${BENCH_TIMEOUT:-420}"
PY="${PYTHON:-python3}"
DEVICE="${DEVICE:-cuda}"
DTYPE="${DTYPE:-bfloat16}"
SITE="${SITE:-/tmp/site}"
mkdir -p "$OUT"
LOG="$OUT/many_shot.log"

export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export HF_HOME="${HF_HOME:-/tmp/tunecheck-hf-home}" TQDM_DISABLE=1

main() {
    echo "== $(date -u +%FT%TZ) host $(hostname)"
    command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,memory.used,driver_version --format=csv || true
    echo "== base environment"
    timeout 60 "$PY" - <<'EOF'
import importlib, sys
print("python", sys.version.split()[0])
for name in ("torch", "transformers", "huggingface_hub", "fsspec", "pyarrow", "pandas", "numpy", "peft", "accelerate", "tokenizers"):
    try:
        m = importlib.import_module(name)
        print(f"  {name} {getattr(m, '__version__', '?')}")
    except Exception as exc:  # noqa: BLE001
        print(f"  {name} MISSING ({exc})")
import torch
print("  cuda", torch.version.cuda, "available", torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")
EOF
    echo "== install wheels into $SITE"
    ls .whl/*.whl >/dev/null
    test -f .gpu/tokenizer/tokenizer.json
    timeout 180 "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" .whl/*.whl
    export PYTHONPATH="$SITE:$PWD"
    timeout 120 "$PY" - <<'EOF'
import datasets, lm_eval, pydantic
from lm_eval.models.huggingface import HFLM  # noqa: F401
from lm_eval.tasks import TaskManager  # noqa: F401
from evaluator.tasks.load import load_task
from evaluator.arms.lmeval import run_lmeval  # noqa: F401
t = load_task("snips_intents")
print(f"  imports ok: datasets {datasets.__version__}, lm_eval {lm_eval.__version__}, pydantic {pydantic.__version__}; "
      f"snips train {len(t.train)} test {len(t.test)}")
EOF
    echo "== benchmark (k=$KS, limit $LIMIT, timeout ${BENCH_TIMEOUT}s)"
    timeout "$BENCH_TIMEOUT" "$PY" benchmarks/many_shot.py --model random:qwen2.5-0.5b --tokenizer .gpu/tokenizer \
        --device "$DEVICE" --dtype "$DTYPE" --k "$KS" --limit "$LIMIT" --work-dir /tmp/tunecheck-lmeval
    echo "== done $(date -u +%FT%TZ)"
}

main 2>&1 | tee "$LOG"
