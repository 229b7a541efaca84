"""A big batch written straight into a segment (replay) answers as compaction of the hot
table does: the same rows in the same order, the same tiles bit for bit, the same views."""

from __future__ import annotations

import dataclasses
import math
import random
import tempfile
from pathlib import Path
from typing import Any

import duckdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deardiary.projections.fold import fold, lookups_for
from deardiary.projections.queries.metric_series import TILE_STEPS, downsampled, history, tiles_sql
from deardiary.projections.segment_build import SortedPoints
from deardiary.projections.store import POINT_COLUMNS, SEGMENT_ORDER, DuckDBProjectionStore
from deardiary.projections.writes import PriorState
from tests.builders import metrics, records, sweep_start
from tests.store_snapshot import snapshot

VALUES = st.one_of(
    st.sampled_from([0.0, -0.0, 1.0, -1.0, 2.0, math.nan, math.inf, -math.inf]),
    st.floats(-1e6, 1e6, allow_nan=False),
)
POINTS = st.lists(
    st.tuples(
        st.sampled_from(["loss", "acc", "ß", "B", "b", "loss/x"]),
        VALUES,
        st.one_of(st.integers(0, 3), st.integers(0, 6 * TILE_STEPS), st.just(-1)),
    ),
    min_size=1,
    max_size=40,
)
# events: (iteration, group, points); iterations and groups sort differently as code points
EVENTS = st.lists(
    st.tuples(st.sampled_from(["it-1", "Z", "é"]), st.sampled_from(["", "val", "Val"]), POINTS),
    min_size=1,
    max_size=12,
)


def _batch(
    events: list[tuple[str, str, list[tuple[str, float, int]]]], partition: int = 0
) -> list[Any]:
    starts = [e for it in ("it-1", "Z", "é") for e in sweep_start(iteration=it)[-1:]]
    return records(
        [*sweep_start()[:2], *starts, *(metrics(it, pts, g) for it, g, pts in events)],
        partition=partition,
    )


