"""The embedded SQLite log honours the EventLog contract."""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path

from deardiary.schemas import codec, ids
from deardiary.schemas.envelope import wrap
from deardiary.schemas.events import ProjectCreated
from deardiary.services.embedded import EmbeddedStore
from deardiary.services.log import EventLog, LogRecord
from deardiary.services.log.sqlite import (
    COMPRESS_AT,
    PLAIN,
    ZSTD,
    SqliteEventLog,
    loaded,
    stored,
)
from tests.contract.event_log_contract import EventLogContract


class TestSqliteEventLog(EventLogContract):
    dedups_on_append = True

    def create_log(self, tmp_path: Path) -> EventLog:
        return SqliteEventLog(str(tmp_path / "log.db"))


def _big(n: int) -> bytes:
    """A payload like a metric batch's columns: compressible, but not trivially."""
    return b"".join(i.to_bytes(8, "little") + (i % 7).to_bytes(2, "little") for i in range(n))


def _stored(path: Path) -> list[tuple[int, int]]:
    with sqlite3.connect(path) as conn:
        return list(conn.execute("SELECT length(payload), codec FROM records ORDER BY rid"))


def test_big_payloads_are_stored_compressed_and_read_back_exactly(tmp_path: Path) -> None:
    log = SqliteEventLog(str(tmp_path / "log.db"))
    small, big = b"x" * (COMPRESS_AT - 1), _big(20_000)
    log.append([LogRecord("a", "k", small), LogRecord("b", "k", big)])
    assert [p for _, p in log.read({}, 10)] == [small, big]
    (small_len, small_codec), (big_len, big_codec) = _stored(tmp_path / "log.db")
    assert (small_len, small_codec) == (len(small), PLAIN)
    assert big_codec == ZSTD and big_len < len(big) / 4
    log.close()


def test_a_payload_that_does_not_shrink_is_stored_plain(tmp_path: Path) -> None:
    log = SqliteEventLog(str(tmp_path / "log.db"))
    noise = random.Random(7).randbytes(50_000)
    log.append([LogRecord("a", "k", noise)])
    assert [p for _, p in log.read({}, 10)] == [noise]
    assert _stored(tmp_path / "log.db") == [(len(noise), PLAIN)]
    log.close()


def test_a_log_written_before_compression_reads_and_grows(tmp_path: Path) -> None:
    """The previous release's table has no codec column: its rows read unchanged, the
    column is added on open (by one of several processes), and new rows compress."""
    path = tmp_path / "log.db"
    old = _big(5_000)
    with sqlite3.connect(path) as conn:
        conn.executescript(
            "CREATE TABLE records (rid INTEGER PRIMARY KEY, event_id TEXT NOT NULL UNIQUE,"
            " key TEXT NOT NULL, log_time INTEGER NOT NULL, payload BLOB NOT NULL);"
            "CREATE INDEX records_log_time ON records (log_time)"
        )
        conn.execute("INSERT INTO records VALUES (1, 'old', 'k', 5, ?)", (old,))
    first, second = SqliteEventLog(str(path)), SqliteEventLog(str(path))
    new = _big(6_000)
    assert second.append([LogRecord("new", "k", new)])[0].offset == 1
    assert [(pos.offset, p) for pos, p in first.read({}, 10)] == [(0, old), (1, new)]
    assert [c for _, c in _stored(path)] == [PLAIN, ZSTD]
    first.close()
    second.close()


def test_a_damaged_frame_is_parked_not_folded(tmp_path: Path) -> None:
    """A compressed row that no longer unpacks reaches the projector as stored, fails to
    decode, and is parked with its error; the events around it fold."""
    data = tmp_path / "data"
    log = SqliteEventLog(str(data / "log.db"))
    project = ProjectCreated(project_id=ids.new_id(), name="p")
    envs = [wrap(project), wrap(ProjectCreated(project_id=ids.new_id(), name="q"))]
    damaged = LogRecord("damaged", "k", _big(3_000))
    log.append([LogRecord(envs[0].event_id, "k", codec.encode(envs[0])), damaged])
    log.append([LogRecord(envs[1].event_id, "k", codec.encode(envs[1]))])
    with sqlite3.connect(data / "log.db") as conn:
        conn.execute("UPDATE records SET payload = substr(payload, 1, 40) WHERE codec = ?", (ZSTD,))
    log.close()
    with EmbeddedStore(data) as store:
        store.catch_up()
        names = store.sql("SELECT name FROM projects ORDER BY name").to_pylist()
        parked = store.sql("SELECT count(*) AS n FROM parked_events").to_pylist()
    assert [r["name"] for r in names] == ["p", "q"]
    assert parked == [{"n": 1}]


def test_a_damaged_length_or_frame_comes_back_as_stored() -> None:
    packed, codec_id = stored(_big(3_000))
    assert codec_id == ZSTD
    huge_length = (1 << 62).to_bytes(8, "little") + packed[8:]  # nothing allocated for it
    for damaged in (huge_length, packed[:40], packed[:8] + b"\0" * 64, b""):
        assert loaded(damaged, ZSTD) == damaged
    assert loaded(packed, ZSTD) == _big(3_000)
    assert loaded(packed, 7) == packed  # a codec of a newer release: parked, not guessed
