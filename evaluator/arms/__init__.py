"""The three arms as units of work: prompting (A, C) and LoRA (B) evaluated on the same test items, through the
prefix-cached engine or lm-eval, with adapters trained or reused by key."""
