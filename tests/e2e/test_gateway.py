"""The ingest gateway through real HTTP onto a real SQLite log in tmp_path.

Every refused request is checked for its code and status AND for having appended
nothing (the log's end offset is unchanged): validation is all-or-nothing.
"""

from __future__ import annotations

import contextlib
import math
import sqlite3
import struct
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import msgspec
import numpy as np
import pytest
from aiohttp import web

from deardiary.schemas import wire
from deardiary.schemas.codec import decode, encode
from deardiary.schemas.envelope import Envelope, LogPosition, wrap
from deardiary.schemas.errors import PermissionDenied, Unavailable
from deardiary.schemas.events import (
    AUTO_STEP,
    Event,
    MetricsLogged,
    ParamsLogged,
    UserAdminSet,
    partition_key,
)
from deardiary.services.gateway import IngestLimits, gateway_part
from deardiary.services.http import RunningServer, build_app, start_in_thread
from deardiary.services.http.openapi import document_problems
from deardiary.services.log import EventLog, LogRecord
from deardiary.services.log.sqlite import SqliteEventLog
from deardiary.transport import HttpTransport

MSGPACK = {"Content-Type": "application/msgpack"}


@contextlib.contextmanager
def running(log: EventLog, **options: Any) -> Iterator[RunningServer]:
    with start_in_thread(build_app([gateway_part(log, **options)])) as server:
        yield server


@pytest.fixture
def log(tmp_path: Path) -> Iterator[SqliteEventLog]:
    log = SqliteEventLog(str(tmp_path / "log.db"))
    yield log
    log.close()


@pytest.fixture
def url(log: SqliteEventLog) -> Iterator[str]:
    with running(log, limits=IngestLimits(max_body_bytes=16 << 10, max_events=5)) as server:
        yield server.url


def points(iteration: str = "it-1", values: Sequence[float] = (0.5, 0.25)) -> MetricsLogged:
    n = len(values)
    return MetricsLogged.from_points(iteration, ["loss"] * n, values, range(n), [7] * n)


def msgpack_body(*envelopes: Envelope) -> bytes:
    return msgspec.msgpack.encode([encode(e) for e in envelopes])


def with_key(body: Event, key: str) -> Envelope:
    return msgspec.structs.replace(wrap(body), key=key)


def stored(log: EventLog) -> list[bytes]:
    return [payload for _, payload in log.read({0: 0}, 10_000)]


def post_events(
    url: str, body: bytes | Iterator[bytes], headers: dict[str, str] = MSGPACK
) -> httpx.Response:
    return httpx.post(f"{url}/api/v1/events", content=body, headers=headers)


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code
    return dict(body["error"])


def test_an_accepted_batch_lands_with_its_exact_bytes(tmp_path: Path) -> None:
    log = SqliteEventLog(str(tmp_path / "log.db"))
    woken: list[list[LogPosition]] = []
    envelopes = [wrap(points()), wrap(ParamsLogged(iteration_id="it-1", params={"lr": "0.1"}))]
    try:
        with running(log, on_appended=woken.append) as server:
            response = post_events(server.url, msgpack_body(*envelopes))
        assert response.status_code == 200, response.text
        ack = response.json()
        assert [p["offset"] for p in ack["positions"]] == [0, 1]
        assert ack["last_offset"] == 1 and ack["last_offsets"] == {"0": 1}
        assert stored(log) == [encode(e) for e in envelopes]
        assert [p.offset for p in woken[0]] == [0, 1]
    finally:
        log.close()


