"""The envelope every event travels in, and the position the log assigns to it.

Offset and log time are not in the bytes: the log hands a `LogPosition` beside
each envelope, so the same bytes are valid in any log.
"""

from __future__ import annotations

import msgspec

from deardiary.schemas import events
from deardiary.schemas.events import partition_key
from deardiary.schemas.ids import new_id, now_us
from deardiary.schemas.limits import Id, Name, TimeUs
from deardiary.schemas.wire import SCHEMA_VERSION

__all__ = ["SCHEMA_VERSION", "Envelope", "LogPosition", "wrap"]


class Envelope(msgspec.Struct, frozen=True, kw_only=True):
    event_id: Id
    # `events.Event`, not the name imported: the union (every event module) is loaded when
    # a decoder first resolves this annotation, never by a process that only encodes.
    body: events.Event
    key: Id
    client_time: TimeUs
    actor: Name = ""
    schema_version: int = SCHEMA_VERSION


class LogPosition(msgspec.Struct, frozen=True, order=True):
    """Where the log put a record: (partition, offset) and the log's clock in microseconds."""

    partition: int
    offset: int
    log_time: int


def wrap(body: events.Event, actor: str = "", client_time: int | None = None) -> Envelope:
    """A new envelope with a fresh event id and the event's natural partition key."""
    return Envelope(
        event_id=new_id(),
        body=body,
        key=partition_key(body),
        client_time=now_us() if client_time is None else client_time,
        actor=actor,
    )
