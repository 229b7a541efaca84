"""Log lines of one iteration, batched: `it.log(...)`, `DiaryHandler` and output capture.

Lines are gathered between the shipper's drains (a drain hook) and emitted as one
`LogLinesLogged` per source (a dict, see `EventBuffer.emit_body`) -- an event per line
would cost more than the line -- or every `max_lines` lines. Ordered with everything
else the iteration logs: the iteration's end emits what is left first.
"""

from __future__ import annotations

import threading

from deardiary.schemas.ids import now_us

TYPE_CHECKING = False
if TYPE_CHECKING:  # `typing` costs a trial process milliseconds to import
    from .buffer import EventBuffer

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def level_name(level: int | str) -> str:
    """``"WARNING"`` for ``logging.WARNING``, ``30``, ``"warning"`` or ``"WARN"``."""
    if isinstance(level, int) and not isinstance(level, bool):
        for name, value in zip(LEVELS, (10, 20, 30, 40, 50), strict=True):
            if level <= value:
                return name
        return "CRITICAL"
    name = str(level).strip().upper()
    return {"WARN": "WARNING", "FATAL": "CRITICAL"}.get(name, name) or "INFO"


class LogLines:
    def __init__(
        self,
        buffer: EventBuffer,
        iteration_id: str,
        *,
        max_lines: int = 1_000,
        max_line_chars: int = 16_384,
    ) -> None:
        self.buffer = buffer
        self.iteration_id = iteration_id
        self.max_lines = max_lines
        self.max_line_chars = max_line_chars
        self._lock = threading.RLock()  # re-entered when an emit spills and drains
        self._pending: dict[str, tuple[list[int], list[str], list[str]]] = {}
        self._count = 0
        self._hooked = False
        self._closed = False

    def add(self, source: str, level: str, message: str, time_us: int | None = None) -> None:
        """One line (or one multi-line message) at `level`, from `source`."""
        with self._lock:
            if not self._hooked and not self._closed:
                self.buffer.add_drain_hook(self.flush)
                self._hooked = True
            times, levels, messages = self._pending.setdefault(source, ([], [], []))
            times.append(now_us() if time_us is None else time_us)
            levels.append(level)
            messages.append(message[: self.max_line_chars])
            self._count += 1
            full = self._count >= self.max_lines or self._closed
        if full:
            self.flush()

    def flush(self) -> None:
        """Emit the lines gathered so far (one event per source)."""
        with self._lock:
            batches, self._pending = self._pending, {}
            self._count = 0
            for source, (times, levels, messages) in batches.items():
                body = {  # see `EventBuffer.emit_body` (every field of LogLinesLogged)
                    "type": "log_lines_logged",
                    "iteration_id": self.iteration_id,
                    "times": times,
                    "levels": levels,
                    "messages": messages,
                    "source": source,
                }
                self.buffer.emit_body(body, self.iteration_id)

    def close(self) -> None:
        """Emit what is left and stop following drains (later lines are emitted at once)."""
        with self._lock:
            self._closed = True
            if self._hooked:
                self.buffer.remove_drain_hook(self.flush)
                self._hooked = False
        self.flush()
