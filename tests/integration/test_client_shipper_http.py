"""The shipper over real HTTP: an outage, recovery, restarts, and typed errors.

The real gateway is built elsewhere; `Gateway` below implements POST /api/v1/events as
wire.md fixes it (a MessagePack array of `bin` envelopes in, positions out, one error
body shape), appending to a real SqliteEventLog.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from array import array
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest
from aiohttp import web

from deardiary.buffer import EventBuffer
from deardiary.schemas.codec import decode
from deardiary.schemas.envelope import Envelope
from deardiary.schemas.errors import (
    DearDiaryError,
    ErrorCode,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
)
from deardiary.schemas.events import MetricsLogged, ParamsLogged
from deardiary.services.log import LogRecord
from deardiary.services.log.sqlite import SqliteEventLog
from deardiary.shipper import Shipper
from deardiary.spool import Spool
from deardiary.transport import HttpTransport


class Gateway:
    """Just enough of the ingest gateway: auth, size limit, validation, append."""

    def __init__(self, data: Path, token: str | None = None, max_body: int = 64 << 20) -> None:
        self.log_path = data / "log.db"
        self.token = token
        self.max_body = max_body
        self.fail: tuple[int, str, bytes] | None = None  # status, content type, body

    @staticmethod
    def error(status: int, code: str, message: str) -> web.Response:
        body = {"error": {"code": code, "message": message, "details": {}}}
        return web.json_response(body, status=status)

    async def events(self, request: web.Request) -> web.Response:
        if self.fail is not None:
            status, content_type, raw = self.fail
            return web.Response(status=status, body=raw, content_type=content_type)
        if self.token and request.headers.get("Authorization") != f"Bearer {self.token}":
            return self.error(401, "UNAUTHENTICATED", "missing or wrong bearer token")
        body = await request.read()
        if len(body) > self.max_body:
            return self.error(413, "RESOURCE_EXHAUSTED", f"body over {self.max_body} bytes")
        try:
            items = msgspec.msgpack.decode(body, type=list[bytes])
            envelopes = [decode(item) for item in items]
        except (msgspec.DecodeError, InvalidArgument) as exc:
            return self.error(400, "INVALID_ARGUMENT", str(exc))
        records = [LogRecord(e.event_id, e.key, i) for e, i in zip(envelopes, items, strict=True)]
        log = SqliteEventLog(str(self.log_path))
        try:
            positions = log.append(records)
        finally:
            log.close()
        return web.json_response(
            {
                "positions": [msgspec.to_builtins(p) for p in positions],
                "last_offset": max(p.offset for p in positions),
            }
        )


class Server:
    """Serves `gateway` on an already bound socket, from a thread of its own."""

    def __init__(self, gateway: Gateway, sock: socket.socket) -> None:
        self.gateway = gateway
        self.sock = sock
        self._started = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()))
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None

    async def _main(self) -> None:
        app = web.Application(client_max_size=256 << 20)
        app.router.add_post("/api/v1/events", self.gateway.events)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.SockSite(runner, self.sock).start()
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        self._started.set()
        await self._stop.wait()
        await runner.cleanup()

    def start(self) -> None:
        self._thread.start()
        assert self._started.wait(30)

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(30)


@pytest.fixture
def sock() -> Iterator[socket.socket]:
    """A loopback port that is bound but not listening: connections are refused until a
    server starts listening on it -- a real outage, with no race for the port."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    yield s
    s.close()


def url_of(sock: socket.socket) -> str:
    return f"http://127.0.0.1:{sock.getsockname()[1]}"


@pytest.fixture
def server(tmp_path: Path, sock: socket.socket) -> Iterator[Server]:
    srv = Server(Gateway(tmp_path / "data"), sock)
    yield srv
    srv.stop()


def read_log(data: Path) -> list[Envelope]:
    log = SqliteEventLog(str(data / "log.db"))
    try:
        return [decode(payload) for _, payload in log.read({}, 10_000_000)]
    finally:
        log.close()


def points_of(envelopes: list[Envelope]) -> list[tuple[str, int, float]]:
    out: list[tuple[str, int, float]] = []
    for env in envelopes:
        if isinstance(env.body, MetricsLogged):
            b = env.body
            steps, values = array("q", b.steps), array("d", b.values)
            out += [(b.iteration_id, s, v) for s, v in zip(steps, values, strict=True)]
    return out


def make_shipper(spool_dir: Path, url: str) -> Shipper:
    spool = Spool(spool_dir)
    buf = EventBuffer(spool, max_points=5_000, max_points_per_envelope=2_000)
    return Shipper(
        buf,
        HttpTransport(url, timeout=10),
        spool,
        flush_interval=0.02,
        backoff_initial=0.01,
        backoff_max=0.1,
    )


