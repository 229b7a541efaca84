"""The Kafka log honours the same EventLog contract, on a real Kafka-protocol broker."""

from __future__ import annotations

from pathlib import Path

import pytest

from deardiary.services.log import EventLog
from deardiary.services.log.kafka import KafkaEventLog
from tests.contract.event_log_contract import EventLogContract
from tests.kafka_broker import fresh_topic, kafka_bootstrap_server  # noqa: F401


@pytest.mark.kafka
class TestKafkaEventLog(EventLogContract):
    dedups_on_append = False
    bootstrap = ""

    @pytest.fixture(autouse=True)
    def _broker(self, kafka_bootstrap_server: str) -> None:  # noqa: F811
        type(self).bootstrap = kafka_bootstrap_server

    def create_log(self, tmp_path: Path) -> EventLog:
        return KafkaEventLog.from_url(f"kafka://{self.bootstrap}/{fresh_topic()}?partitions=4")
