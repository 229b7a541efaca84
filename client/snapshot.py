"""The environment snapshot of a process, taken once and given to each of its iterations
before the iteration ends.

Why before the end: a short script (a one-second trial of a sweep) used to end, and
exit, while the snapshot was still being taken on a daemon thread, so its iterations
had none. Now `Iteration.end()` waits for it (at most `wait_s`), and the snapshot's
event is in the log before the iteration's end. The snapshot runs on its own thread
from the first `start_iteration`, so a run longer than the snapshot never waits.
"""

from __future__ import annotations

import threading

from .notices import log

TYPE_CHECKING = False
if TYPE_CHECKING:  # `typing` costs a trial process milliseconds to import
    from typing import Any

    from .buffer import EventBuffer


class EnvironmentSnapshot:
    def __init__(self, buffer: EventBuffer, wait_s: float = 30.0) -> None:
        self.buffer = buffer
        self.wait_s = wait_s
        self._lock = threading.Lock()
        self._done = threading.Event()  # set once every requested snapshot event is emitted
        self._thread: threading.Thread | None = None
        self._taken = False
        self._environment: dict[str, Any] | None = None  # Environment's fields
        self._pending: set[str] = set()  # requested, not emitted yet

    def request(self, iteration_id: str) -> None:
        """`iteration_id` gets the snapshot: now if it is taken, else when it is."""
        with self._lock:
            if not self._taken:
                self._pending.add(iteration_id)
                if self._thread is None:
                    self._thread = threading.Thread(
                        target=self._take, name="deardiary-environment", daemon=True
                    )
                    self._thread.start()
                return
            environment = self._environment
        self._emit(iteration_id, environment)

    def before_end(self, iteration_id: str) -> None:
        """Wait (at most `wait_s`) until the snapshot of `iteration_id` is emitted."""
        with self._lock:
            if iteration_id not in self._pending:
                return
        if not self._done.wait(self.wait_s):
            log.warning(
                "deardiary: the environment snapshot took longer than %.0f s;"
                " iteration %s ends before it",
                self.wait_s,
                iteration_id,
            )

    def wait(self) -> None:
        """Wait (at most `wait_s`) until every requested snapshot event is emitted."""
        with self._lock:
            if not self._pending:
                return
        self._done.wait(self.wait_s)

    def _take(self) -> None:
        environment = None
        try:
            from .environment import environment_fields

            environment = environment_fields()
        except Exception:  # never into training code
            log.warning("deardiary: could not capture the environment", exc_info=True)
        with self._lock:
            self._taken = True
            self._environment = environment
            pending = sorted(self._pending)
        for iteration_id in pending:
            self._emit(iteration_id, environment)
        with self._lock:
            self._pending.clear()
        self._done.set()  # after the events: an iteration's end follows its snapshot

    def _emit(self, iteration_id: str, environment: dict[str, Any] | None) -> None:
        if environment is not None:
            body = {  # see `EventBuffer.emit_body`
                "type": "environment_captured",
                "iteration_id": iteration_id,
                "environment": environment,
            }
            self.buffer.emit_body(body, iteration_id)
