#!/usr/bin/env bash
# LoRA training throughput on the GPU machine: tunecheck's trainer vs a plain default transformers Trainer on a
# randomly initialised Qwen2.5-0.5B-shaped model (see benchmarks/lora_throughput.py for what is measured and how).
# Run from the repo root. Whole script < 150 s on one H100: ~20 s start-up per Python run, each trainer's timed phase
# capped at MAX_S seconds (normally 200 steps finish well before); the mixed-length run (half the steps and batch,
# 15 s caps) only if under 60 s were used: worst case ~125 s plus the wheel install.
# CPU flow test: DEVICE=cpu STEPS=2 WARMUP=1 BATCH=2 EXTRA="--num-layers 2" MIXED=0 bash benchmarks/gpu_lora.sh
set -euo pipefail
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export HF_HOME="${HF_HOME:-/tmp/tunecheck-hf-home}"
OUT="${OUT:-benchmarks/out}"
DEVICE="${DEVICE:-cuda}"
STEPS="${STEPS:-200}"
WARMUP="${WARMUP:-3}"
BATCH="${BATCH:-32}"
MAX_S="${MAX_S:-25}"
MIXED="${MIXED:-1}"
TOKENIZER="${TOKENIZER:-.gpu/tokenizer}"
EXTRA="${EXTRA:-}"
mkdir -p "$OUT"
LOG="$OUT/lora.log"
: > "$LOG"
if [ ! -f "$TOKENIZER/tokenizer.json" ]; then
  echo "no tokenizer at $TOKENIZER (copy tokenizer.json + tokenizer_config.json of a converted smollm2-135m there)" | tee -a "$LOG"
  exit 2
fi
{ command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv,noheader; } 2>&1 | tee -a "$LOG" || true
python3 -c 'import torch, transformers, peft, accelerate; print("torch", torch.__version__, "transformers", transformers.__version__, "peft", peft.__version__, "accelerate", accelerate.__version__)' 2>&1 | tee -a "$LOG"

echo "== zero-shot SNIPS prompts (what arm B trains), batch $BATCH ==" | tee -a "$LOG"
# shellcheck disable=SC2086
python3 benchmarks/lora_throughput.py --model random:qwen2.5-0.5b --tokenizer "$TOKENIZER" --device "$DEVICE" \
  --steps "$STEPS" --warmup "$WARMUP" --batch-size "$BATCH" --max-seconds "$MAX_S" $EXTRA 2>&1 | tee -a "$LOG"
FIRST=$(grep '^lora_throughput ' "$LOG" | tail -1)

if [ "$MIXED" = "1" ] && [ "$SECONDS" -lt 60 ]; then
  echo "== mixed lengths (0-8 demonstrations per example), batch $((BATCH / 2)) ==" | tee -a "$LOG"
  # shellcheck disable=SC2086
  python3 benchmarks/lora_throughput.py --model random:qwen2.5-0.5b --tokenizer "$TOKENIZER" --device "$DEVICE" \
    --steps $((STEPS / 2)) --warmup "$WARMUP" --batch-size $((BATCH / 2)) --max-seconds 15 --mixed-lengths $EXTRA 2>&1 | tee -a "$LOG" || true
else
  echo "(mixed-length run skipped: ${SECONDS}s used)" | tee -a "$LOG"
fi
echo "gpu_lora total ${SECONDS}s" | tee -a "$LOG"
echo "$FIRST" | tee -a "$LOG"
