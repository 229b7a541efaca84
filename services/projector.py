"""The projector loop: load offsets -> read -> decode -> fold -> apply, on any EventLog.

The offsets stored with the projection are the truth: the loop always resumes from
them, so a crash anywhere replays at most the batch that was not committed.

Nothing in the log can stop it (Kafka consumers' poison-message rule): an event whose
fold raises is parked by the fold itself, and a batch the store refuses is applied
again record by record, so the one record the store cannot take is parked with its
error and the rest go in. Errors of the machinery (disk, locks, memory) are not the
records' fault: the loop retries them with backoff and reports them in `status()`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import duckdb

from deardiary.projections.fold import Record, fold, lookups_for
from deardiary.projections.store import DuckDBProjectionStore
from deardiary.projections.writes import Writes
from deardiary.schemas.codec import ParkedRecord, decode_record, encode
from deardiary.schemas.envelope import LogPosition
from deardiary.schemas.errors import Unavailable
from deardiary.schemas.events import event_tag
from deardiary.services.log import EventLog

StopCondition = Callable[[LogPosition], bool]
Listener = Callable[[dict[int, int]], None]
"""Called (on the projector's thread) with the new offsets after every applied batch."""

_log = logging.getLogger("deardiary.projector")
LINGER_CHECK_S = 0.05
"""How often a lingering projector looks at `stop` and `hurry` (`hurry_now` ends it at once)."""
# Errors of the machinery rather than of a record: retried, never parked.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    MemoryError,
    Unavailable,
    duckdb.IOException,
    duckdb.OutOfMemoryException,
    duckdb.FatalException,
    duckdb.TransactionException,
    duckdb.InterruptException,
)


def apply_or_park(
    store: DuckDBProjectionStore, batch: Sequence[Record], log_dedups: bool = False
) -> None:
    """Apply a batch in one transaction. A batch the store refuses is applied again record
    by record, and the one record it cannot take is parked with the error, so the rest go
    in. Raises only errors of the machinery (TRANSIENT_ERRORS), after which nothing of the
    failing part was applied.

    `log_dedups`: the log holds an event id once (its `dedups_on_append`, the SQLite
    log's UNIQUE event_id), so the store neither looks the batch's ids up among the
    applied ones nor records them (two statements of a small batch's ~15); redelivery is
    still skipped by the offsets committed with the rows. Kafka stores a resent event
    again: its folds keep checking."""
    try:
        store.apply(_folded(store, batch, log_dedups))
        return
    except TRANSIENT_ERRORS:
        raise
    except Exception as exc:
        if len(batch) == 1:
            _park(store, batch[0], exc, log_dedups)
            return
        _log.warning("%d records failed together (%s); one by one now", len(batch), exc)
    for record in batch:
        apply_or_park(store, [record], log_dedups)


def _folded(store: DuckDBProjectionStore, batch: Sequence[Record], log_dedups: bool) -> Writes:
    lookups = lookups_for(batch)
    if log_dedups:
        lookups.event_ids.clear()
    writes = fold(store.load_prior(lookups), batch)
    if log_dedups:
        writes.applied_event_ids = []
    return writes


def _park(store: DuckDBProjectionStore, record: Record, exc: Exception, log_dedups: bool) -> None:
    """The store refused this one record: keep it in parked_events with the error."""
    pos, body = record
    error = f"{type(exc).__name__}: {exc}"[:2000]
    if isinstance(body, ParkedRecord):  # even the parked row was refused: the machinery
        raise Unavailable(f"the store cannot park record {pos.partition}:{pos.offset}: {error}")
    _log.error("parked record %s at %d:%d: %s", body.event_id, pos.partition, pos.offset, error)
    parked = ParkedRecord(
        event_id=body.event_id, event_type=event_tag(body.body), error=error, payload=encode(body)
    )
    store.apply(_folded(store, [(pos, parked)], log_dedups))


@dataclass(frozen=True)
class ProjectorStatus:
    """What /readyz and `deardiary status` report."""

    state: str  # "running", "retrying" (a transient error) or "stopped"
    applied: dict[int, int]  # next offset per partition
    end: dict[int, int]  # the log's end per partition
    lag_events: int
    last_error: str
    retries: int

    @property
    def ready(self) -> bool:
        return self.state == "running"


