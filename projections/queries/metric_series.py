"""Metric series: raw history, deterministic min/max downsampling, comparison, snapshots.

A series is one (iteration, key, group); every function takes the group (default "", the
group of metrics logged without one). Downsampling splits the step range into equal
buckets and keeps, per bucket, the point with the lowest and the point with the highest
value (ties: lowest step), so spikes survive (random sampling hides them) and the same
data always gives the same answer.
"""

from __future__ import annotations

from collections.abc import Sequence

import duckdb
import numpy as np
import pyarrow as pa

from deardiary.projections.queries.segment_files import (
    SeriesFiles,
    segment_files,
    series_points,
)
from deardiary.projections.queries.snapshot import snapshot

SERIES_COLUMNS = "step, value, recorded_at, client_time"
SERIES_SCHEMA = pa.schema(
    [
        ("step", pa.int64()),
        ("value", pa.float64()),
        ("recorded_at", pa.timestamp("us")),
        ("client_time", pa.timestamp("us")),
    ]
)
_SERIES_NAMES = SERIES_SCHEMA.names
_READ_FIELDS = {
    f.name: f
    for f in [
        *SERIES_SCHEMA,
        pa.field("partition", pa.int32()),
        pa.field("offset", pa.int64()),
        pa.field("seq", pa.int32()),
    ]
}


def history(
    conn: duckdb.DuckDBPyConnection,
    iteration_id: str,
    key: str,
    start_step: int | None = None,
    end_step: int | None = None,
    group: str = "",
) -> pa.Table:
    """Every point of one series in step order: columns step, value, recorded_at (the
    log's clock) and client_time (the caller's clock when it logged the point).

    The rows are read in scan order, which for a series is nearly always its order already
    (segments are sorted, hot rows are in log order). Steps that strictly increase need no
    more; only otherwise (a repeated step, rows out of order) are the log positions read
    too, to sort by -- a million-point read skips both the sort and those columns."""
    params = {"it": iteration_id, "key": key, "g": group, "lo": start_step, "hi": end_step}

    series = (iteration_id, key, group)

    def read(files: SeriesFiles, columns: list[str]) -> pa.Table:  # `metrics` is unordered
        schema = pa.schema([_READ_FIELDS[c] for c in columns])
        segments = series_points(files.paths, series, columns, start_step, end_step, schema)
        if not files.hot:
            return segments
        selected = ", ".join(f'"{c}"' for c in columns)
        hot = conn.sql(
            f"SELECT {selected} FROM metric_points_hot"
            ' WHERE iteration_id = $it AND key = $key AND "group" = $g'
            " AND step >= coalesce($lo, step) AND step <= coalesce($hi, step)",
            params=params,
        ).to_arrow_table()
        return pa.concat_tables([segments, hot.cast(schema)]) if hot.num_rows else segments

    with snapshot(conn):
        files = segment_files(conn, series)
        table = read(files, _SERIES_NAMES)
        if _steps_increase(table["step"]):
            return table
        table = read(files, [*_SERIES_NAMES, "partition", "offset", "seq"])
    order = _sort_order(table)
    out = table.select(_SERIES_NAMES)
    return out if order is None else out.take(order)


def _steps_increase(steps: pa.ChunkedArray) -> bool:
    """Whether steps strictly increase, chunk by chunk (no copy of a million steps into
    one array first)."""
    last: int | None = None
    for chunk in steps.chunks:
        values = chunk.to_numpy()
        if not len(values):
            continue
        if (last is not None and values[0] <= last) or not np.all(values[1:] > values[:-1]):
            return False
        last = int(values[-1])
    return True


def _sort_order(table: pa.Table) -> np.ndarray | None:
    """Indices putting rows in (step, partition, offset, seq) order; None if they are."""
    if table.num_rows < 2:
        return None
    cols = [table[c].to_numpy() for c in ("step", "partition", "offset", "seq")]
    ahead = np.zeros(table.num_rows - 1, dtype=bool)  # row i+1 sorts after row i
    tied = np.ones(table.num_rows - 1, dtype=bool)  # equal on every column so far
    for col in cols:
        a, b = col[:-1], col[1:]
        ahead |= tied & (b > a)
        tied &= b == a
    if (ahead | tied).all():
        return None
    return np.lexsort(cols[::-1])


