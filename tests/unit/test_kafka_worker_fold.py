"""A worker folds the partitions of one batch side by side, each in offset order."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from deardiary.projections.fold import Record
from deardiary.services.kafka_mode import worker
from deardiary.services.kafka_mode.partitions import PartitionStore
from deardiary.services.kafka_mode.worker import PartitionOwner
from tests.builders import metrics, records, sweep_start


def _sweep_records(n: int, partition: int) -> list[Record]:
    """n events of one iteration at offsets 0..n-1 of `partition`."""
    events: list[Any] = sweep_start(iteration=f"it-{partition}")
    events += [metrics(f"it-{partition}", [("loss", float(i), i)]) for i in range(n - len(events))]
    return records(events, partition=partition)


def _stored_events(owner: PartitionOwner, partition: int) -> int:
    reader = owner.stores[partition].store.reader()
    return int(reader.execute("SELECT count(*) FROM events").fetchall()[0][0])


def test_the_partitions_of_a_batch_are_folded_side_by_side(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each fold waits until the other partition's has begun too: one after the other, the
    first would wait in vain (its batch fails and nothing is applied)."""
    both = threading.Barrier(2, timeout=10)
    fold = PartitionStore.apply

    def meeting(self: PartitionStore, batch: Any) -> None:
        if batch:
            both.wait()
        fold(self, batch)

    monkeypatch.setattr(PartitionStore, "apply", meeting)
    owner = PartitionOwner(tmp_path)
    owner.assign([0, 1])
    try:
        batch = {0: _sweep_records(6, 0), 1: _sweep_records(7, 1)}
        assert owner.apply(batch, drained=True) == {0: 6, 1: 7}  # opened, then positioned
        assert owner.stores[0].next_offset() == 6 and owner.stores[1].next_offset() == 7
        assert _stored_events(owner, 0) == 6 and _stored_events(owner, 1) == 7
    finally:
        owner.close()


def test_a_failing_partition_does_not_hold_back_the_others(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A guard: the failing partition is read again from its store later, the others go on."""
    monkeypatch.setattr(worker, "RETRY_AFTER_S", 0.0)  # the back-off ends at the next tick
    owner = PartitionOwner(tmp_path)
    owner.assign([0, 1])
    try:
        recs = {0: _sweep_records(5, 0), 1: _sweep_records(5, 1)}
        owner.apply({0: recs[0][:2], 1: recs[1][:2]})
        with monkeypatch.context() as failing:
            failing.setattr(owner.stores[1], "apply", lambda batch: 1 / 0)
            assert owner.apply({0: recs[0][2:], 1: recs[1][2:]}) == {}
        assert owner.stores[0].next_offset() == 5 and owner.stores[1].next_offset() == 2
        assert owner.tend() == {1: 2}  # read again from the store's offset
        assert owner.apply({1: recs[1][2:]}) == {} and owner.stores[1].next_offset() == 5
    finally:
        owner.close()
