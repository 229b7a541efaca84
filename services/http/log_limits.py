"""Repeated identical log lines, rate-limited: a flood of bad requests must not fill a disk.

`RepeatFilter` lets through the first `limit` records of one kind per `interval_s` and
counts the rest; the next record of that kind after the interval (or `flush()`, or the
next record of any kind once the interval is over) carries one line
``... suppressed K identical messages in the last N s``. journald's rate limit, per
message rather than per service.

A record's kind is (logger, level, message template): ``"Error handling request from
%s"`` is one kind whatever the address. aiohttp's access log formats each line before
logging it, so its kind is (logger, level, status, request line) instead -- a flood of
one bad request is one kind, normal traffic with varied paths is many.

The filter goes on handlers (a filter on a logger does not see its children's records);
`installed_on_root()` puts it on the root logger's handlers, adding a stderr handler
when there is none (what Python would otherwise use as its last resort, unfiltered).
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

_MAX_KINDS = 4096
"""Kinds remembered at once; messages built with f-strings are each a kind of their own."""

_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


@dataclass
class _Window:
    started: float
    passed: int
    suppressed: int
    sample: tuple[str, int, str, str]
    """(logger, level number, level name, message) of the window's first record."""


def _kind(record: logging.LogRecord) -> tuple[object, ...]:
    status = getattr(record, "response_status", None)
    if record.name == "aiohttp.access" and status is not None:
        return (record.name, record.levelno, status, getattr(record, "first_request_line", ""))
    return (record.name, record.levelno, str(record.msg))


class RepeatFilter(logging.Filter):
    """Passes the first `limit` identical records per `interval_s`, then summarises."""

    def __init__(
        self,
        limit: int = 10,
        interval_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        if limit < 1 or interval_s <= 0:
            raise ValueError("limit must be at least 1 and interval_s positive")
        self.limit, self.interval_s, self._clock = limit, interval_s, clock
        self._windows: OrderedDict[tuple[object, ...], _Window] = OrderedDict()
        self._lock = threading.Lock()
        self._next_sweep = 0.0
        self._handlers: list[logging.Handler] = []
        self.suppressed_total = 0

    def attach(self, handler: logging.Handler) -> None:
        """Filter `handler`; summaries of kinds that went quiet are emitted through it."""
        handler.addFilter(self)
        self._handlers.append(handler)

    def detach(self, handler: logging.Handler) -> None:
        handler.removeFilter(self)
        if handler in self._handlers:
            self._handlers.remove(handler)

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "deardiary_summary", False):
            return True
        decided = getattr(record, "deardiary_repeat_passed", None)
        if decided is not None:  # the same record, on the next handler
            return bool(decided)
        now = self._clock()
        kind = _kind(record)
        with self._lock:
            window = self._windows.get(kind)
            summary = ""
            if window is not None and now - window.started >= self.interval_s:
                summary = self._summary_text(window) if window.suppressed else ""
                window = None
            if window is None:
                message = record.getMessage()
                sample = (record.name, record.levelno, record.levelname, message)
                if summary:  # this record says how many of its kind were left out
                    record.msg, record.args = f"{message} {summary}", None
                self._windows[kind] = _Window(now, 1, 0, sample)
                self._windows.move_to_end(kind)
                self._forget_oldest()
                passed = True
            elif window.passed < self.limit:
                window.passed += 1
                passed = True
            else:
                window.suppressed += 1
                self.suppressed_total += 1
                passed = False
            quiet = self._quiet_windows(now)
        record.deardiary_repeat_passed = passed
        self._emit(quiet)
        return passed

    def flush(self) -> None:
        """Emit the summary of every kind with suppressed records (at shutdown)."""
        with self._lock:
            quiet = [w for w in self._windows.values() if w.suppressed]
            for window in quiet:
                window.started, window.passed = self._clock(), 0
            summaries = [(w.sample, w.suppressed) for w in quiet]
            for window in quiet:
                window.suppressed = 0
        self._emit(summaries)

    def _summary_text(self, window: _Window) -> str:
        return f"(... suppressed {window.suppressed} identical messages in {self.interval_s:g} s)"

    def _forget_oldest(self) -> None:
        while len(self._windows) > _MAX_KINDS:
            self._windows.popitem(last=False)

    def _quiet_windows(self, now: float) -> list[tuple[tuple[str, int, str, str], int]]:
        """Kinds whose interval ended with suppressed records and nothing since: their
        summaries are due (checked at most once a second)."""
        if now < self._next_sweep:
            return []
        self._next_sweep = now + 1.0
        due = []
        for window in self._windows.values():
            if window.suppressed and now - window.started >= self.interval_s:
                due.append((window.sample, window.suppressed))
                window.started, window.passed, window.suppressed = now, 0, 0
        return due

    def _emit(self, summaries: list[tuple[tuple[str, int, str, str], int]]) -> None:
        for (name, levelno, levelname, message), count in summaries:
            summary = logging.makeLogRecord(
                {
                    "name": name,
                    "levelno": levelno,
                    "levelname": levelname,
                    "msg": "... suppressed %d identical messages like: %s",
                    "args": (count, message[:300]),
                    "deardiary_summary": True,
                }
            )
            for handler in list(self._handlers):
                if summary.levelno >= handler.level:
                    handler.handle(summary)


@contextmanager
def installed_on_root(limit: int = 10, interval_s: float = 60.0) -> Iterator[RepeatFilter]:
    """A `RepeatFilter` on every handler of the root logger while the block runs (a stderr
    handler at WARNING is added, and removed after, when the root has none)."""
    root = logging.getLogger()
    repeat = RepeatFilter(limit, interval_s)
    added: logging.Handler | None = None
    if not root.handlers:
        added = logging.StreamHandler(sys.stderr)
        added.setLevel(logging.WARNING)
        added.setFormatter(logging.Formatter(_FORMAT))
        root.addHandler(added)
    handlers = list(root.handlers)
    for handler in handlers:
        repeat.attach(handler)
    try:
        yield repeat
    finally:
        repeat.flush()
        for handler in handlers:
            repeat.detach(handler)
        if added is not None:
            root.removeHandler(added)
