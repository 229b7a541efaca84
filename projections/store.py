"""The projection store: DuckDB tables plus Parquet metric segments, one transaction a batch.

`apply` writes a batch's rows, its metric points, the applied event ids (where the log
can hold an event twice: Kafka) and the new consumer offsets in ONE DuckDB transaction
(eventsourcing's tracking rule), so a crash either keeps all of a batch or none of it,
and redelivery is skipped. A small batch costs ~0.5-1.5 ms a statement, so a batch takes
as few as what its prior load knew allows (`Writes.stored`, `Writes.changed`).

Metric points land first in the hot tables (`metric_points_hot` is their view) and are
compacted into sorted Parquet segments (written to a temp file, fsynced, renamed, then
registered in `metric_segments` in a transaction); small segments are merged so a long
sweep does not leave thousands of tiny files. The `metrics` view unions both. A store
made with `segment_big_batches` (replay) writes a batch of 250,000 points or more
straight into a segment instead (segment_build.py sorts it and computes its tiles).

One process owns the database (DuckDB's own file lock enforces it); one thread in it
writes through `self.conn`, readers take `reader()` cursors.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from importlib import resources
from pathlib import Path
from typing import Any

import duckdb
import msgspec
import pyarrow as pa

from deardiary.projections.folds.metrics import POINT_SCHEMA
from deardiary.projections.integrity import (
    STATE_FILE,
    ProjectionDamaged,
    ProjectionOutdated,
    check_files,
    check_size,
    missing_files,
    open_error,
)
from deardiary.projections.queries.metric_series import tiles_sql
from deardiary.projections.queries.segment_files import (
    FILES_VIEW,
    HOT_SERIES_VIEW,
    files_view_sql,
)
from deardiary.projections.segment_build import SortedPoints, series_codes
from deardiary.projections.writes import (
    CHILD_OF,
    JSON_COLUMNS,
    PRIMARY_KEYS,
    Key,
    Lookups,
    PriorState,
    Row,
    Writes,
    row_key,
)

_JSON_INSERT_COLUMNS: dict[str, tuple[str, ...]] = {**JSON_COLUMNS, "events": ("summary",)}
POINT_COLUMNS = ", ".join(f'"{name}"' for name in POINT_SCHEMA.names)
SEGMENT_ORDER = 'iteration_id, key, "group", step, "partition", "offset", seq'
ROW_GROUP_ROWS = 122_880
"""DuckDB's row group (and our segments'): the unit its threads split a table's rows by."""
SEGMENT_PARQUET = f"ROW_GROUP_SIZE {ROW_GROUP_ROWS}, PARQUET_VERSION V2"
"""How segments are written, by compaction and by `segment_big_batches` alike (COPY
options besides zstd; see `_publish_segment`)."""
KNOWN_KEYS_LIMIT = 200_000
"""The most keys the store remembers as existing, per table (~100 bytes each)."""
CACHED_TABLES = {
    "last_metrics": KNOWN_KEYS_LIMIT,
    "projects": 10_000,
    "experiments": 10_000,
    "iterations": 512,
}
"""Tables whose committed rows the store keeps in memory for folds to read, and how many
rows at most (cleared when full). Each batch of points reads and replaces its series'
summaries; every trial process of a sweep announces its project and experiment again;
each small request of a run (a tag, a status, an SDK heartbeat) reads and replaces its
iteration's row: a query for them cost ~1.2-2.7 ms a batch. Iterations are the fewest
(a row holds the environment snapshot, a few KB): the runs being written to. Rows handed
out are the fold's to copy (Draft.get copies), never to change."""
COMPLETE_TABLES = ("projects", "experiments", "iterations")
"""Tables whose every key the store keeps in memory while they hold at most
KNOWN_KEYS_LIMIT rows: a key not among them is not stored, so the batch that creates a
row (each trial of a sweep starts a new iteration) looks nothing up for it, and the
gateway's checks of a new entity ask no query (`certainly_absent`)."""
HOT_VALUE_COLUMNS = ("step", "value", "recorded_at", "client_time", "partition", "offset", "seq")
PROJECTION_FORMAT = 7
"""What the tables hold and how the folds fill them. Bump it with any change of schema.sql
or of a fold's result: projections of another format are rebuilt from the log when
opened (services/rebuild.py), never migrated. 1: before the format was recorded; 2:
names, restore and moves, descriptions of iterations, notes and metadata of artifacts;
3: metric series per (iteration, key, group) in last_metrics, segments and tiles, tiles
with client times; 4: media, histograms, checkpoints, model versions' checkpoint; 5: params
per (iteration, section, key) with their type, iterations' config and cloned_from;
6: model_uses; 7: a tile's max point is a number wherever the tile has one (was NaN
if the tile held a NaN)."""


def schema_sql() -> str:
    return resources.files("deardiary.projections").joinpath("schema.sql").read_text()


def _children_last(table: str) -> bool:
    return table in CHILD_OF


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _parquet_list(paths: list[Path]) -> str:
    """A SQL list literal of file paths (paths are ours, quoted anyway)."""
    return "[" + ", ".join(_quote(str(p)) for p in paths) + "]"


def _join_lists(columns: tuple[str, ...] | list[str]) -> str:
    """A join with rows given as one VARCHAR[] parameter per column (zipped by unnest)."""
    unnested = ", ".join(f'unnest(?::VARCHAR[]) AS "{c}"' for c in columns)
    return f"JOIN (SELECT {unnested}) _wanted USING (" + ", ".join(f'"{c}"' for c in columns) + ")"


