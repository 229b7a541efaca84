"""The Kafka log: aiokafka behind the synchronous `EventLog` interface.

Why a private event loop: the projector and the embedded services are synchronous,
and aiokafka is asyncio only. Each `KafkaEventLog` runs its clients on its own loop in
a daemon thread and every method submits one coroutine there
(`asyncio.run_coroutine_threadsafe`) and waits for it with a bound, so callers never
see asyncio and any thread may call. Clients start on first use (no I/O in the
constructor); `close()` stops them and joins the thread, and a later call starts again.

Choices the test broker (Tansu) forced, each also right on Apache Kafka:
* No idempotent producer by default: Tansu rejects aiokafka's InitProducerId v0, so
  `enable_idempotence=True` cannot start there. Without it a retried produce may store
  a record twice; that is harmless because `dedups_on_append` is False anyway (Kafka
  cannot refuse a known event id) and the folds deduplicate by event id.
  `?idempotence=true` turns it on for a real Kafka.
* No consumer group: positions are the caller's (they live with the projections), so
  the reader assigns every partition and seeks.
* End offsets come from fetch responses, never from ListOffsets: Tansu's
  `end_offsets`/`seek_to_end` answer from the newest stored batch and are silently
  wrong. A fetch response's high watermark is right on both brokers. See `_Fresh`.
* `fetch_wait_ms` is 50 by default: Tansu never answers a 0 ms fetch with data.
* Log time is the record timestamp in microseconds: the broker's clock where the topic's
  `LogAppendTime` is honoured (Apache Kafka; we create topics with it), else one writer
  clock reading per append, never behind that writer's previous one (Tansu ignores
  the setting, so records from several writers need not be in time order there).
* A read starting past a partition's end raises Conflict (Kafka says
  OFFSET_OUT_OF_RANGE, Tansu says nothing): the projections are ahead of this log.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Coroutine, Iterator, Mapping, Sequence
from typing import Any, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError, MessageSizeTooLargeError, OffsetOutOfRangeError

from deardiary.schemas.envelope import LogPosition
from deardiary.schemas.errors import (
    Conflict,
    DearDiaryError,
    Internal,
    InvalidArgument,
    Unavailable,
)
from deardiary.services.log import LogRecord
from deardiary.services.log.kafka_admin import KafkaLogConfig, ensure_topic

__all__ = ["KafkaEventLog", "KafkaLogConfig"]

_log = logging.getLogger(__name__)
T = TypeVar("T")

_POLL_S = 0.02  # how often a waiting read looks at fetch progress


@contextlib.contextmanager
def _broker_errors(what: str) -> Iterator[None]:
    """Broker and network failures become Unavailable (retryable); ours pass through."""
    try:
        yield
    except DearDiaryError:
        raise
    except MessageSizeTooLargeError as exc:
        raise InvalidArgument(
            f"{what}: a record is larger than the log accepts ({exc})", {"retryable": False}
        ) from exc
    except (KafkaError, OSError, TimeoutError) as exc:
        raise Unavailable(f"{what}: Kafka is unavailable ({exc!r})", {"retryable": True}) from exc


def _micros(timestamp_ms: int) -> int:
    return max(int(timestamp_ms), 0) * 1000


class _Fresh:
    """Tells when each partition's high watermark is at least what it was at creation.

    aiokafka stamps a partition (`last_poll_timestamp`) when a fetch response for it is
    processed, and sends one fetch per broker at a time. So the first response stamped
    after creation was processed after it, and the next response with a later stamp
    was *requested* after it: its high watermark counts every record acknowledged
    before creation. Two stamps cost about two fetch waits; that is the price of
    being right on brokers whose ListOffsets is not.
    """

    def __init__(self, consumer: AIOKafkaConsumer, tps: Sequence[TopicPartition]) -> None:
        self._consumer = consumer
        self._since = int(time.time() * 1000)
        self._first: dict[TopicPartition, int] = {}
        self._waiting = set(tps)

    def done(self) -> bool:
        for tp in list(self._waiting):
            stamp = self._consumer.last_poll_timestamp(tp)
            if stamp is None or stamp <= self._since:
                continue
            if stamp > self._first.setdefault(tp, stamp):
                self._waiting.discard(tp)
        return not self._waiting


class _Session:
    """The clients of one KafkaEventLog; lives on, and is only touched from, its loop."""

    def __init__(self, config: KafkaLogConfig) -> None:
        self.config = config
        self._setup = asyncio.Lock()
        self._reading = asyncio.Lock()
        self._probing = asyncio.Lock()
        self._tps: list[TopicPartition] | None = None
        self._producer: AIOKafkaProducer | None = None
        self._consumers: dict[str, AIOKafkaConsumer] = {}
        self._known_end: dict[TopicPartition, int] = {}
        self._last_stamp = 0

    # -- setup ---------------------------------------------------------------------------

    async def _topic(self) -> list[TopicPartition]:
        if self._tps is None:
            found = await ensure_topic(self.config)
            self._tps = [TopicPartition(self.config.topic, p) for p in found]
        return self._tps

    async def partitions(self) -> list[int]:
        async with self._setup:
            return [tp.partition for tp in await self._topic()]

    async def _started(self, client: Any, what: str) -> Any:
        with _broker_errors(f"starting the Kafka {what}"):
            try:
                await client.start()
            except BaseException:
                with contextlib.suppress(Exception):
                    await client.stop()
                raise
        return client

    async def producer(self) -> AIOKafkaProducer:
        async with self._setup:
            if self._producer is None:
                await self._topic()
                c = self.config
                self._producer = await self._started(
                    AIOKafkaProducer(
                        bootstrap_servers=list(c.bootstrap),
                        client_id="deardiary-log",
                        acks="all",
                        enable_idempotence=c.idempotence,
                        request_timeout_ms=int(c.timeout_s * 1000),
                        max_request_size=c.max_request_bytes,
                        max_batch_size=min(256 << 10, c.max_request_bytes),
                        compression_type=c.compression,
                    ),
                    "producer",
                )
            return self._producer

    async def consumer(self, role: str) -> tuple[AIOKafkaConsumer, list[TopicPartition]]:
        """The `reader` (read) or the `prober` (end_offsets): separate, so measuring the end
        never drops what the reader prefetched; both assigned every partition, no group."""
        async with self._setup:
            tps = await self._topic()
            if role not in self._consumers:
                c = self.config
                consumer = await self._started(
                    AIOKafkaConsumer(
                        bootstrap_servers=list(c.bootstrap),
                        client_id="deardiary-log",
                        group_id=None,
                        enable_auto_commit=False,
                        auto_offset_reset="none",
                        fetch_max_wait_ms=c.fetch_wait_ms,
                        request_timeout_ms=int(c.timeout_s * 1000) + c.fetch_wait_ms,
                    ),
                    role,
                )
                consumer.assign(tps)
                for tp in tps:
                    consumer.seek(tp, 0)
                if role == "prober":
                    consumer.pause(*tps)  # fetches only while end_offsets runs
                self._consumers[role] = consumer
            return self._consumers[role], tps

    # -- the log ---------------------------------------------------------------------------

    async def append(self, records: Sequence[LogRecord]) -> list[LogPosition]:
        producer = await self.producer()
        topic = self.config.topic
        # One clock reading per append, never behind this writer's previous one, and sent
        # explicitly: aiokafka's acks give every record of a batch the batch's first
        # timestamp, so an implicit per-record stamp would not match what a read returns.
        # A broker honouring LogAppendTime replaces it with its own (in acks and reads).
        stamp = self._last_stamp = max(int(time.time() * 1000), self._last_stamp)
        futures: list[asyncio.Future[Any]] = []
        with _broker_errors(f"appending {len(records)} records to Kafka topic {topic!r}"):
            try:
                for r in records:
                    futures.append(
                        await producer.send(
                            topic,
                            value=r.payload,
                            key=r.key.encode(),
                            headers=[("event_id", r.event_id.encode())],
                            timestamp_ms=stamp,
                        )
                    )
                await asyncio.wait(futures, timeout=self.config.timeout_s)
            finally:
                for fut in futures:  # outcomes nobody waits for any more are still observed
                    fut.add_done_callback(lambda f: f.cancelled() or f.exception())
            for fut in futures:
                if not fut.done():
                    raise _no_answer("an append", self.config.timeout_s)
                failure = fut.exception()
                if failure is not None:
                    raise failure
            metas = [fut.result() for fut in futures]
        return [LogPosition(m.partition, m.offset, _micros(m.timestamp)) for m in metas]

    async def read(
        self, start: Mapping[int, int], max_records: int, timeout: float
    ) -> list[tuple[LogPosition, bytes]]:
        consumer, tps = await self.consumer("reader")
        loop = asyncio.get_running_loop()
        async with self._reading:
            with _broker_errors(f"reading Kafka topic {self.config.topic!r}"):
                for tp in tps:
                    want = start.get(tp.partition, 0)
                    if want < 0:
                        raise InvalidArgument(
                            f"negative offset {want} for partition {tp.partition}"
                        )
                    if await consumer.position(tp) != want:
                        consumer.seek(tp, want)  # drops what was prefetched for the old position
                fresh = _Fresh(consumer, tps)
                deadline = loop.time() + timeout
                give_up = deadline + self.config.timeout_s
                while True:
                    settled = fresh.done()
                    now = loop.time()
                    if settled and now >= deadline:
                        await self._check_within(consumer, tps)
                        return []
                    if not settled and now >= give_up:
                        raise _no_answer("a fetch", self.config.timeout_s)
                    wait = deadline - now if settled else _POLL_S
                    try:
                        got = await consumer.getmany(
                            *tps, timeout_ms=max(1, int(wait * 1000)), max_records=max_records
                        )
                    except OffsetOutOfRangeError as exc:
                        raise _behind(str(exc)) from exc
                    if got:
                        return [
                            (LogPosition(tp.partition, m.offset, _micros(m.timestamp)), m.value)
                            for tp in tps
                            for m in got.get(tp, ())
                        ]

    @staticmethod
    async def _check_within(consumer: AIOKafkaConsumer, tps: Sequence[TopicPartition]) -> None:
        """A start past the end is an error, not an empty answer: Apache Kafka says
        OFFSET_OUT_OF_RANGE, Tansu answers nothing. Either way the caller's offsets
        belong to records this log does not have (a wiped broker, another topic)."""
        for tp in tps:
            end = consumer.highwater(tp)
            position = await consumer.position(tp)
            if end is not None and position > end:
                raise _behind(f"partition {tp.partition} ends at {end}, asked for {position}")

    async def end_offsets(self) -> dict[int, int]:
        consumer, tps = await self.consumer("prober")
        loop = asyncio.get_running_loop()
        async with self._probing:
            with _broker_errors(f"reading the end of Kafka topic {self.config.topic!r}"):
                for tp in tps:
                    consumer.seek(tp, self._known_end.get(tp, 0))  # skip what was seen before
                consumer.resume(*tps)
                try:
                    fresh = _Fresh(consumer, tps)
                    give_up = loop.time() + self.config.timeout_s
                    while not fresh.done():
                        if loop.time() >= give_up:
                            raise _no_answer("a fetch", self.config.timeout_s)
                        await consumer.getmany(*tps, timeout_ms=int(_POLL_S * 1000))  # dropped
                finally:
                    consumer.pause(*tps)
                ends = {tp: int(consumer.highwater(tp)) for tp in tps}
        self._known_end.update(ends)
        return {tp.partition: end for tp, end in ends.items()}

    async def close(self) -> None:
        clients: list[Any] = [self._producer, *self._consumers.values()]
        self._producer, self._consumers = None, {}
        for client in clients:  # a producer flushes on stop: bounded, for a broker gone away
            if client is None:
                continue
            try:
                await asyncio.wait_for(client.stop(), self.config.timeout_s)
            except asyncio.CancelledError:
                # aiokafka's producer can leak its sender task's cancellation out of stop();
                # only a cancellation of this very task is passed on.
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise
            except Exception:
                _log.warning("a Kafka client did not stop cleanly", exc_info=True)


def _no_answer(what: str, timeout_s: float) -> Unavailable:
    return Unavailable(f"Kafka did not answer {what} within {timeout_s:g} s", {"retryable": True})


def _behind(detail: str) -> Conflict:
    return Conflict(
        f"the reader's offsets are past the end of the Kafka log ({detail}); was the log "
        "wiped (a Tansu restart loses everything) or is this another topic?"
    )


class _LoopThread:
    """A private asyncio loop in a daemon thread; synchronous callers submit coroutines."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_forever()
        finally:
            pending = asyncio.all_tasks(self.loop)
            for task in pending:
                task.cancel()
            self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            self.loop.close()

    def call(self, coro: Coroutine[Any, Any, T], timeout: float) -> T:
        if threading.current_thread() is self._thread:
            coro.close()
            raise Internal("a KafkaEventLog method was called from its own event loop")
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result(timeout)
        except TimeoutError as exc:
            future.cancel()
            raise _no_answer("a call", timeout) from exc
        except concurrent.futures.CancelledError as exc:
            raise Unavailable("the Kafka call was cancelled", {"retryable": True}) from exc

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join()


