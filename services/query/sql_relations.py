"""What the SQL sandbox is given: the published relations, read from the projections.

A `RelationSource` hands out reader cursors of the projections (the projection store's in
embedded mode, the exports view's in Kafka mode) and says where the metric points are.
Entity relations are read generically (``SELECT * FROM <name>`` on the caller's scoped
cursor). Metric points are too many to copy whole: their Parquet files are scanned in
place, and of the points not compacted yet only the columns the statement reads are
copied (DuckDB's own plan says which).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds

from deardiary.projections.folds.metrics import POINT_SCHEMA
from deardiary.projections.queries.sql import tree_nodes
from deardiary.projections.store import HOT_VALUE_COLUMNS, DuckDBProjectionStore

# The `metrics` relation's columns, as the segment files store them (plain strings)...
POINTS = pa.schema(
    [
        pa.field(f.name, f.type.value_type if pa.types.is_dictionary(f.type) else f.type)
        for f in POINT_SCHEMA
    ]
)
# ... and in the order they are scanned in: DuckDB counts rows (`count(*)`) by reading the
# first column, and a small integer is ten times cheaper to read than a string.
SCAN_ORDER = pa.schema([POINTS.field("seq")] + [f for f in POINTS if f.name != "seq"])
ALL_COLUMNS = frozenset(POINTS.names)
_NAMES = frozenset({"iteration_id", "key", "group"})  # a hot point has them by series
_POINT_LIST = ", ".join(f'"{name}"' for name in POINTS.names)
_SCAN_LIST = ", ".join(f'"{name}"' for name in SCAN_ORDER.names)
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class MetricParts:
    """Where a snapshot's metric points are: `files`, Parquet files with the POINTS
    columns (segments, and in Kafka mode the exported hot points too), and `hot`, the
    points not compacted yet (SCAN_ORDER columns), only the readable iterations'."""

    files: list[str]
    hot: pa.Table | None = None


class RelationSource(Protocol):
    def reader(self) -> duckdb.DuckDBPyConnection:
        """A fresh cursor over the published relations (unscoped)."""
        ...

    def metric_parts(
        self, conn: duckdb.DuckDBPyConnection, readable: pa.Table | None, columns: frozenset[str]
    ) -> MetricParts:
        """The metric points as of `conn`'s transaction. `readable` (a table of
        iteration_id) restricts the hot points, None means all of them; hot columns not in
        `columns` may be left null (the statement does not read them)."""
        ...


def provide(
    cursor: duckdb.DuckDBPyConnection,
    conn: duckdb.DuckDBPyConnection,
    source: RelationSource,
    names: set[str],
    query: str,
    scoped: bool,
) -> None:
    """Register on the sandbox `cursor` each relation of `names`, read from `conn` (the
    caller's reader, scoped when `scoped`, in one transaction)."""
    for name in sorted(names - {"metrics"}):
        cursor.register(name, relation(conn, name))
    if "metrics" not in names:
        return
    columns = read_columns(cursor, query)
    readable = None
    if scoped:
        readable = conn.sql("SELECT iteration_id FROM iterations").to_arrow_table()
    parts = source.metric_parts(conn, readable, columns)
    files: ds.Dataset | pa.Table = SCAN_ORDER.empty_table()
    if parts.files:
        files = ds.dataset(parts.files, schema=SCAN_ORDER, format="parquet")
        if readable is not None:
            wanted = readable.column("iteration_id").combine_chunks()
            files = files.filter(ds.field("iteration_id").isin(wanted))
    _define_metrics(cursor, files, parts.hot)


def relation(conn: duckdb.DuckDBPyConnection, name: str) -> pa.Table:
    """A relation as Arrow, its JSON columns typed as Arrow JSON so the sandbox sees JSON."""
    rel = conn.sql(f"SELECT * FROM {name}")
    types = rel.types
    table = rel.to_arrow_table()
    for i, kind in enumerate(types):
        if kind == "JSON":
            column = table.column(i)
            chunks = [pa.ExtensionArray.from_storage(pa.json_(), c) for c in column.chunks]
            field = pa.field(table.schema.field(i).name, pa.json_())
            table = table.set_column(i, field, pa.chunked_array(chunks, pa.json_()))
    return table


def _define_metrics(
    cursor: duckdb.DuckDBPyConnection, files: ds.Dataset | pa.Table, hot: pa.Table | None
) -> None:
    """`metrics`: the union of the parts in scan order (count(*) reads a union's first
    column), then the columns in the order users know."""
    cursor.register("_metrics_files", files)
    parts = [f"SELECT {_SCAN_LIST} FROM _metrics_files"]
    if hot is not None:
        cursor.register("_metrics_hot", hot)
        parts.append(f"SELECT {_scan_list(hot.column_names)} FROM _metrics_hot")
    union = " UNION ALL ".join(parts)
    cursor.execute(f"CREATE OR REPLACE TEMP VIEW metrics AS SELECT {_POINT_LIST} FROM ({union})")


