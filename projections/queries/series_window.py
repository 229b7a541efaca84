"""Metric series within a step window (a zoomed chart), downsampled to the chart's width,
and many series at once (the page's charts: one request for every chart in view).

The window's points are read with `metric_series.history` (step order); when there are
more than `max_points`, the window is cut into equal step buckets and each keeps its min
and max point (ties: the first in step then log order), as the whole-series downsampling
does -- except that a NaN beside numbers is not a bucket's max here: a chart's spike must
survive a missing value. `many` reads every asked series in a few queries (tiles,
uncompacted points, raw points: each one query for all series) instead of a few per
series, so its cost grows with the points answered, not with the series asked.
"""

from __future__ import annotations

from collections.abc import Sequence

import duckdb
import numpy as np
import pyarrow as pa

from deardiary.projections.queries.metric_series import (
    COMPARE_SCHEMA,
    SERIES_SCHEMA,
    TILE_SHORTFALL,
    TILE_STEPS,
    _from_tiles,
    _has_view,
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
    the min and the max point among its numbers (a NaN is kept only in a bucket of NaN
    alone: a spike beside a NaN must still show)."""
    buckets = max(1, max_points // 2)
    steps = points["step"].to_numpy()
    values = points["value"].to_numpy()
    lo, hi = int(steps[0]), int(steps[-1])
    # float division: (step - lo) * buckets could overflow int64 for steps near 2**62
    bucket = np.floor((steps - lo) / (hi - lo + 1) * buckets).astype(np.int64)
    starts = np.flatnonzero(np.r_[True, bucket[1:] != bucket[:-1]])
    sizes = np.diff(np.r_[starts, len(steps)])
    nan = np.isnan(values)
    lows = np.repeat(np.minimum.reduceat(np.where(nan, np.inf, values), starts), sizes)
    highs = np.repeat(np.maximum.reduceat(np.where(nan, -np.inf, values), starts), sizes)
    all_nan = np.repeat(np.logical_and.reduceat(nan, starts), sizes)
    keep = np.zeros(len(steps), dtype=bool)
    # the first point of each bucket holding its min (a NaN-only bucket: its first), its max
    keep[_first_true(all_nan | (~nan & (values == lows)), bucket)] = True
    keep[_first_true(~nan & (values == highs), bucket)] = True
    return points.take(pa.array(np.flatnonzero(keep)))


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


_MANY_POINTS = (
    'SELECT w.sid, p.step, p.value, p.recorded_at, p.client_time, p."partition", p."offset",'
    ' p.seq FROM {relation} p JOIN _wanted w USING (iteration_id, key, "group")'
    " WHERE list_contains($ids, p.iteration_id) AND list_contains($keys, p.key)"
    " AND p.step >= coalesce($lo, p.step) AND p.step <= coalesce($hi, p.step)"
)


def many(
    conn: duckdb.DuckDBPyConnection,
    iteration_ids: Sequence[str],
    keys: Sequence[str],
    groups: Sequence[str],
    min_step: int | None,
    max_step: int | None,
    max_points: int,
) -> pa.Table:
    """Every series of the iterations x keys (each group its own series; only `groups`
    when given), downsampled to `max_points` each, in the order asked (iteration, key,
    then group): iteration_id, key, group, step, value, recorded_at, client_time.

    A whole series longer than `max_points` is answered from its tiles where it spans
    enough of them (`metric_series.downsampled`'s rule), the others from their points;
    every kind of read is one query for all the series that need it."""
    found = conn.sql(
        'SELECT iteration_id, key, "group", count FROM last_metrics'
        " WHERE list_contains($ids, iteration_id) AND list_contains($keys, key)"
        ' AND (len($groups) = 0 OR list_contains($groups, "group"))',
        params={"ids": list(iteration_ids), "keys": list(keys), "groups": list(groups)},
    ).fetchall()
    rank_it = {v: i for i, v in enumerate(dict.fromkeys(iteration_ids))}
    rank_key = {v: i for i, v in enumerate(dict.fromkeys(keys))}
    series = sorted(
        ((str(it), str(key), str(group), int(count)) for it, key, group, count in found),
        key=lambda s: (rank_it[s[0]], rank_key[s[1]], s[2]),
    )
    if not series:
        return COMPARE_SCHEMA.empty_table()
    if not _has_view(conn, "metric_tiles"):  # a Kafka-mode exports view: series by series
        return pa.concat_tables(
            labelled(window(conn, it, key, min_step, max_step, max_points, group), it, key, group)
            for it, key, group, _ in series
        )
    whole = min_step is None and max_step is None
    wanted = pa.table(
        {
            "iteration_id": [s[0] for s in series],
            "key": [s[1] for s in series],
            "group": [s[2] for s in series],
            "sid": pa.array(range(len(series)), pa.int32()),
        }
    )
    params = {"ids": [s[0] for s in series], "keys": [s[1] for s in series]}
    answers: dict[int, pa.Table] = {}
    conn.register("_wanted", wanted)
    try:
        raw_sids = [i for i, s in enumerate(series) if not whole or s[3] <= max_points]
        if whole and len(raw_sids) < len(series):
            answers.update(_from_tile_reads(conn, series, raw_sids, params, max_points))
            raw_sids += [i for i in range(len(series)) if i not in answers and i not in raw_sids]
        if raw_sids:
            for sid, points in _raw(conn, raw_sids, params, min_step, max_step).items():
                fits = points.num_rows <= max_points
                answers[sid] = points if fits else min_max(points, max_points)
    finally:
        conn.unregister("_wanted")
    parts = [
        labelled(answers.get(sid, SERIES_SCHEMA.empty_table()), it, key, group)
        for sid, (it, key, group, _) in enumerate(series)
    ]
    return pa.concat_tables(parts)


def _split(table: pa.Table, order: np.ndarray) -> dict[int, pa.Table]:
    """Rows (with a sid column) in `order` (sorted by sid first), one table per sid."""
    if table.num_rows == 0:
        return {}
    table = table.take(pa.array(order))
    sids = table["sid"].to_numpy()
    starts = np.flatnonzero(np.r_[True, sids[1:] != sids[:-1]])
    ends = np.r_[starts[1:], len(sids)]
    return {int(sids[a]): table.slice(a, b - a) for a, b in zip(starts, ends, strict=True)}


def _raw(
    conn: duckdb.DuckDBPyConnection,
    sids: list[int],
    params: dict[str, list[str]],
    min_step: int | None,
    max_step: int | None,
) -> dict[int, pa.Table]:
    """Every point of these series (within the steps), each in step then log order."""
    table = conn.sql(
        _MANY_POINTS.format(relation="metrics") + " AND list_contains($sids, w.sid)",
        params={**params, "lo": min_step, "hi": max_step, "sids": sids},
    ).to_arrow_table()
    cols = [table[c].to_numpy() for c in ("seq", "offset", "partition", "step", "sid")]
    return {
        sid: part.select(["step", "value", "recorded_at", "client_time"])
        for sid, part in _split(table, np.lexsort(cols)).items()
    }


def _from_tile_reads(
    conn: duckdb.DuckDBPyConnection,
    series: list[tuple[str, str, str, int]],
    raw: list[int],
    params: dict[str, list[str]],
    max_points: int,
) -> dict[int, pa.Table]:
    """The long whole series answered from tiles (plus their uncompacted points): those
    spanning enough tiles; the others are left out (answered from points)."""
    sids = [i for i in range(len(series)) if i not in set(raw)]
    where = {**params, "sids": sids}
    tiles = conn.sql(
        "SELECT w.sid, t.tile, t.points, t.first_step, t.last_step, t.low, t.high"
        ' FROM metric_tiles t JOIN _wanted w USING (iteration_id, key, "group")'
        " WHERE list_contains($ids, t.iteration_id) AND list_contains($keys, t.key)"
        " AND list_contains($sids, w.sid)",
        params=where,
    ).to_arrow_table()
    hot = conn.sql(
        _MANY_POINTS.format(relation="metric_points_hot") + " AND list_contains($sids, w.sid)",
        params={**where, "lo": None, "hi": None},
    ).to_arrow_table()
    by_tiles = _split(tiles, np.lexsort((tiles["tile"].to_numpy(), tiles["sid"].to_numpy())))
    by_hot = _split(hot, np.argsort(hot["sid"].to_numpy(), kind="stable"))
    buckets = max(1, max_points // 2)
    out: dict[int, pa.Table] = {}
    for sid in sids:
        t = by_tiles.get(sid, tiles.slice(0, 0))
        h = by_hot.get(sid, hot.slice(0, 0))
        steps = [t["first_step"], t["last_step"], h["step"]]
        present = [s.to_numpy() for s in steps if len(s)]
        if not present:
            continue
        lo = min(int(np.min(s)) for s in present)
        hi = max(int(np.max(s)) for s in present)
        first, count = lo // TILE_STEPS, hi // TILE_STEPS - lo // TILE_STEPS + 1
        if count * TILE_SHORTFALL >= buckets:
            out[sid] = _from_tiles(t, h, first, -(-count // buckets))
    return out
