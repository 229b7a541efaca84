"""Log lines of an iteration (captured stdout/stderr or explicit logging), in batches."""

from __future__ import annotations

from deardiary.schemas.events.iterations import IterationEvent
from deardiary.schemas.limits import Id, Name, Text, TimeUs


class LogLinesLogged(IterationEvent, frozen=True, kw_only=True, tag="log_lines_logged"):
    """Parallel lists: times (client microseconds), levels and messages."""

    iteration_id: Id
    times: list[TimeUs]
    levels: list[Name]
    messages: list[Text]
    source: Name = ""

    def problem(self) -> str | None:
        if not len(self.times) == len(self.levels) == len(self.messages):
            return "log lines: times, levels and messages differ in length"
        return None
