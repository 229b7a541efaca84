"""Optional capture of a run's stdout/stderr as log lines (MLflow never did: mlflow#863).

Why a tee: the user still sees their output where they always did; we only copy it.
Lines are batched into `LogLinesLogged` events (`lines.py`). Progress bars that redraw
with ``\\r`` are recorded as what a terminal would finally show, and their redraws do
not accumulate in memory.

Lines written by `logging` keep their record's level (a warning is WARNING, not the
ERROR that other stderr text gets): while capturing, a log record factory notes the
record being handled on this thread, and the tee gives that record's level to the text
its handler writes. Stream handlers that already write to the real console (set up by
`logging.basicConfig` before the capture) write through the tee meanwhile.
"""

from __future__ import annotations

import logging
import sys
import threading
from types import TracebackType
from typing import Any, TextIO, cast

from .buffer import EventBuffer
from .lines import LogLines

_LEVELS = {"stdout": "INFO", "stderr": "ERROR"}
_current = threading.local()  # .record: the log record being handled on this thread


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
            capture._feed(self._source, text, _record_level(text))
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


def _record_level(text: str) -> str | None:
    """The level of the log record whose formatted text this is, if it is one."""
    record = getattr(_current, "record", None)
    if record is None:
        return None
    try:
        message = record.getMessage().split("\n", 1)[0]
    except Exception:  # a record whose arguments do not format: not ours to judge
        message = ""
    if message not in text:
        return None
    _current.record = None  # one write per record (StreamHandler.emit)
    return str(record.levelname)


class _RecordFactory:
    """Wraps the log record factory while any capture is active (chained, not replaced)."""

    lock = threading.Lock()
    users = 0
    previous: Any = None

    @classmethod
    def install(cls) -> None:
        with cls.lock:
            cls.users += 1
            if cls.users == 1:
                cls.previous = logging.getLogRecordFactory()
                logging.setLogRecordFactory(cls.make)

    @classmethod
    def uninstall(cls) -> None:
        with cls.lock:
            cls.users -= 1
            if cls.users == 0:
                if logging.getLogRecordFactory() == cls.make:  # bound methods: == not is
                    logging.setLogRecordFactory(cls.previous)
                cls.previous = None

    @classmethod
    def make(cls, *args: Any, **kwargs: Any) -> logging.LogRecord:
        previous = cls.previous or logging.LogRecord
        record: logging.LogRecord = previous(*args, **kwargs)
        _current.record = record
        return record


def _console_handlers(real: TextIO) -> list[logging.StreamHandler[Any]]:
    """Stream handlers (not file handlers) of any logger that write to `real`."""
    loggers: list[Any] = [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]
    found = []
    for logger in loggers:
        for handler in getattr(logger, "handlers", ()):
            if (
                isinstance(handler, logging.StreamHandler)
                and not isinstance(handler, logging.FileHandler)
                and handler.stream is real
            ):
                found.append(handler)
    return found


class OutputCapture:
    """Context manager: while active, complete lines written to sys.stdout/sys.stderr
    become `LogLinesLogged` events of `iteration_id` (level INFO for stdout, ERROR for
    stderr, a log record's own level for what `logging` writes), emitted through
    `buffer` in batches."""

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
        self.max_line_chars = max_line_chars
        self._lines = LogLines(
            buffer, iteration_id, max_lines=max_lines, max_line_chars=max_line_chars
        )
        self._sources = [s for s, on in (("stdout", stdout), ("stderr", stderr)) if on]
        self._lock = threading.RLock()
        self._partial = dict.fromkeys(self._sources, "")
        self._partial_level: dict[str, str | None] = dict.fromkeys(self._sources)
        self._tees: dict[str, tuple[_Tee, TextIO]] = {}
        self._handlers: list[tuple[logging.StreamHandler[Any], TextIO]] = []

    def __enter__(self) -> OutputCapture:
        for source in self._sources:
            real = cast(TextIO | None, getattr(sys, source))
            if real is None:  # pythonw and some embedders have no console streams
                continue
            tee = _Tee(real, self, source)
            self._tees[source] = (tee, real)
            setattr(sys, source, cast(TextIO, tee))
            for handler in _console_handlers(real):
                handler.setStream(cast(TextIO, tee))
                self._handlers.append((handler, real))
        _RecordFactory.install()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        _RecordFactory.uninstall()
        for handler, real in self._handlers:
            if isinstance(handler.stream, _Tee):
                handler.setStream(real)
        self._handlers.clear()
        for source, (tee, real) in self._tees.items():
            tee.detach_capture()
            if getattr(sys, source) is tee:
                setattr(sys, source, real)
        self._tees.clear()
        with self._lock:
            for source in self._sources:
                rest, self._partial[source] = self._partial[source], ""
                if rest:
                    self._add_line(source, rest, self._partial_level[source])
        self._lines.close()

    def _feed(self, source: str, text: str, level: str | None = None) -> None:
        with self._lock:
            data = self._partial[source] + text
            if "\n" in data:
                *lines, data = data.split("\n")
                first_level = self._partial_level[source] or level
                for n, line in enumerate(lines):
                    self._add_line(source, line, first_level if n == 0 else level)
                self._partial_level[source] = level if data else None
            elif level is not None:
                self._partial_level[source] = level
            cr = data.rfind("\r")
            if cr > 0:  # a redraw: only what follows the last carriage return will show
                data = data[cr:]
            if len(data) > self.max_line_chars:
                self._add_line(source, data, self._partial_level[source])
                data = ""
            self._partial[source] = data

    def _add_line(self, source: str, line: str, level: str | None) -> None:
        line = line.rstrip("\r")
        line = line[line.rfind("\r") + 1 :]
        self._lines.add(source, level or _LEVELS[source], line)

    def flush(self) -> None:
        """Emit the complete lines gathered so far (one event per stream)."""
        self._lines.flush()
