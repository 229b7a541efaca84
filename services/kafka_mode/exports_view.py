"""The query service's view of all partitions in Kafka mode: a DuckDB of its own, kept up
to date from the workers' export chains (services/kafka_mode/partitions.py).

A thread follows the manifests (in the shared folder, or in an S3-compatible bucket:
services/kafka_mode/object_store.py) and applies each partition's new entries in one
transaction: upserted rows replace the rows with their keys, appended rows are added.
Metric points are never copied: the metric segments, their tiles and the chain's files of
points not compacted yet are read in place (from the bucket: downloaded once into a
cache, they never change), through views each refresh points at the newest manifests'
files -- a partition's entries cover disjoint offset ranges, and its points below
`hot_below` (compacted into segments since) are filtered out. (Copying the points into
this view's own DuckDB was most of the query side's CPU under ingest.) Readers see the
relations under the same names and columns as in embedded mode, so every query, route,
permission check and the SQL sandbox run unchanged on top -- including downsampling from
tiles.

The view is only a cache of the exports: several query services can run side by side,
each with its own, and a restarted one rebuilds it from the chains. Its database lives
in a temporary folder (a million iterations per partition need not fit in memory).

Permissions are the one relation written by two partitions (a project's creator is
granted everything by the project's ProjectCreated; grants and revocations are keyed by
the user): the latest row by log time wins.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import duckdb
import pyarrow as pa

from deardiary.projections.queries.segment_files import (
    FILES_VIEW,
    HOT_SERIES_VIEW,
    UNKNOWN_HOT_SERIES,
    files_view_sql,
)
from deardiary.projections.store import POINT_COLUMNS, schema_sql
from deardiary.projections.writes import PRIMARY_KEYS
from deardiary.services.kafka_mode.partitions import (
    APPENDED,
    HOT,
    MANIFEST,
    Manifest,
    entry_points,
    partition_dir,
    quote,
    read_manifest,
)
from deardiary.services.query.sql_relations import SCAN_ORDER, MetricParts

_log = logging.getLogger("deardiary.exports")
POLL_S = 0.05
RELIST_S = 1.0
"""How often the partitions' folders are listed again even when their parent seems unchanged."""


class ExportSource(Protocol):
    """Where the manifests and the files they name are."""

    def manifests(self) -> dict[int, Manifest]:
        """The latest manifest of every partition that has one."""
        ...

    def fetch(self, partition: int, manifest: Manifest, path: str) -> str:
        """A local path of the file `path` (relative to the partition) of `manifest`."""
        ...

    def close(self) -> None: ...


class FolderSource:
    """Exports in a folder the workers share with this service.

    The view asks for the manifests every `refresh_s` (the benchmark: every 20 ms), nearly
    always to find them unchanged. A glob of ``partitions/p*/manifest.json`` cost ~140 us
    a call here (a stat of every folder and file it walks); the partition folders are now
    listed again only when the ``partitions`` folder changes (a new partition's folder)
    or RELIST_S have passed, and each known manifest is looked at with one stat (~30 us)."""

    def __init__(self, data: Path) -> None:
        self.data = Path(data)
        self._seen: dict[str, tuple[int, int, Manifest]] = {}
        self._listed: tuple[int, float, list[str]] | None = None  # (mtime, until, paths)

    def _manifest_paths(self) -> list[str]:
        root = str(self.data / "partitions")
        try:
            stamp = os.stat(root).st_mtime_ns
        except OSError:
            return []
        now = time.monotonic()
        listed = self._listed
        if listed is None or listed[0] != stamp or now >= listed[1]:
            try:
                with os.scandir(root) as entries:
                    names = sorted(e.name for e in entries if e.name.startswith("p") and e.is_dir())
            except OSError:
                return []
            listed = self._listed = (
                stamp,
                now + RELIST_S,
                [os.path.join(root, name, MANIFEST) for name in names],
            )
        return listed[2]

    def manifests(self) -> dict[int, Manifest]:
        found: dict[int, Manifest] = {}
        for path in self._manifest_paths():
            try:
                stat = os.stat(path)
            except OSError:
                continue
            known = self._seen.get(path)
            if known is not None and known[:2] == (stat.st_mtime_ns, stat.st_size):
                manifest: Manifest | None = known[2]
            else:
                manifest = read_manifest(Path(path))
                if manifest is not None:
                    self._seen[path] = (stat.st_mtime_ns, stat.st_size, manifest)
            if manifest is not None:
                found[int(manifest["partition"])] = manifest
        return found

    def fetch(self, partition: int, manifest: Manifest, path: str) -> str:
        return str(partition_dir(self.data, partition) / path)

    def close(self) -> None:
        pass


