"""Time travel for reads: ``?as_of=`` (a log offset or an ISO-8601 time) is answered from
the projections as they stood then.

A bound is first resolved against the log to the records it includes -- the next offset
of each partition (N: records 0..N-1), found through the log's time index for a time --
so a past state is named by exactly what it holds and never goes stale: the log only
grows beyond N. A bound at the log's end is the live state, answered by the live
projections (nothing built).

Each past state is built once, by the very projector and folds of live projection and of
`deardiary replay --as-of` (`Projector(stop_before=...)`), into a fresh store in a folder
of the cache (``<data>/as-of-cache``, or the ``as_of_cache_dir`` setting), compacted,
then opened for reading. Builds run one at a time on a thread of their own; requests for
a state being built await its future (no thread held), and a request that goes away does
not cancel the build others wait for. Built states are kept least-recently-read first
within ``as_of_cache_mb``; a state still being read is never closed (a lease, given back
by the reading thread itself).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import threading
import time
import uuid
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from deardiary.projections.store import DuckDBProjectionStore
from deardiary.schemas.envelope import LogPosition
from deardiary.schemas.errors import InvalidArgument, Unavailable
from deardiary.services.discovery import process_alive
from deardiary.services.log import EventLog
from deardiary.services.projector import Projector
from deardiary.services.replay import AsOf

Key = tuple[tuple[int, int], ...]  # (partition, next offset) pairs, sorted
_log = logging.getLogger("deardiary.as_of")


class TimeIndexedLog(EventLog, Protocol):
    """A log that can say which records a time includes (services/log/sqlite.py)."""

    def offsets_until(self, time_us: int) -> dict[int, int]: ...

    def log_time(self, partition: int, offset: int) -> int | None: ...


@dataclass(frozen=True)
class Bound:
    """A resolved ``as_of``: the records it includes, and the clock of that state."""

    offsets: Key
    moment: datetime  # naive UTC: "now" for that state (durations, lost heartbeats)
    live: bool  # it is the log's end: the live projections hold it

    @property
    def target(self) -> dict[int, int]:
        return dict(self.offsets)


def _utc(time_us: int) -> datetime:
    return datetime.fromtimestamp(time_us / 1_000_000, UTC).replace(tzinfo=None)


def resolve(log: TimeIndexedLog, text: str, now: datetime) -> Bound:
    """The records ``as_of=text`` includes (blocking: asks the log). An offset beyond the
    log's end names a record it does not have: INVALID_ARGUMENT."""
    try:
        bound = AsOf.parse(text)
    except InvalidArgument as exc:
        raise InvalidArgument(
            f"query parameter 'as_of' wants a log offset or an ISO-8601 time, got {text!r}",
            {"parameter": "as_of"},
        ) from exc
    end = log.end_offsets()
    if bound.offset is not None:
        last = end.get(0, 0) - 1
        if bound.offset > last:
            raise InvalidArgument(
                f"query parameter 'as_of' = {bound.offset} is beyond the log's end (its last"
                f" offset is {last}): it names a record this log does not have",
                {"parameter": "as_of", "log_end": {str(p): o for p, o in end.items()}},
            )
        offsets = {0: bound.offset + 1}
        at = log.log_time(0, bound.offset)
        moment = _utc(at) if at is not None else now
    else:
        assert bound.time_us is not None
        offsets = log.offsets_until(bound.time_us)
        moment = min(now, _utc(bound.time_us)) if bound.time_us > 0 else _utc(0)
    key = tuple(sorted((p, o) for p, o in offsets.items()))
    live = all(o >= end.get(p, 0) for p, o in key)
    return Bound(key, moment, live)


@dataclass(eq=False)
class PastState:
    """A built past state: its store, where it lives, and who is reading it."""

    key: Key
    store: DuckDBProjectionStore
    path: Path
    size: int
    leases: int = 0
    closed: bool = False
    built_at: float = field(default_factory=time.monotonic)


def _size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


