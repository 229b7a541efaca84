"""The store keeps the number of hot points in memory (no count of the hot table after every
batch): it must stay exact through a rolled-back batch and a reopened store, so compaction
still begins at the limit."""

from __future__ import annotations

import uuid
from datetime import datetime
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from deardiary.projections.folds.metrics import POINT_SCHEMA
from deardiary.projections.store import DuckDBProjectionStore
from deardiary.projections.writes import Writes

LIMIT = 100


def _points(n: int, first_offset: int) -> pa.Table:
    when = datetime(2026, 1, 1)
    names = pa.array(["it-1"] * n).dictionary_encode()
    return pa.table(
        {
            "iteration_id": names,
            "key": pa.array(["loss"] * n).dictionary_encode(),
            "step": pa.array(range(first_offset, first_offset + n), pa.int64()),
            "value": pa.array([float(i) for i in range(n)], pa.float64()),
            "recorded_at": pa.array([when] * n, pa.timestamp("us")),
            "client_time": pa.array([when] * n, pa.timestamp("us")),
            "group": pa.array([""] * n).dictionary_encode(),
            "partition": pa.array([0] * n, pa.int32()),
            "offset": pa.array(range(first_offset, first_offset + n), pa.int64()),
            "seq": pa.array([0] * n, pa.int32()),
        },
        schema=POINT_SCHEMA,
    )


class _Log:
    """Batches of points with the offsets and event ids the projector would give them."""

    def __init__(self) -> None:
        self.offset = 0
        self.ids: list[str] = []

    def batch(self, n: int, event_ids: list[str] | None = None) -> Writes:
        points = _points(n, self.offset)
        ids = event_ids or [uuid.uuid4().hex]
        self.offset += n
        self.ids += ids
        return Writes(next_offsets={0: self.offset}, applied_event_ids=ids, metric_points=points)


def _store(path: Path) -> DuckDBProjectionStore:
    return DuckDBProjectionStore(path, hot_points_limit=LIMIT)


def _hot_rows(store: DuckDBProjectionStore) -> int:
    return int(store.conn.execute("SELECT count(*) FROM metric_points_hot_data").fetchall()[0][0])


def test_a_rolled_back_batch_leaves_the_count_and_compaction_starts_at_the_limit(
    tmp_path: Path,
) -> None:
    log = _Log()
    store = _store(tmp_path)
    try:
        store.apply(log.batch(60))
        applied = list(log.ids)
        # a batch whose points were inserted, then the transaction failed (an event id
        # applied already): none of its 80 points stay
        with pytest.raises(duckdb.Error):
            store.apply(log.batch(80, event_ids=applied))
        assert store.hot_points() == _hot_rows(store) == 60
        store.maybe_compact()
        assert not store.segment_paths()  # 60 < 100: had the 80 counted, this compacted
        store.apply(log.batch(39))
        store.maybe_compact()
        assert not store.segment_paths() and store.hot_points() == 99
        store.apply(log.batch(1))
        store.maybe_compact()
        assert len(store.segment_paths()) == 1
        assert store.hot_points() == _hot_rows(store) == 0
        store.apply(log.batch(5))
        assert store.hot_points() == _hot_rows(store) == 5
    finally:
        store.close()


def test_a_reopened_store_counts_its_hot_points_and_compacts_at_the_limit(
    tmp_path: Path,
) -> None:
    log = _Log()
    store = _store(tmp_path)
    try:
        store.apply(log.batch(70))
    finally:
        store.close()
    store = _store(tmp_path)
    try:
        assert store.hot_points() == 70
        store.apply(log.batch(29))
        store.maybe_compact()
        assert not store.segment_paths()
        store.apply(log.batch(1))
        store.maybe_compact()
        assert len(store.segment_paths()) == 1 and store.hot_points() == 0
    finally:
        store.close()


def test_while_batches_arrive_the_store_compacts_at_twice_the_limit(tmp_path: Path) -> None:
    log = _Log()
    store = _store(tmp_path)
    try:
        store.apply(log.batch(150))
        store.apply(log.batch(49))
        assert not store.segment_paths() and store.hot_points() == 199
        store.apply(log.batch(1))  # applying compacts by itself at 2 x LIMIT
        assert len(store.segment_paths()) == 1 and store.hot_points() == 0
    finally:
        store.close()