class KafkaEventLog:
    """An EventLog on a Kafka topic: key -> partition, offsets per partition."""

    dedups_on_append = False  # Kafka cannot refuse a known event id; the folds dedup

    def __init__(self, config: KafkaLogConfig) -> None:
        self.config = config
        self._guard = threading.Lock()
        self._runner: _LoopThread | None = None
        self._session: _Session | None = None

    @classmethod
    def from_url(cls, url: str) -> KafkaEventLog:
        return cls(KafkaLogConfig.from_url(url))

    def _call(self, work: Callable[[_Session], Coroutine[Any, Any, T]], extra_s: float = 0) -> T:
        with self._guard:
            if self._runner is None:
                self._runner = _LoopThread(f"deardiary-kafka-{self.config.topic}")
                self._session = _Session(self.config)
            runner, session = self._runner, self._session
        assert session is not None
        # Inner steps have their own bounds; this one only catches a wedged loop.
        return runner.call(work(session), 3 * self.config.timeout_s + extra_s + 5)

    def append(self, records: Sequence[LogRecord]) -> list[LogPosition]:
        """Produce every record (key = record.key, header event_id) and wait for all acks;
        positions come back in request order. A failure may leave some records stored:
        the caller retries the whole batch and the folds drop the repeats."""
        if not records:
            return []
        return self._call(lambda s: s.append(records))

    def read(
        self, start: Mapping[int, int], max_records: int, timeout: float = 0.0
    ) -> list[tuple[LogPosition, bytes]]:
        """Even with timeout 0 this waits for a fetch answer newer than the call (about two
        fetch waits when nothing is there), so records already acknowledged are seen."""
        if max_records <= 0:
            return []
        return self._call(lambda s: s.read(start, max_records, timeout), extra_s=timeout)

    def partitions(self) -> list[int]:
        return self._call(lambda s: s.partitions())

    def end_offsets(self) -> dict[int, int]:
        return self._call(lambda s: s.end_offsets())

    def close(self) -> None:
        with self._guard:
            runner, session = self._runner, self._session
            self._runner = self._session = None
        if runner is None or session is None:
            return
        try:
            runner.call(session.close(), 3 * self.config.timeout_s + 5)
        except DearDiaryError:
            _log.warning("the Kafka log did not close cleanly", exc_info=True)
        finally:
            runner.stop()
