"""A `logging.Handler` that sends a logger's records to an iteration as log lines.

    handler = dd.DiaryHandler(it)                  # or it.log_handler()
    logging.getLogger("trainer").addHandler(handler)

Each record becomes one line at its own level (source ``logging``), formatted by the
handler's formatter (the message alone by default) with the exception text, if any.
Records go through the iteration's batched lines, never onto the network directly, so
a handler in a hot loop costs about what the formatting costs.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .iteration import Iteration


class DiaryHandler(logging.Handler):
    def __init__(self, iteration: Iteration, level: int | str = logging.NOTSET) -> None:
        super().__init__(level)
        self.iteration = iteration

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
            self.iteration.log(text, level=record.levelname, source="logging", at=record.created)
        except Exception:
            self.handleError(record)
