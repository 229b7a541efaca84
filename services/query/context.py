"""What the query service needs from its surroundings, in either mode.

Fairness, by construction:

* Reads run on a `FairPool` of their own (``read_threads``), never on the default
  executor that ingest authorisation uses nor on the pool that signs users in; one
  caller runs at most ``read_per_caller`` reads at once and waiting callers are served
  round-robin, so a flood of one caller's reads queues behind itself.
* Read-your-writes waits hold no thread: a waiter is a future, resolved when the
  projections report progress (`Progress`). A target beyond the log's end is refused at
  once (400), so nobody can park a request on an offset that will never come.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol, TypeVar

import duckdb
from aiohttp import web

from deardiary.projections.changes import Changes
from deardiary.projections.queries.snapshot import snapshot
from deardiary.schemas.errors import DearDiaryError, InvalidArgument, Unavailable
from deardiary.services.artifacts import ArtifactStore
from deardiary.services.query.as_of import AsOfCache, Bound, resolve

T = TypeVar("T")
Offsets = dict[int, int]
Conn = duckdb.DuckDBPyConnection

CALLER = web.RequestKey("deardiary_caller", str)
"""Who is asking, for fair shares (set by the auth middleware; else the client address)."""


def caller_of(request: web.Request) -> str:
    return request.get(CALLER) or f"@{request.remote or ''}"


def reached(have: Mapping[int, int], target: Mapping[int, int]) -> bool:
    return all(have.get(p, 0) >= o for p, o in target.items())


class FairPool:
    """A bounded pool of threads shared fairly between callers.

    At most `threads` calls run at once and at most `per_caller` of them for one caller;
    callers waiting for a thread are served round-robin (a fair-share scheduler in the
    small). A slot is given back when its thread finishes, not when the awaiting handler
    is cancelled, so the bound holds even for abandoned calls. All bookkeeping happens on
    the event loop's thread."""

    def __init__(self, name: str, threads: int, per_caller: int | None = None) -> None:
        self.name = name
        self.threads = max(1, threads)
        self.per_caller = max(1, min(self.threads, per_caller or self.threads))
        self._executor: ThreadPoolExecutor | None = None
        self._running: dict[str, int] = {}
        self._total = 0
        self._waiting: dict[str, deque[asyncio.Future[None]]] = {}  # order = turn

    def _pool(self) -> ThreadPoolExecutor:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(self.threads, thread_name_prefix=self.name)
        return self._executor

    def busy(self) -> tuple[int, int]:
        """(running, waiting) calls."""
        return self._total, sum(len(q) for q in self._waiting.values())

    async def run(self, caller: str, fn: Callable[[], T]) -> T:
        """`fn` on a thread of the pool, within `caller`'s share ("" is nobody's: only the
        pool's bound applies)."""
        caller = caller or f"#{id(fn)}"
        await self._acquire(caller)
        loop = asyncio.get_running_loop()
        try:
            done: Future[T] = self._pool().submit(fn)
        except BaseException:
            self._release(caller)
            raise

        def give_back(_: Future[T]) -> None:
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody left to serve
                loop.call_soon_threadsafe(self._release, caller)

        done.add_done_callback(give_back)
        return await asyncio.wrap_future(done, loop=loop)

    async def _acquire(self, caller: str) -> None:
        if (
            self._total < self.threads
            and self._running.get(caller, 0) < self.per_caller
            and caller not in self._waiting
        ):
            self._take(caller)
            return
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(caller, deque()).append(turn)
        try:
            await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():
                self._release(caller)  # granted just before the cancel
            else:
                queue = self._waiting.get(caller)
                if queue is not None and turn in queue:
                    queue.remove(turn)
                    if not queue:
                        del self._waiting[caller]
            raise

    def _take(self, caller: str) -> None:
        self._total += 1
        self._running[caller] = self._running.get(caller, 0) + 1

    def _release(self, caller: str) -> None:
        self._total -= 1
        left = self._running.get(caller, 1) - 1
        if left:
            self._running[caller] = left
        else:
            self._running.pop(caller, None)
        self._dispatch()

    def _dispatch(self) -> None:
        while self._total < self.threads:
            for caller in list(self._waiting):
                if self._running.get(caller, 0) >= self.per_caller:
                    continue
                queue = self._waiting.pop(caller)
                turn = queue.popleft()
                if queue:
                    self._waiting[caller] = queue  # to the back of the round
                if turn.done():  # cancelled meanwhile
                    break
                self._take(caller)
                turn.set_result(None)
                break
            else:
                return

    def close(self) -> None:
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)

    async def lifetime(self, app: web.Application) -> AsyncIterator[None]:
        """aiohttp cleanup context: the threads go with the application."""
        yield
        self.close()


