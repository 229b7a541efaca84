"""Everything the gateway checks before a single byte is appended.

A request is all-or-nothing: the whole batch is decoded and checked first, and the
first problem rejects it with `INVALID_ARGUMENT` naming the item (``details.index``)
and, where msgspec found it, the ``$.path`` inside that item. Decoding already checks
types and tags (msgspec is the schema); this module adds the rules a type cannot say:
key characters, column lengths, partition keys, non-empty ids. Metric columns are
checked with numpy, never per point in Python, so validation keeps up with ingest.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import cache
from typing import Any

import msgspec
import numpy as np

from deardiary.schemas.codec import decode
from deardiary.schemas.envelope import Envelope
from deardiary.schemas.errors import (
    DearDiaryError,
    InvalidArgument,
    PermissionDenied,
    ResourceExhausted,
)
from deardiary.schemas.events import (
    AUTO_STEP,
    AccessTokenCreated,
    AccessTokenRevoked,
    Event,
    IterationStarted,
    LogLinesLogged,
    MetricsLogged,
    ParamsLogged,
    PermissionGranted,
    PermissionRevoked,
    TagsDeleted,
    TagsSet,
    UserAdminSet,
    UserCreated,
    UserPasswordChanged,
    event_tag,
    partition_key,
)
from deardiary.services.http.errors import invalid_argument_from_msgspec, msgspec_path

ACCESS_EVENTS = (
    UserCreated,
    UserPasswordChanged,
    UserAdminSet,
    PermissionGranted,
    PermissionRevoked,
    AccessTokenCreated,
    AccessTokenRevoked,
)
_KEY = re.compile(r"[\w\-./ :]+")  # \w: Unicode letters and digits, and '_'


class IngestLimits(msgspec.Struct, frozen=True, kw_only=True):
    """What one ingest request may carry."""

    max_body_bytes: int = 64 << 20
    """Larger bodies are refused with RESOURCE_EXHAUSTED (413) before they are read."""
    max_events: int = 10_000
    """More envelopes in one request is RESOURCE_EXHAUSTED (413); the SDK sends <= 2,000."""
    max_key_chars: int = 250
    """Metric, param and tag keys (MLflow's limit)."""
    max_param_value_chars: int = 6_000
    """Param values (MLflow's limit)."""
    accept_access_events: bool = False
    """Users, permissions and tokens are written by the server's admin paths; a client
    posting them is refused (PERMISSION_DENIED) unless this is turned on."""


class EventBatch(msgspec.Struct, forbid_unknown_fields=True):
    """The JSON form of an ingest request (bytes fields are base64)."""

    events: list[Envelope]


_items_decoder = msgspec.msgpack.Decoder(list[bytes])
_json_batch_decoder = msgspec.json.Decoder(EventBatch)


def key_problem(key: str, max_chars: int) -> str | None:
    """Why `key` is not a valid metric/param/tag key, or None when it is."""
    if not key:
        return "is empty"
    if len(key) > max_chars:
        return f"is longer than {max_chars} characters"
    if not _KEY.fullmatch(key):
        return "may only contain letters, digits, spaces and _ - . / :"
    if key.startswith("/"):
        return "must not start with '/'"
    if ".." in key.split("/"):
        return "must not contain a '..' segment"
    return None


def _check_keys(keys: Sequence[str], what: str, limits: IngestLimits) -> None:
    for key in keys:
        problem = key_problem(key, limits.max_key_chars)
        if problem is not None:
            raise InvalidArgument(f"{what} key {key[:300]!r} {problem}", {"key": key[:300]})


def _check_metric_columns(body: MetricsLogged) -> None:
    n, rest = divmod(len(body.values), 8)
    if rest:
        raise InvalidArgument("metrics: values must be 8 bytes (float64) per point")
    sizes = {"key_index": (len(body.key_index), 2), "steps": (len(body.steps), 8)}
    sizes["times"] = (len(body.times), 8)
    for column, (size, width) in sizes.items():
        if size != n * width:
            raise InvalidArgument(
                f"metrics: {column} has {size} bytes, expected {n * width}"
                f" ({width} per point for {n} points)",
                {"column": column},
            )
    if len(set(body.keys)) != len(body.keys):
        raise InvalidArgument("metrics: keys must be distinct")
    if n == 0:
        return
    if int(np.frombuffer(body.key_index, dtype="<u2").max()) >= len(body.keys):
        raise InvalidArgument(
            f"metrics: key_index points past the {len(body.keys)} keys", {"column": "key_index"}
        )
    if int(np.frombuffer(body.steps, dtype="<i8").min()) < AUTO_STEP:
        raise InvalidArgument(
            f"metrics: steps must be >= 0 (or {AUTO_STEP} for the next step)",
            {"column": "steps"},
        )


def _check_body(body: Event, limits: IngestLimits) -> None:
    if not limits.accept_access_events and isinstance(body, ACCESS_EVENTS):
        raise PermissionDenied(f"{event_tag(body)} events are not accepted by the gateway")
    for field in _required_ids(type(body)):
        if not getattr(body, field):
            raise InvalidArgument(f"{field} must not be empty", {"field": field})
    match body:
        case MetricsLogged():
            _check_keys(body.keys, "metric", limits)
            _check_metric_columns(body)
        case ParamsLogged():
            _check_keys(list(body.params), "param", limits)
            for key, value in body.params.items():
                if len(value) > limits.max_param_value_chars:
                    raise InvalidArgument(
                        f"param {key!r}: value longer than {limits.max_param_value_chars}"
                        " characters",
                        {"key": key},
                    )
        case TagsSet() | IterationStarted():
            _check_keys(list(body.tags), "tag", limits)
        case TagsDeleted():
            _check_keys(body.keys, "tag", limits)
        case LogLinesLogged():
            if not len(body.times) == len(body.levels) == len(body.messages):
                raise InvalidArgument("log lines: times, levels and messages differ in length")


@cache
def _required_ids(event_type: type[Event]) -> tuple[str, ...]:
    """Required plain-string id fields of an event type (optional ids may be absent)."""
    return tuple(
        f.name
        for f in msgspec.structs.fields(event_type)
        if f.required and f.type is str and f.name.endswith("_id")
    )


def validate_envelope(envelope: Envelope, limits: IngestLimits) -> None:
    """Raise InvalidArgument (or PermissionDenied) when the envelope may not be appended."""
    if not envelope.event_id:
        raise InvalidArgument("event_id must not be empty", {"field": "event_id"})
    expected = partition_key(envelope.body)
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
    _check_count(len(envelopes), limits)
    validate_all(envelopes, limits)
    return envelopes
