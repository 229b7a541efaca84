"""The embedded server's log keeps what it appended in memory until a read returns it
(`SqliteEventLog.keep_unread`): the projector then reads a batch without a query and
without unpacking its stored columns. Whatever is read that way must be exactly what a
read of the file returns -- a resent event id keeps its first row, records of other
processes come from the file in their place, and past the limit rows come from the file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from deardiary.schemas import codec
from deardiary.schemas.envelope import LogPosition, wrap
from deardiary.services.log import LogRecord
from deardiary.services.log.sqlite import SqliteEventLog
from tests.builders import metrics, sweep_start


def _records(events: list[Any]) -> list[LogRecord]:
    envs = [wrap(e) for e in events]
    return [LogRecord(e.event_id, e.key, codec.encode(e)) for e in envs]


def _points(n: int) -> Any:  # a batch big enough to be stored column by column
    return metrics("it-1", [(f"k{i % 7}", i / 3, i) for i in range(n)])


def _read_all(log: SqliteEventLog) -> list[tuple[LogPosition, bytes]]:
    out: list[tuple[LogPosition, bytes]] = []
    while batch := log.read({0: len(out)}, 3):
        out += batch
    return out


def test_reads_from_memory_return_what_the_file_holds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = str(tmp_path / "log.db")
    server, other = SqliteEventLog(path), SqliteEventLog(path)  # other: another process
    server.keep_unread()
    first = _records([*sweep_start(), _points(2000)])
    server.append(first)
    other.append(_records([_points(10)]))
    resent = LogRecord(first[0].event_id, first[0].key, codec.encode(wrap(_points(3))))
    server.append([resent, *_records([_points(5000)]), resent])  # a resend keeps its row
    server.append(_records([metrics("it-1", [("x", 1.0, 0)])]))
    on_file = SqliteEventLog(path)
    expected = _read_all(on_file)
    assert len(expected) == 7 and expected[0][1] == first[0].payload
    got = _read_all(server)
    assert got == expected
    # what was read from memory is gone from it: the same reads again go to the file
    assert _read_all(server) == expected
    for log in (server, other, on_file):
        log.close()


def test_the_unread_come_from_memory_and_past_the_limit_from_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = str(tmp_path / "log.db")
    log = SqliteEventLog(path)
    log.keep_unread(limit_bytes=60_000)
    big = _records([_points(2000), _points(2000)])  # ~52 KB each: the first is dropped
    small = _records(sweep_start())
    log.append(small)
    log.append(big)
    expected = _read_all(SqliteEventLog(path))

    def no_file() -> Any:
        raise AssertionError("read from the file")

    file_conn = log._conn
    monkeypatch.setattr(log, "_conn", no_file)
    with pytest.raises(AssertionError, match="from the file"):
        log.read({0: 0}, 10)  # the small ones were dropped when the big ones came
    monkeypatch.setattr(log, "_conn", file_conn)
    assert log.read({0: 0}, 4) == expected[:4]  # up to the dropped big one: the file
    monkeypatch.setattr(log, "_conn", no_file)
    assert log.read({0: 4}, 10) == expected[4:]  # the kept one: memory alone
    monkeypatch.setattr(log, "_conn", file_conn)
    log.close()


def test_rows_read_from_the_file_first_are_not_kept(tmp_path: Path) -> None:
    """A read can reach the file's new rows before their append has put them in memory
    (between its commit and its return): they are dropped, not kept forever."""
    log = SqliteEventLog(str(tmp_path / "log.db"))
    log.keep_unread()
    log.append(_records(sweep_start()))
    unread = log._unread
    assert unread is not None
    kept = unread.take(1, 0)  # nothing taken yet
    assert kept == [] and unread._bytes > 0
    assert log.read({0: 3}, 10) == []  # past all three: they were read elsewhere
    assert unread._rows == {} and unread._bytes == 0
    log.close()
