"""LoRA training: examples from items, the answer-only loss, and the loop (`train_lora`) with its helpers for
data-parallel runs, OOM back-off, early stopping and measurement."""
