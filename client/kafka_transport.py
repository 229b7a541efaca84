"""Producing straight to Kafka from the SDK, with the same buffer/spool/shipper guarantees.

acks=all; the idempotent producer is used where the broker supports it
(`?idempotence=true`); resends are harmless either way because folds drop repeated
event ids. Broker trouble is `Unavailable`, so the shipper spools and retries.
"""

from __future__ import annotations

from collections.abc import Sequence

from deardiary.services.log import LogRecord
from deardiary.services.log.kafka import KafkaEventLog


class KafkaTransport:
    def __init__(self, url: str) -> None:
        self.log = KafkaEventLog.from_url(url)

    def send(self, records: Sequence[LogRecord]) -> int:
        if not records:
            return -1
        self.log.append(records)
        # Kafka offsets are per partition, so there is no single offset for reads to
        # wait on: -1 makes reads eventual (poll, or pass min_offset=P:N yourself).
        return -1

    def close(self) -> None:
        self.log.close()
