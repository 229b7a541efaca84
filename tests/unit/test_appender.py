"""The server's one append path (services/gateway/appender.py) over a real SQLite log:
batches that arrive while an append runs are committed together, each answered with
exactly its own positions; a log that cannot be written fails the whole group with a
retryable UNAVAILABLE and leaves nobody waiting."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import cast

import pytest
from aiohttp import web

from deardiary.schemas.envelope import LogPosition
from deardiary.schemas.errors import Unavailable
from deardiary.schemas.ids import new_id
from deardiary.schemas.records import LogRecord
from deardiary.services.gateway.appender import Appender
from deardiary.services.log.sqlite import SqliteEventLog

NO_REQUEST = cast(web.Request, None)  # read only by a checker, and these appenders have none


class CountingLog(SqliteEventLog):
    """A real SQLite log that counts its append calls (one per transaction)."""

    calls = 0

    def append(self, records: Sequence[LogRecord]) -> list[LogPosition]:
        self.calls += 1
        return super().append(records)


def _batch(n: int) -> list[LogRecord]:
    return [LogRecord(new_id(), "k", f"payload-{new_id()}".encode()) for _ in range(n)]


async def _append_all(appender: Appender, batches: list[list[LogRecord]]) -> list[object]:
    return await asyncio.gather(*(appender._committed(b) for b in batches), return_exceptions=True)


def test_concurrent_batches_share_a_commit_and_keep_their_own_positions(tmp_path: Path) -> None:
    log = CountingLog(str(tmp_path / "log.db"))
    appender = Appender(log)
    batches = [_batch(1 + i % 4) for i in range(30)]
    answers = asyncio.run(_append_all(appender, batches))
    assert log.calls < len(batches)  # grouped: fewer transactions than requests
    stored = {bytes(p): pos.offset for pos, p in log.read({}, 10_000)}
    offsets = []
    for batch, positions in zip(batches, answers, strict=True):
        assert isinstance(positions, list) and len(positions) == len(batch)
        for record, position in zip(batch, positions, strict=True):
            assert stored[record.payload] == position.offset
            offsets.append(position.offset)
    assert sorted(offsets) == list(range(sum(len(b) for b in batches)))  # arrival order
    again = asyncio.run(_append_all(appender, [batches[0]]))  # a resend: its first positions
    assert again == [answers[0]]
    log.close()


class FullDisk(SqliteEventLog):
    """A real SQLite log on a disk that has just filled up."""

    def append(self, records: Sequence[LogRecord]) -> list[LogPosition]:
        raise sqlite3.OperationalError("database or disk is full")


def test_an_unwritable_log_fails_the_whole_group(tmp_path: Path) -> None:
    appender = Appender(FullDisk(str(tmp_path / "log.db")))
    answers = asyncio.run(_append_all(appender, [_batch(2) for _ in range(5)]))
    assert all(isinstance(a, Unavailable) for a in answers), answers
    with pytest.raises(Unavailable):  # and the next batch is not stuck behind them
        asyncio.run(appender._committed(_batch(1)))
