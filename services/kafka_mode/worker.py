"""`deardiary worker`: the projector as a faust-streaming app, one store per partition.

The agent is thin: take a batch of events, group them by partition, and hand them to
the same fold and store as embedded mode. No Faust tables are used.

Positions live with the projections, never in Faust (faust-streaming #606/#596). Each
partition's store keeps its next offset in the transaction that applied its records,
and the worker keeps one rule: a partition's records are applied only in offset order
from that next offset. A record beyond it -- fetched before the consumer was moved
back, or delivered from a position a rebalance chose -- is left unapplied, and the
consumer is sent back to the store's offset. So redelivery, rebalances, a store that
is still held by its previous owner, and a kill -9 can cost time but never a record.
Faust commits nothing (acks are off for the topic): a committed offset could only move
the consumer somewhere the store has not reached.

Rebalance callbacks only note which partitions are ours. aiokafka sends no heartbeats
while `on_partitions_assigned` runs, and opening DuckDB stores there took longer than
the 6 s session on a busy machine: the member was expelled, the group rebalanced, and
the next callback was as slow. Stores are opened and the consumer positioned by the
projector thread afterwards (the agent's batches and the `tend` timer). Revocation still
closes the revoked stores before the worker rejoins, so their next owner can open them.

The consumer group is per topic, so workers of another topic on the same cluster (another
deployment, another test) never join, rebalance or wedge this topic's group.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import aiokafka
import faust
from faust.transport.drivers import aiokafka as faust_kafka
from faust.types import TP, EventT

from deardiary.projections.fold import Record
from deardiary.schemas.codec import decode_record
from deardiary.schemas.envelope import LogPosition
from deardiary.schemas.errors import Unavailable
from deardiary.services.kafka_mode.partitions import ExportsUpload, PartitionStore
from deardiary.services.log.kafka import KafkaEventLog

_log = logging.getLogger("deardiary.worker")
PUBLISH_EVERY_S = 0.5  # also how often unopened stores are retried and stores published
OPEN_EVERY_S = 0.05  # how soon the next store of a new assignment is opened
DRAINED_PUBLISH_S = 0.1  # a batch that emptied the stream is published this soon
SEEK_TIMEOUT_S = 10.0
FOLD_THREADS = 2  # partitions of one batch folded side by side (the benchmark: 2 cores)
RETRY_AFTER_S = 5.0  # a partition whose batch failed is read again from its store then
STARTUP_RETRY_S = 2.0  # a broker not reachable at start is asked again this often
GONE_CONFIRM_S = 2.0
"""A log that seems to start past a store is believed only when the broker still says so
this much later: the tests' broker once answered a start of 6 for a partition being
written from 0, and believing it skipped six records for good."""
GATHER_RECORDS = 64  # the SDK's records hold up to 32,768 points each
GATHER_S = PUBLISH_EVERY_S
"""While records keep coming nothing folded is visible before the next publish anyway, so
they are gathered that long: each fold costs ~15-30 ms besides its points."""
FETCH_WAIT_MS = 100
"""How long a fetch may wait for records. Faust fixes its consumer's at 1,500 ms, and a
broker that holds a fetch for its whole wait (Tansu does when it has nothing new at the
start of it) adds up to that much to every record's way to the exports."""
FETCH_BYTES = 8 << 20
"""Bytes per partition a fetch may return: several of the SDK's ~850 KiB records at once."""
TAKE_WITHIN_S = 0.1
"""How long the agent waits for records after each batch before folding what it has.
faust's `take_events` waits this long every time, even with records already there, so
the clients' last records wait about this long after the previous fold; but a shorter
wait folds more, smaller batches, each with its fixed cost. In the benchmark's 8-client
run (8 alternating runs each) 0.02 cut that wait to ~0.023 s and did not shorten the
time from the last ack to every point visible (median 0.36 s either way), for ~0.13
more worker CPU-s per million points."""


def group_id(topic: str) -> str:
    """The consumer group (and Faust app id) of the workers projecting `topic`."""
    return f"deardiary-projector-{topic}"


