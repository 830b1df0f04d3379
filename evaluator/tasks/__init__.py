"""Tasks: the task file schema, loading items from local data or lm-eval, prompt templates rendered in a sandbox,
and `tunecheck tasks --check`."""