def test_an_outage_loses_and_duplicates_nothing(tmp_path: Path, server: Server) -> None:
    shipper = make_shipper(tmp_path / "spool", url_of(server.sock))
    buf = shipper.buffer
    for i in range(30_000):
        buf.log_metric("it", "loss", float(i), step=i)
        if i % 7_000 == 0:
            buf.emit(ParamsLogged(iteration_id="it", params={f"at{i}": str(i)}))
    # All of that was logged while nothing listened: logging never waited for the network.
    with pytest.raises(Unavailable, match="cannot reach"):
        shipper.flush(timeout=0.3)
    assert not shipper.spool.is_empty()  # the overflow went to disk, memory stayed bounded

    server.start()
    offset = shipper.flush(timeout=60)
    shipper.close(timeout=5)

    envs = read_log(tmp_path / "data")
    assert offset == len(envs) - 1
    assert len({e.event_id for e in envs}) == len(envs)
    assert points_of(envs) == [("it", i, float(i)) for i in range(30_000)]
    marks = [e.body.params for e in envs if isinstance(e.body, ParamsLogged)]
    assert marks == [{f"at{i}": str(i)} for i in range(0, 30_000, 7_000)]
    assert list((tmp_path / "spool").iterdir()) == []


def test_the_next_process_resends_what_a_closed_one_could_not(
    tmp_path: Path, server: Server
) -> None:
    first = make_shipper(tmp_path / "spool", url_of(server.sock))
    for i in range(1_000):
        first.buffer.log_metric("first", "x", float(i), step=i)
    first.close(timeout=0.2)  # the server is down: everything stays in the spool
    with pytest.raises(Unavailable, match="stay in the spool"):
        first.flush()

    server.start()
    second = make_shipper(tmp_path / "spool", url_of(server.sock))
    second.buffer.log_metric("second", "x", 0.0, step=0)
    offset = second.flush(timeout=60)
    second.close(timeout=5)
    assert second.flush() == offset  # closed with nothing left behind
    points = points_of(read_log(tmp_path / "data"))
    assert points == [("first", i, float(i)) for i in range(1_000)] + [("second", 0, 0.0)]


def test_a_permanent_error_is_raised_from_flush(tmp_path: Path, sock: socket.socket) -> None:
    server = Server(Gateway(tmp_path / "data", token="secret"), sock)
    server.start()
    token = ["expired"]
    spool = Spool(tmp_path / "spool")
    shipper = Shipper(
        EventBuffer(spool),
        HttpTransport(url_of(sock), token=lambda: token[0]),
        spool,
        flush_interval=0.02,
    )
    try:
        shipper.buffer.log_metric("it", "x", 1.0, step=0)
        with pytest.raises(Unauthenticated, match="bearer token"):
            shipper.flush(timeout=30)
        assert shipper.dropped == 1
        token[0] = "secret"  # a refreshed token is picked up without rebuilding anything
        shipper.buffer.log_metric("it", "x", 2.0, step=1)
        assert shipper.flush(timeout=30) == 0
    finally:
        shipper.close(timeout=5)
        server.stop()
    assert points_of(read_log(tmp_path / "data")) == [("it", 1, 2.0)]


def test_oversized_requests_are_split_until_they_fit(tmp_path: Path, sock: socket.socket) -> None:
    server = Server(Gateway(tmp_path / "data", max_body=50_000), sock)
    server.start()
    shipper = make_shipper(tmp_path / "spool", url_of(sock))
    try:
        for i in range(40):
            shipper.buffer.emit(ParamsLogged(iteration_id="it", params={str(i): "v" * 5_000}))
        shipper.flush(timeout=30)
    finally:
        shipper.close(timeout=5)
        server.stop()
    stored = [e.body for e in read_log(tmp_path / "data")]
    assert [list(b.params) for b in stored if isinstance(b, ParamsLogged)] == [
        [str(i)] for i in range(40)
    ]


def error_body(code: str) -> bytes:
    return b'{"error": {"code": "%s", "message": "m", "details": {}}}' % code.encode()


@pytest.mark.parametrize(
    ("status", "body", "expected", "code"),
    [
        (404, error_body("NOT_FOUND"), NotFound, "NOT_FOUND"),
        (413, error_body("RESOURCE_EXHAUSTED"), ResourceExhausted, "RESOURCE_EXHAUSTED"),
        (429, error_body("RESOURCE_EXHAUSTED"), Unavailable, "UNAVAILABLE"),
        (503, error_body("UNAVAILABLE"), Unavailable, "UNAVAILABLE"),
        (502, b"<html>bad gateway</html>", Unavailable, "UNAVAILABLE"),
        # not a DearDiary answer (a wrong URL, a proxy's page): kept, never dropped
        (418, b"I am a teapot", Unavailable, "UNAVAILABLE"),
        (404, b"<html>not found</html>", Unavailable, "UNAVAILABLE"),
        (200, b"not json", Unavailable, "UNAVAILABLE"),
    ],
)
def test_http_errors_map_to_typed_errors(
    tmp_path: Path,
    server: Server,
    status: int,
    body: bytes,
    expected: type[DearDiaryError],
    code: str,
) -> None:
    content_type = "application/json" if body.startswith(b"{") else "text/plain"
    server.gateway.fail = (status, content_type, body)
    server.start()
    transport = HttpTransport(url_of(server.sock))
    record = LogRecord("e", "k", b"\x80")
    try:
        with pytest.raises(expected) as info:
            transport.send([record])
    finally:
        transport.close()
    assert info.value.code == ErrorCode(code)


def test_a_refused_connection_is_unavailable(sock: socket.socket) -> None:
    transport = HttpTransport(url_of(sock), timeout=5)
    try:
        with pytest.raises(Unavailable, match="cannot reach"):
            transport.send([LogRecord("e", "k", b"\x80")])
    finally:
        transport.close()