def continuing(records: Sequence[Record], next_offset: int) -> tuple[list[Record], bool]:
    """The records that continue a store at `next_offset`, in order, and whether any lay
    beyond a gap. Records before it were applied already; records beyond a gap are left
    for the consumer to deliver again in order (a topic we create has no offset gaps)."""
    run: list[Record] = []
    gap = False
    for record in records:
        offset = record[0].offset
        if offset == next_offset:
            run.append(record)
            next_offset += 1
        elif offset > next_offset:
            gap = True
    return run, gap


class PartitionOwner:
    """The partitions the group gave this worker, and their stores.

    `assign`/`revoke` run on the event loop inside rebalance callbacks and do no I/O.
    Everything else runs on the one projector thread (`run`), which owns the stores;
    `apply` and `tend` return where the consumer must be moved: {partition: offset}.
    """

    def __init__(self, data: Path, upload: ExportsUpload | None = None) -> None:
        self.data = Path(data)
        self.upload = upload  # exports go to a bucket as well
        self.owned: frozenset[int] = frozenset()  # replaced whole, never mutated
        self.stores: dict[int, PartitionStore] = {}
        self.floors: dict[int, int] = {}  # the log's first offset, where it is past the store
        self._unpositioned: set[int] = set()
        self._failed_until: dict[int, float] = {}
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="projector")
        self.folding = ThreadPoolExecutor(max_workers=FOLD_THREADS, thread_name_prefix="fold")

    # -- on the event loop ---------------------------------------------------------------

    def assign(self, partitions: Iterable[int]) -> None:
        self.owned = frozenset(partitions)

    def revoke(self, partitions: Iterable[int]) -> None:
        self.owned = self.owned - frozenset(partitions)

    async def run(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.pool, fn, *args)

    # -- on the projector thread ---------------------------------------------------------

    def _open(self, partition: int) -> PartitionStore | None:
        store = self.stores.get(partition)
        if store is None and partition in self.owned:
            try:
                store = PartitionStore(self.data, partition, self.upload)
                self.stores[partition] = store
            except Unavailable:  # its previous owner has not closed it yet; `tend` retries
                _log.debug("partition %d: store still held by its previous owner", partition)
                return None
            self._unpositioned.add(partition)
        return store

    def apply(self, by_partition: dict[int, list[Record]], drained: bool = False) -> dict[int, int]:
        """Fold the records of owned partitions that continue their stores. While records
        keep coming, a partition is published every PUBLISH_EVERY_S; a batch that `drained`
        the stream is published at once (readers wait for exactly that).

        Several partitions are folded and published side by side, one thread each (each has
        its own store, and DuckDB lets go of the GIL): after the clients' last records, a
        worker holding two partitions' backlog took their sum, one after the other."""
        work = []
        for partition, records in sorted(by_partition.items()):
            store = self._open(partition)
            if store is None or partition in self._failed_until:
                continue  # not ours, not open yet, or failing: read again from the store
            start = max(store.next_offset(), self.floors.get(partition, 0))
            run, gap = continuing(records, start)
            if gap:
                self._unpositioned.add(partition)
            work.append((store, run, start, DRAINED_PUBLISH_S if drained else PUBLISH_EVERY_S))
        if len(work) == 1:
            failed = [_fold(*work[0])]
        else:  # every one is done before this returns: a partition's next batch comes after
            failed = list(self.folding.map(lambda job: _fold(*job), work))
        now = time.monotonic()
        for (store, *_), fails in zip(work, failed, strict=True):
            if fails:
                self._failed_until[store.partition] = now + RETRY_AFTER_S
        return self.seeks()

    def unopened(self) -> bool:
        """Whether an owned partition has no store yet; safe on the event loop (membership
        tests only, while the projector thread may add stores)."""
        return any(p not in self.stores for p in self.owned)

    def open_next(self) -> dict[int, int]:
        """Open one owned store not open yet, and say where to move the consumer for it: a
        new assignment's stores open one after another, not one per `tend` tick."""
        for partition in sorted(self.owned - set(self.stores)):
            if self._open(partition) is not None:
                break
        return self.seeks()

    def tend(self) -> dict[int, int]:
        """The timer's work: open an owned store not open yet (positioning it), compact and
        publish -- also stores of partitions without records, so readers see them. One
        opening a tick, so a revocation waiting for this thread waits for one at most."""
        for partition in sorted(self.owned - self.stores.keys()):
            if self._open(partition) is not None:
                break
        now = time.monotonic()
        for partition, until in list(self._failed_until.items()):
            if now >= until:  # try its records again, from its store's offset
                del self._failed_until[partition]
                self._unpositioned.add(partition)
        for store in self.stores.values():
            store.compact_if_due()
            store.publish(PUBLISH_EVERY_S)
        return self.seeks()

    def publish_due(self) -> None:
        """Publish the stores whose drained batch was throttled (`PartitionStore.publish`
        remembers when it wanted to be published)."""
        for store in self.stores.values():
            store.publish(PUBLISH_EVERY_S)

    def seeks(self) -> dict[int, int]:
        """Where to move the consumer, for each open partition that needs it."""
        wanted = {
            p: max(self.stores[p].next_offset(), self.floors.get(p, 0))
            for p in sorted(self._unpositioned)
            if p in self.stores and p not in self._failed_until
        }
        self._unpositioned.clear()
        return wanted

    def reposition(self, partitions: Iterable[int], floors: dict[int, int]) -> None:
        """A seek did not happen (or the log starts past the store): try again."""
        self.floors.update(floors)
        self._unpositioned.update(p for p in partitions if p in self.stores)

    def close(self) -> None:
        """Close every store (their hot points checkpointed into the file, no WAL left)
        at shutdown, on the projector thread: exit's finalisers are not relied on (with
        the heap frozen out of the collector they never ran). Nothing opens again."""
        self.owned = frozenset()
        self.release(sorted(self.stores))

    def release(self, partitions: Sequence[int]) -> None:
        for partition in partitions:
            self._unpositioned.discard(partition)
            self._failed_until.pop(partition, None)
            self.floors.pop(partition, None)
            store = self.stores.pop(partition, None)
            if store is not None:
                store.close()


