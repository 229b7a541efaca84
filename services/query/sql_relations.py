"""What the SQL sandbox is given: the published relations, read from the projections.

A `RelationSource` hands out reader cursors of the projections (the projection store's in
embedded mode, the exports view's in Kafka mode) and says where the metric points are.
Entity relations are read generically (``SELECT * FROM <name>`` on the caller's scoped
cursor); metric points are too many to copy, so the source names their Parquet files
(scanned in place) and hands over the few not yet compacted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import duckdb
import numpy as np
import pyarrow as pa

from deardiary.projections.folds.metrics import POINT_SCHEMA
from deardiary.projections.store import DuckDBProjectionStore

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
_NAMES = ("iteration_id", "key", "group")


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
        self, conn: duckdb.DuckDBPyConnection, readable: pa.Table | None
    ) -> MetricParts:
        """The metric points as of `conn`'s transaction; `readable` (a table of
        iteration_id) restricts the hot points, None means all of them."""
        ...


class StoreRelations:
    """Embedded mode: cursors of the projection store, its segment files and hot tables."""

    def __init__(self, store: DuckDBProjectionStore) -> None:
        self.store = store

    def reader(self) -> duckdb.DuckDBPyConnection:
        return self.store.reader()

    def metric_parts(
        self, conn: duckdb.DuckDBPyConnection, readable: pa.Table | None
    ) -> MetricParts:
        rows = conn.execute("SELECT path FROM metric_segments ORDER BY created_seq").fetchall()
        files = [str(self.store.segments_dir / p) for (p,) in rows]
        if readable is None:
            series = conn.sql("SELECT * FROM metric_series_hot").to_arrow_table()
            points = conn.sql("SELECT * FROM metric_points_hot_data").to_arrow_table()
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
                "SELECT p.* FROM metric_points_hot_data p SEMI JOIN _series USING (series)"
            ).to_arrow_table()
        finally:
            conn.unregister("_series")
        return MetricParts(files, hot_points(series, points))


def hot_points(series: pa.Table, points: pa.Table) -> pa.Table:
    """The numbered hot layout (`metric_series_hot`, `metric_points_hot_data`) as points
    with their names: each point's series number indexes a dictionary of the names, so
    no string is copied (a join would cost a million-row hash join per statement).
    Every point's series must be in `series`."""
    numbers = series.column("series").to_numpy()
    position = np.full(int(numbers.max()) + 1 if len(numbers) else 0, -1, np.int32)
    position[numbers] = np.arange(len(numbers), dtype=np.int32)
    indices = pa.array(position[points.column("series").to_numpy()], pa.int32())
    columns: dict[str, pa.Array | pa.ChunkedArray] = {
        name: pa.DictionaryArray.from_arrays(indices, series.column(name).combine_chunks())
        for name in _NAMES
    }
    columns.update({f.name: points.column(f.name) for f in SCAN_ORDER if f.name not in _NAMES})
    return pa.table({f.name: columns[f.name] for f in SCAN_ORDER})
