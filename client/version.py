"""The release, without importlib.metadata (which costs a trial process ~10 ms to import).

tests/unit/test_client_package.py keeps it equal to pyproject.toml's version."""

__version__ = "0.1.0"
