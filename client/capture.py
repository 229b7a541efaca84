"""Optional capture of a run's stdout/stderr as log lines (MLflow never did: mlflow#863).

Why a tee: the user still sees their output where they always did; we only copy it.
Lines are batched into `LogLinesLogged` events -- per flush of the shipper (through a
drain hook) or every `max_lines` lines -- because an event per line would cost more
than the print itself. Progress bars that redraw with ``\\r`` are recorded as what a
terminal would finally show, and their redraws do not accumulate in memory.
"""

from __future__ import annotations

import sys
import threading
from types import TracebackType
from typing import Any, TextIO, cast

from deardiary.schemas.events import LogLinesLogged
from deardiary.schemas.ids import now_us

from .buffer import EventBuffer

_LEVELS = {"stdout": "INFO", "stderr": "ERROR"}


class _Tee:
    """A text stream that writes through to the real one and copies the text to a sink."""

    def __init__(self, real: TextIO, capture: OutputCapture, source: str) -> None:
        self._real = real
        self._capture: OutputCapture | None = capture
        self._source = source

    def write(self, text: str) -> int:
        written = self._real.write(text)
        capture = self._capture
        if capture is not None and text:
            capture._feed(self._source, text)
        return written

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        self._real.flush()

    def detach_capture(self) -> None:
        self._capture = None

    def __getattr__(self, name: str) -> Any:  # encoding, fileno, isatty, buffer, ...
        return getattr(self._real, name)


class OutputCapture:
    """Context manager: while active, complete lines written to sys.stdout/sys.stderr
    become `LogLinesLogged` events of `iteration_id` (level INFO for stdout, ERROR for
    stderr), emitted through `buffer` in batches."""

    def __init__(
        self,
        buffer: EventBuffer,
        iteration_id: str,
        *,
        stdout: bool = True,
        stderr: bool = True,
        max_lines: int = 1_000,
        max_line_chars: int = 16_384,
    ) -> None:
        self.buffer = buffer
        self.iteration_id = iteration_id
        self.max_lines = max_lines
        self.max_line_chars = max_line_chars
        self._sources = [s for s, on in (("stdout", stdout), ("stderr", stderr)) if on]
        self._lock = threading.RLock()  # re-entered when an emit spills and drains
        self._partial = dict.fromkeys(self._sources, "")
        self._pending: dict[str, tuple[list[int], list[str]]] = {s: ([], []) for s in self._sources}
        self._count = 0
        self._tees: dict[str, tuple[_Tee, TextIO]] = {}

    def __enter__(self) -> OutputCapture:
        for source in self._sources:
            real = cast(TextIO | None, getattr(sys, source))
            if real is None:  # pythonw and some embedders have no console streams
                continue
            tee = _Tee(real, self, source)
            self._tees[source] = (tee, real)
            setattr(sys, source, cast(TextIO, tee))
        self.buffer.add_drain_hook(self.flush)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for source, (tee, real) in self._tees.items():
            tee.detach_capture()
            if getattr(sys, source) is tee:
                setattr(sys, source, real)
        self._tees.clear()
        self.buffer.remove_drain_hook(self.flush)
        with self._lock:
            for source in self._sources:
                rest, self._partial[source] = self._partial[source], ""
                if rest:
                    self._add_line(source, rest)
        self.flush()

    def _feed(self, source: str, text: str) -> None:
        with self._lock:
            data = self._partial[source] + text
            if "\n" in data:
                *lines, data = data.split("\n")
                for line in lines:
                    self._add_line(source, line)
            cr = data.rfind("\r")
            if cr > 0:  # a redraw: only what follows the last carriage return will show
                data = data[cr:]
            if len(data) > self.max_line_chars:
                self._add_line(source, data)
                data = ""
            self._partial[source] = data
            full = self._count >= self.max_lines
        if full:
            self.flush()

    def _add_line(self, source: str, line: str) -> None:
        line = line.rstrip("\r")
        line = line[line.rfind("\r") + 1 :]
        times, messages = self._pending[source]
        times.append(now_us())
        messages.append(line[: self.max_line_chars])
        self._count += 1

    def flush(self) -> None:
        """Emit the complete lines gathered so far (one event per stream)."""
        with self._lock:
            batches = [(s, p) for s, p in self._pending.items() if p[0]]
            self._pending = {s: ([], []) for s in self._sources}
            self._count = 0
            for source, (times, messages) in batches:
                self.buffer.emit(
                    LogLinesLogged(
                        iteration_id=self.iteration_id,
                        times=times,
                        levels=[_LEVELS[source]] * len(times),
                        messages=messages,
                        source=source,
                    )
                )
