"""The ingest gateway: HTTP -> the event log, for clients that cannot reach the log.

POST /api/v1/events takes a batch of envelopes (MessagePack array of `bin`, or JSON),
checks all of it (validation.py), appends it in one call, and answers only after the
append returned -- an acknowledged event is durable. MessagePack envelopes are
appended as the exact bytes received; JSON ones are encoded to MessagePack first.
A log that cannot be written answers 503 UNAVAILABLE (retryable, nothing written),
never a 4xx: the events were fine. The log's event-id dedup makes a resend idempotent.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Sequence
from typing import Any

import msgspec
from aiohttp import web

from deardiary.schemas.codec import decode, encode
from deardiary.schemas.envelope import Envelope, LogPosition
from deardiary.schemas.errors import InvalidArgument, ResourceExhausted
from deardiary.schemas.events import AUTO_STEP, MetricsLogged, partition_key
from deardiary.schemas.ids import new_id, now_us
from deardiary.schemas.limits import Key, Step, TimeUs
from deardiary.services.gateway.appender import Appender, IngestChecker
from deardiary.services.gateway.validation import (
    EventBatch,
    IngestLimits,
    parse_json,
    parse_msgpack,
    validate_all,
)
from deardiary.services.http.app import Endpoint, RoutePart
from deardiary.services.http.errors import invalid_argument_from_msgspec
from deardiary.services.http.openapi import operation
from deardiary.services.log import EventLog

__all__ = ["Appender", "IngestAck", "IngestChecker", "gateway_part"]

MSGPACK_TYPES = frozenset(
    {"application/msgpack", "application/x-msgpack", "application/vnd.msgpack"}
)
JSON_TYPE = "application/json"
_NON_FINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


class MetricPoint(msgspec.Struct, forbid_unknown_fields=True):
    """One point; `value` is a number or "NaN" / "Infinity" / "-Infinity"."""

    key: Key
    value: float | str
    step: Step = AUTO_STEP
    timestamp: TimeUs | None = None


class MetricsRequest(msgspec.Struct, forbid_unknown_fields=True):
    """Points for one iteration, sent as one MetricsLogged event. Give `event_id` to make
    a resend idempotent."""

    metrics: list[MetricPoint]
    group: str = ""
    event_id: str | None = None


class IngestAck(msgspec.Struct):
    """Where each event landed (request order; a resent event id gets its first position)."""

    positions: list[LogPosition]
    last_offset: int
    last_offsets: dict[str, int]


_metrics_decoder = msgspec.json.Decoder(MetricsRequest)
_json = msgspec.json.Encoder()
_msgpack = msgspec.msgpack.Encoder()


def wants_msgpack(accept: str) -> bool:
    """True when an Accept header names a MessagePack type before JSON (the SDK asks for
    its acknowledgements so: reading them then needs no JSON parser, see
    `schemas/wire.py`); otherwise answers are JSON."""
    for item in accept.split(","):
        media = item.partition(";")[0].strip().lower()
        if media in MSGPACK_TYPES:
            return True
        if media == JSON_TYPE:
            return False
    return False


async def read_body(request: web.Request, limit: int) -> bytes:
    """The request body, refusing (413) anything over `limit` bytes -- before reading when
    Content-Length says so, else as soon as the stream passes it."""
    if request.content_length is not None and request.content_length > limit:
        raise ResourceExhausted(
            f"request body of {request.content_length} bytes; at most {limit}",
            {"max_body_bytes": limit},
        )
    chunks, size = [], 0
    async for chunk in request.content.iter_chunked(1 << 20):
        size += len(chunk)
        if size > limit:
            raise ResourceExhausted(f"request body over {limit} bytes", {"max_body_bytes": limit})
        chunks.append(chunk)
    return b"".join(chunks)


def _metric_value(point: MetricPoint) -> float:
    if isinstance(point.value, float):
        return point.value
    try:
        return _NON_FINITE[point.value]
    except KeyError:
        raise InvalidArgument(
            f"metric {point.key!r}: value {point.value[:50]!r} is not a number,"
            ' "NaN", "Infinity" or "-Infinity"',
            {"key": point.key},
        ) from None


class Gateway:
    """The ingest handlers bound to one log."""

    def __init__(
        self,
        appender: Appender,
        limits: IngestLimits,
        actor: Callable[[web.Request], str] | None,
        max_concurrent_requests: int,
    ) -> None:
        self.appender = appender
        self.limits = limits
        self.actor = actor
        # Each request holds its body, the decoded items and the envelopes at once (about
        # 3x the body); bounding requests in flight keeps server memory flat under load.
        self._slots = asyncio.Semaphore(max_concurrent_requests)

    async def events(self, request: web.Request) -> web.Response:
        content_type = request.content_type
        if content_type not in MSGPACK_TYPES and content_type != JSON_TYPE:
            raise InvalidArgument(
                f"Content-Type {content_type!r} is not accepted",
                {"accepted": ["application/msgpack", JSON_TYPE]},
            )
        async with self._slots:
            body = await read_body(request, self.limits.max_body_bytes)
            if content_type == JSON_TYPE:
                envelopes = parse_json(body, self.limits)
                payloads = [encode(e) for e in envelopes]
            else:
                envelopes, payloads = parse_msgpack(body, self.limits)
            return await self._append(request, envelopes, payloads)

    async def metrics(self, request: web.Request) -> web.Response:
        async with self._slots:
            return await self._metrics(request)

    async def _metrics(self, request: web.Request) -> web.Response:
        body = await read_body(request, self.limits.max_body_bytes)
        try:
            req = _metrics_decoder.decode(body)
        except msgspec.DecodeError as exc:
            raise invalid_argument_from_msgspec(exc, "JSON body") from exc
        except RecursionError as exc:
            raise InvalidArgument("JSON body nests too deeply") from exc
        if not req.metrics:
            raise InvalidArgument("no metrics in the request")
        if len({p.key for p in req.metrics}) > 1 << 16:
            raise InvalidArgument("at most 65,536 distinct metric keys per request")
        now = now_us()
        event = MetricsLogged.from_points(
            request.match_info["iteration_id"],
            [p.key for p in req.metrics],
            [_metric_value(p) for p in req.metrics],
            [p.step for p in req.metrics],
            [now if p.timestamp is None else p.timestamp for p in req.metrics],
            group=req.group,
        )
        envelope = Envelope(
            event_id=req.event_id or new_id(),
            body=event,
            key=partition_key(event),
            client_time=now,
            actor=self.actor(request) if self.actor else "",
        )
        payload = encode(envelope)
        validate_all([decode(payload)], self.limits)  # decoding checks the declared bounds
        return await self._append(request, [envelope], [payload])

    async def _append(
        self, request: web.Request, envelopes: Sequence[Envelope], payloads: Sequence[bytes]
    ) -> web.Response:
        positions = await self.appender.append(request, envelopes, payloads)
        last: dict[str, int] = {}
        for p in positions:
            last[str(p.partition)] = max(last.get(str(p.partition), -1), p.offset)
        ack = IngestAck(positions, max(p.offset for p in positions), last)
        if wants_msgpack(request.headers.get("Accept", "")):
            return web.Response(body=_msgpack.encode(ack), content_type="application/msgpack")
        return web.Response(body=_json.encode(ack), content_type=JSON_TYPE)


def _openapi() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(events operation, metrics operation, component schemas) from the msgspec types."""
    refs, schemas = msgspec.json.schema_components(
        [EventBatch, MetricsRequest, IngestAck], ref_template="#/components/schemas/{name}"
    )
    batch, metrics_req, ack = refs
    acked = {
        "200": {
            "description": "Appended durably (MessagePack when the Accept header names it"
            " before JSON)",
            "content": {JSON_TYPE: {"schema": ack}, "application/msgpack": {"schema": ack}},
        }
    }
    events = operation(
        "Append a batch of events to the log",
        tag="ingest",
        description="All-or-nothing: every envelope is decoded and checked before any is "
        "appended. MessagePack bodies are an array of `bin` items, each one Envelope encoded "
        "with MessagePack; they are stored byte for byte. JSON bodies carry the envelopes as "
        "objects (bytes fields base64). A resent event id is stored once and answers its "
        "first position. 413 RESOURCE_EXHAUSTED for an oversized body or batch; "
        "503 UNAVAILABLE (retry) when the log cannot be written.",
        request_body={
            "required": True,
            "content": {
                "application/msgpack": {
                    "schema": {
                        "type": "array",
                        "items": {
                            "type": "string",
                            "contentMediaType": "application/msgpack",
                            "description": "one Envelope, MessagePack-encoded (bin)",
                        },
                    }
                },
                JSON_TYPE: {"schema": batch},
            },
        },
        responses=acked,
    )
    metrics = operation(
        "Log metric points of an iteration (convenience for non-SDK clients)",
        tag="ingest",
        description="The points become one MetricsLogged event. `step` defaults to the key's "
        "next step, `timestamp` (microseconds since the epoch) to now. JSON cannot carry "
        'NaN or infinities: send the strings "NaN", "Infinity", "-Infinity".',
        request_body={"required": True, "content": {JSON_TYPE: {"schema": metrics_req}}},
        responses=acked,
    )
    return events, metrics, schemas


