"""Reports of a stored run: the report dict (analysis + costs), Markdown and HTML renderings, plots, comparing
runs, and exporting samples. Reads the store; never loads a model."""
