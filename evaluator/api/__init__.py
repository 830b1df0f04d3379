"""Hosted API models (OpenAI-compatible endpoints) as options of a run: the model reference, the HTTP client with
retries and a response cache, and token counting for prompts sent to it. No torch: an API model has no weights here."""