FEW_KEYS = 8
"""Up to this many rows, a lookup or a replacement names their keys as parameters and an
insert its values (``WHERE ("k" = ?) OR ...``, ``VALUES (?, ...)``): DuckDB finds them by
the primary key's index, ~0.6-0.8 ms a statement, where joining a list parameter or a
registered Arrow table costs ~1.3-3 ms. A small request (one MLflow log_param) is a batch
of one or two events: those statements were most of its cost."""
FEW_VALUES = 44
"""An insert passes its values as parameters (FEW_KEYS rows at most) only up to this many
(rows x columns): binding costs ~50 us a parameter here, so past a few dozen the rows go
in as an Arrow table (`_append`, ~1.1-2.5 ms whatever the width). Measured in a
transaction on 1-8 rows of 6, 12 and 22 columns, parameters against Arrow: 8 rows of 22
(a sweep step's new iterations) 4.3-4.9 ms against 2.1-2.5; 4 rows of 12 1.6-2.4 against
1.7-1.9; 2 rows of 22 2.1-2.5 against 2.3-2.4; one row of 22 (an iteration) 1.6-1.8
against 2.2; one row of 6 (a param) 0.8-0.9 against 1.1-1.2."""


def _matching(columns: tuple[str, ...], keys: list[tuple[str, ...]]) -> tuple[str, list[Any]]:
    """How a statement over `t` names rows by these keys: a WHERE clause and its parameters
    for a few (FEW_KEYS), else a join with one list parameter per column; ("", []) for
    none."""
    if not keys:
        return "", []
    keys = sorted(keys)
    if len(keys) <= FEW_KEYS:
        return _keys_where(columns, len(keys)), [v for k in keys for v in k]
    return _join_lists(columns), [[k[i] for k in keys] for i in range(len(columns))]


def _keys_where(columns: tuple[str, ...] | list[str], rows: int) -> str:
    """A WHERE clause matching `rows` keys given as parameters, row after row."""
    one = " AND ".join(f'"{c}" = ?' for c in columns)
    return "WHERE " + " OR ".join([f"({one})"] * rows)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


RETIRE_AFTER_S = 120.0
"""How long a segment replaced by a merge stays on disk: a read begun before the merge
still scans it (reads hold one snapshot, its views naming the old files), so it goes
only after longer than any read takes (the SQL sandbox stops statements at 30 s by
default); a reopened store deletes what is left."""


