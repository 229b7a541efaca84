"""Log lines of an iteration (captured stdout/stderr or explicit logging), in batches."""

from __future__ import annotations

from deardiary.schemas.events.base import Event


class LogLinesLogged(Event, frozen=True, kw_only=True, tag="log_lines_logged"):
    """Parallel lists: times (client microseconds), levels and messages."""

    iteration_id: str
    times: list[int]
    levels: list[str]
    messages: list[str]
    source: str = ""
