"""Everything the gateway checks before a single byte is appended.

A request is all-or-nothing: the whole batch is decoded and checked first, and the
first problem rejects it with `INVALID_ARGUMENT` naming the item (``details.index``)
and, where msgspec found it, the ``$.path`` inside that item. Decoding checks types,
tags and every declared bound (schemas/limits.py on the event fields); each event's
own `problem()` says the rest (key characters, metric columns, entity kinds) -- the
same declarations the folds obey, so whatever is accepted here folds.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from deardiary.schemas.codec import decode
from deardiary.schemas.envelope import Envelope
from deardiary.schemas.errors import (
    DearDiaryError,
    InvalidArgument,
    PermissionDenied,
    ResourceExhausted,
)
from deardiary.schemas.events import Event, Permission, event_tag
from deardiary.services.http.errors import invalid_argument_from_msgspec, msgspec_path


class IngestLimits(msgspec.Struct, frozen=True, kw_only=True):
    """What one ingest request may carry (what one event may carry: schemas/limits.py)."""

    max_body_bytes: int = 64 << 20
    """Larger bodies are refused with RESOURCE_EXHAUSTED (413) before they are read."""
    max_events: int = 10_000
    """More envelopes in one request is RESOURCE_EXHAUSTED (413); the SDK sends <= 2,000."""
    accept_access_events: bool = False
    """Users, permissions and tokens are written by the server's admin paths; a client
    posting them is refused (PERMISSION_DENIED) unless this is turned on."""


class EventBatch(msgspec.Struct, forbid_unknown_fields=True):
    """The JSON form of an ingest request (bytes fields are base64)."""

    events: list[Envelope]


_items_decoder = msgspec.msgpack.Decoder(list[bytes])
_json_batch_decoder = msgspec.json.Decoder(EventBatch)


def _check_body(body: Event, limits: IngestLimits) -> None:
    if not limits.accept_access_events and body.permission is Permission.ADMIN:
        raise PermissionDenied(f"{event_tag(body)} events are not accepted by the gateway")
    problem = body.problem()
    if problem is not None:
        raise InvalidArgument(problem)


def validate_envelope(envelope: Envelope, limits: IngestLimits) -> None:
    """Raise InvalidArgument (or PermissionDenied) when a decoded envelope may not be
    appended (its field bounds were checked by decoding it)."""
    expected = envelope.body.partition_key()
    if envelope.key != expected:
        raise InvalidArgument(
            f"key {envelope.key[:100]!r} is not the event's partition key {expected[:100]!r}",
            {"field": "key", "expected": expected},
        )
    _check_body(envelope.body, limits)


def _at(index: int, envelope: Envelope | None, exc: DearDiaryError) -> DearDiaryError:
    """The same error, saying which item of the batch it is about."""
    details: dict[str, Any] = {"index": index, **exc.details}
    path = msgspec_path(exc.message)
    if path is not None:
        details.setdefault("path", path)
    if envelope is not None:
        details["event_id"] = envelope.event_id
    error = type(exc)(f"events[{index}]: {exc.message}", details)
    error.__cause__ = exc
    return error


def _check_count(count: int, limits: IngestLimits) -> None:
    if count > limits.max_events:
        raise ResourceExhausted(
            f"{count} events in one request; at most {limits.max_events}",
            {"max_events": limits.max_events},
        )
    if count == 0:
        raise InvalidArgument("no events in the request")


def validate_all(envelopes: Sequence[Envelope], limits: IngestLimits) -> None:
    for index, envelope in enumerate(envelopes):
        try:
            validate_envelope(envelope, limits)
        except DearDiaryError as exc:
            raise _at(index, envelope, exc) from exc


def parse_msgpack(body: bytes, limits: IngestLimits) -> tuple[list[Envelope], list[bytes]]:
    """A MessagePack array of `bin` envelopes -> (checked envelopes, their original bytes)."""
    try:
        items = _items_decoder.decode(body)
    except msgspec.DecodeError as exc:
        raise invalid_argument_from_msgspec(exc, "MessagePack body") from exc
    except RecursionError as exc:
        raise InvalidArgument("MessagePack body nests too deeply") from exc
    _check_count(len(items), limits)
    envelopes = []
    for index, item in enumerate(items):
        try:
            envelopes.append(decode(item))
        except DearDiaryError as exc:
            raise _at(index, None, exc) from exc
    validate_all(envelopes, limits)
    return envelopes, items


def parse_json(body: bytes, limits: IngestLimits) -> list[Envelope]:
    """``{"events": [<Envelope as JSON>, ...]}`` -> checked envelopes (to be re-encoded)."""
    try:
        envelopes = _json_batch_decoder.decode(body).events
    except msgspec.DecodeError as exc:
        raise invalid_argument_from_msgspec(exc, "JSON body") from exc
    except RecursionError as exc:
        raise InvalidArgument("JSON body nests too deeply") from exc
    _check_count(len(envelopes), limits)
    validate_all(envelopes, limits)
    return envelopes
