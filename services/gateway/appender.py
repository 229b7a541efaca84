"""The one way a server appends events: check, append durably, then wake the projector.

Used by the ingest gateway (POST /api/v1/events) and by the routes that build events
themselves (the MLflow-compatible API), so every write passes the same checker (parents
exist, params are write-once, and under --auth the caller may write there).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

from aiohttp import web

from deardiary.schemas.codec import encode
from deardiary.schemas.envelope import Envelope, LogPosition
from deardiary.schemas.errors import DearDiaryError, Unavailable
from deardiary.services.log import EventLog, LogRecord

_log = logging.getLogger("deardiary.gateway")


class IngestChecker(Protocol):
    """What the server checks of a decoded batch beyond its own contents (parents exist,
    params do not change, the caller may write there) before appending it."""

    async def check(
        self, request: web.Request, envelopes: Sequence[Envelope]
    ) -> Sequence[Envelope]:
        """The envelopes to append (the same, or re-stamped ones); raises to refuse them."""
        ...

    def appended(self, envelopes: Sequence[Envelope]) -> None:
        """Called after the batch was appended durably."""
        ...


class Appender:
    """Appends checked batches to one log on threads of its own (appends block on disk
    or a broker), and remembers how far its own appends reached per partition (so a
    read can wait for exactly what this server wrote)."""

    def __init__(
        self,
        log: EventLog,
        checker: IngestChecker | None = None,
        on_appended: Callable[[list[LogPosition]], None] | None = None,
        threads: int = 1,
    ) -> None:
        self.log = log
        self.checker = checker
        self.on_appended = on_appended
        self.threads = threads
        self._executor: ThreadPoolExecutor | None = None
        self._written: dict[int, int] = {}
        self._queue: list[tuple[list[LogRecord], asyncio.Future[list[LogPosition]]]] = []
        self._writing = False
        self._drainer: asyncio.Task[None] | None = None

    def _pool(self) -> ThreadPoolExecutor:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(self.threads, "deardiary-gateway-append")
        return self._executor

    async def lifetime(self, app: web.Application) -> AsyncIterator[None]:
        """aiohttp cleanup context: the append threads go with the application (safe to
        register from several parts)."""
        yield
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True)

    def written(self) -> dict[int, int]:
        """Next offset per partition after this appender's own appends."""
        return dict(self._written)

    async def append(
        self,
        request: web.Request,
        envelopes: Sequence[Envelope],
        payloads: Sequence[bytes] | None = None,
    ) -> list[LogPosition]:
        """Check, append, notify; the positions in request order. `payloads` are the
        envelopes' bytes when the caller has them (kept byte for byte unless the checker
        re-stamps an envelope). A log that cannot be written is 503 UNAVAILABLE."""
        if payloads is None:
            payloads = [encode(e) for e in envelopes]
        if self.checker is not None:
            checked = await self.checker.check(request, envelopes)
            payloads = [
                p if c is e else encode(c)
                for e, c, p in zip(envelopes, checked, payloads, strict=True)
            ]
            envelopes = checked
        records = [
            LogRecord(e.event_id, e.key, p) for e, p in zip(envelopes, payloads, strict=True)
        ]
        positions = await self._committed(records)
        if self.checker is not None:
            self.checker.appended(envelopes)
        for p in positions:
            self._written[p.partition] = max(self._written.get(p.partition, 0), p.offset + 1)
        self._notify(positions)
        return positions

    async def _committed(self, records: list[LogRecord]) -> list[LogPosition]:
        """Group commit: batches that arrive while an append is running wait for it and are
        then appended together, in arrival order, in one call (one transaction, one fsync
        for a SQLite log). Each gets its own positions; a failure fails the whole group."""
        loop = asyncio.get_running_loop()
        turn: asyncio.Future[list[LogPosition]] = loop.create_future()
        self._queue.append((records, turn))
        if not self._writing:
            self._writing = True
            self._drainer = loop.create_task(self._drain())
        return await turn

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._queue:
                group, self._queue = self._queue, []
                combined = [r for records, _ in group for r in records]
                try:
                    positions = await loop.run_in_executor(self._pool(), self.log.append, combined)
                    if len(positions) != len(combined):
                        raise Unavailable(
                            f"the log answered {len(positions)} positions for"
                            f" {len(combined)} records",
                            {"retryable": True},
                        )
                except Exception as exc:
                    failure = exc if isinstance(exc, DearDiaryError) else _unwritable(exc)
                    for _, turn in group:
                        if not turn.done():
                            turn.set_exception(failure)
                    continue
                start = 0
                for records, turn in group:
                    if not turn.done():
                        turn.set_result(positions[start : start + len(records)])
                    start += len(records)
        finally:
            self._writing = False

    def _notify(self, positions: list[LogPosition]) -> None:
        """Wake whoever waits for new records. The events are durable already, so a failing
        hook is logged, not answered as an error (the client would resend for nothing)."""
        if self.on_appended is None:
            return
        try:
            self.on_appended(positions)
        except Exception:
            _log.exception("on_appended hook failed")


def _unwritable(exc: BaseException) -> Unavailable:
    """sqlite3.Error, OSError, a broker client's errors, ...: retryable, nothing written."""
    _log.warning("the event log cannot be written", exc_info=exc)
    error = Unavailable(
        f"the event log cannot be written right now ({type(exc).__name__}); retry",
        {"retryable": True},
    )
    error.__cause__ = exc
    return error
