"""Producing straight to Kafka from the SDK, with the same buffer/spool/shipper guarantees.

acks=all; the idempotent producer is used where the broker supports it
(`?idempotence=true`); resends are harmless either way because folds drop repeated
event ids. Broker trouble is `Unavailable`, so the shipper spools and retries.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from deardiary.schemas.errors import InvalidArgument
from deardiary.schemas.records import LogRecord

from .transport import Acked, acked_of

if TYPE_CHECKING:
    from deardiary.services.log.kafka import KafkaEventLog


class KafkaTransport:
    """Produces with the server's own Kafka log adapter (the `kafka` extra), imported
    only when a client connects to ``kafka://``."""

    def __init__(self, url: str) -> None:
        try:
            from deardiary.services.log.kafka import KafkaEventLog
        except ImportError as exc:
            raise InvalidArgument(
                f"producing to Kafka needs the kafka extra ({exc.name} is missing):"
                " pip install 'deardiary[kafka]'"
            ) from exc
        self.log: KafkaEventLog = KafkaEventLog.from_url(url)

    def send(self, records: Sequence[LogRecord]) -> Acked:
        if not records:
            return {}
        # the producer's record metadata: where each record went, so reads can wait for it
        return acked_of(self.log.append(records))

    def close(self) -> None:
        self.log.close()