@pytest.mark.parametrize(
    ("accept", "answer"),
    [
        ("application/msgpack", "application/msgpack"),
        ("application/x-msgpack;q=0.9, application/json", "application/msgpack"),
        ("application/json, application/msgpack", "application/json"),
        ("*/*", "application/json"),
        ("", "application/json"),
        (";;q=,, garbage/;x, APPLICATION/MsgPack ;q=1", "application/msgpack"),
        ("x/y," * 1_000 + "application/msgpack", "application/msgpack"),
    ],
)
def test_the_acknowledgement_is_msgpack_when_asked_before_json(
    url: str, accept: str, answer: str
) -> None:
    """The SDK asks for MessagePack (its write path then reads it without json, see
    schemas/wire.py); everyone else gets JSON, the same acknowledgement."""
    headers = {**MSGPACK, "Accept": accept} if accept else MSGPACK
    response = post_events(url, msgpack_body(wrap(points())), headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith(answer)
    ack = wire.unpack(response.content) if answer != "application/json" else response.json()
    assert set(ack) == {"positions", "last_offset", "last_offsets"}
    assert ack["last_offsets"] == {"0": ack["last_offset"]}
    assert ack["positions"][0]["offset"] == ack["last_offset"]


def test_a_resend_is_idempotent(url: str, log: SqliteEventLog) -> None:
    first, second = wrap(points()), wrap(points())
    ack = post_events(url, msgpack_body(first)).json()
    again = post_events(url, msgpack_body(first, second)).json()
    assert again["positions"][0] == ack["positions"][0]
    assert again["positions"][1]["offset"] == 1
    assert log.end_offsets() == {0: 2}
    assert post_events(url, msgpack_body(first, second)).json() == again
    assert stored(log) == [encode(first), encode(second)]


def _raw_with_type(tag: str) -> bytes:
    raw = msgspec.msgpack.decode(encode(wrap(points())))
    raw["body"]["type"] = tag
    return msgspec.msgpack.encode(raw)


def _bad_columns() -> MetricsLogged:
    return msgspec.structs.replace(points(), steps=b"\0" * 12)


GOOD = encode(wrap(points()))
BAD_BODIES: dict[str, tuple[bytes, int, str]] = {
    "malformed msgpack": (b"\x92\xc4\x01", 400, "INVALID_ARGUMENT"),
    "not an array": (msgspec.msgpack.encode({"events": [GOOD]}), 400, "INVALID_ARGUMENT"),
    "items are not bin": (msgspec.msgpack.encode([GOOD, "text"]), 400, "INVALID_ARGUMENT"),
    "item is not an envelope": (msgspec.msgpack.encode([GOOD, b"\x01"]), 400, "INVALID_ARGUMENT"),
    "wrong field type": (
        msgspec.msgpack.encode([GOOD, msgspec.msgpack.encode({"event_id": 1})]),
        400,
        "INVALID_ARGUMENT",
    ),
    "unknown event type": (
        msgspec.msgpack.encode([GOOD, _raw_with_type("quantum_logged")]),
        400,
        "INVALID_ARGUMENT",
    ),
    "key ../x": (
        msgpack_body(wrap(points()), wrap(MetricsLogged.from_points("i", ["../x"], [1], [0], [0]))),
        400,
        "INVALID_ARGUMENT",
    ),
    "key with control char": (
        msgpack_body(wrap(ParamsLogged(iteration_id="i", params={"lr\x07": "1"}))),
        400,
        "INVALID_ARGUMENT",
    ),
    "key too long": (
        msgpack_body(wrap(ParamsLogged(iteration_id="i", params={"k" * 251: "1"}))),
        400,
        "INVALID_ARGUMENT",
    ),
    "inconsistent metric columns": (
        msgpack_body(wrap(points()), wrap(_bad_columns())),
        400,
        "INVALID_ARGUMENT",
    ),
    "mismatched partition key": (
        msgpack_body(wrap(points()), with_key(points("it-2"), "it-1")),
        400,
        "INVALID_ARGUMENT",
    ),
    "empty batch": (msgspec.msgpack.encode([]), 400, "INVALID_ARGUMENT"),
    "too many events": (
        msgpack_body(*(wrap(points()) for _ in range(6))),
        413,
        "RESOURCE_EXHAUSTED",
    ),
    "oversized body": (
        msgpack_body(wrap(points(values=[0.0] * 1000))),
        413,
        "RESOURCE_EXHAUSTED",
    ),
    "access event": (
        msgpack_body(wrap(points()), wrap(UserAdminSet(user_id="me", is_admin=True))),
        403,
        "PERMISSION_DENIED",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_BODIES))
def test_bad_requests_are_refused_and_append_nothing(
    url: str, log: SqliteEventLog, case: str
) -> None:
    post_events(url, msgpack_body(wrap(points())))
    before = log.end_offsets()
    body, status, code = BAD_BODIES[case]
    error = assert_error(post_events(url, body), status, code)
    assert error["message"]
    assert log.end_offsets() == before == {0: 1}


def test_refusals_name_the_item_and_the_path(url: str) -> None:
    error = assert_error(
        post_events(url, BAD_BODIES["unknown event type"][0]), 400, "INVALID_ARGUMENT"
    )
    assert error["details"]["index"] == 1
    assert error["details"]["path"] == "$.body.type"
    error = assert_error(post_events(url, BAD_BODIES["key ../x"][0]), 400, "INVALID_ARGUMENT")
    assert error["details"]["index"] == 1 and "'../x'" in error["message"]


def test_an_oversized_streamed_body_is_refused(url: str, log: SqliteEventLog) -> None:
    def chunks() -> Iterator[bytes]:  # no Content-Length: chunked transfer encoding
        for _ in range(64):
            yield b"\0" * 1024

    assert_error(post_events(url, chunks()), 413, "RESOURCE_EXHAUSTED")
    assert log.end_offsets() == {0: 0}


def test_unsupported_content_type(url: str, log: SqliteEventLog) -> None:
    response = post_events(url, msgpack_body(wrap(points())), {"Content-Type": "text/plain"})
    assert_error(response, 400, "INVALID_ARGUMENT")
    assert log.end_offsets() == {0: 0}


def _float_bits(values: bytes) -> list[int]:
    return list(struct.unpack(f"<{len(values) // 8}Q", values))


def test_json_batches_keep_nan_and_infinities_bit_exact(url: str, log: SqliteEventLog) -> None:
    odd_nan = struct.unpack("<d", struct.pack("<Q", 0x7FF8_0000_0000_0123))[0]
    values = [odd_nan, math.inf, -math.inf, -0.0, 5e-324, 1.5]
    sent = points(values=values)
    envelope = wrap(sent)
    body = msgspec.json.encode({"events": [envelope]})
    response = post_events(url, body, {"Content-Type": "application/json"})
    assert response.status_code == 200, response.text
    (payload,) = stored(log)
    assert payload == encode(envelope)
    received = decode(payload).body
    assert isinstance(received, MetricsLogged)
    assert _float_bits(received.values) == _float_bits(sent.values)


def test_json_refusals(url: str, log: SqliteEventLog) -> None:
    json_headers = {"Content-Type": "application/json"}
    assert_error(post_events(url, b'{"events": [', json_headers), 400, "INVALID_ARGUMENT")
    error = assert_error(
        post_events(url, b'{"events": [{"event_id": 5}]}', json_headers), 400, "INVALID_ARGUMENT"
    )
    assert error["details"]["path"] == "$.events[0].event_id"
    mismatched = msgspec.json.encode({"events": [with_key(points(), "elsewhere")]})
    assert_error(post_events(url, mismatched, json_headers), 400, "INVALID_ARGUMENT")
    assert log.end_offsets() == {0: 0}


def test_the_metrics_convenience_route(url: str, log: SqliteEventLog) -> None:
    request = {
        "metrics": [
            {"key": "loss", "value": 0.5, "step": 3, "timestamp": 1_700_000_000_000_000},
            {"key": "loss", "value": "NaN"},
            {"key": "acc", "value": "Infinity", "step": 0},
            {"key": "acc", "value": "-Infinity", "step": 1},
            {"key": "acc", "value": 2},
        ],
        "group": "train",
        "event_id": "client-chosen-1",
    }
    target = f"{url}/api/v1/iterations/it-9/metrics"
    ack = httpx.post(target, json=request).json()
    assert httpx.post(target, json=request).json() == ack  # same event id: idempotent
    (payload,) = stored(log)
    envelope = decode(payload)
    body = envelope.body
    assert isinstance(body, MetricsLogged)
    assert envelope.event_id == "client-chosen-1" and envelope.key == "it-9"
    assert (body.iteration_id, body.keys, body.group) == ("it-9", ["loss", "acc"], "train")
    values = np.frombuffer(body.values, "<f8")
    assert values[0] == 0.5 and math.isnan(values[1]) and values[4] == 2.0
    assert list(values[2:4]) == [math.inf, -math.inf]
    assert list(np.frombuffer(body.steps, "<i8")) == [3, AUTO_STEP, 0, 1, AUTO_STEP]
    assert list(np.frombuffer(body.key_index, "<u2")) == [0, 0, 1, 1, 1]
    assert int(np.frombuffer(body.times, "<i8")[0]) == 1_700_000_000_000_000


@pytest.mark.parametrize(
    "request_body",
    [
        {"metrics": []},
        {"metrics": [{"key": "loss", "value": "nan-ish"}]},
        {"metrics": [{"key": "../etc", "value": 1}]},
        {"metrics": [{"key": "loss", "value": 1, "step": -5}]},
        {"metrics": [{"key": "loss", "value": True}]},
        {"metrics": [{"key": "loss"}]},
        {"points": []},
    ],
)
def test_metrics_route_refusals(url: str, log: SqliteEventLog, request_body: Any) -> None:
    response = httpx.post(f"{url}/api/v1/iterations/it-9/metrics", json=request_body)
    assert_error(response, 400, "INVALID_ARGUMENT")
    assert log.end_offsets() == {0: 0}


def test_a_locked_sqlite_log_is_unavailable_then_recovers(tmp_path: Path) -> None:
    path = str(tmp_path / "log.db")
    log = SqliteEventLog(path, busy_timeout_s=0.1)
    locker = sqlite3.connect(path, isolation_level=None)
    envelope = wrap(points())
    try:
        with running(log) as server:
            locker.execute("BEGIN IMMEDIATE")
            error = assert_error(
                post_events(server.url, msgpack_body(envelope)), 503, "UNAVAILABLE"
            )
            assert "locked" in error["message"]
            locker.execute("ROLLBACK")
            assert post_events(server.url, msgpack_body(envelope)).status_code == 200
        assert stored(log) == [encode(envelope)]
    finally:
        locker.close()
        log.close()


class FailingLog:
    """A log whose appends fail the way a broken disk or broker does."""

    def __init__(self, error: Exception) -> None:
        self.error = error
        self.attempts = 0

    def append(self, records: Sequence[LogRecord]) -> list[LogPosition]:
        self.attempts += 1
        raise self.error

    def read(
        self, start: Any, max_records: int, timeout: float = 0.0
    ) -> list[tuple[LogPosition, bytes]]:
        return []

    def partitions(self) -> list[int]:
        return [0]

    def end_offsets(self) -> dict[int, int]:
        return {0: 0}

    def close(self) -> None:
        pass


@pytest.mark.parametrize(
    "error",
    [
        Unavailable("broker down"),
        sqlite3.OperationalError("disk I/O error"),
        OSError(28, "No space left on device"),
    ],
)
def test_a_log_that_cannot_be_written_is_503_never_400(error: Exception) -> None:
    log = FailingLog(error)
    with running(log) as server:
        body = msgpack_body(wrap(points()))
        assert_error(post_events(server.url, body), 503, "UNAVAILABLE")
        response = httpx.post(
            f"{server.url}/api/v1/iterations/it-1/metrics",
            json={"metrics": [{"key": "loss", "value": 1}]},
        )
        assert_error(response, 503, "UNAVAILABLE")
    assert log.attempts == 2


def test_a_failing_wake_hook_does_not_fail_a_durable_append(log: SqliteEventLog) -> None:
    def broken_hook(positions: list[LogPosition]) -> None:
        raise RuntimeError("projector gone")

    with running(log, on_appended=broken_hook) as server:
        assert post_events(server.url, msgpack_body(wrap(points()))).status_code == 200
    assert log.end_offsets() == {0: 1}


class OnlyIt1:
    """A checker that refuses batches touching anything but it-1, and sees what lands."""

    def __init__(self) -> None:
        self.seen: list[int] = []
        self.landed: list[int] = []

    async def check(self, request: web.Request, envelopes: Sequence[Envelope]) -> list[Envelope]:
        self.seen.append(len(envelopes))
        if any(partition_key(e.body) != "it-1" for e in envelopes):
            raise PermissionDenied("not your iteration")
        return [msgspec.structs.replace(e, actor="stamped") for e in envelopes]

    def appended(self, envelopes: Sequence[Envelope]) -> None:
        self.landed.append(len(envelopes))


def test_the_checker_refuses_before_appending_and_may_restamp(log: SqliteEventLog) -> None:
    checker = OnlyIt1()
    with running(log, checker=checker) as server:
        refused = post_events(server.url, msgpack_body(wrap(points()), wrap(points("it-2"))))
        assert_error(refused, 403, "PERMISSION_DENIED")
        assert post_events(server.url, msgpack_body(wrap(points()))).status_code == 200
    assert checker.seen == [2, 1] and checker.landed == [1]
    assert log.end_offsets() == {0: 1}
    assert decode(stored(log)[0]).actor == "stamped"  # the re-stamped envelope was stored


def test_the_sdk_http_transport_speaks_the_gateway_wire(url: str, log: SqliteEventLog) -> None:
    envelopes = [wrap(points()) for _ in range(3)]
    records = [LogRecord(e.event_id, e.key, encode(e)) for e in envelopes]
    transport = HttpTransport(url)
    try:
        assert transport.send(records) == {0: 2}
        assert transport.send(records) == {0: 2}
    finally:
        transport.close()
    assert stored(log) == [r.payload for r in records]


def test_openapi_lists_the_gateway_routes(url: str) -> None:
    doc = httpx.get(f"{url}/openapi.json").json()
    assert document_problems(doc) == []
    events = doc["paths"]["/api/v1/events"]["post"]
    assert set(events["requestBody"]["content"]) == {"application/msgpack", "application/json"}
    assert "200" in events["responses"] and "default" in events["responses"]
    metrics = doc["paths"]["/api/v1/iterations/{iteration_id}/metrics"]["post"]
    assert metrics["parameters"][0]["name"] == "iteration_id"
    assert {"Envelope", "MetricsLogged", "IngestAck", "Error"} <= set(doc["components"]["schemas"])


def test_unknown_routes_and_methods_get_the_error_shape(url: str) -> None:
    assert_error(httpx.get(f"{url}/api/v1/nothing"), 404, "NOT_FOUND")
    assert_error(httpx.get(f"{url}/api/v1/events"), 405, "INVALID_ARGUMENT")


def test_concurrent_requests_all_land_once(log: SqliteEventLog) -> None:
    batches = [[wrap(points()) for _ in range(3)] for _ in range(16)]
    with (
        running(log, max_concurrent_requests=2, append_threads=2) as server,
        ThreadPoolExecutor(8) as pool,
    ):
        responses = list(
            pool.map(lambda batch: post_events(server.url, msgpack_body(*batch)), batches)
        )
    assert [r.status_code for r in responses] == [200] * 16
    offsets = [p["offset"] for r in responses for p in r.json()["positions"]]
    assert sorted(offsets) == list(range(48))
    assert sorted(stored(log)) == sorted(encode(e) for batch in batches for e in batch)