@dataclass
class _Partition:
    store_id: str = ""
    applied: int = 0  # the next offset of what this view holds
    entries: set[str] = field(default_factory=set)
    segments: list[str] = field(default_factory=list)  # local paths
    tiles: list[str] = field(default_factory=list)
    hot: list[str] = field(default_factory=list)  # the chain's files of points, in order
    files: tuple[list[str], int] = ([], 0)  # the manifest's segments and hot_below


def _list(paths: list[str]) -> str:
    return "[" + ", ".join(quote(p) for p in paths) + "]"


class ExportsView:
    def __init__(
        self,
        data: Path,
        refresh_s: float = 0.1,
        exports: str | None = None,
        follow: bool = True,
    ) -> None:
        """The exports under `data`, or in the bucket `exports` names (s3://bucket/prefix)."""
        self.data = Path(data)
        self._dir = Path(tempfile.mkdtemp(prefix="deardiary-exports-view-"))
        self.source: ExportSource = FolderSource(self.data)
        if exports:
            from deardiary.services.kafka_mode.object_store import S3Source

            self.source = S3Source(exports, self._dir / "files")
        self.refresh_s = refresh_s
        self.conn = duckdb.connect(str(self._dir / "view.duckdb"))
        # Every file the views read is immutable (written aside, renamed, never rewritten),
        # so each file's Parquet footer is read once, not by every query.
        self.conn.execute("SET parquet_metadata_cache = true")
        self._segment_files: tuple[list[str], list[str]] | None = None  # of the views now
        self._create()
        self._lock = threading.Lock()  # one refresh at a time
        self._reader_lock = threading.Lock()
        self._root = self.conn.cursor()
        self.parts: dict[int, _Partition] = {}
        self.offsets: dict[int, int] = {}
        self.last_error = ""
        self._stop = threading.Event()
        self._changed = threading.Condition()
        self.refresh()
        self.conn.execute("CHECKPOINT")  # the first load's write-ahead log, now, not later
        self._thread: threading.Thread | None = None
        if follow:
            self._thread = threading.Thread(target=self._follow, name="exports-view", daemon=True)
            self._thread.start()

    def _create(self) -> None:
        """Tables like the store's (typed, no keys: rows of several partitions), with the
        partition each upserted row came from, and the relations as views over them."""
        c = self.conn
        c.execute("CREATE SCHEMA store")
        c.execute("SET schema = 'store'")
        c.execute(schema_sql())
        c.execute("SET schema = 'main'")
        c.execute("CREATE SCHEMA m")
        for table in PRIMARY_KEYS:
            c.execute(f"CREATE TABLE m.{table} AS SELECT *, 0 AS _p FROM store.{table} LIMIT 0")
            if table == "permissions":
                c.execute(
                    f"CREATE VIEW {table} AS SELECT * EXCLUDE (_p) FROM m.{table} QUALIFY"
                    " row_number() OVER (PARTITION BY user_id, project_id"
                    " ORDER BY updated_at DESC, _p DESC) = 1"
                )
            else:
                c.execute(f"CREATE VIEW {table} AS SELECT * EXCLUDE (_p) FROM m.{table}")
        for table in APPENDED:
            c.execute(f"CREATE TABLE m.{table} AS SELECT * FROM store.{table} LIMIT 0")
            c.execute(f"CREATE VIEW {table} AS SELECT * FROM m.{table}")
        # never holds a row: the typed start of the points' views, whatever files follow
        c.execute(f"CREATE TABLE m.no_points AS SELECT {POINT_COLUMNS} FROM store.{HOT} LIMIT 0")
        self._point_views({})
        c.execute(f"CREATE VIEW {HOT_SERIES_VIEW} AS {UNKNOWN_HOT_SERIES}")  # hot: any series
        c.execute("DROP SCHEMA store CASCADE")

    def _point_views(self, parts: dict[int, _Partition]) -> None:
        """The points, segments and tiles of `parts`, read in place from their files."""
        c = self.conn
        segments = [s for _, part in sorted(parts.items()) for s in part.segments]
        tiles = [t for _, part in sorted(parts.items()) for t in part.tiles]
        hot = "".join(
            f" UNION ALL SELECT {POINT_COLUMNS} FROM read_parquet({_list(part.hot)})"
            f' WHERE "offset" >= {int(part.files[1])}'
            for _, part in sorted(parts.items())
            if part.hot
        )
        c.execute(f"CREATE OR REPLACE VIEW {HOT} AS SELECT * FROM m.no_points{hot}")
        if (segments, tiles) == self._segment_files:
            return  # `metrics` names the view above: DuckDB binds views as they are queried
        self._segment_files = (segments, tiles)
        if segments:
            points = f"SELECT {POINT_COLUMNS} FROM read_parquet({_list(segments)})"
            tile_rows = f"SELECT * FROM read_parquet({_list(tiles)})"
        else:
            points = "SELECT * FROM m.no_points"
            tile_rows = (
                "SELECT ''::VARCHAR AS iteration_id, ''::VARCHAR AS key, 0::BIGINT AS tile,"
                " 0::BIGINT AS points, 0::BIGINT AS first_step, 0::BIGINT AS last_step,"
                " NULL AS low, NULL AS high WHERE false"
            )
        c.execute(f"CREATE OR REPLACE VIEW metric_segment_points AS {points}")
        c.execute(f"CREATE OR REPLACE VIEW {FILES_VIEW} AS {files_view_sql(segments, tiles)}")
        c.execute(f"CREATE OR REPLACE VIEW metrics AS {points} UNION ALL SELECT * FROM {HOT}")
        c.execute(f"CREATE OR REPLACE VIEW metric_tiles AS {tile_rows}")

    # -- following the exports ---------------------------------------------------------------

    def _follow(self) -> None:
        while not self._stop.wait(self.refresh_s):
            self.refresh()

    def refresh(self, force: bool = False) -> None:
        """Apply what the manifests show beyond this view (`force` is accepted for callers
        that used to throttle it: every call looks)."""
        with self._lock:
            try:
                self._refresh()
                self.last_error = ""
            except Exception as exc:  # a file gone under an old manifest, the bucket away
                self.last_error = f"{type(exc).__name__}: {exc}"
                _log.warning("refreshing the exports view failed: %s", self.last_error)
        with self._changed:
            self._changed.notify_all()

    def _refresh(self) -> None:
        plans = []
        for p, manifest in sorted(self.source.manifests().items()):
            plan = self._plan(p, manifest)
            if plan is not None:
                plans.append(plan)
        if not plans:
            return
        staged = {plan[0]: self._stage(plan[0], plan[1]) for plan in plans}  # downloads first
        parts = {**self.parts, **staged}
        c = self.conn
        c.execute("BEGIN TRANSACTION")
        try:
            for p, manifest, fresh, start, entries in plans:
                if fresh:
                    self._forget(p)
                held = None if fresh else self.parts.get(p)
                if held is None:
                    self._load(p, manifest, entries)  # nothing held: one statement a table
                else:
                    for entry in entries:
                        self._apply_entry(p, manifest, entry, start)
            self._point_views(parts)
            c.execute("COMMIT")
        except BaseException:
            c.execute("ROLLBACK")
            self._segment_files = None  # the views are as they were: made again next time
            raise
        self.parts = parts
        self.offsets = {p: part.applied for p, part in parts.items()}

    def _plan(
        self, p: int, manifest: Manifest
    ) -> tuple[int, Manifest, bool, int, list[dict[str, Any]]] | None:
        """What to apply of a partition's manifest: (p, manifest, start afresh, from which
        offset, the entries); None when the view holds it already."""
        state = self.parts.get(p)
        end = int(manifest["next_offset"])
        chain: list[dict[str, Any]] = manifest["chain"]
        if state is None:
            return (p, manifest, False, 0, chain)
        if state.store_id != manifest["store_id"]:
            if end < state.applied:
                return None  # a store rebuilt elsewhere: switch once it has caught up
            return (p, manifest, True, 0, chain)
        pending = [e for e in chain if int(e["to"]) > state.applied]
        same = (list(manifest["segments"]), int(manifest["hot_below"])) == state.files
        if not pending and same and {e["name"] for e in chain} == state.entries:
            return None  # (a merged chain names other files of the same points)
        if pending and int(pending[0]["from"]) > state.applied:
            return (p, manifest, True, 0, chain)  # entries gone: start this partition afresh
        return (p, manifest, False, state.applied, pending)

    def _forget(self, p: int) -> None:
        c = self.conn
        for table in PRIMARY_KEYS:
            c.execute(f"DELETE FROM m.{table} WHERE _p = ?", [p])
        for table in APPENDED:
            c.execute(f'DELETE FROM m.{table} WHERE "partition" = ?', [p])

    def _load(self, p: int, manifest: Manifest, entries: list[dict[str, Any]]) -> None:
        """A whole chain into a partition this view holds nothing of: each upserted row's
        last version, and every appended row, inserted once (points are read in place)."""
        c = self.conn
        tables = sorted({t for e in entries for t in e["files"]} - {HOT})
        for table in tables:
            files = [
                (i, self.source.fetch(p, manifest, e["files"][table]))
                for i, e in enumerate(entries)
                if table in e["files"]
            ]
            if table in PRIMARY_KEYS:
                union = " UNION ALL ".join(
                    f"SELECT *, {i} AS _entry FROM read_parquet({quote(f)})" for i, f in files
                )
                keys = ", ".join(f'"{k}"' for k in PRIMARY_KEYS[table])
                c.execute(
                    f"INSERT INTO m.{table} BY NAME SELECT * EXCLUDE (_entry), {p} AS _p"
                    f" FROM ({union}) QUALIFY row_number() OVER"
                    f" (PARTITION BY {keys} ORDER BY _entry DESC) = 1"
                )
            else:
                listed = _list([f for _, f in files])
                c.execute(f"INSERT INTO m.{table} BY NAME SELECT * FROM read_parquet({listed})")

    def _apply_entry(self, p: int, manifest: Manifest, entry: dict[str, Any], start: int) -> None:
        c = self.conn
        for table, rel in sorted(entry["files"].items()):
            if table == HOT:
                continue  # read in place
            source = f"read_parquet({quote(self.source.fetch(p, manifest, rel))})"
            if table in PRIMARY_KEYS:
                keys = ", ".join(f'"{k}"' for k in PRIMARY_KEYS[table])
                c.execute(
                    f"DELETE FROM m.{table} WHERE _p = {p} AND ({keys}) IN"
                    f" (SELECT ({keys}) FROM {source})"
                )
                c.execute(f"INSERT INTO m.{table} BY NAME SELECT *, {p} AS _p FROM {source}")
            else:
                c.execute(
                    f'INSERT INTO m.{table} BY NAME SELECT * FROM {source} WHERE "offset" >= ?',
                    [start],
                )

    def _stage(self, p: int, manifest: Manifest) -> _Partition:
        fetch = self.source.fetch
        return _Partition(
            store_id=str(manifest["store_id"]),
            applied=int(manifest["next_offset"]),
            entries={e["name"] for e in manifest["chain"]},
            segments=[fetch(p, manifest, s) for s in manifest["segments"]],
            tiles=[fetch(p, manifest, t) for t in manifest["tiles"]],
            hot=[fetch(p, manifest, f) for e in manifest["chain"] for f, _ in entry_points(e)],
            files=(list(manifest["segments"]), int(manifest["hot_below"])),
        )

    # -- what the query service asks ---------------------------------------------------------

    def reader(self) -> duckdb.DuckDBPyConnection:
        with self._reader_lock:
            return self._root.cursor()

    def metric_parts(
        self, conn: duckdb.DuckDBPyConnection, readable: pa.Table | None, columns: frozenset[str]
    ) -> MetricParts:
        """For the SQL sandbox: the segment files, and the hot points as of `conn`."""
        files = [s for _, part in sorted(self.parts.items()) for s in part.segments]
        names = ", ".join(f'"{f.name}"' for f in SCAN_ORDER)
        if readable is None:
            hot = conn.sql(f"SELECT {names} FROM {HOT}").to_arrow_table()
        else:
            conn.register("_readable", readable)
            try:
                hot = conn.sql(
                    f"SELECT {names} FROM {HOT} SEMI JOIN _readable USING (iteration_id)"
                ).to_arrow_table()
            finally:
                conn.unregister("_readable")
        return MetricParts(files, hot.cast(SCAN_ORDER))

    def published(self) -> bool:
        """Whether any worker has published a partition yet."""
        return bool(self.parts)

    def applied(self) -> dict[int, int]:
        """The offsets this view holds (the query service's `Progress`)."""
        return dict(self.offsets)

    async def reached(self, target: dict[int, int], timeout: float) -> bool:
        """Read-your-writes holding no thread while it waits: the view's own thread
        follows the manifests for every waiter; this only looks at its offsets."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            if all(self.offsets.get(p, 0) >= o for p, o in target.items()):
                return True
            if loop.time() >= deadline:
                return False
            if self._thread is None:  # not following: look now, on a thread
                await loop.run_in_executor(None, self.refresh)
            await asyncio.sleep(min(POLL_S, max(0.0, deadline - loop.time())))

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        with self._lock:
            self._root.close()
            self.conn.close()
            self.source.close()
        shutil.rmtree(self._dir, ignore_errors=True)
