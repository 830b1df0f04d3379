"""LoRA fine-tuning (arm B): a lean, readable training loop on peft + accelerate, `loop.train_lora`, and the parts it
calls — `data` (examples, validation split, batches), `loss` (answer-only loss, validation metrics), `adapter` (LoRA
targets, attach, save), `precision` (bf16 autocast, TF32, float16 loss scaling), `optim` (AdamW, schedule, clipping),
`distributed` (one process or DDP), `backoff` (out-of-memory retries), `early_stop` (validation, patience, best
weights) and `measure` (timings, tokens, peak memory, `TrainResult`). `sweep.train_lora_sweep` trains the
learning-curve sweep's adapters (one per training size) together over the one frozen base, each equal to what
`train_lora` trains alone.

Why a loop of our own and not `transformers.Trainer`: arm B needs exactly this and nothing else —
* the instruction every training prompt starts with runs once per micro-batch, not once per row (`data.
  shared_prefix_len`, `loss._shared_prefix_cache`): its keys/values, computed with grad, are repeated to the rows,
  so the loss and the LoRA gradients are those of every row running it (tests/test_training.py) for about a third
  of the tokens on SNIPS (55 of each row's ~82 tokens are the instruction; a default Trainer runs them 8 times);
* loss on answer tokens only, over exactly the token ids the scorer uses, and logits computed ONLY at those
  positions (a default Trainer computes, up-casts to fp32 and back-propagates [tokens x vocab] logits for every
  token; on Qwen2.5-0.5B the 152k-row head is ~28% of the weights and the largest activation of the step);
* length-grouped batches (a default Trainer pads random batches to their longest item);
* no host<->device synchronisation per step (a default Trainer checks the loss for NaN/inf, copies batches with
  blocking copies and counts label tokens on the host every step; each stalls the GPU queue): batches are copied
  from pinned memory without blocking, losses stay on the device until an evaluation point;
* bf16 autocast on GPUs that support it, fused AdamW on CUDA, TF32 matmuls; float16 weights (GPUs without bf16)
  train with loss scaling (torch.amp.GradScaler: unscale before clipping, skip overflowed steps);
* exact measurements (train seconds, non-pad tokens, peak memory, adapter size) and a validation slice with early
  stopping that restores the best adapter weights.
`benchmarks/lora_throughput.py` measures the difference against a plain default `Trainer` on the same model and data.
The same code runs in one process and under `accelerate launch` (DDP; `hp.batch_size` is the global batch size).
"""