class DuckDBProjectionStore:
    """DuckDB + Parquet projections in a folder: state.duckdb and segments/."""

    def __init__(
        self,
        directory: str | os.PathLike[str],
        hot_points_limit: int = 2_000_000,
        merge_below_rows: int = 1_000_000,
        max_small_segments: int = 8,
        retire_after_s: float = RETIRE_AFTER_S,
        segment_big_batches: bool = False,
    ) -> None:
        self.directory = Path(directory)
        self.segments_dir = self.directory / "segments"
        self.segments_dir.mkdir(parents=True, exist_ok=True)
        self.tiles_dir = self.directory / "tiles"
        self.tiles_dir.mkdir(parents=True, exist_ok=True)
        self.hot_points_limit = hot_points_limit
        self.merge_below_rows = merge_below_rows
        self.max_small_segments = max_small_segments
        self.retire_after_s = retire_after_s
        self.segment_big_batches = segment_big_batches
        """A batch of at least a quarter of `merge_below_rows` points (a merge of more than
        `max_small_segments` (8) such segments then makes one that is not small) that finds
        the hot table empty is written straight into a segment and its tiles
        (segment_build.py), registered in the batch's own transaction, instead of into the
        hot table and compacted from there (replay of the benchmark's 5M points: about a
        third less CPU). Replay and time travel fold such batches. Off where something
        follows the hot points by log offset (Kafka mode's exporting stores)."""
        self.on_commit: Callable[[dict[int, int], dict[int, int], Writes], None] | None = None
        """Called on the writing thread after each batch commits with (offsets before,
        offsets after, its writes): projections/changes.py's record. Its errors are
        dropped (the batch is in; a cache that misses one starts afresh)."""
        self._retired: dict[str, float] = {}
        self._arrow_schemas: dict[str, pa.Schema] = {}
        self._offsets: dict[int, int] | None = None
        self._series: dict[tuple[str, str, str], int] | None = None
        self._hot = 0  # points in the hot table: counted once at open, then kept here
        # Keys known to exist, by table: rows are never deleted (a replaced row keeps its
        # key), so once seen a key needs no lookup again. Bounded: cleared when full.
        self._known: dict[str, set[Key]] = {}
        # Committed rows of CACHED_TABLES by key, as `apply` wrote or a lookup read them:
        # only `apply` changes these tables, so a batch of points finds its series'
        # summaries here instead of in a query. Bounded: cleared when full.
        self._cached: dict[str, dict[Key, Row]] = {t: {} for t in CACHED_TABLES}
        # Every key of COMPLETE_TABLES that is stored or being written (a superset of the
        # committed ones: a key is added before its batch commits); None for a table with
        # more rows than KNOWN_KEYS_LIMIT, whose keys are looked up as before.
        self._every_key: dict[str, set[Key] | None] = {}
        self._write_lock = threading.RLock()
        self._reader_lock = threading.Lock()
        try:
            self.conn = duckdb.connect(str(self.directory / STATE_FILE))
        except duckdb.Error as exc:
            raise open_error(self.directory, exc) from exc
        try:
            self._open()
        except BaseException as exc:
            self.conn.close()
            if isinstance(exc, duckdb.Error):
                raise ProjectionDamaged(self.directory, f"{type(exc).__name__}: {exc}") from exc
            raise

    def _open(self) -> None:
        """Bring an opened database up to date and check it against its files; raises
        ProjectionDamaged (or a duckdb.Error, which the caller calls damage too)."""
        # Hot points are deleted again at compaction: leaving them in the WAL (up to 256
        # MiB) instead of checkpointing them into the file saves writing them twice.
        self.conn.execute("SET checkpoint_threshold = '256MiB'")
        # A batch of more than a row group's points (a replay, a catch-up, a burst) would
        # be written into the file while it applies (DuckDB's optimistic writes); the
        # checkpoint that rewrites its part-filled row group, and compaction deleting the
        # rows, leave its blocks free, and DuckDB never gives free blocks back (the bench's
        # noisy 5M points: a 58 MB state file, 3 MB of it in use). Kept in memory and the
        # WAL like small batches, points are compressed once at a checkpoint, or never
        # when compaction moves them into a segment first. Kafka mode's stores too.
        self.conn.execute("SET enable_optimistic_write = false")
        check_size(self.conn, self.directory / STATE_FILE)
        self._check_format()
        self._migrate_hot_points()
        self.conn.execute(schema_sql())
        if not self.conn.execute("SELECT 1 FROM projection_format").fetchall():
            self.conn.execute("INSERT INTO projection_format VALUES (?)", [PROJECTION_FORMAT])
        self._reader_root = self.conn.cursor()  # readers branch off this, not the writer's
        self._remove_unregistered_segments()
        registered = self.conn.execute("SELECT path, num_rows FROM metric_segments").fetchall()
        check_files(registered, self.segments_dir, self.tiles_dir)
        self._refresh_metrics_view()
        self.next_offsets()  # cached from here on: waiting readers never touch self.conn
        for table in COMPLETE_TABLES:
            self._every_key[table] = self._all_keys(table)
        self._hot = int(self._scalar("SELECT count(*) FROM metric_points_hot_data"))

    def _check_format(self) -> None:
        """ProjectionOutdated unless the store is new or of this release's format."""
        tables = {
            str(name)
            for (name,) in self.conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main'"
            ).fetchall()
        }
        if "projection_offsets" not in tables:
            return  # a new store: stamped with this format once its tables exist
        version = 1
        if "projection_format" in tables:
            found = self.conn.execute("SELECT max(version) FROM projection_format").fetchall()
            version = int(found[0][0] or 1)
        if version != PROJECTION_FORMAT:
            raise ProjectionOutdated(
                self.directory,
                f"they were written in projection format {version}; this release reads"
                f" format {PROJECTION_FORMAT}",
            )

    def _all_keys(self, table: str) -> set[Key] | None:
        """Every stored key of `table`, or None when it has more than KNOWN_KEYS_LIMIT."""
        cols = ", ".join(f'"{c}"' for c in PRIMARY_KEYS[table])
        found = self.conn.execute(
            f"SELECT {cols} FROM {table} LIMIT {KNOWN_KEYS_LIMIT + 1}"
        ).fetchall()
        if len(found) > KNOWN_KEYS_LIMIT:
            return None
        return {str(r[0]) if len(r) == 1 else tuple(str(v) for v in r) for r in found}

    def certainly_absent(self, table: str, key: Key) -> bool:
        """True when no row of `table` is stored under `key` (a table of COMPLETE_TABLES
        whose keys the store holds); False when it may be. Any thread may ask: a key is
        known before the batch that writes it commits."""
        every = self._every_key.get(table)
        return every is not None and key not in every

    def _maybe_stored(self, table: str, keys: set[Key]) -> set[Key]:
        """`keys` without those certainly not stored (`certainly_absent`)."""
        every = self._every_key.get(table)
        return keys if every is None or not keys else keys & every

    def _note_keys(self, table: str, rows: list[Row]) -> None:
        """Keys being written to a table of COMPLETE_TABLES (called before the commit)."""
        every = self._every_key.get(table)
        if every is None:
            return
        if len(every) + len(rows) > KNOWN_KEYS_LIMIT:
            self._every_key[table] = None  # too many to keep: looked up from here on
            return
        every.update(row_key(table, row) for row in rows)

    # -- reading state -----------------------------------------------------
    def _scalar(self, sql: str, params: list[Any] | None = None) -> Any:
        """One value; fetches the whole result so the connection is free afterwards."""
        return self.conn.execute(sql, params or []).fetchall()[0][0]

    def reader(self) -> duckdb.DuckDBPyConnection:
        """A cursor for one reading thread; it sees committed batches only."""
        with self._reader_lock:
            return self._reader_root.cursor()

    def next_offsets(self) -> dict[int, int]:
        """Where each partition resumes. Only `apply` changes them, so they are read from
        the database once and then kept in memory (waiters poll this on every batch)."""
        if self._offsets is None:
            rows = self.conn.execute(
                'SELECT "partition", next_offset FROM projection_offsets'
            ).fetchall()
            self._offsets = {int(p): int(o) for p, o in rows}
        return dict(self._offsets)

    def load_prior(self, lookups: Lookups) -> PriorState:
        """Load exactly the rows a batch's fold may read."""
        prior = PriorState(next_offsets=self.next_offsets())
        conn = self.conn
        if lookups.event_ids:
            among, wanted = _matching(("event_id",), [(i,) for i in lookups.event_ids])
            found = conn.execute(
                f"SELECT event_id FROM applied_events t {among}", wanted
            ).fetchall()
            prior.seen_event_ids = {r[0] for r in found}
        # parents first: a child under a parent the store does not hold needs no query
        for table in sorted(lookups.keys.keys() | lookups.exists.keys(), key=_children_last):
            orphans = self._orphans(table, lookups, prior)
            keys = lookups.keys.get(table, set()) - orphans
            cached = self._cached.get(table)
            if cached is None:
                prior.rows[table] = self._rows_by_key(table, self._maybe_stored(table, keys))
            else:
                hits = {k: cached[k] for k in keys if k in cached}
                missed = self._maybe_stored(table, keys - hits.keys())
                loaded = self._rows_by_key(table, missed) if missed else {}
                self._cache(table, loaded.values())
                prior.rows[table] = hits | loaded
            asked = lookups.exists.get(table, set())
            if asked:  # keys loaded as rows above are answered already
                known = self._known.get(table, set())
                unknown = self._maybe_stored(table, asked - known - keys - orphans)
                present = self._existing_keys(table, unknown)
                self._remember(table, present)
                prior.existing[table] = present | (asked & known)
        if lookups.model_versions_of:
            rows = self._rows_where("model_versions", "model_id", lookups.model_versions_of)
            prior.rows.setdefault("model_versions", {}).update(rows)
        for table in lookups.keys.keys() | lookups.exists.keys():
            asked = lookups.keys.get(table, set()) | lookups.exists.get(table, set())
            held = prior.rows.get(table, {}).keys() | prior.existing.get(table, set())
            prior.absent[table] = asked - held
        return prior

    def _orphans(self, table: str, lookups: Lookups, prior: PriorState) -> set[Key]:
        """The keys of `table` this batch asks for whose parent row (CHILD_OF) the store
        does not hold, as the batch's own lookup of the parent found: none of them can be
        stored (folds write a child only under an existing parent, and rows are never
        deleted), so they are absent without a query."""
        parent = CHILD_OF.get(table)
        if parent is None:
            return set()
        asked = lookups.keys.get(parent, set()) | lookups.exists.get(parent, set())
        held = prior.rows.get(parent, {}).keys() | prior.existing.get(parent, set())
        missing = asked - held
        if not missing:
            return set()
        wanted = lookups.keys.get(table, set()) | lookups.exists.get(table, set())
        return {k for k in wanted if isinstance(k, tuple) and k[0] in missing}

    def _cache(self, table: str, rows: Iterable[Row]) -> None:
        """Keep committed rows of a cached table (CACHED_TABLES) for the next lookups."""
        cached = self._cached[table]
        for row in rows:
            cached[row_key(table, row)] = row
        if len(cached) > CACHED_TABLES[table]:
            cached.clear()

    def _remember(self, table: str, keys: set[Key] | list[Key]) -> None:
        """Note keys of `table` that exist in the committed state."""
        known = self._known.setdefault(table, set())
        if len(known) + len(keys) > KNOWN_KEYS_LIMIT:
            known.clear()
        known.update(keys)

    @staticmethod
    def _wanted(table: str, keys: set[Key]) -> tuple[str, list[Any]]:
        """A join with the keys, passed as one list parameter per key column (registering
        an Arrow table and dropping it again cost ~1.5 ms a lookup), and the lists; or,
        for a few keys, a WHERE clause naming each (FEW_KEYS) and its parameters."""
        cols = PRIMARY_KEYS[table]
        if len(cols) == 1:
            return _matching(cols, [(str(k),) for k in keys])
        return _matching(cols, [tuple(str(v) for v in k) for k in keys if isinstance(k, tuple)])

    def _rows_by_key(self, table: str, keys: set[Key]) -> dict[Key, Row]:
        join, lists = self._wanted(table, keys)
        return self._select(table, join, lists)

    def _existing_keys(self, table: str, keys: set[Key]) -> set[Key]:
        if not keys:
            return set()
        join, lists = self._wanted(table, keys)
        cols = ", ".join(f't."{c}"' for c in PRIMARY_KEYS[table])
        found = self.conn.execute(f"SELECT {cols} FROM {table} t {join}", lists).fetchall()
        return {str(r[0]) if len(r) == 1 else tuple(str(v) for v in r) for r in found}

    def _rows_where(self, table: str, column: str, values: set[str]) -> dict[Key, Row]:
        return self._select(table, *_matching((column,), [(v,) for v in values]))

    def _select(self, table: str, join: str, lists: list[Any]) -> dict[Key, Row]:
        if not lists:
            return {}
        # Python values straight from DuckDB: through Arrow they cost ~2 ms more a lookup
        result = self.conn.execute(f"SELECT t.* FROM {table} t {join}", lists)
        names = [d[0] for d in result.description or ()]
        json_cols = JSON_COLUMNS.get(table, ())
        rows: dict[Key, Row] = {}
        for values in result.fetchall():
            row = dict(zip(names, values, strict=True))
            for col in json_cols:
                if row[col] is not None:
                    row[col] = msgspec.json.decode(row[col])
            rows[row_key(table, row)] = row
        return rows

    # -- writing -----------------------------------------------------------
    def _arrow_schema(self, table: str) -> pa.Schema:
        if table not in self._arrow_schemas:
            empty = self.conn.sql(f"SELECT * FROM {table} LIMIT 0").to_arrow_table()
            self._arrow_schemas[table] = empty.schema
        return self._arrow_schemas[table]

    def _to_arrow(self, table: str, rows: list[Row]) -> pa.Table:
        schema = self._arrow_schema(table)
        columns = set(schema.names)
        for row in rows:
            if not columns.issuperset(row):  # a fold wrote a field the table cannot hold
                extra = sorted(set(row) - columns)
                raise ValueError(f"{table} has no column for {extra}: the change would be lost")
        json_cols = _JSON_INSERT_COLUMNS.get(table, ())
        if json_cols:
            rows = [
                {
                    **row,
                    **{
                        c: None
                        if row.get(c) is None
                        else msgspec.json.encode(row[c], order="sorted").decode()
                        for c in json_cols
                    },
                }
                for row in rows
            ]
        return pa.Table.from_pylist(rows, schema=schema)

    def _upsert(
        self,
        table: str,
        rows: list[Row],
        stored: dict[Key, bool],
        changed: dict[Key, tuple[str, ...]],
    ) -> None:
        """Rows replacing any under their keys, in as few statements as what the batch's
        prior load said of the keys allows (`Writes.stored`; a statement is ~0.5-1 ms here
        however small): a new row is inserted with no delete first, and a single held row
        is updated in place (one statement instead of a delete and an insert) unless its
        table has floating-point columns -- DuckDB's UPDATE may keep a stored 0.0 where
        -0.0 is written (they compare equal), and replays must be bit-identical."""
        data = self._to_arrow(table, rows)
        marks = [stored.get(row_key(table, row)) for row in rows]  # held, new, or unknown
        held = [i for i, mark in enumerate(marks) if mark]
        if len(held) == 1 and not self._has_floats(table):
            columns = changed.get(row_key(table, rows[held[0]]))
            self._update_row(table, data.slice(held[0], 1), columns)
            rest = [i for i in range(len(rows)) if i != held[0]]
            if not rest:
                return
            data, marks = data.take(pa.array(rest, pa.int64())), [marks[i] for i in rest]
        replaced = [i for i, mark in enumerate(marks) if mark is not False]
        if replaced and len(replaced) < len(marks):  # some new, some not
            self._delete(table, data.take(pa.array(replaced, pa.int64())))
            replaced = []
        self._insert(table, data, replace=bool(replaced))

    def _has_floats(self, table: str) -> bool:
        """Whether a table has a floating-point column (lists of them included)."""
        return any(
            pa.types.is_floating(f.type)
            or (pa.types.is_list(f.type) and pa.types.is_floating(f.type.value_type))
            for f in self._arrow_schema(table)
        )

    def _update_row(self, table: str, data: pa.Table, changed: tuple[str, ...] | None) -> None:
        """Overwrite the one stored row under this one row's key with its values: only the
        `changed` columns where the fold said which (an UPDATE of 2 columns costs ~half one
        of 21), none if it changed nothing."""
        keys = PRIMARY_KEYS[table]
        row = data.to_pylist()[0]
        columns = [c for c in data.column_names if c not in keys]
        if changed is not None:
            columns = [c for c in columns if c in changed]
            if not columns:
                return
        assignments = ", ".join(f'"{c}" = ?' for c in columns)
        where = " AND ".join(f'"{c}" = ?' for c in keys)
        self.conn.execute(
            f"UPDATE {table} SET {assignments} WHERE {where}",
            [row[c] for c in columns] + [row[c] for c in keys],
        )

    def _delete(self, table: str, data: pa.Table) -> None:
        """Delete the stored rows under these rows' keys."""
        keys = PRIMARY_KEYS[table]
        if data.num_rows <= FEW_KEYS:
            found = [tuple(r[c] for c in keys) for r in data.select(list(keys)).to_pylist()]
            where = _keys_where(keys, len(found))
            self.conn.execute(f"DELETE FROM {table} {where}", [v for k in found for v in k])
            return
        with self._registered("_gone", data.select(list(keys))):
            same = " AND ".join(f'{table}."{c}" = r."{c}"' for c in keys)
            self.conn.execute(f"DELETE FROM {table} USING _gone r WHERE {same}")

    def _insert(self, table: str, data: pa.Table, replace: bool) -> None:
        """Insert rows; with `replace`, rows with the same primary key are replaced whole.

        Replacement is DELETE + INSERT, not INSERT OR REPLACE: DuckDB's upsert keeps a
        stored value that compares equal to the new one, so -0.0 would stay 0.0 (or the
        reverse) and replays would not be bit-identical."""
        if 0 < data.num_rows <= FEW_KEYS and data.num_rows * data.num_columns <= FEW_VALUES:
            self._insert_few(table, data, replace)
            return
        if replace:
            self._delete(table, data)
        self._append(table, data)

    def _append(self, table: str, data: pa.Table) -> None:
        """Insert an Arrow table's rows, columns in the table's order: scanned as a relation,
        ~0.5-0.9 ms less a statement than registering it as a view, inserting from the view
        and unregistering it. (A replacement scan of a local variable, ``INSERT ... SELECT *
        FROM rows``, saved ~0.2-0.3 ms more, but DuckDB finds the variable in the frame that
        calls `execute`: anything wrapping the connection made every such insert fail and
        its records parked.)"""
        self.conn.from_arrow(data).insert_into(table)

    @contextmanager
    def _registered(self, name: str, data: pa.Table) -> Iterator[None]:
        """`data` as the view `name` for the statements inside. When one of them fails,
        DuckDB aborts the transaction and refuses any further statement, the unregister
        included; that refusal would hide the statement's own error, so it is dropped
        (the rollback that follows drops the view)."""
        self.conn.register(name, data)
        try:
            yield
        except BaseException:
            with suppress(duckdb.TransactionException):
                self.conn.unregister(name)
            raise
        self.conn.unregister(name)

    def _insert_few(self, table: str, data: pa.Table, replace: bool) -> None:
        """`_insert` of a few values, keys and values as parameters (FEW_VALUES). The values
        are the Arrow table's, so both ways store the same."""
        names = data.column_names
        rows = [tuple(r.values()) for r in data.to_pylist()]
        if replace:
            keys = PRIMARY_KEYS[table]
            at = [names.index(c) for c in keys]
            where = _keys_where(keys, len(rows))
            self.conn.execute(f"DELETE FROM {table} {where}", [r[i] for r in rows for i in at])
        columns = ", ".join(f'"{c}"' for c in names)
        marks = "(" + ", ".join("?" * len(names)) + ")"
        self.conn.execute(
            f"INSERT INTO {table} ({columns}) VALUES " + ", ".join([marks] * len(rows)),
            [v for r in rows for v in r],
        )

    def _migrate_hot_points(self) -> None:
        """Stores written before metric_series_hot existed kept hot points, strings and
        all, in a table named metric_points_hot: move them into the numbered layout."""
        kind = self.conn.execute(
            "SELECT table_type FROM information_schema.tables"
            " WHERE table_schema = 'main' AND table_name = 'metric_points_hot'"
        ).fetchall()
        if kind != [("BASE TABLE",)]:
            return
        conn = self.conn
        conn.execute("BEGIN TRANSACTION")
        try:
            conn.execute("ALTER TABLE metric_points_hot RENAME TO metric_points_hot_v1")
            conn.execute(schema_sql())
            conn.execute(
                "INSERT INTO metric_series_hot SELECT (row_number() OVER () - 1)::INTEGER,"
                ' iteration_id, key, "group" FROM'
                ' (SELECT DISTINCT iteration_id, key, "group" FROM metric_points_hot_v1)'
            )
            conn.execute(
                "INSERT INTO metric_points_hot_data SELECT s.series, v.step, v.value,"
                ' v.recorded_at, v.client_time, v."partition", v."offset", v.seq'
                " FROM metric_points_hot_v1 v JOIN metric_series_hot s"
                ' USING (iteration_id, key, "group")'
            )
            conn.execute("DROP TABLE metric_points_hot_v1")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def _series_numbers(
        self, points: pa.Table, new: dict[tuple[str, str, str], int]
    ) -> pa.ChunkedArray:
        """The series number of every point; series not seen yet get the next numbers (in
        `new`, stored by the caller's transaction)."""
        if self._series is None:
            rows = self.conn.execute(
                'SELECT iteration_id, key, "group", series FROM metric_series_hot'
            ).fetchall()
            self._series = {(i, k, g): int(n) for i, k, g, n in rows}
        known = self._series

        def number(name: tuple[str, str, str]) -> int:
            found = known.get(name)
            if found is None:
                found = new.get(name)
                if found is None:
                    found = new[name] = len(known) + len(new)
            return found

        return pa.chunked_array([pa.array(series_codes(points, number), pa.int32())])

    def _insert_points(self, points: pa.Table, new: dict[tuple[str, str, str], int]) -> None:
        """Append points to the hot table, on all of DuckDB's threads: the hot table's row
        order means nothing, so insertion order is not kept for this statement (the setting
        is database-wide; a read planned meanwhile merely sorts what it gets). A batch of at
        most ROW_GROUP_ROWS points is one thread's work anyway and leaves the setting be
        (its two statements cost ~0.5-0.8 ms, most of a small batch's insert)."""
        data = pa.table(
            {
                "series": self._series_numbers(points, new),
                **{c: points[c] for c in HOT_VALUE_COLUMNS},
            }
        )
        if new:
            names = list(new)
            self._insert(
                "metric_series_hot",
                pa.table(
                    {
                        "series": pa.array([new[n] for n in names], pa.int32()),
                        "iteration_id": [n[0] for n in names],
                        "key": [n[1] for n in names],
                        "group": [n[2] for n in names],
                    }
                ),
                replace=False,
            )
        if data.num_rows <= ROW_GROUP_ROWS:  # one thread's work anyway: no settings
            # a few points (an MLflow log_metric: one) as values: ~0.8 ms less for one
            self._insert("metric_points_hot_data", data, replace=False)
            return
        self.conn.execute("SET preserve_insertion_order = false")
        try:
            self._append("metric_points_hot_data", data)
        finally:
            with suppress(duckdb.TransactionException):  # then `apply` sets it
                self.conn.execute("SET preserve_insertion_order = true")

    def apply(self, writes: Writes) -> None:
        """Apply one batch atomically: state, points, applied ids and offsets together."""
        with self._write_lock:
            conn = self.conn
            direct = self._direct_segment(writes.metric_points)
            conn.execute("BEGIN TRANSACTION")
            try:
                for table, rows in writes.upserts.items():
                    self._upsert(
                        table, rows, writes.stored.get(table, {}), writes.changed.get(table, {})
                    )
                for table, rows in writes.inserts.items():
                    if rows:
                        self._insert(table, self._to_arrow(table, rows), replace=False)
                for table in COMPLETE_TABLES:  # known before they are committed
                    self._note_keys(table, writes.upserts.get(table, []))
                    self._note_keys(table, writes.inserts.get(table, []))
                new_series: dict[tuple[str, str, str], int] = {}
                appended = 0
                if direct is not None:
                    conn.execute("INSERT INTO metric_segments VALUES (?, ?, ?, ?)", list(direct))
                    self._refresh_metrics_view()
                elif writes.metric_points is not None and writes.metric_points.num_rows:
                    self._insert_points(writes.metric_points, new_series)
                    appended = writes.metric_points.num_rows
                if writes.applied_event_ids:
                    conn.execute(
                        "INSERT INTO applied_events SELECT unnest(?::VARCHAR[])",
                        [writes.applied_event_ids],
                    )
                stored = self.next_offsets()
                for partition, offset in sorted(writes.next_offsets.items()):
                    if partition in stored:  # an UPDATE costs half an INSERT OR REPLACE
                        conn.execute(
                            'UPDATE projection_offsets SET next_offset = ? WHERE "partition" = ?',
                            [offset, partition],
                        )
                    else:
                        conn.execute(
                            "INSERT INTO projection_offsets VALUES (?, ?)", [partition, offset]
                        )
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                conn.execute("SET preserve_insertion_order = true")  # if `_insert_points` failed
                if direct is not None:  # written, never registered
                    self._unlink_segment(str(direct[0]))
                raise
            self._offsets = {**self.next_offsets(), **writes.next_offsets}
            if self.on_commit is not None:
                with suppress(Exception):
                    self.on_commit(stored, self._offsets, writes)
            self._hot += appended  # committed: a rolled-back batch never gets here
            for table in self._cached:
                if table in writes.upserts:
                    self._cache(table, writes.upserts[table])
            for parent in ("iterations", "experiments", "projects"):
                upserted = writes.upserts.get(parent)
                if upserted and parent in self._known:
                    self._remember(parent, [row_key(parent, r) for r in upserted])
            if new_series and self._series is not None:
                self._series.update(new_series)
            if writes.num_points:
                self.maybe_compact(idle=False)

    # -- metric segments -----------------------------------------------------
    def _direct_segment(self, points: pa.Table | None) -> tuple[str, int, int, int] | None:
        """A big batch's points as a new segment and its tiles (`segment_big_batches`), not
        registered yet: its (path, num_rows, size_bytes, created_seq) row, or None when the
        batch's points go into the hot table."""
        if (
            not self.segment_big_batches
            or points is None
            or points.num_rows < max(1, self.merge_below_rows // 4)
            or self._hot
        ):
            return None
        built = SortedPoints(points)
        seq = int(self._scalar("SELECT COALESCE(MAX(created_seq), 0) + 1 FROM metric_segments"))
        name = f"seg-{seq:010d}.parquet"
        try:
            self._write_sorted(built, name)
        except BaseException:
            self._unlink_segment(name)
            raise
        return name, points.num_rows, (self.segments_dir / name).stat().st_size, seq

    def _write_sorted(self, built: SortedPoints, name: str) -> None:
        """Points sorted in memory as the segment `name` and its tiles (computed from the
        same arrays: the segment is not read back for them)."""
        for view, data, folder, options in (
            ("_segment_rows", built.table(), self.segments_dir, SEGMENT_PARQUET),
            ("_segment_tiles", built.tiles(), self.tiles_dir, ""),
        ):
            self.conn.register(view, data)
            try:
                self._copy_durably(f"SELECT * FROM {view}", folder / name, options)
            finally:
                self.conn.unregister(view)

    def _hot_in_segment_order(self) -> SortedPoints:
        """The hot points in SEGMENT_ORDER, sorted by numpy (segment_build.py) rather than
        by SQL: they are in log order, so within a series nearly always in step order
        already, and a stable sort by series is the whole sort (compaction of 2M sweep
        points: ~1.3 -> ~0.75 CPU-s, tiles included). The same rows and tiles as DuckDB's
        ORDER BY and `tiles_sql` give (tests/integration/test_segment_build.py)."""
        columns = ", ".join(f'"{c}"' for c in HOT_VALUE_COLUMNS)
        hot = self.conn.sql(f"SELECT series, {columns} FROM metric_points_hot_data")
        rows = hot.to_arrow_table()
        series = self.conn.execute(
            'SELECT iteration_id, key, "group", series FROM metric_series_hot'
        ).fetchall()
        numbers = {(str(i), str(k), str(g)): int(n) for i, k, g, n in series}
        codes = rows["series"].to_numpy()
        return SortedPoints.numbered(codes, numbers, rows.drop_columns(["series"]))

    def _unlink_segment(self, name: str) -> None:
        (self.segments_dir / name).unlink(missing_ok=True)
        (self.tiles_dir / name).unlink(missing_ok=True)

    def hot_points(self) -> int:
        """The points in the hot table, kept in memory (counting them after every batch
        cost a scan of the table per batch): set when the store opens, grown by each
        committed batch, zero once compacted."""
        return self._hot

    def maybe_compact(self, idle: bool = True) -> None:
        """Compact once the hot table holds `hot_points_limit` points -- or, while batches
        are still arriving (`idle=False`), only at twice that: a burst becomes queryable
        first, and the projector compacts when it next has nothing to do."""
        with self._write_lock:
            if self.hot_points() >= self.hot_points_limit * (1 if idle else 2):
                self.compact()

    def compact(self) -> None:
        """Move hot points into a new Parquet segment, then merge small segments."""
        with self._write_lock:
            moved = bool(self.hot_points())
            if moved:
                self._publish_segment(self._hot_in_segment_order(), [])
            small = self.conn.execute(
                "SELECT path FROM metric_segments WHERE num_rows < ? ORDER BY created_seq",
                [self.merge_below_rows],
            ).fetchall()
            if len(small) > self.max_small_segments:
                names = [p for (p,) in small]
                source = _parquet_list([self.segments_dir / p for p in names])
                self._publish_segment(
                    f"SELECT * FROM read_parquet({source}) ORDER BY {SEGMENT_ORDER}", names
                )
                moved = True
            if moved:
                self._give_back_freed_memory()

    def _give_back_freed_memory(self) -> None:
        """DuckDB's allocator (its own jemalloc) keeps the pages a compaction freed -- the
        hot rows and their Arrow copy, ~250 MB for 2M points -- for reuse, purging them only
        as DuckDB allocates again (seconds of ingest later; never while the server idles).
        Setting the memory limit flushes it: every freed page goes back to the system now
        (~10 ms a 100 MB). The store sets no limit of its own, so RESET leaves it as it was."""
        with suppress(duckdb.Error):
            self.conn.execute("RESET memory_limit")

    def _publish_segment(self, source: str | SortedPoints, replaced: list[str]) -> None:
        """Write `source` (sorted points, or SQL giving rows in SEGMENT_ORDER) as a new
        segment; it replaces the hot rows or `replaced` files."""
        seq = int(self._scalar("SELECT COALESCE(MAX(created_seq), 0) + 1 FROM metric_segments"))
        name = f"seg-{seq:010d}.parquet"
        final = self.segments_dir / name
        # Parquet format 2's encodings (delta for steps, times and offsets): a segment is
        # ~30% smaller and a series reads at ~2.5x less CPU (1M points: ~57 -> ~35 ms in
        # DuckDB); files written before read as they are.
        if isinstance(source, SortedPoints):
            self._write_sorted(source, name)
        else:
            self._copy_durably(source, final, SEGMENT_PARQUET)
            self._write_tiles(name)
        num_rows = int(self._scalar("SELECT count(*) FROM read_parquet(?)", [str(final)]))
        conn = self.conn
        conn.execute("BEGIN TRANSACTION")
        try:
            conn.execute(
                "INSERT INTO metric_segments VALUES (?, ?, ?, ?)",
                [name, num_rows, final.stat().st_size, seq],
            )
            if replaced:
                conn.execute("DELETE FROM metric_segments WHERE list_contains(?, path)", [replaced])
            else:
                conn.execute("DELETE FROM metric_points_hot_data")
                conn.execute("DELETE FROM metric_series_hot")
            # in the same transaction: a reader sees the old views over the old rows or
            # the new ones over the new, never hot rows gone and the segment not yet listed
            self._refresh_metrics_view()
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        if not replaced:
            self._series = {}  # numbering starts again with the next hot point
            self._hot = 0
            # The hot rows just deleted stay in memory (optimistic writes are off) until a
            # checkpoint, which the 256 MiB WAL threshold would put off for millions of
            # points more: the server's RSS grew by them from one compaction to the next.
            # With the hot table empty, the checkpoint writes only the small tables. If a
            # reader's transaction stops it, the next checkpoint frees them.
            with suppress(duckdb.Error):
                conn.execute("CHECKPOINT")
        self._retire(replaced)

    def _retire(self, names: list[str]) -> None:
        """Delete replaced segments — after `retire_after_s` when other processes may still
        read them where they are (Kafka mode's query service reads published segment
        lists), at once otherwise."""
        now = time.time()
        self._retired.update(dict.fromkeys(names, now))
        for name, since in list(self._retired.items()):
            if now - since >= self.retire_after_s:
                (self.segments_dir / name).unlink(missing_ok=True)
                (self.tiles_dir / name).unlink(missing_ok=True)
                del self._retired[name]

    def segment_paths(self) -> list[Path]:
        rows = self.conn.execute("SELECT path FROM metric_segments ORDER BY created_seq").fetchall()
        return [self.segments_dir / p for (p,) in rows]

    def damage(self) -> str:
        """Why the registered files cannot be read ("" when they are all there): damage
        found while serving, e.g. a segment deleted by hand. Any thread may ask."""
        conn = self.reader()
        try:
            registered = conn.execute("SELECT path, num_rows FROM metric_segments").fetchall()
        finally:
            conn.close()
        return missing_files(registered, self.segments_dir, self.tiles_dir)

    def _remove_unregistered_segments(self) -> None:
        """Files a crash left between rename and registration are not part of the state."""
        registered = {p.name for p in self.segment_paths()}
        for folder in (self.segments_dir, self.tiles_dir):
            for path in folder.iterdir():
                if path.name not in registered:
                    path.unlink()

    def _copy_durably(self, query: str, final: Path, options: str = "") -> None:
        """`query` as a zstd Parquet file at `final`: written beside it, fsynced, renamed."""
        tmp = final.with_name(f".{final.name}.tmp")
        extra = f", {options}" if options else ""
        self.conn.execute(
            f"COPY ({query}) TO {_quote(str(tmp))} (FORMAT parquet, COMPRESSION zstd{extra})"
        )
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, final)
        _fsync_dir(final.parent)

    # -- tiles: per-segment rollups that make downsampling cheap ---------------------
    def _write_tiles(self, name: str) -> None:
        """tiles/<segment name>: per series and TILE_STEPS-step tile, the point count, the
        step range, and the min and max points (queries/metric_series.py reads them)."""
        segment = f"read_parquet({_quote(str(self.segments_dir / name))})"
        self._copy_durably(tiles_sql(segment), self.tiles_dir / name)

    def _refresh_metrics_view(self) -> None:
        # Segments (oldest first, each sorted) before the hot rows (in log order): a scan of
        # one series then usually comes out in step and log order already.
        hot = f"SELECT {POINT_COLUMNS} FROM metric_points_hot"
        segments = f"{hot} WHERE false"
        tiles = f"SELECT * FROM ({tiles_sql('metric_points_hot')}) WHERE false"
        paths = self.segment_paths()
        if paths:
            segments = f"SELECT {POINT_COLUMNS} FROM read_parquet({_parquet_list(paths)})"
            tile_files = [self.tiles_dir / p.name for p in paths]
            tiles = f"SELECT * FROM read_parquet({_parquet_list(tile_files)})"
        self.conn.execute(f"CREATE OR REPLACE VIEW metric_segment_points AS {segments}")
        # series reads open these directly
        files = files_view_sql(
            [str(p) for p in paths], [str(self.tiles_dir / p.name) for p in paths]
        )
        self.conn.execute(f"CREATE OR REPLACE VIEW {FILES_VIEW} AS {files}")
        self.conn.execute(
            f"CREATE OR REPLACE VIEW {HOT_SERIES_VIEW} AS"
            ' SELECT iteration_id, key, "group" FROM metric_series_hot'
        )
        self.conn.execute(f"CREATE OR REPLACE VIEW metrics AS {segments} UNION ALL {hot}")
        self.conn.execute(f"CREATE OR REPLACE VIEW metric_tiles AS {tiles}")

    def close(self) -> None:
        self._reader_root.close()
        self.conn.close()
