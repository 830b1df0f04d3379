"""The cost model: inputs (the one cost schema), workload, self-hosting, API prices and cost, break-even, the
article's scenario, and costs of a stored run. Pure (no torch, no model code)."""
