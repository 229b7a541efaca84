"""Serving an application: blocking for the CLI, or in a background thread for tests
and for embedding next to other work.

Port 0 asks the OS for a free port; the bound address is reported back, so callers
never guess ports (no fixed ports in tests).
"""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

_WILDCARDS = ("", "0.0.0.0", "::")


def _url(host: str, port: int) -> str:
    shown = "127.0.0.1" if host in _WILDCARDS else host
    if ":" in shown:
        shown = f"[{shown}]"
    return f"http://{shown}:{port}"


async def _run(
    app: web.Application,
    host: str,
    port: int,
    started: Callable[[str, int], None],
    stop: asyncio.Event,
    shutdown_timeout: float,
    access_log: bool,
) -> None:
    kwargs: dict[str, Any] = {} if access_log else {"access_log": None}
    runner = web.AppRunner(app, shutdown_timeout=shutdown_timeout, **kwargs)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host or None, port)
        await site.start()
        bound_port = int(runner.addresses[0][1])
        started(_url(host, bound_port), bound_port)
        await stop.wait()
    finally:
        await runner.cleanup()


def serve(
    app: web.Application,
    host: str = "127.0.0.1",
    port: int = 8080,
    *,
    ready: Callable[[str], None] | None = None,
    shutdown_timeout: float = 10.0,
    access_log: bool = True,
) -> None:
    """Serve until SIGINT or SIGTERM, then finish in-flight requests (up to
    `shutdown_timeout` seconds) and run the parts' cleanup. `ready(url)` is called once
    the socket is listening (with the real port when `port` is 0)."""

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
        await _run(
            app,
            host,
            port,
            lambda url, _port: ready(url) if ready else None,
            stop,
            shutdown_timeout,
            access_log,
        )

    asyncio.run(main())


@dataclass
class RunningServer:
    """A server running in its own thread with its own event loop."""

    url: str
    port: int
    _thread: threading.Thread
    _loop: asyncio.AbstractEventLoop
    _stop: asyncio.Event
    _errors: list[BaseException] = field(default_factory=list)

    def stop(self, timeout: float = 30.0) -> None:
        """Stop accepting, finish in-flight requests, run cleanup, join the thread."""
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
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
    shutdown_timeout: float = 10.0,
    startup_timeout: float = 30.0,
) -> RunningServer:
    """Start serving in a daemon thread; returns once the socket listens (a failure to
    start, e.g. a taken port, is raised here)."""
    ready = threading.Event()
    errors: list[BaseException] = []
    holder: dict[str, Any] = {}

    def started(url: str, bound: int) -> None:
        holder["url"], holder["port"] = url, bound
        ready.set()

    async def main() -> None:
        stop = asyncio.Event()
        holder["loop"], holder["stop"] = asyncio.get_running_loop(), stop
        await _run(app, host, port, started, stop, shutdown_timeout, access_log=False)

    def target() -> None:
        try:
            asyncio.run(main())
        except BaseException as exc:
            errors.append(exc)
        finally:
            ready.set()

    thread = threading.Thread(target=target, name=f"deardiary-http-{port}", daemon=True)
    thread.start()
    if not ready.wait(startup_timeout):
        raise TimeoutError(f"the server did not start within {startup_timeout} s")
    if "url" not in holder:
        thread.join()
        raise errors[0] if errors else RuntimeError("the server stopped while starting")
    return RunningServer(
        url=holder["url"],
        port=holder["port"],
        _thread=thread,
        _loop=holder["loop"],
        _stop=holder["stop"],
        _errors=errors,
    )