_TILE_POINT = pa.struct(
    [
        *SERIES_SCHEMA,
        pa.field("partition", pa.int32()),
        pa.field("offset", pa.int64()),
        pa.field("seq", pa.int32()),
    ]
)
_HOT_SCHEMA = pa.schema(list(_TILE_POINT))
TILE_SCHEMA = pa.schema(
    [
        ("tile", pa.int64()),
        ("points", pa.int64()),
        ("first_step", pa.int64()),
        ("last_step", pa.int64()),
        ("low", _TILE_POINT),
        ("high", _TILE_POINT),
    ]
)
"""The columns of a series' tiles that downsampling reads (`tiles_sql` writes them)."""
TILE_STEPS = 256
"""Steps per tile: each Parquet segment has a companion file with, per series and tile,
the point count, step range, and min and max points (see `tiles_sql`)."""
TILE_SHORTFALL = 4
"""Downsampling answers from tiles while a series spans at least 1/TILE_SHORTFALL tile per
bucket asked for (a bucket then at most TILE_SHORTFALL times as wide as asked)."""

_POINT = (
    "{'step': step, 'value': value, 'recorded_at': recorded_at, 'client_time': client_time,"
    " 'partition': \"partition\", 'offset': \"offset\", 'seq': seq}"
)
# The min point: lowest value (NaN sorts highest), then lowest step, then earliest logged;
# the max point: highest number (a NaN only where there is no number: a spike must survive
# a missing value beside it), then lowest step, then earliest logged.
_LOW = f'arg_min({_POINT}, (value, step, "partition", "offset", seq))'
_HIGH = f'arg_max({_POINT}, (NOT isnan(value), value, -step, -"partition", -"offset", -seq))'


def tiles_sql(source: str) -> str:
    """The tiles of every series in `source` (a relation with the metric point columns)."""
    return (
        f'SELECT iteration_id, key, "group", step // {TILE_STEPS} AS tile, count(*) AS points,'
        f" min(step) AS first_step, max(step) AS last_step, {_LOW} AS low, {_HIGH} AS high"
        f' FROM {source} GROUP BY iteration_id, key, "group", tile'
        f' ORDER BY iteration_id, key, "group", tile'
    )


def downsampled(
    conn: duckdb.DuckDBPyConnection,
    iteration_id: str,
    key: str,
    max_points: int,
    group: str = "",
) -> pa.Table:
    """At most `max_points` points (>= 2): the step range is cut into equal buckets and
    each bucket keeps its min and max point (a NaN only in a bucket of NaN alone).

    Where the range spans at least a quarter of a tile per bucket, buckets are whole tiles
    (at least one) and are answered from the tiles (a few thousand rows for a million
    points) plus the points not compacted yet -- a bucket then covers at most four times
    the width asked for, finer than a chart shows; otherwise (a short series, at most a
    few tens of thousands of points) from the points themselves."""
    with snapshot(conn):
        return _downsampled(conn, iteration_id, key, max_points, group)


