"""The `tunecheck` command: one module per verb, every error one line with exit code 2."""
