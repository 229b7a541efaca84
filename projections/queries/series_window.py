"""Metric series within a step window (a zoomed chart), downsampled to the chart's width,
and many series at once (the page's charts: one request for every chart in view).

The window's points are read with `metric_series.history` (step order); when there are
more than `max_points`, the window is cut into equal step buckets and each keeps its min
and max point (ties: the first in step then log order), as the whole-series downsampling
does: a NaN beside numbers is never a bucket's max (a chart's spike must survive a
missing value). `many` reads every asked series in a few queries (tiles,
uncompacted points, raw points: each one query for all series) instead of a few per
series, so its cost grows with the points answered, not with the series asked.
"""

from __future__ import annotations

from collections.abc import Sequence

import duckdb
import numpy as np
import pyarrow as pa

from deardiary.projections.queries.metric_series import (
    _CANDIDATE_FIELDS,
    COMPARE_SCHEMA,
    SERIES_SCHEMA,
    TILE_SHORTFALL,
    TILE_STEPS,
    _numbers,
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
    spanning enough tiles; the others are left out (answered from points).

    `metric_series._from_tiles` for every series at once: one set of candidates (each
    tile's min and max point, each hot point; series by series in that order), bucketed
    per series, one sort by (series, bucket, ...) -- the same points as series by series,
    at numpy's speed (ten series of a million steps: 39,000 tiles)."""
    skip = set(raw)
    sids = [i for i in range(len(series)) if i not in skip]
    where = {**params, "sids": sids}
    tiles = conn.sql(
        "SELECT w.sid, t.tile, t.first_step, t.last_step, t.low, t.high"
        ' FROM metric_tiles t JOIN _wanted w USING (iteration_id, key, "group")'
        " WHERE list_contains($ids, t.iteration_id) AND list_contains($keys, t.key)"
        " AND list_contains($sids, w.sid)",
        params=where,
    ).to_arrow_table()
    hot = conn.sql(
        _MANY_POINTS.format(relation="metric_points_hot") + " AND list_contains($sids, w.sid)",
        params={**where, "lo": None, "hi": None},
    ).to_arrow_table()
    if tiles.num_rows + hot.num_rows == 0:
        return {}
    t_sid = tiles["sid"].to_numpy().astype(np.int64)
    h_sid = hot["sid"].to_numpy().astype(np.int64)
    h_step = hot["step"].to_numpy()
    # each series' step range, over its tiles and its hot points
    n = len(series)
    lo = np.full(n, np.iinfo(np.int64).max, dtype=np.int64)
    hi = np.full(n, np.iinfo(np.int64).min, dtype=np.int64)
    np.minimum.at(lo, t_sid, tiles["first_step"].to_numpy())
    np.maximum.at(hi, t_sid, tiles["last_step"].to_numpy())
    np.minimum.at(lo, h_sid, h_step)
    np.maximum.at(hi, h_sid, h_step)
    present = lo <= hi
    first = np.where(present, lo, 0) // TILE_STEPS
    count = np.where(present, hi, 0) // TILE_STEPS - first + 1
    buckets = max(1, max_points // 2)
    chosen = present & (count * TILE_SHORTFALL >= buckets)
    width = -(-count // buckets)
    # candidates: every tile's min point, every tile's max point, every hot point
    low, high = (tiles[c].combine_chunks() for c in ("low", "high"))
    cols = {
        f: np.concatenate(
            [_numbers(low.field(f)), _numbers(high.field(f)), _numbers(hot[f].combine_chunks())]
        )
        for f in _CANDIDATE_FIELDS
    }
    sid = np.concatenate([t_sid, t_sid, h_sid])
    tile = np.concatenate(
        [tiles["tile"].to_numpy(), tiles["tile"].to_numpy(), h_step // TILE_STEPS]
    )
    mine = chosen[sid]
    if not mine.all():
        sid, tile = sid[mine], tile[mine]
        cols = {f: c[mine] for f, c in cols.items()}
    if len(sid) == 0:
        return {}
    bucket = (tile - first[sid]) // width[sid]
    keep = np.union1d(*_extremes(sid * (int(bucket.max()) + 1) + bucket, cols))
    value = cols["value"]
    sid, step, value = sid[keep], cols["step"][keep], value[keep]
    at, client = cols["recorded_at"][keep], cols["client_time"][keep]
    order = np.lexsort((at, value, step, sid))
    sid = sid[order]
    points = pa.table(
        {
            "step": pa.array(step[order]),
            "value": pa.array(value[order]),
            "recorded_at": pa.array(at[order], pa.timestamp("us")),
            "client_time": pa.array(client[order], pa.timestamp("us")),
        }
    )
    starts = np.flatnonzero(np.r_[True, sid[1:] != sid[:-1]])
    ends = np.r_[starts[1:], len(sid)]
    return {int(sid[a]): points.slice(a, b - a) for a, b in zip(starts, ends, strict=True)}


def _extremes(group: np.ndarray, cols: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Per group, the row of its min point and the row of its max point, chosen as
    `metric_series._from_tiles` chooses them: the lowest value (a NaN only in a group of
    NaN alone) and the highest (likewise), ties to the lowest step,
    partition, offset, seq, then the earlier row. Only the rows holding their group's
    extreme value are sorted by those ties (a few per group): no sort of every row by
    seven keys."""
    order = np.argsort(group, kind="stable")  # rows by group, each group in row order
    g = group[order]
    starts = np.flatnonzero(np.r_[True, g[1:] != g[:-1]])
    sizes = np.diff(np.r_[starts, len(g)])
    value = cols["value"][order]
    nan = np.isnan(value)
    low = np.repeat(np.minimum.reduceat(np.where(nan, np.inf, value), starts), sizes)
    high = np.repeat(np.maximum.reduceat(np.where(nan, -np.inf, value), starts), sizes)
    all_nan = np.repeat(np.logical_and.reduceat(nan, starts), sizes)
    at_low = np.where(all_nan, nan, ~nan & (value == low))
    at_high = np.where(all_nan, nan, ~nan & (value == high))
    return _first_by_log(order[at_low], group, cols), _first_by_log(order[at_high], group, cols)


def _first_by_log(rows: np.ndarray, group: np.ndarray, cols: dict[str, np.ndarray]) -> np.ndarray:
    """Of `rows` (ascending within each group), the first of each group by step,
    partition, offset, seq (lexsort is stable: then the earlier row)."""
    keys = (cols["seq"], cols["offset"], cols["partition"], cols["step"])
    order = rows[np.lexsort((*(k[rows] for k in keys), group[rows]))]
    g = group[order]
    return order[np.flatnonzero(np.r_[True, g[1:] != g[:-1]])]