class Progress(Protocol):
    """How far the projections got, and a way to wait for more without a thread."""

    def applied(self) -> Offsets: ...

    async def reached(self, target: Offsets, timeout: float) -> bool: ...


class ProjectorProgress:
    """Embedded mode: waiters are futures, resolved by the projector's listener (called on
    its thread after every batch) through ``loop.call_soon_threadsafe``."""

    def __init__(self, applied: Callable[[], Offsets]) -> None:
        self._applied = applied
        self._lock = threading.Lock()
        self._waiters: list[tuple[Offsets, asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self.on_wait: Callable[[], None] | None = None
        """Called when a read starts waiting (the projector's `hurry_now`: no lingering)."""

    def applied(self) -> Offsets:
        return self._applied()

    def waiting(self) -> int:
        """Reads waiting for their writes right now (none of them holds a thread)."""
        with self._lock:
            return len(self._waiters)

    def on_applied(self, offsets: Offsets) -> None:
        """The projector's listener."""
        with self._lock:
            ready = [w for w in self._waiters if reached(offsets, w[0])]
            if not ready:
                return
            self._waiters = [w for w in self._waiters if not reached(offsets, w[0])]
        for _, loop, future in ready:
            with contextlib.suppress(RuntimeError):  # that loop is closed
                loop.call_soon_threadsafe(_resolve, future)

    async def reached(self, target: Offsets, timeout: float) -> bool:
        if reached(self.applied(), target):
            return True
        loop = asyncio.get_running_loop()
        entry = (dict(target), loop, loop.create_future())
        with self._lock:
            self._waiters.append(entry)
        if self.on_wait is not None:
            self.on_wait()
        try:
            if reached(self.applied(), target):  # applied between the check and the append
                return True
            await asyncio.wait_for(entry[2], timeout)
            return True
        except TimeoutError:
            return False
        finally:
            with self._lock:
                if entry in self._waiters:
                    self._waiters.remove(entry)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class LogEnd:
    """The log's end offsets, cached. A probe runs on one thread of its own and at most
    one runs at a time: concurrent askers share it (a probe is only shared with askers
    that arrived before it started, so nobody is told an end older than their question)."""

    def __init__(self, probe: Callable[[], Offsets]) -> None:
        self._probe = probe
        self._known: Offsets = {}
        self._inflight: tuple[float, asyncio.Future[Offsets]] | None = None
        self._executor: ThreadPoolExecutor | None = None

    def _probed(self) -> Offsets:
        try:
            return self._probe()
        except DearDiaryError:
            raise
        except Exception as exc:  # sqlite3.Error, a broker client's errors, ...
            raise Unavailable(
                f"the log's end cannot be read right now ({type(exc).__name__})",
                {"retryable": True},
            ) from exc

    def covers(self, target: Offsets) -> bool:
        """True when the log is known to reach `target` (ends only grow)."""
        return reached(self._known, target)

    async def since(self, asked: float) -> Offsets:
        """End offsets probed no earlier than `asked` (time.monotonic())."""
        while True:
            if self._inflight is not None:
                started, future = self._inflight
                ends = await asyncio.shield(future)
                if started >= asked:
                    return ends
                if self._inflight is not None and self._inflight[1] is not future:
                    continue  # someone started a newer probe meanwhile: share that one
            self._start()

    def _start(self) -> None:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="deardiary-log-end")
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._executor, self._probed)
        self._inflight = (time.monotonic(), future)

        def finished(f: asyncio.Future[Offsets]) -> None:
            if self._inflight is not None and self._inflight[1] is f:
                self._inflight = None
            if not f.cancelled() and f.exception() is None:
                for p, o in f.result().items():
                    self._known[p] = max(self._known.get(p, 0), o)

        future.add_done_callback(finished)

    def close(self) -> None:
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)


