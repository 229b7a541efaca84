"""The embedded log: one SQLite database in WAL mode, safe for many processes.

Why SQLite: an append is one transaction committed with synchronous=FULL, so it is
durable when acknowledged; a killed appender leaves either its whole transaction or
none of it; concurrent appenders are serialised by SQLite's lock. Offsets are the
rowid minus one: rows are never deleted and a rolled-back insert leaves no gap, so
offsets are dense and ordered. The event id is UNIQUE, so a resent event is stored once.

Big payloads are stored zstd-compressed, metric batches (26 raw bytes a point) column by
column (`metric_columns`): ~6-7 bytes a point for noisy curves, ~1-2 for smooth ones;
`codec` says how each row is stored, so logs written before compression existed read
unchanged (their rows are all `PLAIN`).
"""

from __future__ import annotations

import os
import sqlite3
import struct
import threading
import time
from collections.abc import Mapping, Sequence
from functools import cache
from typing import TYPE_CHECKING

from deardiary.schemas.envelope import LogPosition
from deardiary.schemas.errors import Unavailable
from deardiary.schemas.ids import now_us
from deardiary.services.log import LogRecord, metric_columns

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    rid INTEGER PRIMARY KEY,
    event_id TEXT NOT NULL UNIQUE,
    key TEXT NOT NULL,
    log_time INTEGER NOT NULL,
    payload BLOB NOT NULL,
    codec INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS records_log_time ON records (log_time)
"""

PARTITION = 0

# How a row's payload is stored. Never renumber: the numbers are on disk.
PLAIN = 0
ZSTD = 1  # 8-byte little-endian length of the payload, then one zstd frame
METRIC_COLUMNS = 2  # a metric batch's columns apart, each zstd (`metric_columns`)
COMPRESS_AT = 4096  # smaller payloads (every event but big batches) gain little
_MAX_PAYLOAD = 1 << 31  # far above any request body the gateway takes
_LEVEL = 1  # ~450 MB/s a core here, within 10% of level 3's size on metric columns


@cache
def _zstd() -> pa.Codec:
    import pyarrow as pa  # the server has it; imported when a first big payload comes

    return pa.Codec("zstd", _LEVEL)


def _compress(data: bytes | memoryview | np.ndarray) -> bytes:
    packed: bytes = _zstd().compress(data, asbytes=True)
    return packed


def _decompress(data: bytes | memoryview, size: int) -> bytes:
    if size > _MAX_PAYLOAD:  # a damaged length: never allocate what it claims
        raise ValueError("a stored length past any payload")
    payload: bytes = _zstd().decompress(data, decompressed_size=size, asbytes=True)
    return payload


def stored(payload: bytes) -> tuple[bytes, int]:
    """A payload as the log keeps it, and its codec."""
    if len(payload) < COMPRESS_AT:
        return payload, PLAIN
    columns = metric_columns.pack(payload, _compress)
    if columns is not None:
        data, codec = columns, METRIC_COLUMNS
    else:
        data, codec = len(payload).to_bytes(8, "little") + _compress(payload), ZSTD
    return (data, codec) if len(data) < len(payload) else (payload, PLAIN)


def loaded(data: bytes, codec: int) -> bytes:
    """A payload as it was appended. A row this release cannot unpack (a newer codec, a
    damaged frame) comes back as stored: it fails to decode and is parked, never folded
    as something else."""
    try:
        if codec == ZSTD:
            return _decompress(data[8:], int.from_bytes(data[:8], "little"))
        if codec == METRIC_COLUMNS:
            return metric_columns.unpack(data, _decompress)
    except (OSError, ValueError, struct.error):  # pyarrow's errors for a damaged frame
        return data
    return data


class _Unread:
    """Records this process appended and no read has returned yet, up to `limit` payload
    bytes (the oldest dropped first): rows as the log holds them, so a read served from
    here returns what a query would."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._rows: dict[int, tuple[int, bytes]] = {}  # rid -> (log time, payload)
        self._bytes = 0
        self._lock = threading.Lock()

    def add(self, rows: list[tuple[int, int, bytes]]) -> None:
        with self._lock:
            for rid, log_time, payload in rows:
                self._rows[rid] = (log_time, payload)
                self._bytes += len(payload)
            while self._bytes > self.limit and self._rows:
                oldest = next(iter(self._rows))
                self._bytes -= len(self._rows.pop(oldest)[1])

    def take(self, rid: int, max_records: int) -> list[tuple[int, int, bytes]]:
        """The rows from `rid` on that are all here (none if `rid` is not), removed; rows
        before `rid` (read from the file while their append was finishing) are dropped."""
        out: list[tuple[int, int, bytes]] = []
        with self._lock:
            while self._rows and (oldest := next(iter(self._rows))) < rid:
                self._bytes -= len(self._rows.pop(oldest)[1])
            while len(out) < max_records and rid in self._rows:
                log_time, payload = self._rows.pop(rid)
                self._bytes -= len(payload)
                out.append((rid, log_time, payload))
                rid += 1
        return out


