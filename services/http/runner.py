"""Serving an application: blocking for the CLI, or in a background thread for tests
and for embedding next to other work.

Port 0 asks the OS for a free port; the bound address is reported back, so callers
never guess ports (no fixed ports in tests).

What no client can do to a server started here:

* hold connections forever or open too many -- `ConnectionGuard` (connections.py):
  header and body read timeouts, a send timeout, a connection cap (and `serve` raises
  the soft limit of open files to fit it); idle keep-alive connections close after
  `keepalive_timeout_s` (aiohttp's own timer);
* keep a handler running after it went away -- ``handler_cancellation=True``: a lost
  connection cancels its handler (the SQL sandbox interrupts its statement then);
* fill the disk with one log line -- `RepeatFilter` (log_limits.py) on the root handlers;
* keep it from stopping -- on SIGTERM/SIGINT in-flight requests get
  `shutdown_timeout_s`; then the `on_shutdown` hooks run (interrupting running SQL),
  the remaining connections are aborted (cancelling their handlers) and `serve` returns
  within about two more seconds whatever threads are still busy: the event loop's
  executor is shut down with ``wait=False, cancel_futures=True`` and never joined. A
  second signal exits the process at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import resource
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

from aiohttp import web

from deardiary.services.http.connections import ConnectionGuard, ConnectionLimits
from deardiary.services.http.log_limits import installed_on_root
from deardiary.services.settings import ServerSettings

_log = logging.getLogger("deardiary.http")

_WILDCARDS = ("", "0.0.0.0", "::")
FORCED_STOP_S = 2.0
"""After the grace period: how long aborted handlers and the apps' cleanup may still take."""

ShutdownHook = Callable[[], object]


