"""The SDK's logger, imported only when there is something to say.

`logging` costs a trial process several milliseconds to import, and a trial that
logs and exits without trouble says nothing; so the logger is resolved on first use.
Warnings reach stderr even when the program configured no logging (Python's
last-resort handler), and go wherever its logging goes when it did.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:  # `typing` costs a trial process milliseconds to import
    from typing import Any


class _LazyLogger:
    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attr: str) -> Any:
        import logging

        return getattr(logging.getLogger(self._name), attr)


log: Any = _LazyLogger("deardiary.client")
"""Used like a `logging.Logger` named ``deardiary.client``."""
