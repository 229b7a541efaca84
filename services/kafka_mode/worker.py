"""`deardiary worker`: the projector as a faust-streaming app, one store per partition.

The agent is thin: take a batch of events, group them by partition, and hand them to
the same fold and store as embedded mode. Correctness never rests on Faust's offset
commits (faust-streaming #606/#596): each partition's store keeps its own offsets in
the transaction that applied them; on assignment the consumer is moved to them, and
records before them are skipped by the fold anyway. No Faust tables are used.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import faust
from faust.types import TP, EventT

from deardiary.projections.fold import Record
from deardiary.schemas.codec import decode_record
from deardiary.schemas.envelope import LogPosition
from deardiary.schemas.errors import Unavailable
from deardiary.services.kafka_mode.partitions import PartitionStore
from deardiary.services.log.kafka import KafkaEventLog

_log = logging.getLogger("deardiary.worker")
PUBLISH_EVERY_S = 0.5


class PartitionOwner:
    """The stores of the partitions this worker owns; all DuckDB work on one thread."""

    def __init__(self, data: Path) -> None:
        self.data = Path(data)
        self.stores: dict[int, PartitionStore] = {}
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="projector")

    def _store(self, partition: int) -> PartitionStore | None:
        if partition not in self.stores:
            try:
                self.stores[partition] = PartitionStore(self.data, partition)
            except Unavailable:  # still held by the previous owner; it will be ours soon
                return None
        return self.stores[partition]

    def apply(self, by_partition: dict[int, list[Record]]) -> None:
        for partition, records in sorted(by_partition.items()):
            store = self._store(partition)
            if store is not None:
                store.apply(records)
                store.publish(PUBLISH_EVERY_S)

    def publish_all(self) -> None:
        for store in self.stores.values():
            store.compact_if_due()
            store.publish(PUBLISH_EVERY_S)

    def next_offset(self, partition: int) -> int | None:
        store = self._store(partition)
        return None if store is None else store.next_offset()

    def release(self, partitions: Sequence[int]) -> None:
        for partition in partitions:
            store = self.stores.pop(partition, None)
            if store is not None:
                store.close()

    async def run(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.pool, fn, *args)


def _records(events: Sequence[EventT]) -> dict[int, list[Record]]:
    grouped: dict[int, list[Record]] = {}
    for event in events:
        message = event.message
        pos = LogPosition(message.partition, message.offset, int(message.timestamp * 1_000_000))
        value = message.value if isinstance(message.value, bytes) else bytes(message.value)
        grouped.setdefault(message.partition, []).append((pos, decode_record(value)))
    return grouped


def build_app(broker_url: str, data: Path, batch: int = 2000) -> faust.App:
    """The faust app: wiring only (topic, agent, rebalance hooks, a publish timer)."""
    log = KafkaEventLog.from_url(broker_url)
    partitions = len(log.partitions())  # creates the topic (partitions, retention) if new
    config = log.config
    log.close()
    app = faust.App(
        "deardiary-projector",
        broker=[f"kafka://{b}" for b in config.bootstrap],
        value_serializer="raw",
        topic_partitions=partitions,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=6.0,
        broker_heartbeat_interval=0.5,
        web_enabled=False,
        store="memory://",
        topic_disable_leader=True,
    )
    owner = PartitionOwner(data)
    topic = app.topic(
        config.topic,
        value_type=bytes,
        value_serializer="raw",
        partitions=partitions,
        internal=False,
    )

    @app.agent(topic)
    async def project(stream: faust.StreamT[bytes]) -> None:
        async for events in stream.take_events(batch, within=0.1):
            await owner.run(owner.apply, _records(events))

    @app.on_partitions_assigned.connect
    async def assigned(sender: Any, assigned: set[TP], **_: Any) -> None:
        for tp in sorted(assigned):
            if tp.topic != config.topic:
                continue
            offset = await owner.run(owner.next_offset, tp.partition)
            if offset is not None:
                await app.consumer.seek(tp, offset)

    @app.on_partitions_revoked.connect
    async def revoked(sender: Any, revoked: set[TP], **_: Any) -> None:
        mine = [tp.partition for tp in revoked if tp.topic == config.topic]
        await owner.run(owner.release, mine)

    @app.timer(PUBLISH_EVERY_S)
    async def publish() -> None:
        await owner.run(owner.publish_all)

    return app


def run_worker(broker_url: str, data: Path) -> None:
    """Block running the worker until SIGINT/SIGTERM."""
    app = build_app(broker_url, data)
    worker = faust.Worker(app, loglevel="WARNING", quiet=True)
    worker.execute_from_commandline()