def _canon(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Rows with floats as their repr (NaN equals NaN, -0.0 differs from 0.0)."""

    def one(v: Any) -> Any:
        if isinstance(v, float):
            return repr(v)
        if isinstance(v, dict):
            return tuple((k, one(x)) for k, x in v.items())
        return v

    return [tuple(one(v) for v in r) for r in rows]


@settings(max_examples=40, deadline=None)
@given(EVENTS, st.integers(0, 2))
def test_sorted_points_and_tiles_are_what_sql_gives(
    events: list[tuple[str, str, list[tuple[str, float, int]]]], partition: int
) -> None:
    batch = _batch(events, partition)
    points = fold(PriorState(next_offsets={}), batch).metric_points
    assert points is not None
    conn = duckdb.connect()
    conn.register("points", points)
    built = SortedPoints(points)
    conn.register("sorted_points", built.table())
    conn.register("built_tiles", built.tiles())
    want = conn.execute(f"SELECT {POINT_COLUMNS} FROM points ORDER BY {SEGMENT_ORDER}").fetchall()
    got = conn.execute(f"SELECT {POINT_COLUMNS} FROM sorted_points").fetchall()  # as it is
    assert _canon(got) == _canon(want)
    want_tiles = _canon(conn.execute(tiles_sql("points")).fetchall())
    assert _canon(conn.execute("SELECT * FROM built_tiles").fetchall()) == want_tiles
    types = "SELECT column_name, column_type FROM (DESCRIBE {})"
    assert (
        conn.execute(types.format("SELECT * FROM built_tiles")).fetchall()
        == conn.execute(types.format(tiles_sql("points"))).fetchall()
    )
    conn.close()


@settings(max_examples=40, deadline=None)
@given(EVENTS, st.randoms(use_true_random=False))
def test_points_in_any_row_order_are_sorted_as_sql_sorts_them(
    events: list[tuple[str, str, list[tuple[str, float, int]]]], rng: random.Random
) -> None:
    """Rows not in log order (the hot table's parallel inserts swap blocks of them), equal
    steps among them: the same order as SQL's ORDER BY."""
    points = fold(PriorState(next_offsets={}), _batch(events)).metric_points
    assert points is not None
    shuffled = list(range(points.num_rows))
    rng.shuffle(shuffled)
    points = points.take(shuffled)
    conn = duckdb.connect()
    conn.register("points", points)
    conn.register("sorted_points", SortedPoints(points).table())
    want = conn.execute(f"SELECT {POINT_COLUMNS} FROM points ORDER BY {SEGMENT_ORDER}").fetchall()
    got = conn.execute(f"SELECT {POINT_COLUMNS} FROM sorted_points").fetchall()
    assert _canon(got) == _canon(want)
    conn.close()


def test_points_out_of_step_order_are_sorted() -> None:
    """Log order is not step order here (a later event logs earlier steps, and ties)."""
    batch = _batch(
        [
            ("it-1", "", [("loss", 1.0, 9), ("loss", 2.0, 5), ("acc", 0.5, 5)]),
            ("it-1", "", [("loss", 3.0, 2), ("loss", 4.0, 9), ("loss", math.nan, 2)]),
        ]
    )
    points = fold(PriorState(next_offsets={}), batch).metric_points
    assert points is not None
    table = SortedPoints(points).table()
    assert table["key"].to_pylist() == ["acc"] + ["loss"] * 5
    assert table["step"].to_pylist() == [5, 2, 2, 5, 9, 9]
    assert [repr(v) for v in table["value"].to_pylist()] == [
        "0.5",
        "3.0",
        "nan",
        "2.0",
        "1.0",
        "4.0",
    ]


def _stores(tmp_path: Path) -> tuple[DuckDBProjectionStore, DuckDBProjectionStore]:
    direct = DuckDBProjectionStore(
        tmp_path / "direct", merge_below_rows=20, segment_big_batches=True
    )
    return direct, DuckDBProjectionStore(tmp_path / "hot")


def _apply(store: DuckDBProjectionStore, batch: list[Any]) -> None:
    store.apply(fold(store.load_prior(lookups_for(batch)), batch))


def _files(store: DuckDBProjectionStore, folder: Path) -> list[tuple[Any, ...]]:
    """Every registered file's rows, in file order."""
    rows = []
    conn = store.reader()
    for path in store.segment_paths():
        rows += conn.execute(f"SELECT * FROM read_parquet('{folder / path.name}')").fetchall()
    conn.close()
    return _canon(rows)


def test_a_big_batch_is_a_segment_that_answers_as_compaction_does(tmp_path: Path) -> None:
    events = [
        ("it-1", "", [("loss", 1.0 / (i + 1), -1) for i in range(300)] + [("acc", -0.0, 7)]),
        ("Z", "val", [("loss", math.nan, 3), ("loss", 0.0, 3), ("loss", math.inf, 600)]),
        ("it-1", "", [("loss", 2.0, 5), ("ß", -1.0, 1000)]),
    ]
    direct, hot = _stores(tmp_path)
    batch = _batch(events)
    _apply(direct, batch)
    _apply(hot, batch)
    assert direct.hot_points() == 0 and len(direct.segment_paths()) == 1  # no hot table
    hot.compact()
    assert _files(direct, direct.segments_dir) == _files(hot, hot.segments_dir)
    assert _files(direct, direct.tiles_dir) == _files(hot, hot.tiles_dir)
    assert snapshot(direct.reader()) == snapshot(hot.reader())
    more = records([metrics("Z", [("loss", 5.0, -1), ("acc", 1.0, 1)], "val")], start=len(batch))
    _apply(direct, more)  # a small batch (below 20 // 4 points) goes into the hot table
    _apply(hot, more)
    assert direct.hot_points() == 2
    assert snapshot(direct.reader()) == snapshot(hot.reader())
    direct.close()
    hot.close()
    reopened = DuckDBProjectionStore(tmp_path / "direct")  # the segment is registered
    assert snapshot(reopened.reader()) == snapshot(DuckDBProjectionStore(tmp_path / "hot").reader())
    reopened.close()


def test_a_refused_big_batch_leaves_no_segment(tmp_path: Path) -> None:
    direct, hot = _stores(tmp_path)
    hot.close()
    batch = _batch([("it-1", "", [("loss", float(i), i) for i in range(50)])])
    writes = fold(direct.load_prior(lookups_for(batch)), batch)
    broken = dataclasses.replace(writes, upserts={**writes.upserts, "iterations": [{"x": 1}]})
    with pytest.raises(ValueError, match="no column"):
        direct.apply(broken)  # the segment was written before the batch failed
    assert direct.segment_paths() == [] and direct.hot_points() == 0
    assert list(direct.segments_dir.iterdir()) == list(direct.tiles_dir.iterdir()) == []
    direct.apply(writes)
    assert len(direct.segment_paths()) == 1
    conn = direct.reader()
    assert conn.execute("SELECT count(*) FROM metrics").fetchall() == [(50,)]
    assert conn.sql("SELECT * FROM metric_tiles").to_arrow_table().num_rows == 1
    conn.close()
    direct.close()


# What compaction wrote before it sorted the hot points in numpy (in SQL, by series rank):
# the segment and tiles it writes now must be these, row for row and bit for bit.
_OLD_HOT_IN_SEGMENT_ORDER = """
SELECT s.iteration_id, s.key, p.step, p.value, p.recorded_at, p.client_time, s."group",
       p."partition", p."offset", p.seq
FROM metric_points_hot_data p JOIN (
    SELECT series, iteration_id, key, "group",
           dense_rank() OVER (ORDER BY iteration_id, key, "group") AS series_rank
    FROM metric_series_hot
) s USING (series)
ORDER BY s.series_rank, p.step, p."partition", p."offset", p.seq
"""


def _parquet(conn: duckdb.DuckDBPyConnection, path: Path) -> tuple[Any, ...]:
    """A Parquet file's schema (physical and logical types) and rows (canonical floats).
    Columns are OPTIONAL where written from Arrow, as replay's direct segments have been,
    REQUIRED where the old SQL copied NOT NULL columns: both read alike."""
    schema = conn.execute(
        f"SELECT name, type, converted_type, logical_type FROM parquet_schema('{path}')"
    ).fetchall()
    return schema, _canon(conn.execute(f"SELECT * FROM read_parquet('{path}')").fetchall())


@settings(max_examples=10, deadline=None)
@given(st.lists(EVENTS, min_size=1, max_size=3))
def test_compaction_writes_what_the_sql_sort_wrote(
    batches: list[list[tuple[str, str, list[tuple[str, float, int]]]]],
) -> None:
    """Hot points from several batches (series numbered across them, steps out of order,
    NaN, -0.0) compact into the segment and tiles the old SQL wrote, and a store holding
    the old-way files answers as the compacted one."""
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        new, old = DuckDBProjectionStore(root / "new"), DuckDBProjectionStore(root / "old")
        start = 0
        for i, events in enumerate(batches):
            batch = (
                _batch(events)
                if i == 0
                else records([metrics(it, pts, g) for it, g, pts in events], start=start)
            )
            start += len(batch)
            _apply(new, batch)
            _apply(old, batch)
        old._publish_segment(_OLD_HOT_IN_SEGMENT_ORDER, [])  # the old way
        new.compact()
        (segment,) = new.segment_paths()
        assert [p.name for p in old.segment_paths()] == [segment.name]
        conn = duckdb.connect()
        for kind in ("segments", "tiles"):
            got = _parquet(conn, root / "new" / kind / segment.name)
            assert got == _parquet(conn, root / "old" / kind / segment.name)
        conn.close()
        assert snapshot(new.reader()) == snapshot(old.reader())
        new.close()
        old.close()


def test_segments_written_the_old_and_the_new_way_read_together(tmp_path: Path) -> None:
    """A series in an older segment (REQUIRED columns: the SQL sort's) and in one written
    since (OPTIONAL: from Arrow) reads whole, as the scan of `metrics` gives it, and its
    downsampling reads both files' tiles."""
    store = DuckDBProjectionStore(tmp_path / "s")
    first = _batch([("it-1", "", [("loss", float(i), i) for i in range(50)])])
    _apply(store, first)
    store._publish_segment(_OLD_HOT_IN_SEGMENT_ORDER, [])  # the old way
    more = records([metrics("it-1", [("loss", -1.0 * i, 50 + i) for i in range(50)])], start=99)
    _apply(store, more)
    store.compact()
    assert len(store.segment_paths()) == 2
    conn = store.reader()
    got = history(conn, "it-1", "loss")
    want = conn.execute(
        "SELECT step, value FROM metrics WHERE iteration_id = 'it-1' AND key = 'loss' ORDER BY step"
    ).fetchall()
    assert list(zip(got["step"].to_pylist(), got["value"].to_pylist(), strict=True)) == want
    assert downsampled(conn, "it-1", "loss", 4).num_rows > 0
    conn.close()
    store.close()
