"""A segment and its tiles built in memory from a batch's metric points (numpy, no SQL).

Replay folds the log in big batches; writing such a batch straight into a Parquet
segment skips the hot table (an insert, a sort of its rows in SQL, a delete) and the
re-read of the segment for its tiles. What comes out is what compaction writes from
the hot table for the same points: rows in SEGMENT_ORDER, and the tiles `tiles_sql`
computes (queries/metric_series.py), row for row and bit for bit
(tests/integration/test_segment_build.py holds the two side by side).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Self

import numpy as np
import pyarrow as pa

from deardiary.projections.folds.metrics import POINT_SCHEMA
from deardiary.projections.queries.metric_series import TILE_STEPS

Series = tuple[str, str, str]  # (iteration_id, key, group)
POSITION = ("step", "partition", "offset", "seq")
"""The columns after the series that SEGMENT_ORDER sorts by, in that order."""
_POINT_FIELDS = ("step", "value", "recorded_at", "client_time", "partition", "offset", "seq")


def series_codes(points: pa.Table, number: Callable[[Series], int]) -> np.ndarray:
    """`number((iteration_id, key, group))` of every point, as int32."""
    chunks = []
    for batch in points.select(["iteration_id", "key", "group"]).to_batches():
        iters, keys, groups = (batch.column(i) for i in range(3))
        if len(iters.dictionary) == 1 and len(groups.dictionary) == 1:
            # The usual chunk: one event, so one iteration and group, a few keys.
            it, group = iters.dictionary[0].as_py(), groups.dictionary[0].as_py()
            lookup = [number((it, k, group)) for k in keys.dictionary.to_pylist()]
            chunks.append(np.asarray(lookup, np.int32)[keys.indices.to_numpy()])
            continue
        codes = (
            iters.indices.to_numpy().astype(np.int64) * len(keys.dictionary)
            + keys.indices.to_numpy()
        ) * len(groups.dictionary) + groups.indices.to_numpy()
        distinct, inverse = np.unique(codes, return_inverse=True)
        names = []
        for code in distinct.tolist():
            rest, g = divmod(code, len(groups.dictionary))
            i, k = divmod(rest, len(keys.dictionary))
            names.append(
                number(
                    (
                        iters.dictionary[i].as_py(),
                        keys.dictionary[k].as_py(),
                        groups.dictionary[g].as_py(),
                    )
                )
            )
        chunks.append(np.asarray(names, dtype=np.int32)[inverse.reshape(-1)])
    if not chunks:
        return np.zeros(0, np.int32)
    return np.concatenate(chunks)


def _in_order(columns: list[np.ndarray]) -> bool:
    """Whether rows are sorted by these columns (the first the most significant)."""
    n = len(columns[0])
    if n < 2:
        return True
    ahead = np.zeros(n - 1, dtype=bool)  # row i+1 sorts after row i
    tied = np.ones(n - 1, dtype=bool)  # equal on every column so far
    for col in columns:
        a, b = col[:-1], col[1:]
        ahead |= tied & (b > a)
        tied &= b == a
    return bool((ahead | tied).all())


class SortedPoints:
    """Points in SEGMENT_ORDER: (iteration_id, key, group) -- by their strings' code points,
    as DuckDB sorts VARCHAR -- then step, partition, offset, seq."""

    def __init__(self, points: pa.Table) -> None:
        numbers: dict[Series, int] = {}
        codes = series_codes(points, lambda s: numbers.setdefault(s, len(numbers)))
        self._sort(codes, numbers, points)

    @classmethod
    def numbered(cls, codes: np.ndarray, numbers: dict[Series, int], points: pa.Table) -> Self:
        """Points whose series are given by number (`codes`, one a point, numbered as in
        `numbers`) instead of by name: the hot table's rows, for compaction. `points` holds
        the columns besides the series'."""
        built = cls.__new__(cls)
        built._sort(codes, numbers, points)
        return built

    def _sort(self, codes: np.ndarray, numbers: dict[Series, int], points: pa.Table) -> None:
        self.names: list[Series] = sorted(numbers)
        rank_of = np.zeros(max(numbers.values(), default=-1) + 1, np.int32)
        for rank, name in enumerate(self.names):
            rank_of[numbers[name]] = rank
        ranks = rank_of[codes]
        # Folded points come in log order, so within a series nearly always in step order
        # already: a stable sort by series alone (a radix sort while ranks fit 16 bits),
        # checked, then completed (`_segment_order`). Each column is gathered once, in the
        # final order, straight from its chunks copied into one scratch buffer (fresh
        # memory costs page faults; a random gather of millions of rows ~20 ms a column).
        small = ranks.astype(np.uint16) if len(numbers) <= 1 << 16 else ranks
        scratch = np.empty(len(ranks), np.int64)
        order, known = _segment_order(ranks, points, np.argsort(small, kind="stable"), scratch)
        self.ranks = known["ranks"] if "ranks" in known else ranks.take(order)
        self.columns = {
            c: known[c] if c in known else _gathered(points[c], order, scratch)
            for c in _POINT_FIELDS
        }
        """Each point field in SEGMENT_ORDER (timestamps as int64 microseconds)."""

    def _names(self, part: int, ranks: np.ndarray) -> pa.DictionaryArray:
        dictionary = pa.array([n[part] for n in self.names], pa.string())
        return pa.DictionaryArray.from_arrays(pa.array(ranks, pa.int32()), dictionary)

    def table(self) -> pa.Table:
        """The points, POINT_SCHEMA's columns."""
        columns = {
            "iteration_id": self._names(0, self.ranks),
            "key": self._names(1, self.ranks),
            "group": self._names(2, self.ranks),
            **{c: pa.array(self.columns[c], POINT_SCHEMA.field(c).type) for c in _POINT_FIELDS},
        }
        return pa.table([columns[f.name] for f in POINT_SCHEMA], schema=POINT_SCHEMA)

    def tiles(self) -> pa.Table:
        """What `tiles_sql` gives for these points: per series and tile (step // TILE_STEPS,
        truncated as SQL's integer division), the point count, the step range, and the
        min point (lowest value, a NaN only where all are NaN) and the max point (highest
        number, a NaN only where all are NaN), ties to the earliest in SEGMENT_ORDER.
        -0.0 equals 0.0 here as in SQL (the earlier of the two is the one kept), and a kept
        -0.0 reads 0.0: DuckDB's arg_min/arg_max give a point (a struct) so."""
        step = self.columns["step"]
        n = len(step)
        if not n:
            raise ValueError("no points, no tiles")
        tile = step // TILE_STEPS
        if step.min() < 0:  # truncate toward zero, as SQL
            tile += (step < 0) & (tile * TILE_STEPS != step)
        change = np.ones(n, dtype=bool)
        change[1:] = (self.ranks[1:] != self.ranks[:-1]) | (tile[1:] != tile[:-1])
        starts = np.flatnonzero(change)
        ends = np.append(starts[1:], n) - 1
        group_of = np.cumsum(change)
        group_of -= 1
        values = self.columns["value"]
        number = ~np.isnan(values)
        has_number = np.logical_or.reduceat(number, starts)
        # (where no value is NaN, the values themselves: each copy is 8 bytes a point of
        # fresh memory, and compaction's memory is given back after each one)
        every = bool(number.all())
        lowest = np.minimum.reduceat(values if every else np.where(number, values, np.inf), starts)
        highest = np.maximum.reduceat(
            values if every else np.where(number, values, -np.inf), starts
        )
        low = self._first(values == lowest[group_of], number, group_of, starts, has_number)
        high = self._first(values == highest[group_of], number, group_of, starts, has_number)
        ranks = self.ranks[starts]
        return pa.table(
            {
                "iteration_id": self._names(0, ranks).cast(pa.string()),
                "key": self._names(1, ranks).cast(pa.string()),
                "group": self._names(2, ranks).cast(pa.string()),
                "tile": pa.array(tile[starts], pa.int64()),
                "points": pa.array(ends - starts + 1, pa.int64()),
                "first_step": pa.array(step[starts], pa.int64()),
                "last_step": pa.array(step[ends], pa.int64()),
                "low": self._points_at(low),
                "high": self._points_at(high),
            }
        )

    @staticmethod
    def _first(
        matches: np.ndarray,
        number: np.ndarray,
        group_of: np.ndarray,
        starts: np.ndarray,
        has_number: np.ndarray,
    ) -> np.ndarray:
        """Per tile, the first row that `matches` (and is a number) where the tile has a
        number, else its first row (all NaN, all equal)."""
        hits = np.flatnonzero(matches & number)
        groups = group_of[hits]
        first_hit = np.ones(len(hits), dtype=bool)
        first_hit[1:] = groups[1:] != groups[:-1]
        chosen = starts.copy()
        chosen[groups[first_hit]] = hits[first_hit]
        return np.where(has_number, chosen, starts)

    def _points_at(self, rows: np.ndarray) -> pa.StructArray:
        fields = [
            pa.array(self.columns[c].take(rows), POINT_SCHEMA.field(c).type) for c in _POINT_FIELDS
        ]
        fields[1] = pa.array(self.columns["value"].take(rows) + 0.0)  # -0.0 as 0.0, as SQL
        return pa.StructArray.from_arrays(fields, names=list(_POINT_FIELDS))


