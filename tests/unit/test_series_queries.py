"""Series reads against plain-Python references, on data full of ties, duplicates, NaN and
signed zeros: the full history in (step, log position) order whatever order the rows are
stored in, and downsampling keeping each equal-width step bucket's min and max points."""

from __future__ import annotations

import math
from collections.abc import Sequence
from random import Random

import duckdb
from hypothesis import given, settings
from hypothesis import strategies as st

from deardiary.projections.queries.metric_series import downsampled, history, tiles_sql
from deardiary.projections.queries.segment_files import (
    FILES_VIEW,
    HOT_SERIES_VIEW,
    files_view_sql,
)
from tests.series_reference import Point, bucket_extremes

VALUES = st.one_of(
    st.sampled_from([0.0, -0.0, 1.0, -1.0, 2.5, math.nan, math.inf, -math.inf]),
    st.floats(allow_nan=False, allow_infinity=False, width=64),
)
POINTS = st.lists(st.tuples(st.integers(0, 60), VALUES), min_size=1, max_size=120)


def reference(points: Sequence[Point], max_points: int) -> list[tuple[int, str]]:
    if len(points) <= max_points:
        kept = list(points)
    else:
        buckets = max(1, max_points // 2)
        lo = min(p[0] for p in points)
        hi = max(p[0] for p in points)
        groups: dict[int, list[Point]] = {}
        for p in points:
            groups.setdefault(math.floor((p[0] - lo) * buckets / (hi - lo + 1)), []).append(p)
        kept = []
        for group in groups.values():
            kept += bucket_extremes(group)
    return sorted((s, repr(v + 0.0 if v == 0 else v)) for s, v, _ in set(kept))


def listing(rows: list[tuple[int, float]]) -> list[tuple[int, str]]:
    return sorted((s, repr(v + 0.0 if v == 0 else v)) for s, v in rows)


def _metrics(rows: Sequence[tuple[int, float, int, int, int]]) -> duckdb.DuckDBPyConnection:
    """A store's relations with every point still hot, as the store lays them out before
    its first compaction: (step, value, partition, offset, seq) rows, stored in that order."""
    conn = duckdb.connect()
    conn.execute(
        "CREATE TABLE metric_points_hot (iteration_id VARCHAR, key VARCHAR, step BIGINT,"
        ' value DOUBLE, recorded_at TIMESTAMP, client_time TIMESTAMP, "group" VARCHAR,'
        ' "partition" INTEGER, "offset" BIGINT, seq INTEGER)'
    )
    conn.execute("CREATE VIEW metric_segment_points AS SELECT * FROM metric_points_hot WHERE false")
    conn.execute(f"CREATE VIEW {FILES_VIEW} AS {files_view_sql([], [])}")
    conn.execute(
        f'CREATE VIEW {HOT_SERIES_VIEW} AS SELECT iteration_id, key, "group" FROM metric_points_hot'
    )
    conn.execute(
        f"CREATE VIEW metric_tiles AS SELECT * FROM ({tiles_sql('metric_points_hot')}) WHERE false"
    )
    conn.execute(
        "CREATE VIEW metrics AS SELECT * FROM metric_segment_points"
        " UNION ALL SELECT * FROM metric_points_hot"
    )
    insert = "INSERT INTO metric_points_hot VALUES"
    conn.execute(f"{insert} ('other', 'loss', 0, -1e9, NOW(), NOW(), '', 0, 0, 0)")
    # the same key in another group of the same iteration: a series of its own
    conn.execute(f"{insert} ('it', 'loss', 0, -1e9, NOW(), NOW(), 'val', 0, 0, 0)")
    if rows:
        conn.executemany(
            f"{insert} ('it', 'loss', ?, ?, TIMESTAMP '2026-01-01', TIMESTAMP '2025-12-31', '',"
            " ?, ?, ?)",
            [list(r) for r in rows],
        )
    return conn


POSITION = st.tuples(st.integers(0, 5), st.integers(0, 1), st.integers(0, 4), st.integers(0, 3))


@settings(max_examples=100, deadline=None)
@given(st.lists(POSITION, max_size=40, unique=True), st.randoms(use_true_random=False))
def test_history_is_in_step_then_log_order(
    positions: list[tuple[int, int, int, int]], rnd: Random
) -> None:
    rows = [(step, float(i), part, off, seq) for i, (step, part, off, seq) in enumerate(positions)]
    in_order = sorted(rows, key=lambda r: (r[0], r[2], r[3], r[4]))
    rnd.shuffle(rows)
    got = history(_metrics(rows), "it", "loss")
    assert got.column_names == ["step", "value", "recorded_at", "client_time"]
    assert got["step"].to_pylist() == [r[0] for r in in_order]
    assert got["value"].to_pylist() == [r[1] for r in in_order]


@settings(max_examples=150, deadline=None)
@given(POINTS, st.integers(10, 40))
def test_downsampling_matches_the_reference(raw: list[tuple[int, float]], max_points: int) -> None:
    """Points within one tile: from 5 buckets (10 points) on they are downsampled from the
    points themselves (fewer buckets are answered from whole tiles: tests/integration/
    test_downsampling_tiles.py)."""
    points = [(step, value, offset) for offset, (step, value) in enumerate(raw)]
    conn = _metrics([(step, value, 0, offset, 0) for step, value, offset in points])
    got = downsampled(conn, "it", "loss", max_points)
    rows = list(zip(got["step"].to_pylist(), got["value"].to_pylist(), strict=True))
    assert len(rows) <= max_points
    assert listing(rows) == reference(points, max_points)