class AsOfCache:
    """Past states of one log, built on demand and kept within a disk budget."""

    def __init__(
        self,
        log: TimeIndexedLog,
        root: Path,
        max_bytes: int,
        hot_points_limit: int = 2_000_000,
    ) -> None:
        self.log = log
        self.root = Path(root)
        self.max_bytes = max_bytes
        self.hot_points_limit = hot_points_limit
        self.folder = self.root / f"pid-{os.getpid()}"
        self._lock = threading.Lock()  # guards _states and leases (reading threads give back)
        self._states: OrderedDict[Key, PastState] = OrderedDict()  # least recently read first
        self._building: dict[Key, asyncio.Future[PastState]] = {}  # on the event loop only
        self._builder: ThreadPoolExecutor | None = None
        self._prepared = False
        self._closed = threading.Event()
        self.builds = 0  # how many states were built (tests, /readyz-style reporting)

    # -- leases ------------------------------------------------------------------------
    async def lease(self, bound: Bound) -> PastState:
        """The built state of `bound`, leased to the caller (give it back with `release`)."""
        while True:
            with self._lock:
                state = self._states.get(bound.offsets)
                if state is not None:
                    state.leases += 1
                    self._states.move_to_end(bound.offsets)
                    return state
            build = self._building.get(bound.offsets)
            if build is None:
                build = asyncio.ensure_future(self._build(bound.offsets))
                self._building[bound.offsets] = build
            await asyncio.shield(build)  # a cancelled request leaves the build to the others

    def acquire(self, state: PastState) -> bool:
        """Another lease on a state already leased once (any thread); False once closed."""
        with self._lock:
            if state.closed:
                return False
            state.leases += 1
            return True

    def release(self, state: PastState) -> None:
        """Give a lease back (any thread); states over the budget are closed once unread."""
        with self._lock:
            state.leases -= 1
            victims = self._victims()
        self._remove(victims)

    def _victims(self) -> list[PastState]:
        """Unread states to close, least recently read first, until within the budget (the
        newest state stays: it was just asked for). Called with the lock held."""
        total = sum(s.size for s in self._states.values())
        newest = next(reversed(self._states), None)
        victims = []
        for key, state in list(self._states.items()):
            if total <= self.max_bytes:
                break
            if state.leases == 0 and key != newest:
                victims.append(state)
                total -= state.size
                del self._states[key]
                state.closed = True
        return victims

    def _remove(self, victims: list[PastState]) -> None:
        for state in victims:
            _log.info("as-of cache: removing the state at %s (%d bytes)", state.key, state.size)
            state.store.close()
            shutil.rmtree(state.path, ignore_errors=True)

    # -- building ------------------------------------------------------------------------
    async def _build(self, key: Key) -> PastState:
        if self._builder is None:
            self._builder = ThreadPoolExecutor(1, thread_name_prefix="deardiary-as-of")
        loop = asyncio.get_running_loop()
        try:
            state = await loop.run_in_executor(self._builder, self._build_now, key)
        finally:
            del self._building[key]
        with self._lock:
            self._states[key] = state
            victims = self._victims()
        self._remove(victims)
        return state

    def _prepare(self) -> None:
        """Once: remove what earlier processes left in the cache folder."""
        if self._prepared:
            return
        self.root.mkdir(parents=True, exist_ok=True)
        for old in self.root.glob("pid-*"):
            pid = old.name.removeprefix("pid-")
            if not pid.isdigit() or not process_alive(int(pid)) or int(pid) == os.getpid():
                shutil.rmtree(old, ignore_errors=True)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._prepared = True

    def _build_now(self, key: Key) -> PastState:
        """Fold the log's records before `key` into a new store (on the builder thread)."""
        self._prepare()
        target = dict(key)
        path = self.folder / f"{'-'.join(f'{p}_{o}' for p, o in key)}-{uuid.uuid4().hex[:8]}"
        started = time.monotonic()
        # as replay does: a batch of many points goes straight into a segment
        store = DuckDBProjectionStore(
            path, hot_points_limit=self.hot_points_limit, segment_big_batches=True
        )
        try:

            def past(pos: LogPosition) -> bool:
                return pos.offset >= target.get(pos.partition, 0)

            projector = Projector(self.log, store, max_records=2000, stop_before=past)
            while not all(store.next_offsets().get(p, 0) >= o for p, o in target.items()):
                if self._closed.is_set():
                    raise Unavailable("the server is stopping", {"retryable": True})
                if projector.step() == 0:
                    break  # the log holds nothing more before the bound
                store.maybe_compact(idle=False)
            store.compact()
        except BaseException:
            store.close()
            shutil.rmtree(path, ignore_errors=True)
            raise
        self.builds += 1
        state = PastState(key, store, path, _size(path))
        _log.info(
            "as-of cache: built the state before offsets %s in %.2f s (%d bytes)",
            target,
            time.monotonic() - started,
            state.size,
        )
        return state

    def close(self) -> None:
        """Stop building, close every state and remove the cache folder."""
        self._closed.set()
        builder, self._builder = self._builder, None
        if builder is not None:
            builder.shutdown(wait=True, cancel_futures=True)
        with self._lock:
            states = list(self._states.values())
            self._states.clear()
            for s in states:
                s.closed = True
        self._remove(states)
        with contextlib.suppress(OSError):
            shutil.rmtree(self.folder)