def _netloc(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@dataclass(frozen=True)
class Listening:
    """Where a server listens: the socket addresses bound, and a URL that reaches it."""

    bound: tuple[tuple[str, int], ...]
    url: str
    port: int

    @property
    def bound_text(self) -> str:
        return ", ".join(_netloc(host, port) for host, port in self.bound)

    @property
    def wildcard(self) -> bool:
        return any(host in _WILDCARDS for host, _ in self.bound)

    def __str__(self) -> str:
        return self.url

    def describe(self) -> str:
        """``http://127.0.0.1:9000``, plus the bound addresses when they differ from it."""
        if self.wildcard:
            return f"{self.url} (listening on {self.bound_text}: every interface)"
        return self.url


def _reachable(host: str, port: int) -> str:
    shown = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    return f"http://{_netloc(shown, port)}"


@dataclass
class _Stop:
    """Set once to stop; remembers whether a signal asked for it."""

    event: asyncio.Event = field(default_factory=asyncio.Event)
    signal_number: int | None = None


async def _run(
    app: web.Application,
    host: str,
    port: int,
    settings: ServerSettings,
    started: Callable[[Listening, ConnectionGuard], None],
    stop: _Stop,
    on_shutdown: Sequence[ShutdownHook],
    access_log: bool,
) -> None:
    kwargs: dict[str, Any] = {} if access_log else {"access_log": None}
    grace = settings.shutdown_timeout_s
    runner = web.AppRunner(
        app,
        shutdown_timeout=grace,
        keepalive_timeout=settings.keepalive_timeout_s,
        handler_cancellation=True,
        **kwargs,
    )
    await runner.setup()
    guard = ConnectionGuard(
        ConnectionLimits(
            max_connections=settings.max_connections,
            header_timeout_s=settings.header_timeout_s,
            body_timeout_s=settings.body_timeout_s,
            send_timeout_s=settings.send_timeout_s,
        )
    )
    assert runner.server is not None
    factory = guard.attach(runner.server)
    listener: asyncio.Server | None = None
    try:
        loop = asyncio.get_running_loop()
        listener = await loop.create_server(factory, host or None, port, backlog=1024)
        bound = tuple((str(s.getsockname()[0]), int(s.getsockname()[1])) for s in listener.sockets)
        bound_port = bound[0][1]
        started(Listening(bound, _reachable(host, bound_port), bound_port), guard)
        await stop.event.wait()
    finally:
        await _shut_down(listener, runner, guard, grace, on_shutdown)


async def _shut_down(
    listener: asyncio.Server | None,
    runner: web.AppRunner,
    guard: ConnectionGuard,
    grace: float,
    on_shutdown: Sequence[ShutdownHook],
) -> None:
    """Stop accepting, give in-flight requests `grace` seconds, run the hooks, abort what
    is left and give the cleanup `FORCED_STOP_S` more; then return, finished or not."""
    if listener is not None:
        listener.close()
    cleanup = asyncio.ensure_future(runner.cleanup())
    # The hooks run a moment before the grace ends, so an interrupted statement can still
    # answer (503) before aiohttp cancels what is left.
    answer_s = min(1.0, grace / 2)
    await asyncio.wait({cleanup}, timeout=grace - answer_s)
    for hook in on_shutdown:
        try:
            hook()
        except Exception:
            _log.exception("shutdown hook %r failed", hook)
    await asyncio.wait({cleanup}, timeout=answer_s)
    aborted = guard.abort_all()
    if not cleanup.done():
        _log.warning(
            "shutdown: requests still running after %g s; aborted %d connections", grace, aborted
        )
        await asyncio.wait({cleanup}, timeout=FORCED_STOP_S)
    if not cleanup.done():
        _log.warning("shutdown: the application's cleanup did not finish; leaving it")
        cleanup.cancel()
    elif not cleanup.cancelled() and cleanup.exception() is not None:
        _log.error("shutdown: cleanup failed", exc_info=cleanup.exception())


def _run_loop(main: Callable[[], Any], name: str) -> None:
    """Run `main()` on a new event loop whose default executor is never waited for
    (``asyncio.run`` would join its threads: a statement stuck in DuckDB would hold the
    process). Tasks still pending at the end are cancelled and get a second to finish."""
    loop = asyncio.new_event_loop()
    executor = ThreadPoolExecutor(thread_name_prefix=f"{name}-worker")
    loop.set_default_executor(executor)
    try:
        loop.run_until_complete(main())
    finally:
        try:
            pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.wait(pending, timeout=1.0))
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            executor.shutdown(wait=False, cancel_futures=True)
            loop.close()


FILES_BESIDES_CONNECTIONS = 256
"""Descriptors the process needs apart from client connections (log, DuckDB, segments)."""


def _allow_open_files(max_connections: int) -> None:
    """Raise the soft limit of open files (often 1024) towards what `max_connections`
    needs, as far as the hard limit allows; say so when it does not reach."""
    wanted = max_connections + FILES_BESIDES_CONNECTIONS
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    if target < wanted:
        _log.warning(
            "max_connections is %d but this process may open %d files: lower it, or raise "
            "the hard limit (ulimit -Hn)",
            max_connections,
            target,
        )


def _exit_at_once(signum: int, frame: FrameType | None) -> None:
    os.write(2, f"deardiary: signal {signum} again, exiting at once\n".encode())
    os._exit(128 + signum)


