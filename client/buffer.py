"""The in-memory, ordered buffer between logging calls and the background shipper.

Why columnar: `log_metric` sits in training loops and must cost about a microsecond, so
it only extends its batch's flat stage by one point under one lock (`_Batch.stage`);
staged points are packed into typed arrays (`array('d')`, `array('q')`, a key index) a
thousand at a time, and the arrays become `MetricsLogged` columns without a per-point
loop at drain time. Staged points are counted (and the limits checked) when they settle:
a batch may stage only as many as the buffer has room for before its next check (see
`EventBuffer._settle`), so the lines are crossed by the same point as when every call
counted.

Why ordered: other events (params, log lines, an iteration's end) must reach the log in
the order they were logged relative to the metric points, or a fold would see, say,
points after the end. `emit` closes every open metric batch, so the pending items are
one list in logging order: metric batches and events, interleaved as they happened.

Why bounded: a long outage must not grow memory without limit. When the pending points
or event bytes pass their limits, the logger that crossed the line spills everything
pending to the disk spool; order is kept by the spool's sequence numbers (see `take`).
"""

from __future__ import annotations

import struct
import sys
import threading
import time
from array import array

from deardiary.schemas.bounds import AUTO_STEP, MAX_STEP
from deardiary.schemas.errors import DearDiaryError, InvalidArgument, ResourceExhausted
from deardiary.schemas.ids import new_id
from deardiary.schemas.records import LogRecord
from deardiary.schemas.wire import envelope, envelope_map

from .notices import log

TYPE_CHECKING = False
if TYPE_CHECKING:  # `typing` (and a Protocol class) cost a trial process's import
    from collections.abc import Callable, Mapping
    from typing import Any, Protocol

    from deardiary.schemas.envelope import Envelope
    from deardiary.schemas.events import Event  # the union: loads every event module

    from .spool import Spool

    class MetricLogger(Protocol):
        """`log_metric` of one iteration (`EventBuffer.metric_logger`)."""

        def __call__(
            self, key: str, value: float, step: int | None = None, group: str = ""
        ) -> None: ...

    class MetricsLogger(Protocol):
        """`log_metrics` of one iteration (`EventBuffer.metrics_logger`)."""

        def __call__(
            self, metrics: Mapping[str, float], step: int | None = None, group: str = ""
        ) -> None: ...


_now_ns = time.time_ns
_MAX_KEYS = 1 << 16  # key_index is uint16
_pack_q = struct.Struct("=q").pack  # native order, as array("q") holds it
_DOUBLES: dict[int, Callable[..., bytes]] = {}
_NO_METRICS: Mapping[str, float] = {}  # what is left for the general path: nothing
# what the fast path of log_metrics leaves to the general one (which checks point by point)
_FAST_PATH_ERRORS = (KeyError, TypeError, ValueError, OverflowError, struct.error)
_STAGE = 1024  # staged points of a batch settled into its columns at once
_CLOSED: dict[str, int] = {}  # the keys a closed batch takes (never written)
_PACKS: dict[int, tuple[Callable[..., bytes], Callable[..., bytes], Callable[..., bytes]]] = {}


def _packs(count: int) -> tuple[Callable[..., bytes], Callable[..., bytes], Callable[..., bytes]]:
    """`struct.pack` of `count` native uint16, int64 and doubles (a settle's columns)."""
    packs = _PACKS.get(count)
    if packs is None:
        packs = _PACKS[count] = (
            struct.Struct(f"={count}H").pack,
            struct.Struct(f"={count}q").pack,
            struct.Struct(f"={count}d").pack,
        )
    return packs


def _pack_doubles(count: int) -> Callable[..., bytes]:
    """`struct.pack` of `count` native doubles: one call converts a step's values, where
    `array.extend` parses each value on its own (most of a log_metrics call's time)."""
    pack = _DOUBLES.get(count)
    if pack is None:
        pack = _DOUBLES[count] = struct.Struct(f"={count}d").pack
    return pack


_EMPTY_COLUMNS: tuple[array[int], array[int], array[float], array[int]] = (
    array("H"),
    array("q"),
    array("d"),
    array("q"),
)  # what a drained batch holds (never written)


