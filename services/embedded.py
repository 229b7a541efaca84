"""A data folder in embedded mode: the SQLite log, the projection store and the projector.

Layout (see README): <data>/log.db, <data>/projections/{state.duckdb,segments/},
<data>/artifacts/, and <data>/server.json while `deardiary serve` owns the folder
(services/discovery.py). A folder made by `deardiary replay --into` holds projections
only (no log): it is a frozen snapshot and is read as it is.

The projections are a cache of the log: damaged ones are moved aside and rebuilt.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import pyarrow as pa

from deardiary.projections.store import DuckDBProjectionStore
from deardiary.schemas.errors import Unavailable
from deardiary.services.log.sqlite import SqliteEventLog
from deardiary.services.projector import Projector
from deardiary.services.query.sandbox import OWNER, SqlSandbox
from deardiary.services.query.sql_relations import StoreRelations
from deardiary.services.rebuild import open_or_rebuild


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

    def __init__(
        self, root: str | Path, create_log: bool = True, hot_points_limit: int | None = None
    ) -> None:
        """Open the folder's log and projections. Damaged projections are moved aside and
        an empty store takes their place (`rebuild` says why); the projector refills it
        from the log at the next catch-up (services/rebuild.py)."""
        self.paths = DataPaths(root)
        self.paths.root.mkdir(parents=True, exist_ok=True)
        has_log = create_log or self.paths.log.exists()
        self.log = SqliteEventLog(str(self.paths.log)) if has_log else None
        opener: Callable[[Path], DuckDBProjectionStore] = DuckDBProjectionStore
        if hot_points_limit is not None:
            opener = partial(DuckDBProjectionStore, hot_points_limit=hot_points_limit)
        try:
            log_end = self.log.end_offsets() if self.log is not None else None
            self.store, self.rebuild = open_or_rebuild(self.paths.projections, log_end, opener)
        except BaseException:
            if self.log is not None:
                self.log.close()
            raise
        self.projector = Projector(self.log, self.store) if self.log is not None else None
        self._sandbox: SqlSandbox | None = None
        if self.rebuild is not None and self.projector is not None:
            self.projector.add_listener(self.rebuild.progress)

    @classmethod
    def open_when_free(
        cls,
        root: str | Path,
        timeout: float = 30.0,
        create_log: bool = True,
        hot_points_limit: int | None = None,
    ) -> EmbeddedStore:
        """Open, waiting while another process (a short-lived reader) holds the projections."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return cls(root, create_log=create_log, hot_points_limit=hot_points_limit)
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
        return self.sandbox().run(query).table

    def sandbox(self) -> SqlSandbox:
        """Where user SQL over this folder runs (services/query/sandbox.py), unscoped."""
        if self._sandbox is None:
            self._sandbox = SqlSandbox(StoreRelations(self.store), OWNER)
        return self._sandbox

    def close(self) -> None:
        if self._sandbox is not None:
            self._sandbox.close()
        self.store.close()
        if self.log is not None:
            self.log.close()

    def __enter__(self) -> EmbeddedStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
