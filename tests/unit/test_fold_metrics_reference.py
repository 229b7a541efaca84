"""The metric fold against a point-by-point Python reading of its rules: each key's points
in log order resolve default steps (max so far + 1), and its summary is a left fold
(first, last, count, the finite points' running sum, min and max with ties keeping the
earlier point). Batches interleave keys as the SDK writes them, or not at all; values
hold NaN, infinities and -0.0; a second batch continues from the first's summaries.
Batches of rows (every key once a row, the same order in each row, as the SDK's
`log_metrics({...}, step)` writes them) are read without a sort, and summed column-wise
when they hold no NaN and no default step: they too."""

from __future__ import annotations

import math
from typing import Any

import msgspec
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from deardiary.projections.fold import fold
from deardiary.projections.writes import PriorState, Row, row_key
from deardiary.schemas.events import AUTO_STEP, MetricsLogged
from tests.builders import metrics, records, sweep_start

KEYS = ["loss", "acc", "lr", "grad"]
VALUES = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=64),
    st.sampled_from([0.0, -0.0, 1.0, math.nan]),
)
POINT = st.tuples(st.sampled_from(KEYS), VALUES, st.sampled_from([-1, -1, -1, 0, 3, 7]))
BATCH = st.lists(POINT, min_size=1, max_size=40)
STEPS = st.sampled_from([-1, -1, -1, 0, 3, 7])


FINITE = st.one_of(
    st.floats(allow_nan=False, allow_infinity=True, width=64),
    st.sampled_from([0.0, -0.0, 1.0, -1.0]),
)


@st.composite
def _rows(
    draw: st.DrawFn,
    values: st.SearchStrategy[float] = VALUES,
    steps: st.SearchStrategy[int] = STEPS,
) -> list[tuple[str, float, int]]:
    """A batch of rows: the same keys in the same order in every row."""
    order = draw(st.lists(st.sampled_from(KEYS), min_size=1, max_size=len(KEYS), unique=True))
    row = st.lists(st.tuples(values, steps), min_size=len(order), max_size=len(order))
    rows = draw(st.lists(row, min_size=1, max_size=12))
    return [
        (key, value, step) for row in rows for key, (value, step) in zip(order, row, strict=True)
    ]


def _reference(batches: list[list[tuple[str, float, int]]]) -> tuple[list[Any], dict[str, Row]]:
    """(key, step, value) of every point in log order, and each key's summary fields."""
    points: list[Any] = []
    rows: dict[str, dict[str, Any]] = {}
    for batch in batches:
        for key, value, step in batch:
            row = rows.setdefault(
                key,
                {"count": 0, "sum": 0.0, "finite_count": 0, "min": None, "max": None},
            )
            top = row.get("top_step", -1)
            step = top + 1 if step == AUTO_STEP else step
            row["top_step"] = max(top, step)
            if row["count"] == 0:
                row["first"], row["first_step"] = value, step
            row["count"] += 1
            row["last"], row["last_step"] = value, step
            if not math.isnan(value):
                row["sum"] += value  # a left fold, in log order
                row["finite_count"] += 1
                if row["min"] is None or value < row["min"]:
                    row["min"], row["min_step"] = value, step
                if row["max"] is None or value > row["max"]:
                    row["max"], row["max_step"] = value, step
            points.append((key, step, value))
    return points, rows


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    return bool(a == b)


@settings(max_examples=150, deadline=None)
@given(st.lists(BATCH, min_size=1, max_size=3), st.booleans())
def test_the_fold_reads_each_key_as_the_reference_does(
    batches: list[list[tuple[str, float, int]]], grouped: bool
) -> None:
    if grouped:  # every key's points together, as a client that logs one key at a time
        batches = [sorted(b, key=lambda p: KEYS.index(p[0])) for b in batches]
    _check(batches)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.one_of(_rows(), _rows(FINITE, st.integers(0, 9)), BATCH), min_size=1, max_size=3)
)
def test_batches_of_rows_read_as_the_reference_does(
    batches: list[list[tuple[str, float, int]]],
) -> None:
    _check(batches, listed=True)


def _listed(event: MetricsLogged) -> MetricsLogged:
    """The same points with the batch's keys listed in KEYS order, not in order of first
    appearance (as `from_points` lists them): a row's key indices are then no longer
    0, 1, 2, ..."""
    keys = sorted(event.keys, key=KEYS.index)
    new = np.array([keys.index(k) for k in event.keys], dtype="<u2")
    index = new[np.frombuffer(event.key_index, dtype="<u2")]
    return msgspec.structs.replace(event, keys=keys, key_index=index.tobytes())


def _check(batches: list[list[tuple[str, float, int]]], listed: bool = False) -> None:
    prior = PriorState()
    start = records(sweep_start())
    writes = fold(prior, start)
    prior = PriorState(next_offsets=dict(writes.next_offsets))
    for table, rows in writes.upserts.items():
        prior.rows[table] = {row_key(table, r): r for r in rows}
    points: list[Any] = []
    offset = len(start)
    for batch in batches:
        event = metrics("it-1", batch)
        writes = fold(prior, records([_listed(event) if listed else event], start=offset))
        offset += 1
        assert writes.metric_points is not None
        points += [(p["key"], p["step"], p["value"]) for p in writes.metric_points.to_pylist()]
        prior.next_offsets = dict(writes.next_offsets)
        for row in writes.upserts.get("last_metrics", []):
            prior.rows.setdefault("last_metrics", {})[row_key("last_metrics", row)] = row
    want_points, want_rows = _reference(batches)
    assert len(points) == len(want_points)
    for got, want in zip(points, want_points, strict=True):
        assert got[:2] == want[:2] and _same(got[2], want[2]), (got, want)
    got_rows = {r["key"]: r for r in prior.rows["last_metrics"].values()}
    assert got_rows.keys() == want_rows.keys()
    for key, want in want_rows.items():
        got = got_rows[key]
        for field, value in want.items():
            assert _same(got[field], value), (key, field, got[field], value)
        mean = want["sum"] / want["finite_count"] if want["finite_count"] else None
        assert _same(got["mean"], mean) if mean is not None else got["mean"] is None
