"""A metric series within a step window (a zoomed chart), downsampled to the chart's width.

The window's points are read with `metric_series.history` (step order); when there are
more than `max_points`, the window is cut into equal step buckets and each keeps its min
and max point (ties: the first in step order), as the whole-series downsampling does.
"""

from __future__ import annotations

from collections.abc import Sequence

import duckdb
import numpy as np
import pyarrow as pa

from deardiary.projections.queries.metric_series import (
    COMPARE_SCHEMA,
    history,
    labelled,
    series,
)


def window(
    conn: duckdb.DuckDBPyConnection,
    iteration_id: str,
    key: str,
    min_step: int | None,
    max_step: int | None,
    max_points: int | None,
    group: str = "",
) -> pa.Table:
    """step, value, recorded_at, client_time of one series (iteration, key, group) with
    min_step <= step <= max_step."""
    if min_step is None and max_step is None:
        return series(conn, iteration_id, key, max_points, group)
    points = history(conn, iteration_id, key, min_step, max_step, group)
    if max_points is None or points.num_rows <= max_points:
        return points
    return min_max(points, max_points)


def min_max(points: pa.Table, max_points: int) -> pa.Table:
    """At most `max_points` rows of a step-ordered series: per equal-width step bucket,
    the min and the max point."""
    buckets = max(1, max_points // 2)
    steps = points["step"].to_numpy()
    values = points["value"].to_numpy()
    lo, hi = int(steps[0]), int(steps[-1])
    bucket = ((steps - lo) * buckets // (hi - lo + 1)).astype(np.int64)
    starts = np.flatnonzero(np.r_[True, bucket[1:] != bucket[:-1]])
    nan = np.isnan(values)
    lows = np.minimum.reduceat(np.where(nan, np.inf, values), starts)
    highs = np.maximum.reduceat(np.where(nan, -np.inf, values), starts)
    # the first point of each bucket holding its min, and its max
    owner = np.repeat(np.arange(len(starts)), np.diff(np.r_[starts, len(steps)]))
    is_low = np.where(nan, False, values == lows[owner])
    is_high = np.where(nan, False, values == highs[owner])
    all_nan = np.isinf(lows)[owner]  # a bucket of NaN only keeps its first point
    keep = np.union1d(
        _first_true(is_low | (all_nan & ~is_high), owner), _first_true(is_high, owner)
    )
    return points.take(pa.array(keep))


def _first_true(flags: np.ndarray, owner: np.ndarray) -> np.ndarray:
    where = np.flatnonzero(flags)
    if len(where) == 0:
        return where
    first = np.r_[True, owner[where][1:] != owner[where][:-1]]
    return where[first]


def compare_window(
    conn: duckdb.DuckDBPyConnection,
    iteration_ids: Sequence[str],
    keys: Sequence[str],
    min_step: int | None,
    max_step: int | None,
    max_points: int | None,
    group: str = "",
) -> pa.Table:
    """Many series of one group in one step window: iteration_id, key, group, step,
    value, recorded_at, client_time."""
    parts = [
        labelled(
            window(conn, iteration_id, key, min_step, max_step, max_points, group),
            iteration_id,
            key,
            group,
        )
        for iteration_id in iteration_ids
        for key in keys
    ]
    return pa.concat_tables(parts) if parts else COMPARE_SCHEMA.empty_table()
