"""The background thread that moves buffered events to the log, surviving outages.

Why a thread of its own: logging calls only append to the buffer, so a slow or absent
server never blocks training. Every `flush_interval` (or as soon as the buffer reports
pressure, or a `flush` asks) the shipper takes what is pending and sends it.

Delivery is at-least-once and ordered; event ids make repeats harmless:

* while the spool is empty, taken records are sent directly; if the transport is
  `Unavailable` they are spooled under the sequence number reserved when taken;
* while the spool holds anything, newly taken records are spooled behind it and the
  spool is resent oldest-first, a file deleted only once all its records are acked;
* `Unavailable` backs off exponentially (capped), or as long as a 429/503's
  ``Retry-After`` asks when that is longer (at most a minute); other errors are permanent: those
  records are dropped (after bisecting a rejected batch so that only the bad records
  go) and the error is raised by the next `flush`.
"""

from __future__ import annotations

import atexit
import threading
import time

from deardiary.schemas.errors import DearDiaryError, ErrorCode, Internal, Unavailable

from .notices import log
from .transport import RETRY_AFTER_MAX_S

TYPE_CHECKING = False
if TYPE_CHECKING:  # `typing` costs a trial process milliseconds to import
    from collections.abc import Callable, Sequence

    from deardiary.schemas.records import LogRecord

    from .buffer import EventBuffer
    from .spool import Spool
    from .transport import Acked, Transport

# Codes for which a smaller batch may succeed where the whole one failed.
_BISECT = frozenset({ErrorCode.INVALID_ARGUMENT, ErrorCode.RESOURCE_EXHAUSTED})