_SQL_TYPES = {
    pa.int32(): "INTEGER",
    pa.int64(): "BIGINT",
    pa.float64(): "DOUBLE",
    pa.string(): "VARCHAR",
    pa.timestamp("us"): "TIMESTAMP",
}


def _scan_list(present: Sequence[str]) -> str:
    """SCAN_ORDER's columns from a part that holds `present`, the others as typed NULLs:
    millions of null values as Arrow columns cost their whole buffers, allocated fresh
    for every statement (~0.3 s for 2M hot points)."""
    return ", ".join(
        f'"{f.name}"' if f.name in present else f'CAST(NULL AS {_SQL_TYPES[f.type]}) AS "{f.name}"'
        for f in SCAN_ORDER
    )


def read_columns(cursor: duckdb.DuckDBPyConnection, query: str) -> frozenset[str]:
    """The `metrics` columns the statement reads, from DuckDB's plan over empty parts (its
    projection pushdown: which columns each Arrow scan asks for). Anything unclear is
    all of them: reading too much is slow, never wrong."""
    empty = SCAN_ORDER.empty_table()
    _define_metrics(cursor, empty, empty)
    try:
        plan = cursor.execute(f"EXPLAIN (FORMAT json) {query}").fetchall()[0][1]
        tree = json.loads(plan)
    except (duckdb.Error, ValueError, IndexError):
        return ALL_COLUMNS
    found: set[str] = set()
    for node in tree_nodes(tree):
        info = node.get("extra_info")
        if not isinstance(info, dict) or info.get("Function") != "PYTHON_ARROW_SCAN":
            continue
        if "Projections" not in info:
            return ALL_COLUMNS
        for key in ("Projections", "Filters"):
            found.update(_WORD.findall(json.dumps(info.get(key, ""))))
    return frozenset(found & ALL_COLUMNS) or ALL_COLUMNS


class StoreRelations:
    """Embedded mode: cursors of the projection store, its segment files and hot tables."""

    def __init__(self, store: DuckDBProjectionStore) -> None:
        self.store = store

    def reader(self) -> duckdb.DuckDBPyConnection:
        return self.store.reader()

    def metric_parts(
        self, conn: duckdb.DuckDBPyConnection, readable: pa.Table | None, columns: frozenset[str]
    ) -> MetricParts:
        rows = conn.execute("SELECT path FROM metric_segments ORDER BY created_seq").fetchall()
        files = [str(self.store.segments_dir / p) for (p,) in rows]
        names = bool(columns & _NAMES)
        values = [c for c in HOT_VALUE_COLUMNS if c in columns] or ["seq"]
        wanted = ", ".join(f'p."{c}"' for c in (["series"] if names else []) + values)
        if readable is None:
            series = conn.sql("SELECT * FROM metric_series_hot").to_arrow_table()
            points = conn.sql(f"SELECT {wanted} FROM metric_points_hot_data p").to_arrow_table()
            return MetricParts(files, hot_points(series, points))
        conn.register("_readable", readable)
        try:
            series = conn.sql(
                "SELECT s.* FROM metric_series_hot s SEMI JOIN _readable USING (iteration_id)"
            ).to_arrow_table()
        finally:
            conn.unregister("_readable")
        conn.register("_series", series)
        try:
            points = conn.sql(
                f"SELECT {wanted} FROM metric_points_hot_data p SEMI JOIN _series USING (series)"
            ).to_arrow_table()
        finally:
            conn.unregister("_series")
        return MetricParts(files, hot_points(series, points))


def hot_points(series: pa.Table, points: pa.Table) -> pa.Table:
    """The numbered hot layout (`metric_series_hot`, `metric_points_hot_data` with some of
    its columns) as points with their names: each point's series number indexes a
    dictionary of the names, so no string is copied (a join would cost a million-row hash
    join per statement). Columns `points` lacks are left out (names too, without its
    `series`): `metrics` reads them as NULL. Every point's series must be in `series`."""
    columns: dict[str, pa.Array | pa.ChunkedArray] = {}
    if "series" in points.column_names:
        numbers = series.column("series").to_numpy()
        position = np.full(int(numbers.max()) + 1 if len(numbers) else 0, -1, np.int32)
        position[numbers] = np.arange(len(numbers), dtype=np.int32)
        indices = pa.array(position[points.column("series").to_numpy()], pa.int32())
        for name in _NAMES:
            names = series.column(name).combine_chunks()
            columns[name] = pa.DictionaryArray.from_arrays(indices, names)
    for name in points.column_names:
        if name in SCAN_ORDER.names and name not in columns:
            columns[name] = points.column(name)
    return pa.table({f.name: columns[f.name] for f in SCAN_ORDER if f.name in columns})
