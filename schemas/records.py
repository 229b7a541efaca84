"""What every appender hands a log, on either side of the wire.

The SDK spools and ships `LogRecord`s; the gateway, the SQLite log and the Kafka log
append them. One definition here, so the client needs nothing of the server's
modules to speak to a log (services/log re-exports it). A plain class, not a msgspec
Struct: an SDK process that only writes never imports msgspec (see `schemas/wire.py`).
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable

    from deardiary.schemas.envelope import Envelope


class LogRecord:
    """What an appender hands the log: the event id (for dedup), the partition key, the bytes."""

    __slots__ = ("event_id", "key", "payload")

    def __init__(self, event_id: str, key: str, payload: bytes) -> None:
        self.event_id = event_id
        self.key = key
        self.payload = payload

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LogRecord):
            return NotImplemented
        return (self.event_id, self.key, self.payload) == (other.event_id, other.key, other.payload)

    def __hash__(self) -> int:
        return hash((self.event_id, self.key, self.payload))

    def __repr__(self) -> str:
        return f"LogRecord({self.event_id!r}, {self.key!r}, <{len(self.payload)} bytes>)"


def encode_records(envelopes: Iterable[Envelope]) -> list[LogRecord]:
    """Encode envelopes into what the log stores: (event id, partition key, bytes)."""
    from deardiary.schemas.codec import encode

    return [LogRecord(e.event_id, e.key, encode(e)) for e in envelopes]