def _downsampled(
    conn: duckdb.DuckDBPyConnection, iteration_id: str, key: str, max_points: int, group: str
) -> pa.Table:
    buckets = max(1, max_points // 2)
    params: dict[str, object] = {"it": iteration_id, "key": key, "g": group}
    where = 'WHERE iteration_id = $it AND key = $key AND "group" = $g'
    # the tiles `metric_tiles` holds, read from their files (pyarrow: ~1.8 ms of CPU for
    # a million points' 3,907 tiles here, DuckDB ~6)
    files = segment_files(conn, (iteration_id, key, group))
    tiles = series_points(
        files.tiles, (iteration_id, key, group), TILE_SCHEMA.names, None, None, TILE_SCHEMA
    )
    hot = (
        conn.sql(
            f'SELECT step, value, recorded_at, client_time, "partition", "offset", seq'
            f" FROM metric_points_hot {where}",
            params=params,
        ).to_arrow_table()
        if files.hot
        else _HOT_SCHEMA.empty_table()
    )
    total = int(np.sum(tiles["points"].to_numpy())) + hot.num_rows
    if total <= max_points:
        return history(conn, iteration_id, key, group=group)
    steps = [tiles["first_step"], tiles["last_step"], hot["step"]]
    lo = min(int(np.min(s.to_numpy())) for s in steps if len(s))
    hi = max(int(np.max(s.to_numpy())) for s in steps if len(s))
    first, count = lo // TILE_STEPS, hi // TILE_STEPS - lo // TILE_STEPS + 1
    if count * TILE_SHORTFALL >= buckets:
        return _from_tiles(tiles, hot, first, -(-count // buckets))
    return _from_points(conn, params, max_points, buckets)


_CANDIDATE_FIELDS = (
    "step",
    "value",
    "recorded_at",
    "client_time",
    "partition",
    "offset",
    "seq",
)


def _from_tiles(tiles: pa.Table, hot: pa.Table, first: int, width: int) -> pa.Table:
    """Buckets of `width` tiles from tile `first`: candidates are every tile's min and max
    point and every hot point; each bucket keeps its min and max candidate (a few thousand
    rows, so numpy does it)."""
    low, high = (tiles[c].combine_chunks() for c in ("low", "high"))
    cols = {
        f: np.concatenate(
            [
                _numbers(low.field(f)),
                _numbers(high.field(f)),
                _numbers(hot[f].combine_chunks()),
            ]
        )
        for f in _CANDIDATE_FIELDS
    }
    tile = np.concatenate(
        [
            tiles["tile"].to_numpy(),
            tiles["tile"].to_numpy(),
            cols["step"][2 * len(tiles) :] // TILE_STEPS,
        ]
    )
    bucket = (tile - first) // width
    value, nan = cols["value"], np.isnan(cols["value"])
    log_order = (cols["seq"], cols["offset"], cols["partition"], cols["step"])
    # lexsort: the last key is the primary one. NaN sorts above every number, -0.0 == 0.0;
    # a bucket's max is a number where it has one.
    lows = np.lexsort((*log_order, value, bucket))
    highs = np.lexsort((*log_order, -np.where(nan, 0.0, value), nan, bucket))
    keep = np.union1d(_firsts(lows, bucket), _firsts(highs, bucket))
    step, value, at = cols["step"][keep], value[keep], cols["recorded_at"][keep]
    client = cols["client_time"][keep]
    order = np.lexsort((at, value, step))
    return pa.table(
        {
            "step": pa.array(step[order]),
            "value": pa.array(value[order]),
            "recorded_at": pa.array(at[order], pa.timestamp("us")),
            "client_time": pa.array(client[order], pa.timestamp("us")),
        }
    )


def _numbers(column: pa.Array) -> np.ndarray:
    """A candidate column as numbers (timestamps as microseconds)."""
    if pa.types.is_timestamp(column.type):
        column = column.cast(pa.int64())
    numbers: np.ndarray = column.to_numpy(zero_copy_only=False)
    return numbers


def _firsts(order: np.ndarray, bucket: np.ndarray) -> np.ndarray:
    """The first row of each bucket in `order` (which sorts by bucket first)."""
    ordered = bucket[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    return order[starts]


def _from_points(
    conn: duckdb.DuckDBPyConnection, params: dict[str, object], max_points: int, buckets: int
) -> pa.Table:
    """Buckets of equal step width over the series' points: plain min/max aggregates find
    each bucket's extreme values and a join picks the points holding them (ties: lowest
    step, then the earliest logged) -- cheaper than arg_min/arg_max over structs."""
    return conn.sql(
        """
        WITH s AS (
            SELECT step, value, recorded_at, client_time, "partition", "offset", seq
            FROM metrics WHERE iteration_id = $it AND key = $key AND "group" = $g
        ),
        n AS (SELECT count(*) AS total, min(step) AS lo, max(step) AS hi FROM s),
        b AS (
            SELECT s.*, floor((s.step - n.lo) * $buckets / (n.hi - n.lo + 1))::BIGINT AS bucket
            FROM s, n WHERE n.total > $max
        ),
        ext AS (
            SELECT bucket, min(value) AS lo_v,
                   coalesce(max(value) FILTER (WHERE NOT isnan(value)), max(value)) AS hi_v
            FROM b GROUP BY bucket
        ),
        low AS (
            SELECT DISTINCT ON (b.bucket) b.step, b.value, b.recorded_at, b.client_time
            FROM b JOIN ext ON b.bucket = ext.bucket AND b.value = ext.lo_v
            ORDER BY b.bucket, b.step, b."partition", b."offset", b.seq
        ),
        high AS (
            SELECT DISTINCT ON (b.bucket) b.step, b.value, b.recorded_at, b.client_time
            FROM b JOIN ext ON b.bucket = ext.bucket AND b.value = ext.hi_v
            ORDER BY b.bucket, b.step, b."partition", b."offset", b.seq
        )
        SELECT * FROM (SELECT * FROM low UNION SELECT * FROM high)
        UNION ALL
        SELECT step, value, recorded_at, client_time
        FROM (SELECT s.* FROM s, n WHERE n.total <= $max)
        ORDER BY step, value, recorded_at
        """,
        params={**params, "max": max_points, "buckets": buckets},
    ).to_arrow_table()


def series(
    conn: duckdb.DuckDBPyConnection,
    iteration_id: str,
    key: str,
    max_points: int | None = None,
    group: str = "",
) -> pa.Table:
    if max_points is None:
        return history(conn, iteration_id, key, group=group)
    return downsampled(conn, iteration_id, key, max_points, group)


COMPARE_SCHEMA = pa.schema(
    [
        ("iteration_id", pa.string()),
        ("key", pa.string()),
        ("group", pa.string()),
        *SERIES_SCHEMA,
    ]
)


def labelled(table: pa.Table, iteration_id: str, key: str, group: str) -> pa.Table:
    """A series with its iteration, key and group in front (the compare answer's rows)."""
    n = table.num_rows
    front = {
        "iteration_id": pa.array([iteration_id] * n, pa.string()),
        "key": pa.array([key] * n, pa.string()),
        "group": pa.array([group] * n, pa.string()),
    }
    columns = {**front, **{name: table[name] for name in SERIES_SCHEMA.names}}
    return pa.table(columns).cast(COMPARE_SCHEMA)


def compare(
    conn: duckdb.DuckDBPyConnection,
    iteration_ids: Sequence[str],
    keys: Sequence[str],
    max_points: int | None = None,
    group: str = "",
) -> pa.Table:
    """Many iterations' series side by side: iteration_id, key, group, step, value,
    recorded_at, client_time."""
    parts = [
        labelled(series(conn, iteration_id, key, max_points, group), iteration_id, key, group)
        for iteration_id in iteration_ids
        for key in keys
    ]
    return pa.concat_tables(parts) if parts else COMPARE_SCHEMA.empty_table()


def at_step(
    conn: duckdb.DuckDBPyConnection, experiment_id: str, key: str, step: int, group: str = ""
) -> pa.Table:
    """The value of a metric across all iterations of an experiment at one step."""
    return conn.sql(
        """
        SELECT iteration_id, step, value, recorded_at, client_time FROM (
            SELECT m.*, row_number() OVER (
                PARTITION BY m.iteration_id ORDER BY "partition" DESC, "offset" DESC, seq DESC
            ) AS newest
            FROM metrics m JOIN iterations i USING (iteration_id)
            WHERE i.experiment_id = $exp AND NOT i.deleted AND m.key = $key
              AND m."group" = $g AND m.step = $step
        ) WHERE newest = 1
        ORDER BY iteration_id
        """,
        params={"exp": experiment_id, "key": key, "g": group, "step": step},
    ).to_arrow_table()


def metric_names(conn: duckdb.DuckDBPyConnection, experiment_id: str) -> pa.Table:
    """The metric series logged in an experiment -- key and group -- with how many
    iterations logged each, and their points."""
    return conn.sql(
        """
        SELECT lm.key, lm."group", count(*) AS iterations, sum(lm.count)::BIGINT AS points
        FROM last_metrics lm JOIN iterations i USING (iteration_id)
        WHERE i.experiment_id = $exp AND NOT i.deleted
        GROUP BY lm.key, lm."group" ORDER BY lm."group", lm.key
        """,
        params={"exp": experiment_id},
    ).to_arrow_table()
