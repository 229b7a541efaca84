"""What every EventLog must do, whatever carries it (eventsourcing's recorder test case).

Subclass `EventLogContract`, implement `create_log`, and pytest runs every test here
against that transport.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from deardiary.schemas.envelope import LogPosition
from deardiary.services.log import EventLog, LogRecord


def rec(n: int, key: str = "k") -> LogRecord:
    return LogRecord(event_id=f"ev-{n}-{key}", key=key, payload=f"payload-{n}-{key}".encode())


def read_all(
    log: EventLog,
    expected: int,
    start: dict[int, int] | None = None,
) -> list[tuple[LogPosition, bytes]]:
    """Read until `expected` records arrived (or a read brings nothing new)."""
    offsets = dict(start or {})
    got: list[tuple[LogPosition, bytes]] = []
    while len(got) < expected:
        batch = log.read(offsets, 1000, timeout=2.0)
        if not batch:
            break
        for pos, payload in batch:
            got.append((pos, payload))
            offsets[pos.partition] = pos.offset + 1
    return got


class EventLogContract:
    dedups_on_append: bool = True

    def create_log(self, tmp_path: Path) -> EventLog:
        raise NotImplementedError

    @pytest.fixture
    def log(self, tmp_path: Path) -> Iterator[EventLog]:
        log = self.create_log(tmp_path)
        yield log
        log.close()

    def test_positions_are_dense_and_ordered_per_partition(self, log: EventLog) -> None:
        positions = log.append([rec(i, key=f"k{i % 3}") for i in range(30)])
        by_partition: dict[int, list[int]] = {}
        for pos in positions:
            by_partition.setdefault(pos.partition, []).append(pos.offset)
        for offsets in by_partition.values():
            assert offsets == list(range(len(offsets)))
        assert log.end_offsets() == {p: len(o) for p, o in by_partition.items()} | {
            p: 0 for p in log.partitions() if p not in by_partition
        }

    def test_read_returns_the_same_bytes_in_order(self, log: EventLog) -> None:
        records = [rec(i) for i in range(20)]
        positions = log.append(records)
        got = read_all(log, 20)
        assert [p for p, _ in got] == positions
        assert [b for _, b in got] == [r.payload for r in records]

    def test_read_honours_max_records_and_start(self, log: EventLog) -> None:
        positions = log.append([rec(i) for i in range(10)])
        partition = positions[0].partition
        first = log.read({partition: 0}, 3, timeout=2.0)
        assert [p.offset for p, _ in first] == [0, 1, 2]
        middle = read_all(log, 4, {partition: 6})
        assert [p.offset for p, _ in middle] == [6, 7, 8, 9]

    def test_read_waits_then_returns_nothing(self, log: EventLog) -> None:
        assert log.read({}, 10, timeout=0.2) == []

    def test_a_repeated_event_id(self, log: EventLog) -> None:
        first = log.append([rec(1)])
        again = log.append([rec(1)])
        # the log says so: the projector skips its applied-ids check where it dedups
        assert getattr(log, "dedups_on_append", False) is self.dedups_on_append
        if self.dedups_on_append:
            assert again == first
            assert sum(log.end_offsets().values()) == 1
        else:  # stored twice; the folds drop the second by event id
            assert sum(log.end_offsets().values()) == 2

    def test_concurrent_appenders_lose_nothing(self, log: EventLog) -> None:
        def append(t: int) -> None:
            for i in range(25):
                log.append([rec(i, key=f"t{t}")])

        threads = [threading.Thread(target=append, args=(t,)) for t in range(4)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        got = read_all(log, 100)
        assert sorted(b for _, b in got) == sorted(
            rec(i, key=f"t{t}").payload for t in range(4) for i in range(25)
        )