class Shipper:
    """Ships `buffer` through `transport`, spooling to `spool` what cannot go now.

    Starts its daemon thread on construction (`start=False` to start it later). Registers
    an atexit hook that flushes for at most `exit_timeout` seconds; what is not delivered
    by then stays in the spool for the next process with the same spool directory.
    """

    def __init__(
        self,
        buffer: EventBuffer,
        transport: Transport,
        spool: Spool,
        *,
        flush_interval: float = 0.2,
        heartbeat_interval: float = 10.0,
        max_request_records: int = 2_000,
        max_request_bytes: int = 8 << 20,
        backoff_initial: float = 0.1,
        backoff_max: float = 10.0,
        exit_timeout: float = 10.0,
        start: bool = True,
        target: str = "",
    ) -> None:
        self.buffer = buffer
        self.transport = transport
        self.spool = spool
        self.flush_interval = flush_interval
        self.heartbeat_interval = heartbeat_interval
        self.max_request_records = max_request_records
        self.max_request_bytes = max_request_bytes
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.exit_timeout = exit_timeout
        self.target = target or "the log"
        self._outage_reported = False
        self._cond = threading.Condition()
        self._requested = 0  # flush generations asked for
        self._completed = 0  # the last generation whose round delivered everything
        self._kick = False
        self._closing = False  # close() was called (once is enough)
        self._stopping = False
        self._closed = False
        self._acked: Acked = {}
        self._error: DearDiaryError | None = None
        self._last_unavailable: Unavailable | None = None
        self._inflight: tuple[int, list[LogRecord]] | None = None
        self._heartbeats: set[str] = set()
        self._next_heartbeat = time.monotonic() + heartbeat_interval
        self._deadline = 0.0  # when closing: give up retrying at this time
        self._left_in_spool = False  # set by close: something could not be delivered
        self.dropped = 0  # records dropped after a permanent error
        self.before_close: Callable[[], None] | None = None  # e.g. the environment snapshot
        buffer.on_pressure = self._wake
        self._thread = threading.Thread(target=self._run, name="deardiary-shipper", daemon=True)
        atexit.register(self._at_exit)
        if start:
            self.start()

    def start(self) -> None:
        self._thread.start()

    # -- public API ------------------------------------------------------------------------

    @property
    def acked_offset(self) -> int:
        """The highest offset the transport acknowledged so far (-1 before any)."""
        return max(self._acked.values(), default=-1)

    @property
    def acked(self) -> Acked:
        """The last acknowledged offset of every partition written to (read-your-writes)."""
        return dict(self._acked)

    def start_heartbeat(self, iteration_id: str) -> None:
        """Emit `IterationHeartbeat` for this iteration every `heartbeat_interval`."""
        with self._cond:
            self._heartbeats.add(iteration_id)

    def stop_heartbeat(self, iteration_id: str) -> None:
        with self._cond:
            self._heartbeats.discard(iteration_id)

    def flush(self, timeout: float | None = None) -> int:
        """Block until everything logged before this call is acknowledged; returns the
        highest acknowledged offset (for read-your-writes). Raises `Unavailable` when that
        does not happen within `timeout`, or the first permanent error since the last flush.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            if self._closed:
                return self._finish_closed_flush()
            self._requested += 1
            target = self._requested
            self._kick = True
            self._cond.notify_all()
            while self._completed < target and not self._closed:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    cause = self._last_unavailable
                    reason = f" ({cause.message})" if cause else ""
                    raise Unavailable(
                        f"not acknowledged by {self.target} within {timeout}s{reason};"
                        f" {self._waiting_text()} for resending"
                    ) from cause
                self._cond.wait(remaining)
            if self._completed < target:
                return self._finish_closed_flush()
            self._raise_error()
            return self.acked_offset

    def _finish_closed_flush(self) -> int:
        self._raise_error()
        if self._left_in_spool or not self.buffer.is_empty():
            raise Unavailable("the shipper is closed; undelivered events stay in the spool")
        return self.acked_offset

    def _raise_error(self) -> None:
        error = self._error or self.buffer.take_error()
        self._error = None
        if error is not None:
            raise error

    def close(self, timeout: float | None = None) -> None:
        """Flush for at most `timeout` seconds (default `exit_timeout`), stop the thread and
        release the spool. Undelivered events are left in the spool; never raises."""
        timeout = self.exit_timeout if timeout is None else timeout
        with self._cond:
            if self._closing:
                return
            self._closing = True
        if self.before_close is not None:
            try:
                self.before_close()
            except Exception:  # closing must go on
                log.exception("deardiary: before-close hook failed")
        with self._cond:
            self._stopping = True
            self._heartbeats.clear()
            self._deadline = time.monotonic() + timeout
            self._requested += 1
            self._kick = True
            self._cond.notify_all()
        atexit.unregister(self._at_exit)
        if self._thread.is_alive():
            self._thread.join(timeout + 1.0)
        else:
            self.transport.close()
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            inflight = self._inflight
        self.buffer.spill()
        if inflight is not None:  # the thread is stuck in a send: keep a copy (dedup on resend)
            try:
                self.spool.write(inflight[1], inflight[0])
            except OSError as exc:
                log.error(
                    "deardiary: %d events lost, spool write failed: %s", len(inflight[1]), exc
                )
        self._left_in_spool = not self.spool.is_empty()
        if self._left_in_spool:
            cause = self._last_unavailable
            log.warning(
                "deardiary: could not deliver everything to %s before closing%s; %s, sent by"
                " the next client that uses this spool folder",
                self.target,
                f" ({cause.message})" if cause else "",
                self._waiting_text(),
            )
        self.spool.close()

    def _waiting_text(self) -> str:
        """How much waits where, for messages: "12 events wait in the spool /x"."""
        files, records = self.spool.waiting()
        if not files:
            return f"nothing waits in the spool {self.spool.directory}"
        counted = f"{records} events" if records else f"{files} spool files"
        return f"{counted} wait in the spool {self.spool.directory}"

    def undelivered(self) -> int:
        """Events logged but not acknowledged yet: buffered, in flight or spooled."""
        _, spooled = self.spool.waiting()
        inflight = self._inflight
        return self.buffer.pending_events + spooled + (len(inflight[1]) if inflight else 0)

    def _report_outage(self, exc: Unavailable) -> None:
        """Say once, on stderr (a warning), that events wait, where, and why."""
        if self._outage_reported:
            log.debug("deardiary: %s; retrying", exc.message)
            return
        self._outage_reported = True
        log.warning(
            "deardiary: cannot deliver to %s (%s); %s and are resent when it answers"
            " (said once; flush() reports what is still undelivered)",
            self.target,
            exc.message,
            self._waiting_text(),
        )

    def _at_exit(self) -> None:
        try:
            self.close()
        except Exception:  # pragma: no cover - an exit hook must not raise
            log.exception("deardiary: closing at exit failed")

    def _wake(self) -> None:
        with self._cond:
            self._kick = True
            self._cond.notify_all()

    # -- the thread ------------------------------------------------------------------------

    def _run(self) -> None:
        backoff = 0.0
        try:
            self._adopt()
            while True:
                with self._cond:
                    if not self._kick and not self._stopping:
                        self._cond.wait(backoff or self.flush_interval)
                    self._kick = False
                    generation = self._requested
                    stopping = self._stopping
                try:
                    self._round()
                except Unavailable as exc:
                    self._last_unavailable = exc
                    backoff = min(self.backoff_max, max(self.backoff_initial, backoff * 2))
                    asked = exc.details.get("retry_after_s")  # a 429/503's Retry-After
                    if isinstance(asked, int | float):
                        backoff = max(backoff, min(float(asked), RETRY_AFTER_MAX_S))
                    self._report_outage(exc)
                    if stopping:
                        if time.monotonic() + backoff >= self._deadline:
                            return
                        time.sleep(backoff)
                    continue
                except Exception as exc:  # a bug or a full disk: surface it, do not hang flush
                    log.exception("deardiary: shipping round failed")
                    with self._cond:
                        self._error = self._error or Internal(f"shipping failed: {exc!r}")
                    backoff = self.backoff_max
                else:
                    backoff = 0.0
                    self._last_unavailable = None
                with self._cond:
                    self._completed = max(self._completed, generation)
                    self._cond.notify_all()
                if stopping:
                    return
        finally:
            self.transport.close()

    def _adopt(self) -> None:
        """Take over what earlier processes left in the spool; it is sent before our own."""
        try:
            adopted = self.spool.adopt()
        except OSError as exc:
            log.error("deardiary: cannot scan the spool %s: %s", self.spool.directory, exc)
            return
        if adopted:
            log.info("deardiary: resending %d spooled files of earlier processes", adopted)

    def _round(self) -> None:
        """Take what is pending and deliver it (and the spool); raises `Unavailable`."""
        self._emit_heartbeats()
        taken = self.buffer.take()
        records = taken.records
        if taken.behind_spool:
            if records:
                self.spool.write(records, taken.seq)
            for name in self.spool.pending():
                self._send_all(self.spool.read(name))
                self.spool.remove(name)
            return
        if not records:
            return
        self._inflight = (taken.seq, records)
        try:
            self._send_all(records)
        except Unavailable:
            self.spool.write(records, taken.seq)
            raise
        finally:
            self._inflight = None

    def _emit_heartbeats(self) -> None:
        now = time.monotonic()
        if now < self._next_heartbeat:
            return
        self._next_heartbeat = now + self.heartbeat_interval
        with self._cond:  # held while emitting: after stop_heartbeat returns, none follows
            for iteration_id in sorted(self._heartbeats):
                body = {"type": "iteration_heartbeat", "iteration_id": iteration_id}
                self.buffer.emit_body(body, iteration_id)

    def _send_all(self, records: Sequence[LogRecord]) -> None:
        """Send in requests bounded by record count and bytes, in order."""
        start, size = 0, 0
        for i, record in enumerate(records):
            n = len(record.payload)
            if i > start and (
                i - start >= self.max_request_records or size + n > self.max_request_bytes
            ):
                self._send_request(records[start:i])
                start, size = i, 0
            size += n
        if start < len(records):
            self._send_request(records[start:])

    def _send_request(self, records: Sequence[LogRecord]) -> None:
        try:
            acked = self.transport.send(records)
        except Unavailable:
            raise
        except DearDiaryError as exc:
            if len(records) > 1 and exc.code in _BISECT:
                mid = len(records) // 2
                self._send_request(records[:mid])
                self._send_request(records[mid:])
                return
            self._drop(records, exc)
            return
        except Exception as exc:  # a transport bug: surface it, do not retry forever
            self._drop(records, Internal(f"transport failed: {exc!r}"))
            return
        for partition, offset in acked.items():
            self._acked[partition] = max(self._acked.get(partition, -1), offset)

    def _drop(self, records: Sequence[LogRecord], error: DearDiaryError) -> None:
        self.dropped += len(records)
        log.error(
            "deardiary: %d events rejected (%s: %s); raised by the next flush",
            len(records),
            error.code,
            error.message,
        )
        with self._cond:
            if self._error is None:
                self._error = error