class SqliteEventLog:
    """A single-partition durable log in a SQLite file."""

    dedups_on_append = True  # event_id is UNIQUE: the projector need not check ids again

    def __init__(self, path: str, busy_timeout_s: float = 60.0) -> None:
        self.path = path
        self._busy_timeout_ms = int(busy_timeout_s * 1000)
        self._local = threading.local()
        self._unread: _Unread | None = None
        parent = os.path.dirname(os.path.abspath(path))
        os.makedirs(parent, exist_ok=True)
        conn = self._conn()
        conn.executescript(_SCHEMA)
        _add_codec_column(conn)

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            try:
                conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
                conn.execute(f"PRAGMA busy_timeout={self._busy_timeout_ms}")
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=FULL")
            except sqlite3.Error as exc:
                raise Unavailable(f"cannot open the log at {self.path}: {exc}") from exc
            self._local.conn = conn
        return conn

    def keep_unread(self, limit_bytes: int = 64 << 20) -> None:
        """Keep what this process appends in memory until a read returns it (at most
        `limit_bytes` of payloads): the projector of the same process then reads a batch
        without a query and without unpacking its stored columns (~1.5 ms a 20,000-point
        batch here). The embedded server turns it on; records appended by other processes,
        or dropped past the limit, are read from the file as before."""
        self._unread = _Unread(limit_bytes)

    def append(self, records: Sequence[LogRecord]) -> list[LogPosition]:
        if not records:
            return []
        rows = [(r.event_id, r.key, *stored(r.payload)) for r in records]  # outside the lock
        conn = self._conn()
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                # Taken under the write lock and never behind the previous record, so log
                # time is non-decreasing with offset (as-of-time rebuilds rely on it).
                last = conn.execute(  # each max() alone: found by an index, no scan
                    "SELECT (SELECT MAX(log_time) FROM records), (SELECT MAX(rid) FROM records)"
                ).fetchone()
                log_time = max(now_us(), int(last[0] or 0))
                conn.executemany(
                    "INSERT OR IGNORE INTO records (event_id, key, log_time, payload, codec)"
                    " VALUES (?, ?, ?, ?, ?)",
                    [(e, k, log_time, p, c) for e, k, p, c in rows],
                )
                positions = self._positions(conn, [r.event_id for r in records])
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise Unavailable(f"the log at {self.path} cannot be written: {exc}") from exc
        if self._unread is not None:
            # rows inserted now (a resent id keeps its first row: at or before the old end)
            before, new = int(last[1] or 0), {}
            for record, pos in zip(records, positions, strict=True):
                if pos.offset + 1 > before and pos.offset + 1 not in new:
                    new[pos.offset + 1] = (pos.offset + 1, log_time, record.payload)
            self._unread.add(list(new.values()))
        return positions

    @staticmethod
    def _positions(conn: sqlite3.Connection, event_ids: list[str]) -> list[LogPosition]:
        found: dict[str, LogPosition] = {}
        for start in range(0, len(event_ids), 500):
            chunk = event_ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for event_id, rid, log_time in conn.execute(
                f"SELECT event_id, rid, log_time FROM records WHERE event_id IN ({marks})", chunk
            ):
                found[event_id] = LogPosition(PARTITION, rid - 1, log_time)
        return [found[e] for e in event_ids]

    def read(
        self, start: Mapping[int, int], max_records: int, timeout: float = 0.0
    ) -> list[tuple[LogPosition, bytes]]:
        first = start.get(PARTITION, 0)
        if self._unread is not None:
            kept = self._unread.take(first + 1, max_records)
            if kept:
                return [(LogPosition(PARTITION, rid - 1, t), p) for rid, t, p in kept]
        conn = self._conn()
        deadline = time.monotonic() + timeout
        while True:
            try:
                rows = conn.execute(
                    "SELECT rid, log_time, payload, codec FROM records"
                    " WHERE rid > ? ORDER BY rid LIMIT ?",
                    (first, max_records),
                ).fetchall()
            except sqlite3.Error as exc:
                raise Unavailable(f"the log at {self.path} cannot be read: {exc}") from exc
            if rows or time.monotonic() >= deadline:
                return [
                    (LogPosition(PARTITION, rid - 1, t), loaded(bytes(p), c))
                    for rid, t, p, c in rows
                ]
            time.sleep(min(0.01, max(0.0, deadline - time.monotonic())))

    def partitions(self) -> list[int]:
        return [PARTITION]

    def end_offsets(self) -> dict[int, int]:
        row = self._conn().execute("SELECT COALESCE(MAX(rid), 0) FROM records").fetchone()
        return {PARTITION: int(row[0])}

    def offsets_until(self, time_us: int) -> dict[int, int]:
        """Per partition, the next offset after the records logged at or before `time_us`
        (log time never decreases with offset; the log_time index finds it)."""
        row = (
            self._conn()
            .execute("SELECT MIN(rid) FROM records WHERE log_time > ?", (time_us,))
            .fetchone()
        )
        return {PARTITION: int(row[0]) - 1} if row[0] is not None else self.end_offsets()

    def log_time(self, partition: int, offset: int) -> int | None:
        """The log time of one record (microseconds), None when the log has no such record."""
        row = (
            self._conn()
            .execute("SELECT log_time FROM records WHERE rid = ?", (offset + 1,))
            .fetchone()
        )
        return int(row[0]) if row is not None and partition == PARTITION else None

    def close(self) -> None:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None


def _add_codec_column(conn: sqlite3.Connection) -> None:
    """Logs written before compression lack `codec`; adding it (all rows PLAIN) is a
    schema change only, whatever the log's size. Another process may add it first."""
    columns = {row[1] for row in conn.execute("PRAGMA table_info(records)")}
    if "codec" in columns:
        return
    try:
        conn.execute("ALTER TABLE records ADD COLUMN codec INTEGER NOT NULL DEFAULT 0")
    except sqlite3.OperationalError as exc:
        if "duplicate column" not in str(exc):
            raise Unavailable(f"cannot upgrade the log: {exc}") from exc