def _segment_order(
    ranks: np.ndarray, points: pa.Table, order: np.ndarray, scratch: np.ndarray
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """`order` (rows grouped by series rank, each series' rows in table order) completed
    into SEGMENT_ORDER, gathering as few columns as it can. A series' rows mostly come in
    runs in step order (log order, in blocks that the hot table's parallel inserts may
    have swapped): series and step packed into one int64 are checked, and if need be
    sorted stably (a timsort, which merges the runs; ~10x less CPU than a lexsort of five
    columns). Rows of equal series and step keep their order there, so where any are
    equal every position column is checked, and lexsorted if that was not enough.
    Returns the order and the columns gathered in it on the way ("ranks" among them), not
    to be gathered again."""
    known = {"ranks": ranks.take(order), "step": _gathered(points["step"], order, scratch)}
    keys = _packed(known["ranks"], known["step"])
    if keys is not None:
        if not bool((keys[1:] >= keys[:-1]).all()):
            again = np.argsort(keys, kind="stable")
            order, keys = order.take(again), keys.take(again)
            known = {name: column.take(again) for name, column in known.items()}
        if bool((keys[1:] != keys[:-1]).all()):
            return order, known
    known |= {c: _gathered(points[c], order, scratch) for c in POSITION if c not in known}
    columns = [known["ranks"], *(known[c] for c in POSITION)]
    if _in_order(columns):
        return order, known
    resorted: np.ndarray = order.take(np.lexsort(columns[::-1]))
    return resorted, {}


def _packed(ranks: np.ndarray, step: np.ndarray) -> np.ndarray | None:
    """Series rank and step as one int64 that sorts as the pair; None where they do not
    fit (steps too far apart) or there are no rows."""
    if not len(step):
        return None
    low, high = int(step.min()), int(step.max())
    shift = 63 - int(ranks.max()).bit_length()
    if high - low >= 1 << shift:
        return None
    packed: np.ndarray = ranks.astype(np.int64)
    packed <<= shift
    packed |= step - low
    return packed


def _gathered(column: pa.ChunkedArray, order: np.ndarray, scratch: np.ndarray) -> np.ndarray:
    """`column`'s values at `order`, as numpy (timestamps as int64 microseconds); its
    chunks are copied into `scratch` (as many int64 as there are rows) on the way."""
    if pa.types.is_timestamp(column.type):
        column = column.cast(pa.int64())
    dtype = column.type.to_pandas_dtype()
    if not column.num_chunks:
        return np.empty(0, dtype)
    whole = scratch.view(dtype)[: len(order)]
    np.concatenate([chunk.to_numpy() for chunk in column.chunks], out=whole)
    gathered: np.ndarray = whole.take(order)
    return gathered
