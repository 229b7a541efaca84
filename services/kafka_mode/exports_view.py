"""The query service's view of all partitions in Kafka mode: one in-memory DuckDB whose
relations union every partition's latest export, refreshed when a manifest changes.

The relations have the same names and columns as in embedded mode, so every query,
route and permission check runs unchanged on top.
"""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import duckdb
import pyarrow as pa

from deardiary.projections.store import POINT_COLUMNS, schema_sql
from deardiary.services.kafka_mode.partitions import EXPORTED, read_manifests
from deardiary.services.query.sql_relations import MetricParts

POLL_S = 0.05


def _list(paths: list[str]) -> str:
    return "[" + ", ".join("'" + p.replace("'", "''") + "'" for p in paths) + "]"


class ExportsView:
    def __init__(self, data: Path, refresh_s: float = 0.2) -> None:
        self.data = Path(data)
        self.refresh_s = refresh_s
        self.conn = duckdb.connect()
        self.conn.execute("CREATE SCHEMA empty")
        self.conn.execute("SET schema = 'empty'")
        self.conn.execute(schema_sql())  # typed empty tables, for relations with no export
        self.conn.execute("SET schema = 'main'")
        self._lock = threading.Lock()
        self._seen: str = "-"
        self._checked = 0.0
        self.offsets: dict[int, int] = {}
        self._point_files: list[str] = []  # segments and hot points of the manifests read
        self._poller: ThreadPoolExecutor | None = None
        self._refreshing: asyncio.Future[None] | None = None
        self.refresh(force=True)

    def refresh(self, force: bool = False) -> None:
        with self._lock:
            if not force and time.monotonic() - self._checked < self.refresh_s:
                return
            self._checked = time.monotonic()
            manifests = read_manifests(self.data)
            key = repr([(m["partition"], m["next_offsets"], m["tables"]) for m in manifests])
            if key == self._seen:
                return
            offsets: dict[int, int] = {}
            for m in manifests:
                for p, o in dict(m["next_offsets"]).items():  # type: ignore[call-overload]
                    offsets[int(p)] = int(o)
            for table in EXPORTED:
                files = [str(dict(m["tables"])[table]) for m in manifests]  # type: ignore[call-overload]
                source = (
                    f"SELECT * FROM read_parquet({_list(files)})"
                    if files
                    else f"SELECT * FROM empty.{table}"
                )
                self.conn.execute(f"CREATE OR REPLACE VIEW {table} AS {source}")
            segments = [str(s) for m in manifests for s in list(m["segments"])]  # type: ignore[call-overload]
            metrics = f"SELECT {POINT_COLUMNS} FROM metric_points_hot"
            if segments:
                metrics += f" UNION ALL SELECT {POINT_COLUMNS} FROM read_parquet({_list(segments)})"
            self.conn.execute(f"CREATE OR REPLACE VIEW metrics AS {metrics}")
            hot = [str(dict(m["tables"])["metric_points_hot"]) for m in manifests]  # type: ignore[call-overload]
            self._point_files = segments + hot
            self.offsets = offsets
            self._seen = key

    def reader(self) -> duckdb.DuckDBPyConnection:
        self.refresh()
        with self._lock:
            return self.conn.cursor()

    def metric_parts(
        self, conn: duckdb.DuckDBPyConnection, readable: pa.Table | None, columns: frozenset[str]
    ) -> MetricParts:
        """For the SQL sandbox: every metric point is in a published Parquet file."""
        with self._lock:
            return MetricParts(list(self._point_files))

    def published(self) -> bool:
        """Whether any worker has published a partition yet."""
        return bool(read_manifests(self.data))

    def applied(self) -> dict[int, int]:
        """The offsets of the exports read last (the query service's `Progress`)."""
        return dict(self.offsets)

    async def reached(self, target: dict[int, int], timeout: float) -> bool:
        """Read-your-writes holding no thread while it waits: the manifests are polled by one
        refresh at a time, on a thread of its own, shared by every waiter."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            if self._refreshing is None or self._refreshing.done():
                if self._poller is None:
                    self._poller = ThreadPoolExecutor(1, thread_name_prefix="deardiary-manifests")
                self._refreshing = loop.run_in_executor(self._poller, self.refresh, True)
            await asyncio.shield(self._refreshing)
            if all(self.offsets.get(p, 0) >= o for p, o in target.items()):
                return True
            if loop.time() >= deadline:
                return False
            await asyncio.sleep(min(POLL_S, max(0.0, deadline - loop.time())))

    def close(self) -> None:
        if self._poller is not None:
            self._poller.shutdown(wait=True, cancel_futures=True)
        self.conn.close()