@dataclass
class QueryContext:
    """Readers over the projections, read-your-writes waits, the artifact store, the clock."""

    reader: Callable[[], duckdb.DuckDBPyConnection]
    progress: Progress
    artifacts: ArtifactStore
    clock: Callable[[], datetime]
    lost_after_s: float = 120.0
    max_wait_s: float = 30.0
    # Called on the event loop per read; returns how to prepare the cursor (auth scoping).
    scoper: Callable[[], Callable[[duckdb.DuckDBPyConnection], None] | None] | None = None
    # The log's end: min_offset beyond it is a 400, and "catch up before reading" ...
    end_offsets: Callable[[], Offsets] | None = None
    # ... where that is cheap and promised (not in Kafka mode: a broker round trip, and
    # the exports lag by design; there, waiting needs an offset).
    catch_up_to_end: bool = True
    read_threads: int = 4
    read_per_caller: int = 2
    # Time travel (services/query/as_of.py): past states, and how to scope their cursors
    # to the caller by today's grants (a live cursor, then the past one); None in Kafka mode.
    as_of: AsOfCache | None = None
    as_of_scoper: Callable[[], Callable[[Conn, Conn], None] | None] | None = None
    # What each batch the store commits wrote (projections/changes.py): caches of what is
    # read from a few rows keep what a newer state did not touch. None in Kafka mode.
    changes: Changes | None = None
    reads: FairPool = field(init=False)
    log_end: LogEnd | None = field(init=False)

    def __post_init__(self) -> None:
        self.reads = FairPool("deardiary-read", self.read_threads, self.read_per_caller)
        self.log_end = LogEnd(self.end_offsets) if self.end_offsets is not None else None

    def now_and_lost_before(self, bound: Bound | None = None) -> tuple[datetime, datetime]:
        """The clock of a read: now, or the moment of a past state (`bound`)."""
        now = self.clock() if bound is None else bound.moment
        return now, now - timedelta(seconds=self.lost_after_s)

    async def bound(self, as_of: str, caller: str = "") -> Bound:
        """Resolve ``?as_of=`` against the log (on the read pool: it asks the log)."""
        cache = self.as_of
        if cache is None:
            raise InvalidArgument(
                "query parameter 'as_of' is answered by a server over a data folder (embedded"
                " mode); here, rebuild the past with `deardiary replay --as-of`",
                {"parameter": "as_of"},
            )
        now = self.clock()
        return await self.reads.run(caller, lambda: resolve(cache.log, as_of, now))

    async def run_as_of(self, bound: Bound, fn: Callable[[Conn], T], caller: str = "") -> T:
        """`fn` on a cursor of the state `bound` names, scoped like a live read but by
        today's grants. The past state is leased until the reading thread is done."""
        if bound.live or self.as_of is None:
            await self.wait(bound.target)
            return await self.run(fn, caller)
        cache = self.as_of
        state = await cache.lease(bound)  # the request's lease, until it is answered
        prepare = self.as_of_scoper() if self.as_of_scoper is not None else None

        def call() -> T:
            if not cache.acquire(state):  # the thread's own lease: the request may be gone
                raise Unavailable("that past state was just removed; ask again")
            try:
                conn = state.store.reader()
                try:
                    if prepare is not None:
                        live = self.reader()
                        try:
                            prepare(live, conn)
                        finally:
                            live.close()
                    return fn(conn)
                finally:
                    conn.close()
            finally:
                cache.release(state)

        try:
            return await self.reads.run(caller, call)
        finally:
            cache.release(state)

    async def run(self, fn: Callable[[duckdb.DuckDBPyConnection], T], caller: str = "") -> T:
        """Run a blocking read on a fresh cursor, on the read pool (`caller`'s share)."""

        prepare = self.scoper() if self.scoper is not None else None

        def call() -> T:
            conn = self.reader()
            try:
                if prepare is not None:
                    prepare(conn)
                with snapshot(conn):  # a read of several statements sees one state
                    return fn(conn)
            finally:
                conn.close()

        return await self.reads.run(caller, call)

    async def wait(self, min_offsets: Offsets) -> None:
        """Read-your-writes, holding no thread: return once the projections applied these
        offsets (without any, everything appended before the call, where the log's end is
        known). A target beyond the log's end is INVALID_ARGUMENT at once."""
        asked = time.monotonic()
        if min_offsets and reached(self.progress.applied(), min_offsets):
            return
        if self.log_end is None:
            if not min_offsets:
                return
        elif not min_offsets:
            if not self.catch_up_to_end:
                return
            min_offsets = await self.log_end.since(asked)
        elif not self.log_end.covers(min_offsets):
            end = await self.log_end.since(asked)
            beyond = {p: o - 1 for p, o in min_offsets.items() if o > end.get(p, 0)}
            if beyond:
                shown = ",".join(f"{p}:{o}" for p, o in sorted(beyond.items()))
                raise InvalidArgument(
                    f"query parameter 'min_offset' = {shown} is beyond the log's end (next "
                    f"offsets: {end}): it names records this log does not have",
                    {"parameter": "min_offset", "log_end": {str(p): o for p, o in end.items()}},
                )
        if not await self.progress.reached(min_offsets, self.max_wait_s):
            raise Unavailable(
                f"projections did not reach {min_offsets} within {self.max_wait_s:.0f} s",
                {"retryable": True},
            )

    async def catch_up(self) -> None:
        """Wait until the projections applied everything appended before this call."""
        await self.wait({})

    async def lifetime(self, app: web.Application) -> AsyncIterator[None]:
        """aiohttp cleanup context: the read threads go with the application."""
        yield
        self.reads.close()
        if self.log_end is not None:
            self.log_end.close()
