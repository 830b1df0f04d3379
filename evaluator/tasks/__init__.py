"""Tasks: the task file schema (`spec`), loading items from local data (`data`, `load`) or lm-eval (`lmeval`,
`from_lmeval`), prompt templates rendered in a sandbox (`templates`), the prompt text layout (`layout`), and
`tunecheck tasks --check` (`check`)."""
