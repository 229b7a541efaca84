"""Series reads take their compacted points from the segment files with pyarrow (row groups
picked by their statistics), not through DuckDB's scan: the answer must be the scan's,
for files of either Parquet format, row groups shared by several series, long ids whose
statistics are cut short, step windows and series that are not there."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from deardiary.projections.folds.metrics import POINT_SCHEMA
from deardiary.projections.queries import metric_series
from deardiary.projections.queries.metric_series import TILE_SCHEMA
from deardiary.projections.queries.segment_files import segment_files, series_points
from deardiary.projections.store import DuckDBProjectionStore
from deardiary.projections.writes import Writes

LONG = "x" * 300  # past the 256 bytes DuckDB keeps of a string statistic
ITERATIONS = ["it-a", "it-b", LONG + "1", LONG + "2"]
SERIES = [(it, key, group) for it in ITERATIONS for key in ("acc", "loss") for group in ("", "val")]


def _batch(first_offset: int, steps: range) -> Writes:
    rows = [(s, *series) for series in SERIES for s in steps]
    n, when = len(rows), datetime(2026, 1, 1)
    table = pa.table(
        {
            "iteration_id": pa.array([r[1] for r in rows]).dictionary_encode(),
            "key": pa.array([r[2] for r in rows]).dictionary_encode(),
            "step": pa.array([r[0] for r in rows], pa.int64()),
            "value": pa.array([float(i % 97) for i in range(n)], pa.float64()),
            "recorded_at": pa.array([when + timedelta(seconds=i) for i in range(n)]),
            "client_time": pa.array([when - timedelta(microseconds=i) for i in range(n)]),
            "group": pa.array([r[3] for r in rows]).dictionary_encode(),
            "partition": pa.array([0] * n, pa.int32()),
            "offset": pa.array(range(first_offset, first_offset + n), pa.int64()),
            "seq": pa.array([0] * n, pa.int32()),
        },
        schema=POINT_SCHEMA,
    )
    return Writes(
        next_offsets={0: first_offset + n},
        applied_event_ids=[uuid.uuid4().hex],
        metric_points=table,
    )


def _scanned(
    conn: duckdb.DuckDBPyConnection, series: tuple[str, str, str], lo: int | None, hi: int | None
) -> pa.Table:
    """The series as DuckDB's scan of every point answers it, in step order."""
    return conn.sql(
        "SELECT step, value, recorded_at, client_time FROM metrics"
        ' WHERE iteration_id = $it AND key = $key AND "group" = $g'
        " AND step >= coalesce($lo, step) AND step <= coalesce($hi, step) ORDER BY step",
        params={"it": series[0], "key": series[1], "g": series[2], "lo": lo, "hi": hi},
    ).to_arrow_table()


def _tiles(conn: duckdb.DuckDBPyConnection, series: tuple[str, str, str]) -> pa.Table:
    """The series' tiles as DuckDB reads them (a tile cut by two segments is in both)."""
    return conn.sql(
        f"SELECT {', '.join(TILE_SCHEMA.names)} FROM metric_tiles"
        ' WHERE iteration_id = $it AND key = $key AND "group" = $g ORDER BY tile, first_step',
        params={"it": series[0], "key": series[1], "g": series[2]},
    ).to_arrow_table()


def test_new_segments_are_written_in_parquet_format_2(tmp_path: Path) -> None:
    store = DuckDBProjectionStore(tmp_path / "p")
    try:
        store.apply(_batch(0, range(100)))
        store.compact()
        (segment,) = store.segment_paths()
    finally:
        store.close()
    assert pq.read_metadata(segment).format_version != "1.0"  # delta encodings and all


def test_series_read_from_files_equals_the_scan(tmp_path: Path) -> None:
    store = DuckDBProjectionStore(tmp_path / "p")
    try:
        store.apply(_batch(0, range(0, 3000)))
        store.compact()
        first = store.segment_paths()[0]
        # as a store of an older release wrote it (format 1), in small row groups that
        # hold several series each (and two long ids whose statistics DuckDB cuts short)
        old = first.with_name("old.parquet")
        store.conn.execute(
            f"COPY (SELECT * FROM read_parquet('{first}')) TO '{old}'"
            " (FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE 2048)"
        )
        old.replace(first)
        assert pq.read_metadata(first).num_row_groups > 1
        store.apply(_batch(10**6, range(3000, 5000)))
        store.compact()  # a second segment, of this release's format
        store.apply(_batch(2 * 10**6, range(5000, 5100)))  # and hot points
        reader = store.reader()
        try:
            for series in [
                *SERIES,
                ("it-a", "loss", "test"),
                ("it-c", "loss", ""),
                (LONG, "acc", ""),
            ]:
                for lo, hi in [(None, None), (2500, 3500), (None, 10), (4000, None), (9000, None)]:
                    got = metric_series.history(reader, *series[:2], lo, hi, group=series[2])
                    want = _scanned(reader, series, lo, hi)
                    assert got.schema == metric_series.SERIES_SCHEMA
                    assert got.equals(want.cast(metric_series.SERIES_SCHEMA)), (series, lo, hi)
                tiles = series_points(
                    segment_files(reader, series).tiles,
                    series,
                    TILE_SCHEMA.names,
                    None,
                    None,
                    TILE_SCHEMA,
                )
                assert tiles.equals(_tiles(reader, series).cast(TILE_SCHEMA)), series
        finally:
            reader.close()
    finally:
        store.close()


def test_a_series_without_hot_points_skips_their_query(tmp_path: Path) -> None:
    """The snapshot says which series have points not compacted yet; only those pay the
    hot points' query (~3 ms even when it finds nothing)."""
    store = DuckDBProjectionStore(tmp_path / "p")
    try:
        store.apply(_batch(0, range(100)))
        store.compact()
        reader = store.reader()
        statements: list[str] = []

        class Cursor:  # the reader, noting each statement it is given
            def __getattr__(self, name: str) -> object:
                return getattr(reader, name)

            def sql(self, query: str, **kw: object) -> object:
                statements.append(query)
                return reader.sql(query, **kw)  # type: ignore[arg-type]

            def execute(self, query: str, *args: object) -> object:
                statements.append(query)
                return reader.execute(query, *args)

        try:
            cursor: duckdb.DuckDBPyConnection = Cursor()  # type: ignore[assignment]
            assert metric_series.history(cursor, "it-a", "loss").num_rows == 100
            assert metric_series.downsampled(cursor, "it-a", "loss", 10).num_rows <= 10
            assert not [q for q in statements if "metric_points_hot" in q]
            store.apply(_batch(10**6, range(100, 110)))  # hot points, this series' among them
            assert metric_series.history(cursor, "it-a", "loss").num_rows == 110
            assert [q for q in statements if "metric_points_hot" in q]
        finally:
            reader.close()
    finally:
        store.close()
