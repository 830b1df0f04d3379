"""The job file: its schema (pydantic), YAML loading that refuses duplicate keys and YAML booleans, and the
one-line validation messages every input shares."""
