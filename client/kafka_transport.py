"""Producing straight to Kafka from the SDK, with the same buffer/spool/shipper guarantees.

acks=all; the idempotent producer is used where the broker supports it
(`?idempotence=true`); resends are harmless either way because folds drop repeated
event ids. Broker trouble is `Unavailable`, so the shipper spools and retries.
"""

from __future__ import annotations

from collections.abc import Sequence

from deardiary.services.log import LogRecord
from deardiary.services.log.kafka import KafkaEventLog

from .transport import Acked, acked_of


class KafkaTransport:
    def __init__(self, url: str) -> None:
        self.log = KafkaEventLog.from_url(url)

    def send(self, records: Sequence[LogRecord]) -> Acked:
        if not records:
            return {}
        # the producer's record metadata: where each record went, so reads can wait for it
        return acked_of(self.log.append(records))

    def close(self) -> None:
        self.log.close()
