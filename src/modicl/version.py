"""The package version, written into every checkpoint sidecar (the same string as pyproject.toml's)."""

__version__ = "0.1.0"
