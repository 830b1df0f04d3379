"""The run folder: atomic writes, per-item results appended as produced, unit records and their validation."""
