"""What every appender hands a log, on either side of the wire.

The SDK spools and ships `LogRecord`s; the gateway, the SQLite log and the Kafka log
append them. One definition here, so the client needs nothing of the server's
modules to speak to a log (services/log re-exports it).
"""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from deardiary.schemas.codec import encode
from deardiary.schemas.envelope import Envelope


class LogRecord(msgspec.Struct, frozen=True):
    """What an appender hands the log: the event id (for dedup), the partition key, the bytes."""

    event_id: str
    key: str
    payload: bytes


def encode_records(envelopes: Iterable[Envelope]) -> list[LogRecord]:
    """Encode envelopes into what the log stores: (event id, partition key, bytes)."""
    return [LogRecord(e.event_id, e.key, encode(e)) for e in envelopes]