def gateway_part(
    log: EventLog,
    *,
    limits: IngestLimits | None = None,
    on_appended: Callable[[list[LogPosition]], None] | None = None,
    checker: IngestChecker | None = None,
    actor: Callable[[web.Request], str] | None = None,
    append_threads: int = 1,
    max_concurrent_requests: int = 8,
    appender: Appender | None = None,
) -> RoutePart:
    """The ingest routes over `log` (owned by the caller: the part never closes it).

    `on_appended(positions)` runs on the event loop after each durable append (keep it
    cheap, e.g. set a threading.Event). `checker` may refuse a decoded batch by raising
    (or re-stamp its envelopes). `actor(request)` names the actor of events the gateway
    builds itself (the metrics route); posted envelopes keep the actor they carry.
    `append_threads` threads call `log.append`; at most `max_concurrent_requests`
    requests are read and checked at once (the rest wait their turn). Give `appender`
    to share one append path with other parts (then `on_appended`, `checker` and
    `append_threads` are the appender's own, and these arguments are not used).
    """
    appender = appender or Appender(log, checker, on_appended, append_threads)
    gateway = Gateway(appender, limits or IngestLimits(), actor, max_concurrent_requests)
    events_op, metrics_op, schemas = _openapi()
    return RoutePart(
        "gateway",
        [
            Endpoint("POST", "/api/v1/events", gateway.events, events_op),
            Endpoint(
                "POST", "/api/v1/iterations/{iteration_id}/metrics", gateway.metrics, metrics_op
            ),
        ],
        schemas=schemas,
        contexts=[appender.lifetime],
    )