class Projector:
    """Folds a log into a projection store, one transaction per batch."""

    def __init__(
        self,
        log: EventLog,
        store: DuckDBProjectionStore,
        max_records: int = 500,
        stop_before: StopCondition | None = None,
        linger_s: float = 0.0,
    ) -> None:
        self.log = log
        self.store = store
        self.log_dedups = bool(getattr(log, "dedups_on_append", False))
        """The log holds an event id once: see `apply_or_park`."""
        self.max_records = max_records
        self.stop_before = stop_before
        self.linger_s = linger_s
        """How long `run` waits after a step that did not fill `max_records` before the
        next one (see `_linger`); 0 applies at once."""
        self.hurry: Callable[[], bool] = _nobody
        """True when someone waits for the projections (their reads): no lingering."""
        self._hurry = threading.Event()  # set by wait_for
        self._lock = threading.Lock()
        self._applied = threading.Condition(self._lock)
        self._housekeeping = threading.Lock()  # compaction, outside `_lock`
        self._listeners: list[Listener] = []
        self._state = "running"
        self._last_error = ""
        self._retries = 0

    @contextmanager
    def paused(self) -> Iterator[None]:
        """Nothing of the projector touches the store meanwhile (neither a batch nor
        compaction), so the caller may use the store's own connection."""
        with self._lock, self._housekeeping:
            yield

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def step(self, timeout: float = 0.0) -> int:
        """Apply the next batch; returns how many log records it consumed. Raises only
        errors of the machinery (TRANSIENT_ERRORS), after which nothing was applied."""
        with self._lock:
            offsets = self.store.next_offsets()
            raw = self._unstopped(self.log.read(offsets, self.max_records, timeout))
            if not raw:
                return 0
            self._apply(raw)
            if self._state == "retrying":
                _log.warning("projector: running again after %d retries", self._retries)
            self._state = "running"
            applied = self.store.next_offsets()
            self._applied.notify_all()
        for listener in self._listeners:
            try:
                listener(applied)
            except Exception:
                _log.exception("a projector listener failed")
        return len(raw)

    def _unstopped(self, raw: list[tuple[LogPosition, bytes]]) -> list[tuple[LogPosition, bytes]]:
        """The records before the as-of bound, each partition contiguous from its offset."""
        stop = self.stop_before
        if stop is None:
            return raw
        past: set[int] = set()
        kept = []
        for pos, payload in raw:  # offset order within each partition
            if pos.partition in past or stop(pos):
                past.add(pos.partition)
                continue
            kept.append((pos, payload))
        return kept

    def _apply(self, raw: Sequence[tuple[LogPosition, bytes]]) -> None:
        batch = [(pos, decode_record(payload)) for pos, payload in raw]
        apply_or_park(self.store, batch, self.log_dedups)

    def catch_up(self, retries: int = 5) -> None:
        """Apply everything appended before this call (transient errors retried a few times,
        then raised as UNAVAILABLE)."""
        end = self.log.end_offsets()
        failures = 0
        while not self._reached(end):
            try:
                if self.step() == 0:
                    break  # stopped by stop_before (as-of rebuilds)
                failures = 0
            except TRANSIENT_ERRORS as exc:
                failures += 1
                if failures > retries:
                    raise Unavailable(f"the projector cannot apply the log: {exc}") from exc
                time.sleep(min(2.0, 0.05 * 2**failures))

    def _reached(self, target: dict[int, int]) -> bool:
        have = self.store.next_offsets()
        return all(have.get(p, 0) >= o for p, o in target.items())

    def wait_for(self, target: dict[int, int], timeout: float) -> bool:
        """Block until the projections have applied up to `target` (read-your-writes)."""
        self._hurry.set()
        with self._applied:
            return self._applied.wait_for(lambda: self._reached(target), timeout)

    def hurry_now(self) -> None:
        """Someone waits for the projections (a read for its writes): end a linger now.
        Any thread may call it."""
        self._hurry.set()

    def status(self) -> ProjectorStatus:
        applied = self.store.next_offsets()
        try:
            end = self.log.end_offsets()
        except Exception as exc:  # the log itself is unreachable: report, do not raise
            return ProjectorStatus(self._state, applied, {}, 0, f"log: {exc}", self._retries)
        lag = sum(max(0, o - applied.get(p, 0)) for p, o in end.items())
        return ProjectorStatus(self._state, applied, end, lag, self._last_error, self._retries)

    def run(self, stop: threading.Event, wake: threading.Event, poll: float = 0.25) -> None:
        """Follow the log until `stop` is set; `wake` (set by appenders) skips the poll wait.
        Errors are retried with backoff (up to 10 s apart), never fatal."""
        backoff = 0.0
        while not stop.is_set():
            try:
                consumed = self.step(timeout=0)
                if not consumed:
                    # Idle: time for housekeeping. Not under self._lock, so readers waiting
                    # for their writes (wait_for) are answered while it runs.
                    with self._housekeeping:
                        self.store.maybe_compact()
            except Exception as exc:  # the thread must outlive any error
                # A fold's own errors are parked inside step(); what escapes is the
                # machinery's (TRANSIENT_ERRORS) or a bug in it: reported, retried.
                backoff = min(10.0, max(0.1, backoff * 2))
                self._state, self._last_error = "retrying", f"{type(exc).__name__}: {exc}"
                self._retries += 1
                _log.warning("projector: %s; retrying in %.1f s", self._last_error, backoff)
                stop.wait(backoff)
                continue
            backoff = 0.0
            if not consumed:
                wake.wait(poll)
                wake.clear()
            elif self.linger_s > 0 and consumed < self.max_records:
                self._linger(stop)
        self._state = "stopped"

    def _linger(self, stop: threading.Event) -> None:
        """Between two steps of a stream of appends, wait up to `linger_s` so that the next
        step gathers more records: a step costs ~15-20 ms of CPU besides its points (a
        dozen statements and a commit), and clients' batches arrive a few at a time. A
        write to an idle server is applied at once (run() waits on `wake` only when idle);
        a read waiting for its writes ends the wait at once (`wait_for`, `hurry_now`), or
        within LINGER_CHECK_S (`hurry`, as `stop`). Waking every 5 ms to ask `hurry` cost
        ~0.1-0.2 ms of CPU a time here: several ms a linger."""
        deadline = time.monotonic() + self.linger_s
        while not (stop.is_set() or self._hurry.is_set() or self.hurry()):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self._hurry.wait(min(left, LINGER_CHECK_S))
        self._hurry.clear()


def _nobody() -> bool:
    return False
