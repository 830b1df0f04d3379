#!/usr/bin/env bash
# One-time set-up on a fresh machine: a virtualenv in .venv with CPU torch first (on a GPU node, install the CUDA
# build of torch you want before running this, or set TORCH_SPEC), then tunecheck and its test extras.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
if ! python -c "import torch" 2>/dev/null; then
  python -m pip install -q "${TORCH_SPEC:-torch==2.13.0}"
fi
python -m pip install -q -e ".[test]"
echo "tunecheck installed in $(pwd)/.venv ($(python -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__)'))"