def _le(arr: array[int] | array[float]) -> bytes | memoryview:
    """A column's little-endian bytes, without copying them: the envelope is encoded at
    once and the arrays let go, and a sweep trial's 0.5 MB of columns are not copied once
    more (~130 page faults)."""
    if sys.byteorder == "big":  # pragma: no cover - no big-endian machines in CI
        arr = array(arr.typecode, arr)
        arr.byteswap()
    return memoryview(arr).cast("B")


class _Batch:
    """Open columns of one iteration (and metric group) between two events."""

    __slots__ = (
        "group",
        "iteration_id",
        "key_index",
        "keys",
        "last_index",
        "last_names",
        "last_pack",
        "limit",
        "live",
        "room",
        "stage",
        "steps",
        "times",
        "values",
    )

    def __init__(self, iteration_id: str, group: str, limit: int) -> None:
        self.iteration_id = iteration_id
        self.group = group
        self.limit = limit  # points per envelope
        # Points of the inlined log_metric, flat: key index, step, value, time, key
        # index, ... One list extend by a 4-tuple costs a fraction of four array appends
        # (each parses its value; a time, past 2**30, the slow way), the tuple is freed at
        # once (appending tuples kept 1,024 alive, then freed them), and `settle` slices
        # the four columns out and packs each in one C call (zip(*tuples) cost twice as
        # much). `room` is how many list items (4 a point) may wait before a settle is
        # due; the buffer grants it (`EventBuffer._settle`), 0 until then.
        self.stage: list[float] = []
        self.room = 0
        self.keys: dict[str, int] = {}
        # `keys` while the batch is open, `_CLOSED` after: a logger that remembers its
        # batch finds no key in a closed one and takes the checked path
        self.live = self.keys
        self.key_index: array[int] = array("H")
        self.steps: array[int] = array("q")
        self.values: array[float] = array("d")
        self.times: array[int] = array("q")
        # the key order of the last log_metrics call and its key_index bytes: a training
        # loop logs the same keys step after step
        self.last_names: tuple[str, ...] = ()
        self.last_index = b""
        self.last_pack: Callable[..., bytes] = _pack_doubles(0)

    def settle(self) -> int:
        """Move staged points into the columns (in order, after what the columns hold);
        returns how many. The caller holds the buffer's lock (and counts them: see
        `EventBuffer._settle`) or is the only one holding this batch."""
        stage = self.stage
        n = len(stage) >> 2
        if n:
            pack_h, pack_q, pack_d = _packs(n)
            self.key_index.frombytes(pack_h(*stage[0::4]))
            self.steps.frombytes(pack_q(*stage[1::4]))
            self.values.frombytes(pack_d(*stage[2::4]))
            self.times.frombytes(pack_q(*stage[3::4]))
            stage.clear()
        return n

    def record(self, actor: str) -> LogRecord:
        """The batch's `MetricsLogged` event, encoded, once (drained): its columns are let
        go after. The body has every field of the event type, in its order."""
        self.settle()
        body = {
            "type": "metrics_logged",
            "iteration_id": self.iteration_id,
            "keys": list(self.keys),
            "key_index": _le(self.key_index),
            "steps": _le(self.steps),
            "values": _le(self.values),
            "times": _le(self.times),
            "group": self.group,
        }
        event_id, key = new_id(), self.iteration_id
        payload = envelope(event_id, body, key, self.times[0], actor)
        # a logger may still hold this (closed) batch until its next call
        self.key_index, self.steps, self.values, self.times = _EMPTY_COLUMNS
        return LogRecord(event_id, key, payload)


MAX_POINTS_PER_ENVELOPE = 32_768
"""26 bytes a point: 852 KiB of columns, so one envelope stays under the 1 MiB a Kafka
record may have by default (broker `message.max.bytes`, producer `max.request.size`)."""


