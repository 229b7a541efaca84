"""What a client connection may hold: a cap on open connections, and read timeouts.

aiohttp (3.14) times out nothing while a request arrives: a client that sends half its
headers, or a body one byte a minute, keeps its connection (and a file descriptor) for
as long as it likes, and nothing bounds how many connections are open. The guard here:

* **connection cap** -- at most `max_connections` client connections; the next one is
  answered ``503 UNAVAILABLE`` (one error body, ``Connection: close``) and closed before
  aiohttp sees it. The count drops as connections close.
* **header timeout** -- a connection must deliver a complete request head within
  `header_timeout_s` of connecting, or, on a kept-alive connection, of the first byte of
  its next request (the idle time before that byte is the keep-alive timeout's, as in
  Go's ReadHeaderTimeout/IdleTimeout).
* **body timeout** -- while a request's body is incomplete, some of it must arrive every
  `body_timeout_s` (nginx's client_body_timeout). Time during which the server itself
  stopped reading (the handler has not consumed what it has: flow control) does not count.
* **send timeout** -- a client that stops reading its response (the socket's buffers
  full) for `send_timeout_s` is cut (nginx's send_timeout): a stalled reader holds a
  handler and its response in memory otherwise.

Idle keep-alive connections are closed by aiohttp's own `keepalive_timeout` (set by the
runner), and the size of a request head by its `max_line_size`/`max_field_size`/
`max_headers`. A connection that times out is aborted; with the runner's
``handler_cancellation=True`` its handler is cancelled like for a client that went away.

How it hooks into aiohttp -- only through what aiohttp's low-level server documents or
exposes without an underscore, so that internals can change underneath:

* `web.Server` is an asyncio protocol factory (aiohttp's "low level server" recipe hands
  it to `loop.create_server`); the guard hands `loop.create_server` its own factory whose
  protocol wraps the aiohttp `RequestHandler` and forwards the asyncio Protocol calls.
  It sees every connection and every byte received, and owns the timers.
* `web.Server.request_factory` and `web.Server.request_handler` (public attributes that
  each `RequestHandler` copies when it is created, so the guard sets them before the
  first connection) are wrapped to learn when a request's head is complete (aiohttp
  builds the request) and when its handler returned; the request's body is the
  `StreamReader` aiohttp passes to the factory (`is_eof()`), whether the server reads
  the socket is asyncio's `transport.is_reading()`, and a client not reading shows as
  asyncio's `pause_writing()`/`resume_writing()` calls on the protocol.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import cast

from aiohttp import StreamReader, web
from aiohttp.abc import AbstractStreamWriter
from aiohttp.http import RawRequestMessage

from deardiary.schemas.errors import ErrorCode
from deardiary.services.http.errors import error_body

_log = logging.getLogger("deardiary.http.connections")

RequestFactory = Callable[
    [
        RawRequestMessage,
        StreamReader,
        web.RequestHandler,
        AbstractStreamWriter,
        "asyncio.Task[None]",
    ],
    web.BaseRequest,
]
RequestHandlerFn = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]


def _refusal() -> bytes:
    body = error_body(
        ErrorCode.UNAVAILABLE,
        "too many open connections; retry later",
        {"retryable": True},
    )
    head = (
        "HTTP/1.1 503 Service Unavailable\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Retry-After: 1\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


_REFUSAL = _refusal()


@dataclass(frozen=True)
class ConnectionLimits:
    """The guard's limits (`ServerSettings` holds them for `deardiary serve`)."""

    max_connections: int = 1024
    header_timeout_s: float = 10.0
    body_timeout_s: float = 30.0
    send_timeout_s: float = 60.0


class ConnectionGuard:
    """Counts and times the connections of one aiohttp `web.Server` (see module doc)."""

    def __init__(self, limits: ConnectionLimits) -> None:
        self.limits = limits
        self._open: dict[web.RequestHandler, _GuardedConnection] = {}
        self.peak = 0
        self.refused = 0
        self.timeouts = {"header": 0, "body": 0, "send": 0}
        """Connections cut for being late with their request head, their body, reading."""

    @property
    def open_connections(self) -> int:
        return len(self._open)

    def attach(self, server: web.Server) -> Callable[[], asyncio.Protocol]:
        """Hook into `server` (before it has connections) and return the protocol factory
        to pass to `loop.create_server` instead of the server itself."""
        if issubclass(web.RequestHandler, asyncio.BufferedProtocol):  # pragma: no cover
            raise RuntimeError(
                "aiohttp's RequestHandler became a BufferedProtocol: "
                "_GuardedConnection must forward get_buffer/buffer_updated"
            )
        make_request: RequestFactory = server.request_factory
        handle: RequestHandlerFn = server.request_handler

        def request_factory(
            message: RawRequestMessage,
            payload: StreamReader,
            protocol: web.RequestHandler,
            writer: AbstractStreamWriter,
            task: asyncio.Task[None],
        ) -> web.BaseRequest:
            connection = self._open.get(protocol)
            if connection is not None:
                connection.request_started(payload)
            return make_request(message, payload, protocol, writer, task)

        async def request_handler(request: web.BaseRequest) -> web.StreamResponse:
            try:
                return await handle(request)
            finally:
                connection = self._open.get(request.protocol)
                if connection is not None:
                    connection.request_finished()

        server.request_factory = request_factory
        server.request_handler = request_handler
        return lambda: _GuardedConnection(self, server)

    def abort_all(self) -> int:
        """Abort every open connection (the end of a shutdown's grace period)."""
        connections = list(self._open.values())
        for connection in connections:
            connection.abort()
        return len(connections)

    def _admit(self, inner: web.RequestHandler, connection: _GuardedConnection) -> None:
        self._open[inner] = connection
        self.peak = max(self.peak, len(self._open))

    def _release(self, inner: web.RequestHandler) -> None:
        self._open.pop(inner, None)