def _fold(store: PartitionStore, run: list[Record], start: int, interval_s: float) -> bool:
    """Apply a partition's run and publish it if due; True when the batch failed (it is
    read again from the store later)."""
    try:
        store.apply(run)
    except Exception:
        _log.exception("partition %d: the batch at offset %d failed", store.partition, start)
        failed = True
    else:
        failed = False
    store.publish(interval_s)
    return failed


def drained(batch: dict[int, list[Record]], highwater: Callable[[int], int | None]) -> bool:
    """Whether a batch reached the end of every partition it holds, as the consumer last
    heard from the broker (`highwater`: a partition's end, None when not known yet).

    Under load the SDK's records are few and large, so a batch never fills up by count and
    every batch would look like the last; publishing each (a Parquet file per changed
    relation, fsynced) cost more than the points. A batch with records queued behind it is
    published with the timer's interval, the batch that reaches the end at once (readers
    waiting for their own writes wait for exactly that one)."""
    for partition, records in batch.items():
        end = highwater(partition)
        if records and end is not None and records[-1][0].offset + 1 < end:
            return False
    return True


class Gathered:
    """Records taken from the stream and not folded yet, by partition, in offset order.

    Folding costs a fixed ~30 ms a batch on top of its points (a DuckDB transaction and
    its WAL sync, a dozen statements), and a batch the stream hands over under load holds
    only a few of the SDK's records. So while records are queued behind a batch (`drained`
    says no), the agent gathers the next ones too, up to GATHER_RECORDS records or
    GATHER_S seconds, and folds them in one transaction; a batch that reaches the end is
    folded at once. Used on the event loop only."""

    def __init__(self) -> None:
        self.records: dict[int, list[Record]] = {}
        self.count = 0
        self.since = 0.0

    def add(self, records: dict[int, list[Record]], count: int) -> None:
        if not self.count:
            self.since = time.monotonic()
        for partition, found in records.items():
            self.records.setdefault(partition, []).extend(found)
        self.count += count

    def full(self, now: float) -> bool:
        return self.count >= GATHER_RECORDS or (self.count > 0 and now - self.since >= GATHER_S)

    def take(self) -> dict[int, list[Record]]:
        records, self.records, self.count = self.records, {}, 0
        return records


def _records(events: Sequence[EventT]) -> dict[int, list[Record]]:
    grouped: dict[int, list[Record]] = {}
    for event in events:
        message = event.message
        pos = LogPosition(message.partition, message.offset, int(message.timestamp * 1_000_000))
        value = message.value if isinstance(message.value, bytes) else bytes(message.value)
        grouped.setdefault(message.partition, []).append((pos, decode_record(value)))
    return grouped


