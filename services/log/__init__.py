"""The log behind one small interface, so the same projector runs on either transport.

Offsets live in the projection store, not in the log. `open_log` picks the adapter
by URL scheme: ``sqlite:///path/to/log.db`` (embedded) or ``kafka://host:port``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from deardiary.schemas.envelope import LogPosition
from deardiary.schemas.errors import InvalidArgument
from deardiary.schemas.records import LogRecord

__all__ = ["EventLog", "LogRecord", "open_log"]


class EventLog(Protocol):
    def append(self, records: Sequence[LogRecord]) -> list[LogPosition]:
        """Durably append; returns once every record is durable. A known event id is not
        stored again: its existing position is returned (where the log can tell)."""
        ...

    def read(
        self, start: Mapping[int, int], max_records: int, timeout: float = 0.0
    ) -> list[tuple[LogPosition, bytes]]:
        """Records at or after `start[partition]` (0 where absent), in offset order per
        partition; waits up to `timeout` seconds when nothing is there yet."""
        ...

    def partitions(self) -> list[int]: ...

    def end_offsets(self) -> dict[int, int]:
        """Per partition, the offset the next appended record will get."""
        ...

    def close(self) -> None: ...


def open_log(url: str) -> EventLog:
    """The adapter for a log URL."""
    if url.startswith("sqlite://"):
        from deardiary.services.log.sqlite import SqliteEventLog

        return SqliteEventLog(url.removeprefix("sqlite://"))
    if url.startswith("kafka://"):
        from deardiary.services.log.kafka import KafkaEventLog

        return KafkaEventLog.from_url(url)
    raise InvalidArgument(f"unsupported log URL {url!r}: use sqlite:///path or kafka://host:port")
