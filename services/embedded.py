"""A data folder in embedded mode: the SQLite log, the projection store and the projector.

Layout (see README): <data>/log.db, <data>/projections/{state.duckdb,segments/},
<data>/artifacts/. A folder made by `deardiary replay --into` holds projections only
(no log): it is a frozen snapshot and is read as it is.
"""

from __future__ import annotations

import time
from pathlib import Path

import pyarrow as pa

from deardiary.projections.queries.sql import run_read_only
from deardiary.projections.store import DuckDBProjectionStore
from deardiary.schemas.errors import Unavailable
from deardiary.services.log.sqlite import SqliteEventLog
from deardiary.services.projector import Projector


class DataPaths:
    """Where each part of a data folder lives."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.log = self.root / "log.db"
        self.projections = self.root / "projections"
        self.artifacts = self.root / "artifacts"

    @property
    def log_url(self) -> str:
        return f"sqlite://{self.log}"


class EmbeddedStore:
    """Owns a data folder's projections in this process; reads catch up with the log first."""

    def __init__(self, root: str | Path, create_log: bool = True) -> None:
        self.paths = DataPaths(root)
        self.paths.root.mkdir(parents=True, exist_ok=True)
        has_log = create_log or self.paths.log.exists()
        self.log = SqliteEventLog(str(self.paths.log)) if has_log else None
        self.store = DuckDBProjectionStore(self.paths.projections)
        self.projector = Projector(self.log, self.store) if self.log is not None else None

    @classmethod
    def open_when_free(
        cls, root: str | Path, timeout: float = 30.0, create_log: bool = True
    ) -> EmbeddedStore:
        """Open, waiting while another process (a short-lived reader) holds the projections."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return cls(root, create_log=create_log)
            except Unavailable:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.05)

    def catch_up(self) -> None:
        if self.projector is not None:
            self.projector.catch_up()

    def sql(self, query: str) -> pa.Table:
        """Read-only SQL over the projections, after catching up with the log."""
        self.catch_up()
        return run_read_only(self.store.reader(), query)

    def close(self) -> None:
        self.store.close()
        if self.log is not None:
            self.log.close()

    def __enter__(self) -> EmbeddedStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