class Taken:
    """What `EventBuffer.take` hands the shipper. (A plain class: a NamedTuple class costs
    every trial process's import ~0.8M instructions to create.)"""

    __slots__ = ("behind_spool", "records", "seq")

    def __init__(self, seq: int, records: list[LogRecord], behind_spool: bool) -> None:
        self.seq = seq
        """The spool sequence number reserved for these records, should they be spooled."""
        self.records = records
        self.behind_spool = behind_spool
        """True when the spool already holds records; these must then be sent after them."""


class EventBuffer:
    """Pending events in logging order; thread-safe; never raises into a logging call.

    `spool` receives everything pending when `max_points` metric points or `max_bytes`
    bytes of other events are buffered. A metric batch is closed at
    `max_points_per_envelope` points, so no envelope is larger than that.
    `on_pressure` (set by the shipper) is called, outside the lock, once `wake_points`
    points are pending, to ship early.
    """

    def __init__(
        self,
        spool: Spool,
        *,
        actor: str = "",
        max_points: int = 1_000_000,
        max_bytes: int = 64 << 20,
        max_points_per_envelope: int = MAX_POINTS_PER_ENVELOPE,
        wake_points: int = 50_000,
    ) -> None:
        if min(max_points, max_bytes, max_points_per_envelope, wake_points) < 1:
            raise InvalidArgument("buffer limits must be positive")
        self.actor = actor
        self.on_pressure: Callable[[], None] | None = None
        self._spool = spool
        self._max_points = max_points
        self._max_bytes = max_bytes
        self._per_envelope = max_points_per_envelope
        self._wake_points = min(wake_points, max_points)
        self._lock = threading.Lock()
        self._order = threading.Lock()  # held across drain + spool decisions (see take)
        self._items: list[_Batch | LogRecord] = []
        self._open: dict[tuple[str, str], _Batch] = {}
        self._points = 0  # pending points but the staged ones (counted as they settle)
        self._granted = 0  # the open batches' rooms, in points (see _settle)
        self._bytes = 0
        self._check_at = self._wake_points
        self._hooks: list[Callable[[], None]] = []
        self._error: DearDiaryError | None = None
        self._rejected = 0

    # -- logging (hot path) ----------------------------------------------------------------

    def log_metric(
        self, iteration_id: str, key: str, value: float, step: int | None = None, group: str = ""
    ) -> None:
        """Append one point; `step=None` means max(step)+1 for the key (`AUTO_STEP`)."""
        self.metric_logger(iteration_id)(key, value, step, group)

    def metric_logger(self, iteration_id: str) -> MetricLogger:
        """`log_metric` bound to one iteration (an Iteration keeps one for its life).

        The common call of a training loop -- a float of a key the open batch knows, at
        an automatic or plain step -- is appended right here, in the one Python frame a
        call costs: the lock and the default group's open batch are read from the
        closure, the lock is taken with acquire/release (``with`` costs twice as much),
        and the point is neither converted nor counted until its batch settles.
        Everything else goes to `_add`, which checks and rejects as before.

        Thread-safety does not lean on the GIL: the remembered batch, its stage, the
        counters and the rooms are read and written with the buffer's lock held."""
        lock = self._lock
        acquire, release = lock.acquire, lock.release
        batches = self._open  # cleared in place, never replaced
        add, settle = self._add, self._settle
        now_ns = _now_ns
        auto, max_step, float_, int_ = AUTO_STEP, MAX_STEP, float, int
        default_key = (iteration_id, "")
        # the open batch of the default group, remembered (as of the last checked call):
        # once closed, it knows no key, and the checked path finds the next one
        last: _Batch | None = None

        def log_metric(key: str, value: float, step: int | None = None, group: str = "") -> None:
            nonlocal last
            t = now_ns() // 1000
            acquire()
            try:
                batch = last if group == "" else batches.get((iteration_id, group))
                if (
                    batch is not None
                    and (idx := batch.live.get(key)) is not None
                    and type(value) is float_
                    and (step is None or (type(step) is int_ and 0 <= step <= max_step))
                ):
                    # Nothing here can fail: the point is staged whole (see _Batch.stage)
                    # and counted when it settles, which is due before the buffer's next
                    # check would be (the room granted by _settle).
                    stage = batch.stage
                    stage += (idx, auto if step is None else step, value, t)
                    over = len(stage) >= batch.room and settle(batch)
                else:
                    over = add(iteration_id, key, value, step, group, t)
                    if group == "":
                        last = batches.get(default_key)
            finally:
                release()
            if over:
                self._pressure()

        return log_metric

    def log_metrics(
        self,
        iteration_id: str,
        metrics: Mapping[str, float],
        step: int | None = None,
        group: str = "",
    ) -> None:
        """Several keys at the same step (and time), under one lock."""
        self.metrics_logger(iteration_id)(metrics, step, group)

    def metrics_logger(self, iteration_id: str) -> MetricsLogger:
        """`log_metrics` bound to one iteration (an Iteration keeps one for its life): the
        closure holds what each call would look up (lock, open batches, limits), as
        `metric_logger` does; the lock is taken with acquire/release."""
        lock = self._lock
        acquire, release = lock.acquire, lock.release
        batches = self._open  # cleared in place, never replaced
        add, settle = self._add, self._settle
        now_ns = _now_ns
        per_envelope = self._per_envelope
        int_, no_metrics, pack_q, bad = int, _NO_METRICS, _pack_q, _FAST_PATH_ERRORS

        def log_metrics(
            metrics: Mapping[str, float], step: int | None = None, group: str = ""
        ) -> None:
            t = now_ns() // 1000
            over = False
            acquire()
            try:
                batch = batches.get((iteration_id, group))
                if batch is not None:
                    if batch.room:
                        over = settle(batch, False)  # staged points come first
                    if (
                        type(step) is int_
                        and step >= 0
                        and len(batch.key_index) + len(metrics) < per_envelope
                    ):
                        # The common case of a training loop: known keys, into the open
                        # batch, each column extended by bytes packed in one call (nothing
                        # is appended until every value converted).
                        try:
                            names = tuple(metrics)
                            if names != batch.last_names:
                                keys = batch.keys
                                batch.last_index = array("H", [keys[k] for k in names]).tobytes()
                                batch.last_pack = _pack_doubles(len(names))
                                batch.last_names = names
                            values = batch.last_pack(*metrics.values())
                            count = len(names)
                            steps = pack_q(step) * count  # a step past int64 raises here
                        except bad:
                            pass  # the general path below sorts it out, point by point
                        else:
                            batch.key_index.frombytes(batch.last_index)
                            batch.values.frombytes(values)
                            batch.steps.frombytes(steps)
                            batch.times.frombytes(pack_q(t) * count)
                            points = self._points = self._points + count
                            over = points >= self._check_at
                            metrics = no_metrics
                if metrics:
                    for key, value in metrics.items():
                        over = add(iteration_id, key, value, step, group, t) or over
            finally:
                release()
            if over:
                self._pressure()

        return log_metrics

    def _add(
        self, iteration_id: str, key: str, value: float, step: int | None, group: str, t: int
    ) -> bool:
        """One point, with the lock held; True when the pending points call for a check."""
        batch = self._open.get((iteration_id, group))
        if batch is None:
            batch = self._new_batch(iteration_id, group)
        elif batch.room:
            self._settle(batch, False)  # staged points come first
        idx = batch.keys.get(key)
        if idx is None:
            if not isinstance(key, str) or not key:
                self._reject(f"metric key must be a non-empty string, got {key!r}")
                return False
            if len(batch.keys) >= _MAX_KEYS:
                self._close(batch)  # (settled above)
                batch = self._new_batch(iteration_id, group)
            idx = batch.keys[key] = len(batch.keys)
        n = len(batch.key_index)
        try:
            batch.values.append(value)
            if step is None:
                batch.steps.append(AUTO_STEP)
            elif step >= 0:
                batch.steps.append(step)
            else:
                raise ValueError("step must be >= 0")
        except (TypeError, ValueError, OverflowError) as exc:
            del batch.values[n:]
            self._reject(f"metric {key!r}: value {value!r} step {step!r}: {exc}")
            return False
        batch.key_index.append(idx)
        batch.times.append(t)
        points = self._points = self._points + 1
        if n + 1 >= self._per_envelope:
            self._close(batch)
        return points >= self._check_at

    def _settle(self, batch: _Batch, grant: bool = True) -> bool:
        """Settle an open batch's staged points and count them, with the lock held; True
        when the pending points call for a check.

        With `grant`, the batch gets room to stage again: at most `_STAGE` points, what
        its envelope has left, and what is left before the next check once the other
        open batches' rooms are counted as if full (when they hold what this one wants,
        their staged points are settled and their rooms taken back first). So the pending
        points, staged ones too, never pass a line uncounted: a room is always left
        unfilled but the last one, and the point that fills it settles and is checked
        right there, as when every call counted. Without `grant`, the batch gets no room
        (it is about to take points in its columns directly; its next staged point
        settles at once and asks again)."""
        self._granted -= batch.room >> 2
        points = self._points = self._points + batch.settle()
        left = batch.limit - len(batch.key_index)
        room = 0
        if left <= 0:  # the envelope is full
            self._close(batch)
        elif grant:
            want = min(_STAGE, left)
            avail = self._check_at - points - self._granted
            if avail < want and self._granted:
                for other in list(self._open.values()):  # take the other rooms back
                    if other.room and other is not batch:
                        self._settle(other, False)
                points = self._points
                avail = self._check_at - points
            room = max(min(want, avail), 0)
            self._granted += room
        batch.room = room << 2
        return points >= self._check_at

    def emit(self, event: Event) -> None:
        """Append a non-metric event after everything logged so far (when it cannot be
        encoded, the error is raised by the next flush)."""
        from deardiary.schemas.codec import encode
        from deardiary.schemas.envelope import wrap

        wrapped = wrap(event, actor=self.actor)
        try:
            record = LogRecord(wrapped.event_id, wrapped.key, encode(wrapped))
        except (TypeError, ValueError, OverflowError, RecursionError) as exc:
            self._reject(f"cannot encode {type(event).__name__}: {exc}")
            return
        self._append(record)

    def emit_body(self, body: dict[str, Any], key: str) -> None:
        """`emit` of an event written as a dict (its tag under "type", then its fields;
        see `schemas/wire.py`), in the log's partition of `key`: the SDK's write path
        builds the events of a trial this way, without msgspec."""
        event_id = new_id()
        client_time = _now_ns() // 1000
        payload: bytes | None
        try:
            payload = envelope(event_id, body, key, client_time, self.actor)
        except TypeError:
            # A value only msgspec encodes (a datetime, a UUID, a set in an iteration's
            # metadata): encoded by it, as every event was before.
            payload = self._encoded_by_msgspec(event_id, body, key, client_time)
        except (ValueError, OverflowError, RecursionError) as exc:
            self._reject(f"cannot encode {body.get('type')}: {exc}")
            return
        if payload is not None:
            self._append(LogRecord(event_id, key, payload))

    def _encoded_by_msgspec(
        self, event_id: str, body: dict[str, Any], key: str, client_time: int
    ) -> bytes | None:
        import msgspec

        try:
            return msgspec.msgpack.encode(
                envelope_map(event_id, body, key, client_time, self.actor)
            )
        except (TypeError, ValueError, OverflowError, RecursionError) as exc:
            self._reject(f"cannot encode {body.get('type')}: {exc}")
            return None

    def _append(self, record: LogRecord) -> None:
        with self._lock:
            for batch in list(self._open.values()):
                if batch.room:
                    self._settle(batch, False)  # counted now, closed below
            self._close_all()  # later points go to new batches, after this event
            self._granted = 0  # (no room left: every open batch settled above)
            self._items.append(record)
            self._bytes += len(record.payload)
            over = self._bytes >= self._max_bytes or self._points >= self._check_at
        if over:
            self._pressure()

    def _close(self, batch: _Batch) -> None:
        batch.live = _CLOSED
        del self._open[(batch.iteration_id, batch.group)]

    def _close_all(self) -> None:
        for batch in self._open.values():
            batch.live = _CLOSED
        self._open.clear()

    def _new_batch(self, iteration_id: str, group: str) -> _Batch:
        batch = _Batch(iteration_id, group, self._per_envelope)
        self._open[(iteration_id, group)] = batch
        self._items.append(batch)
        return batch

    def _reject(self, message: str) -> None:
        """Remember a bad logging call; it is raised by the next flush, never here."""
        self._rejected += 1
        if self._error is None:
            self._error = InvalidArgument(message)
            log.error("deardiary: %s (dropped; raised by the next flush)", message)

    def _pressure(self) -> None:
        with self._lock:
            spill = self._points >= self._max_points or self._bytes >= self._max_bytes
            wake = not spill and self._check_at < self._max_points
            if wake:
                self._check_at = self._max_points
        if spill:
            self.spill(block=False)
        elif wake and self.on_pressure is not None:
            self.on_pressure()

    # -- draining --------------------------------------------------------------------------

    def add_drain_hook(self, hook: Callable[[], None]) -> None:
        """Call `hook` at the start of every drain (lets stream capture emit its lines)."""
        with self._lock:
            self._hooks = [*self._hooks, hook]

    def remove_drain_hook(self, hook: Callable[[], None]) -> None:
        with self._lock:
            self._hooks = [h for h in self._hooks if h is not hook]

    def drain(self) -> list[Envelope]:
        """Everything pending, in logging order, taken atomically and decoded; the buffer
        is empty after."""
        from deardiary.schemas.codec import decode

        return [decode(record.payload) for record in self._drain()]

    def _drain(self) -> list[LogRecord]:
        """Everything pending, encoded, in logging order; the buffer is empty after."""
        for hook in self._hooks:
            try:
                hook()
            except Exception:  # a hook must never stop shipping
                log.exception("deardiary: drain hook failed")
        with self._lock:
            items, self._items = self._items, []
            self._close_all()
            self._points = 0
            self._granted = 0
            self._bytes = 0
            self._check_at = self._wake_points
        return [
            item.record(self.actor) if isinstance(item, _Batch) else item
            for item in items
            if not isinstance(item, _Batch) or item.key_index or item.stage
        ]

    def take(self) -> Taken:
        """Drain for the shipper, deciding the envelopes' place in the delivery order.

        Holding the order lock, no spill can interleave: any earlier spill is already a
        file in the spool (so `behind_spool` is true and these must follow it), and any
        later spill gets a larger sequence number than `seq`.
        """
        with self._order:
            records = self._drain()
            seq, behind = self._spool.reserve(), not self._spool.is_empty()
        return Taken(seq, records, behind)

    def spill(self, block: bool = True) -> int:
        """Move everything pending to the spool now (on overflow, or at exit); returns the
        number of envelopes spilled. Never raises: a failed write is remembered."""
        if not self._order.acquire(blocking=block):
            return 0  # another thread is spilling or taking right now
        try:
            records = self._drain()
            if records:
                try:
                    self._spool.write(records)
                except OSError as exc:
                    self._error = self._error or ResourceExhausted(
                        f"spool write failed, {len(records)} events lost: {exc}"
                    )
                    log.error("deardiary: %s", self._error.message)
            return len(records)
        finally:
            self._order.release()

    # -- state -----------------------------------------------------------------------------

    def is_empty(self) -> bool:
        """True when nothing (no point, no event) is pending."""
        with self._lock:
            return not self._items

    @property
    def pending_events(self) -> int:
        """Events pending (a batch of metric points is one event)."""
        return len(self._items)

    @property
    def pending_points(self) -> int:
        """Points pending, staged ones too."""
        with self._lock:
            return self._points + sum(len(b.stage) >> 2 for b in self._open.values())

    @property
    def pending_bytes(self) -> int:
        """Approximate memory held: 26 bytes per metric point plus encoded event bytes."""
        return self.pending_points * 26 + self._bytes

    @property
    def rejected(self) -> int:
        """How many logging calls were dropped as invalid."""
        return self._rejected

    def take_error(self) -> DearDiaryError | None:
        """The first error since the last call (a rejected call or a failed spill)."""
        with self._lock:
            error, self._error = self._error, None
        return error