def serve(
    app: web.Application,
    host: str = "127.0.0.1",
    port: int = 8080,
    *,
    ready: Callable[[Listening], None] | None = None,
    settings: ServerSettings | None = None,
    on_shutdown: Sequence[ShutdownHook] = (),
    access_log: bool = True,
) -> None:
    """Serve until SIGINT or SIGTERM (see the module doc for what happens then).

    `ready(listening)` is called once the socket is listening (with the real port when
    `port` is 0). `on_shutdown` hooks are called on the event loop's thread once the
    grace period is over (e.g. interrupt every running SQL statement); they must not
    block. After the first signal, a second one exits the process at once -- also while
    the caller cleans up after `serve` returned."""
    settings = settings or ServerSettings()
    stop = _Stop()
    in_main = threading.current_thread() is threading.main_thread()

    async def main() -> None:
        stop.event = asyncio.Event()
        loop = asyncio.get_running_loop()
        if in_main:

            def first(signum: int) -> None:
                stop.signal_number = signum
                stop.event.set()
                for sig in (signal.SIGINT, signal.SIGTERM):
                    loop.add_signal_handler(sig, _exit_at_once, sig, None)

            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, first, sig)
        await _run(
            app,
            host,
            port,
            settings,
            lambda listening, _guard: ready(listening) if ready else None,
            stop,
            on_shutdown,
            access_log,
        )

    with installed_on_root(settings.log_repeat_limit, settings.log_repeat_interval_s):
        _allow_open_files(settings.max_connections)
        _run_loop(main, "deardiary-http")
    if in_main and stop.signal_number is not None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, _exit_at_once)


def exit_soon(code: int, within_s: float = 3.0) -> int:
    """Return `code`, and make sure the process is gone `within_s` seconds later even if
    threads are stuck in native code (the interpreter joins non-daemon threads at exit,
    executor workers included): a daemon watchdog flushes and calls ``os._exit(code)``."""

    def watchdog() -> None:
        threading.Event().wait(within_s)
        stuck = [t.name for t in threading.enumerate() if not t.daemon and t.is_alive()]
        _log.warning("still running at exit after %g s: %s; exiting anyway", within_s, stuck)
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):  # a closed pipe must not keep us alive
                stream.flush()
        os._exit(code)

    threading.Thread(target=watchdog, name="deardiary-exit-watchdog", daemon=True).start()
    return code


@dataclass
class RunningServer:
    """A server running in its own thread with its own event loop."""

    url: str
    port: int
    listening: Listening
    connections: ConnectionGuard
    _thread: threading.Thread
    _loop: asyncio.AbstractEventLoop
    _stop: _Stop
    _errors: list[BaseException] = field(default_factory=list)

    def stop(self, timeout: float = 30.0) -> None:
        """Stop accepting, finish in-flight requests, run cleanup, join the thread."""
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.event.set)
            self._thread.join(timeout)
        if self._errors:
            raise self._errors[0]

    def __enter__(self) -> RunningServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_in_thread(
    app: web.Application,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    settings: ServerSettings | None = None,
    on_shutdown: Sequence[ShutdownHook] = (),
    startup_timeout: float = 30.0,
) -> RunningServer:
    """Start serving in a daemon thread; returns once the socket listens (a failure to
    start, e.g. a taken port, is raised here). Same guards as `serve`, no signals."""
    settings = settings or ServerSettings()
    ready = threading.Event()
    errors: list[BaseException] = []
    holder: dict[str, Any] = {}
    stop = _Stop()

    def started(listening: Listening, guard: ConnectionGuard) -> None:
        holder["listening"], holder["guard"] = listening, guard
        ready.set()

    async def main() -> None:
        stop.event = asyncio.Event()
        holder["loop"] = asyncio.get_running_loop()
        await _run(app, host, port, settings, started, stop, on_shutdown, access_log=False)

    def target() -> None:
        try:
            _run_loop(main, f"deardiary-http-{port}")
        except BaseException as exc:
            errors.append(exc)
        finally:
            ready.set()

    thread = threading.Thread(target=target, name=f"deardiary-http-{port}", daemon=True)
    thread.start()
    if not ready.wait(startup_timeout):
        raise TimeoutError(f"the server did not start within {startup_timeout} s")
    if "listening" not in holder:
        thread.join()
        raise errors[0] if errors else RuntimeError("the server stopped while starting")
    listening: Listening = holder["listening"]
    return RunningServer(
        url=listening.url,
        port=listening.port,
        listening=listening,
        connections=holder["guard"],
        _thread=thread,
        _loop=holder["loop"],
        _stop=stop,
        _errors=errors,
    )
