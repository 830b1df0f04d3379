#!/usr/bin/env bash
# One-time set-up on a fresh machine: a virtualenv in .venv with CPU torch first (on a GPU node, install the CUDA
# build of torch you want before running this, or set TORCH_SPEC), then tunecheck and its test extras.
# One line per stage; pip's own output only when a stage fails.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
log=$(mktemp)
trap 'rm -f "$log"' EXIT
stage() {  # stage N/M "what" command...: run quietly, print one line with its time, show pip's log on failure
  local n=$1 what=$2; shift 2
  local t0=$SECONDS
  printf 'setup %s %s ... ' "$n" "$what"
  if "$@" >"$log" 2>&1; then
    printf 'done (%ss)\n' "$((SECONDS - t0))"
    # warnings still reach you, one line each — except setuptools' notice that an editable install is editable and
    # pip's note that a configured extra index has no page for some package (the package came from another index)
    grep -i 'warning' "$log" | grep -v -e 'BuildBackendWarning: Editable installation' \
      -e "WARNING: Location '.*' is ignored: it is neither a file nor a directory" | sed 's/^ */  /' || true
  else
    printf 'FAILED\n'; cat "$log"; exit 1
  fi
}
if [ -x .venv/bin/python ]; then
  echo "setup 1/4 virtualenv .venv ... exists"
else
  stage 1/4 "virtualenv .venv" "$PY" -m venv .venv
fi
. .venv/bin/activate
stage 2/4 "pip upgrade" python -m pip install -q --upgrade pip
if python -c "import torch" 2>/dev/null; then
  echo "setup 3/4 torch ... present ($(python -c 'import torch; print(torch.__version__)'))"
else
  stage 3/4 "torch (${TORCH_SPEC:-torch==2.13.0})" python -m pip install -q "${TORCH_SPEC:-torch==2.13.0}"
fi
stage 4/4 "tunecheck and its test extras" python -m pip install -q -e ".[test]"
echo "tunecheck installed in $(pwd)/.venv ($(python -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__)'))"
echo "run it as .venv/bin/tunecheck (or: source .venv/bin/activate, then tunecheck)"