class _ConsumerThread(faust_kafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> aiokafka.AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        consumer._fetch_max_wait_ms = FETCH_WAIT_MS  # read by its fetcher, made at start
        return consumer


class _Consumer(faust_kafka.Consumer):
    def _new_consumer_thread(self) -> faust_kafka.AIOKafkaConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class _Transport(faust_kafka.Transport):
    Consumer = _Consumer


class _App(faust.App):
    """faust's app with our fetch wait (faust offers no setting for it)."""

    def _new_transport(self) -> Any:
        return _Transport(self.conf.broker_consumer, self)


def build_app(
    broker_url: str, data: Path, batch: int = 2000, exports: str | None = None
) -> faust.App:
    """The faust app: wiring only (topic, agent, rebalance hooks, a timer). `exports`
    (s3://bucket/prefix) uploads the partitions' exports there too."""
    log = KafkaEventLog.from_url(broker_url)
    while True:  # a broker not reachable yet (starting, a network cut) is waited for
        try:
            partitions = len(log.partitions())  # creates the topic if new
            break
        except Unavailable as exc:
            _log.warning("waiting for Kafka: %s", exc.message)
            time.sleep(STARTUP_RETRY_S)
    config = log.config
    log.close()
    Path(data).mkdir(parents=True, exist_ok=True)
    app = _App(
        group_id(config.topic),
        broker=[f"kafka://{b}" for b in config.bootstrap],
        value_serializer="raw",
        topic_partitions=partitions,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=6.0,
        broker_heartbeat_interval=0.5,
        web_enabled=False,
        store="memory://",
        datadir=str(Path(data) / "faust"),  # not a folder in the working directory
        topic_disable_leader=True,
        consumer_max_fetch_size=FETCH_BYTES,
    )
    upload: ExportsUpload | None = None
    if exports:
        from deardiary.services.kafka_mode.object_store import S3Upload

        upload = S3Upload(exports)
    owner = PartitionOwner(data, upload)
    topic = app.topic(
        config.topic,
        value_type=bytes,
        value_serializer="raw",
        partitions=partitions,
        internal=False,
        acks=False,  # Faust commits nothing: positions come from the stores
    )

    seemed_gone: dict[int, float] = {}  # partition -> when its log first seemed to start late

    async def position(seeks: dict[int, int]) -> None:
        """Move the consumer to the stores' offsets. Never raises: a seek that fails is
        retried by the next tick while the partition is still ours."""
        if not seeks:
            return
        assigned = app.consumer.assignment()
        wanted = {TP(config.topic, p): o for p, o in seeks.items()}
        if later := [tp.partition for tp in wanted if tp not in assigned]:
            await owner.run(owner.reposition, later, {})  # mid-rebalance: the next tick
        wanted = {tp: o for tp, o in wanted.items() if tp in assigned}
        if not wanted:
            return
        try:
            firsts = await asyncio.wait_for(app.consumer.earliest_offsets(*wanted), SEEK_TIMEOUT_S)
            floors = {
                tp.partition: first
                for tp, offset in wanted.items()
                if (first := firsts.get(tp)) is not None and first > offset
            }
            now = time.monotonic()
            for tp in wanted:
                if tp.partition not in floors:
                    seemed_gone.pop(tp.partition, None)
            unsure = [p for p in floors if now - seemed_gone.setdefault(p, now) < GONE_CONFIRM_S]
            for partition in unsure:  # asked again at the next tick; not moved meanwhile
                del floors[partition], wanted[TP(config.topic, partition)]
            if unsure:
                await owner.run(owner.reposition, unsure, {})
            for partition, first in floors.items():
                seemed_gone.pop(partition, None)
                _log.error(
                    "partition %d: offsets %d..%d are gone from the log (retention?); "
                    "its projection goes on from %d without them",
                    partition,
                    seeks[partition],
                    first - 1,
                    first,
                )
                wanted[TP(config.topic, partition)] = first
            if floors:
                await owner.run(owner.reposition, (), floors)
            await asyncio.wait_for(app.consumer.seek_wait(wanted), SEEK_TIMEOUT_S)
            _log.info("positioned %s", {tp.partition: o for tp, o in sorted(wanted.items())})
        except Exception as exc:  # a rebalance under way, a broker hiccup
            _log.warning("moving the consumer to %s failed (%r); retrying", seeks, exc)
            await owner.run(owner.reposition, seeks, {})

    later: set[asyncio.Task[None]] = set()

    async def publish_drained() -> None:
        """A drained batch whose publish was throttled is published DRAINED_PUBLISH_S
        later, not at the timer's next tick (readers wait for exactly that batch)."""
        await asyncio.sleep(DRAINED_PUBLISH_S)
        try:
            await owner.run(owner.publish_due)
        except Exception:
            _log.exception("publishing a drained batch failed; the timer publishes it")

    gathered = Gathered()

    async def apply_gathered(at_end: bool) -> None:
        records = gathered.take()  # taken before the await: later records gather anew
        if records:
            await position(await owner.run(owner.apply, records, at_end))

    @app.agent(topic)
    async def project(stream: faust.StreamT[bytes]) -> None:
        def highwater(partition: int) -> int | None:
            try:
                end = app.consumer.highwater(TP(config.topic, partition))
            except Exception:  # no consumer (stopping) or no fetch answer yet: not known
                return None
            return None if end is None else int(end)

        async for events in stream.take_events(batch, within=TAKE_WITHIN_S):
            gathered.add(_records(events), len(events))
            at_end = len(events) < batch and drained(gathered.records, highwater)
            if not at_end and not gathered.full(time.monotonic()):
                continue  # more is queued: fold it with these, in one transaction
            await apply_gathered(at_end)
            if at_end and not later:
                task = asyncio.ensure_future(publish_drained())
                later.add(task)
                task.add_done_callback(later.discard)

    opener: list[asyncio.Task[None]] = []  # the one opening stores, if any

    async def open_stores() -> None:
        """Open the stores of a new assignment one after another, OPEN_EVERY_S apart, while
        an owned partition has none (one still held by its previous owner is asked again);
        ends once all are open. (A timer doing this every OPEN_EVERY_S for good was about
        a third of an idle worker's CPU.)"""
        while owner.unopened():
            try:
                await position(await owner.run(owner.open_next))
            except Exception:  # as a timer would: logged, tried again
                _log.exception("opening the stores of an assignment failed; retrying")
            await asyncio.sleep(OPEN_EVERY_S)

    @app.on_partitions_assigned.connect
    async def assigned(sender: Any, assigned: set[TP], **_: Any) -> None:
        owner.assign(tp.partition for tp in assigned if tp.topic == config.topic)
        if not opener or opener[0].done():  # (no I/O here: the task runs after this)
            opener[:] = [asyncio.ensure_future(open_stores())]

    @app.on_partitions_revoked.connect
    async def revoked(sender: Any, revoked: set[TP], **_: Any) -> None:
        mine = sorted(tp.partition for tp in revoked if tp.topic == config.topic)
        owner.revoke(mine)  # queued batches of these partitions are no longer applied
        await owner.run(owner.release, mine)

    @app.on_before_shutdown.connect
    async def shutting_down(sender: Any, **_: Any) -> None:
        """After the consumer stopped (SIGTERM, SIGINT): the stores are closed here."""
        await owner.run(owner.close)  # a later tick or batch finds nothing owned

    @app.timer(PUBLISH_EVERY_S)
    async def tend() -> None:
        if gathered.full(time.monotonic()):  # the records behind them never came
            await apply_gathered(False)
        await position(await owner.run(owner.tend))

    return app


def _warm_up() -> None:
    """DuckDB imports pandas the first time it is handed an Arrow table (about a second of
    CPU), and the envelope decoder compiles the whole event union on first use (~10-50 ms);
    done here, while the consumer group forms, the first batch does not wait for them."""
    import duckdb
    import pyarrow as pa

    decode_record(b"")  # builds the decoders (and parks the empty record it is given)
    conn = duckdb.connect()
    try:
        conn.register("_warm", pa.table({"a": [1]}))
    finally:
        conn.close()


def run_worker(broker_url: str, data: Path, exports: str | None = None) -> None:
    """Block running the worker until SIGINT/SIGTERM."""
    threading.Thread(target=_warm_up, name="warm-up", daemon=True).start()
    app = build_app(broker_url, data, exports=exports)
    worker = faust.Worker(app, loglevel="WARNING", quiet=True)
    worker.execute_from_commandline()
