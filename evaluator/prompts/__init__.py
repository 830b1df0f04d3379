"""From a task's items to token ids: the shared k-demonstration prefix, per-item queries and answer continuations,
tokenised once and checked against whole-string tokenisation."""
