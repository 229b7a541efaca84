"""What the shipper sends through (`transport.py` has the two the SDK makes; Kafka's is
in kafka_transport.py). Apart from them: a Protocol class costs `typing`, which a trial
process never imports otherwise."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from collections.abc import Sequence

    from deardiary.schemas.records import LogRecord

    from .transport import Acked


class Transport(Protocol):
    def send(self, records: Sequence[LogRecord]) -> Acked:
        """Durably deliver `records` (in order); returns the last acknowledged offset of
        each partition they went to. Raises `Unavailable` when a retry may succeed,
        another `DearDiaryError` when not."""
        ...

    def close(self) -> None: ...
