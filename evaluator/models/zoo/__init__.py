"""The model zoo: small real models that arrive through PyPI, registered, fetched with pip and converted."""