class _GuardedConnection(asyncio.Protocol):
    """One client connection: aiohttp's protocol inside, the guard's timers around it."""

    def __init__(self, guard: ConnectionGuard, server: web.Server) -> None:
        self._guard = guard
        self._server = server
        self._inner: web.RequestHandler | None = None
        self._transport: asyncio.Transport | None = None
        self._loop = asyncio.get_running_loop()
        self._timer: asyncio.TimerHandle | None = None
        self._header_deadline: float | None = None
        self._payload: StreamReader | None = None
        self._handled = False  # the handler returned; aiohttp may still read (linger) its body
        self._last_read = 0.0
        self._write_paused_at: float | None = None

    # -- asyncio.Protocol, forwarded to aiohttp ------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        guard = self._guard
        if guard.open_connections >= guard.limits.max_connections:
            guard.refused += 1
            _log.warning(
                "refused a connection: %d connections are open (max_connections)",
                guard.open_connections,
            )
            self._transport.write(_REFUSAL)
            self._transport.close()
            return
        inner = self._server()
        self._inner = inner
        guard._admit(inner, self)
        self._header_deadline = self._loop.time() + guard.limits.header_timeout_s
        self._watch(self._header_deadline)
        inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        inner = self._inner
        if inner is None:
            return
        now = self._loop.time()
        self._drop_finished_body()
        if self._payload is None:
            if self._header_deadline is None:  # first byte of the next request
                self._header_deadline = now + self._guard.limits.header_timeout_s
                self._watch(self._header_deadline)
        else:
            self._last_read = now
        inner.data_received(data)

    def eof_received(self) -> None:
        if self._inner is not None:  # aiohttp's returns None: the transport closes itself
            self._inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        inner, self._inner = self._inner, None
        if inner is not None:
            self._guard._release(inner)
            inner.connection_lost(exc)

    def pause_writing(self) -> None:
        """The transport's buffer is full: the client must read within send_timeout_s."""
        self._write_paused_at = self._loop.time()
        self._watch(self._write_paused_at + self._guard.limits.send_timeout_s)
        if self._inner is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._write_paused_at = None
        if self._inner is not None:
            self._inner.resume_writing()

    # -- what the guard learns from aiohttp's server -------------------------------------

    def request_started(self, payload: StreamReader) -> None:
        """aiohttp built a request: its head is complete; its body may still arrive."""
        self._header_deadline = None
        self._payload, self._handled = payload, False
        self._last_read = self._loop.time()
        if not payload.is_eof():
            self._watch(self._last_read + self._guard.limits.body_timeout_s)

    def request_finished(self) -> None:
        """The handler returned: the next request's clock starts at its first byte -- once
        the rest of this request's body, if any, has arrived (aiohttp reads it away)."""
        self._handled = True
        self._header_deadline = None
        self._drop_finished_body()

    def _drop_finished_body(self) -> None:
        if self._handled and self._payload is not None and self._payload.is_eof():
            self._payload = None

    def abort(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.abort()

    # -- timers --------------------------------------------------------------------------

    def _watch(self, when: float) -> None:
        """Have `_check` run at `when` at the latest (one timer per connection)."""
        if self._timer is not None:
            if self._timer.when() <= when:
                return
            self._timer.cancel()
        self._timer = self._loop.call_at(when, self._check)

    def _check(self) -> None:
        """Cut the connection if the client is late with what it owes now (the rest of the
        request head, more of the body, reading the response); else look again later."""
        self._timer = None
        transport = self._transport
        if self._inner is None or transport is None or transport.is_closing():
            return
        now = self._loop.time()
        limits = self._guard.limits
        self._drop_finished_body()
        late: tuple[str, float] | None = None
        due = []
        payload = self._payload
        if payload is None and self._header_deadline is not None:
            if now >= self._header_deadline:
                late = ("header", limits.header_timeout_s)
            due.append(self._header_deadline)
        if payload is not None and not payload.is_eof():
            if not transport.is_reading():  # the server holds back, not the client
                self._last_read = now
            if now >= self._last_read + limits.body_timeout_s:
                late = ("body", limits.body_timeout_s)
            due.append(self._last_read + limits.body_timeout_s)
        if self._write_paused_at is not None:
            if now >= self._write_paused_at + limits.send_timeout_s:
                late = ("send", limits.send_timeout_s)
            due.append(self._write_paused_at + limits.send_timeout_s)
        if late is not None:
            what, timeout = late
            self._guard.timeouts[what] += 1
            _log.info("closed a connection: %s timeout (%g s)", what, timeout)
            self.abort()
        elif due:
            self._watch(min(due))
