"""The version of bptt: its one home (pyproject.toml reads it from here; nothing here imports)."""

__version__ = "0.1.0"
