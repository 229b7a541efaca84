"""KafkaEventLog against a real Kafka-protocol broker (Tansu, or DEARDIARY_TEST_KAFKA).

Every test writes to a topic of its own, so they share one broker and stay independent.
Besides the EventLog contract this checks what Tansu gets silently wrong when asked
the usual way: the end offsets right after appends.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from deardiary.schemas.envelope import LogPosition
from deardiary.schemas.errors import Conflict, InvalidArgument, Unavailable
from deardiary.services.log import EventLog, LogRecord, open_log
from deardiary.services.log.kafka import KafkaEventLog, KafkaLogConfig
from tests.kafka_broker import fresh_topic, kafka_bootstrap_server, tansu_broker  # noqa: F401
from tests.ports import free_port

MakeLog = Callable[..., KafkaEventLog]


@pytest.fixture
def make_log(kafka_bootstrap_server: str) -> Iterator[MakeLog]:  # noqa: F811
    """`make_log(topic=None, **url_params)`: a log on the test broker, closed afterwards."""
    opened: list[KafkaEventLog] = []

    def make(topic: str | None = None, **params: Any) -> KafkaEventLog:
        query = "&".join(f"{k}={v}" for k, v in {"timeout_s": 10, **params}.items())
        log = KafkaEventLog.from_url(
            f"kafka://{kafka_bootstrap_server}/{topic or fresh_topic()}?{query}"
        )
        opened.append(log)
        return log

    yield make
    for log in opened:
        log.close()


def rec(key: str, n: int) -> LogRecord:
    return LogRecord(
        event_id=f"{key}-{n}-{uuid.uuid4().hex}", key=key, payload=f"{key}:{n}".encode()
    )


def read_until(
    log: EventLog, ends: Mapping[int, int], batch: int = 7
) -> list[tuple[LogPosition, bytes]]:
    """Everything up to `ends`, in small reads (each resumes where the last one stopped)."""
    have: dict[int, int] = {}
    out: list[tuple[LogPosition, bytes]] = []
    while any(have.get(p, 0) < end for p, end in ends.items()):
        got = log.read(have, batch, timeout=5.0)
        assert got, f"no records at {have}, expected up to {dict(ends)}"
        for pos, payload in got:
            assert pos.offset == have.get(pos.partition, 0), "a gap or a repeat in a partition"
            have[pos.partition] = pos.offset + 1
            out.append((pos, payload))
    return out


# -- the EventLog contract -------------------------------------------------------------------


@pytest.mark.kafka
def test_append_answers_dense_positions_in_request_order_and_read_returns_them(
    make_log: MakeLog,
) -> None:
    log = make_log(partitions=4)
    batch = [rec(f"iter-{i % 5}", i) for i in range(40)]
    positions = log.append(batch)

    assert len(positions) == len(batch)
    per_partition: dict[int, list[int]] = {}
    for pos in positions:
        per_partition.setdefault(pos.partition, []).append(pos.offset)
        assert pos.log_time > 1_600_000_000_000_000  # microseconds, not milliseconds
    for offsets in per_partition.values():
        assert offsets == list(range(len(offsets)))  # request order within a partition
    assert log.end_offsets() == {p: len(per_partition.get(p, [])) for p in range(4)}

    read = read_until(log, log.end_offsets())
    assert sorted(read) == sorted(zip(positions, [r.payload for r in batch], strict=True))


@pytest.mark.kafka
def test_append_of_nothing_is_nothing(make_log: MakeLog) -> None:
    log = make_log(partitions=2)
    assert log.append([]) == []
    assert log.end_offsets() == {0: 0, 1: 0}


@pytest.mark.kafka
def test_read_on_an_empty_log_returns_nothing_even_without_waiting(make_log: MakeLog) -> None:
    log = make_log(partitions=3)
    assert log.read({}, 100, timeout=0) == []
    assert log.read({0: 0, 1: 0, 2: 0}, 100, timeout=0.2) == []


@pytest.mark.kafka
def test_read_without_waiting_sees_what_was_just_acknowledged(make_log: MakeLog) -> None:
    """The projector polls with timeout 0 and treats an empty answer as 'caught up'."""
    log = make_log(partitions=2)
    for n in range(5):
        [pos] = log.append([rec("run-a", n)])
        got = log.read({pos.partition: pos.offset}, 10, timeout=0)
        assert [p for p, _ in got] == [pos]


@pytest.mark.kafka
def test_read_honours_max_records_and_resumes_in_offset_order(make_log: MakeLog) -> None:
    log = make_log(partitions=1)
    positions = log.append([rec("k", n) for n in range(25)])
    first = log.read({}, 10)
    assert [p.offset for p, _ in first] == list(range(10))
    rest = log.read({0: 10}, 100)
    assert [p.offset for p, _ in rest] == list(range(10, 25))
    assert [p for p, _ in first + rest] == positions


@pytest.mark.kafka
def test_read_from_the_middle_of_a_partition_and_back_again(make_log: MakeLog) -> None:
    log = make_log(partitions=1)
    batch = [rec("k", n) for n in range(12)]
    positions = log.append(batch)

    middle = log.read({0: 7}, 100)
    assert [(p, b) for p, b in middle] == [(positions[n], batch[n].payload) for n in range(7, 12)]
    # Going back (a replay, a projector that did not apply the whole batch) works too.
    again = log.read({0: 3}, 2)
    assert [(p, b) for p, b in again] == [(positions[n], batch[n].payload) for n in (3, 4)]


@pytest.mark.kafka
def test_read_waits_for_a_record_appended_meanwhile_by_another_writer(make_log: MakeLog) -> None:
    topic = fresh_topic()
    reader, writer = make_log(topic, partitions=1), make_log(topic, partitions=1)
    assert reader.read({}, 10, timeout=0) == []  # starts the reader before the append

    appended: list[LogPosition] = []
    later = threading.Timer(0.3, lambda: appended.extend(writer.append([rec("k", 1)])))
    later.start()
    try:
        got = reader.read({}, 10, timeout=20)
    finally:
        later.join()
    assert [p for p, _ in got] == appended


@pytest.mark.kafka
def test_end_offsets_are_right_right_after_appends(make_log: MakeLog) -> None:
    """Tansu answers ListOffsets (end_offsets/seek_to_end) from its newest stored batch,
    so after several batches that answer is short; ours must count every record."""
    log = make_log(partitions=3)
    assert log.end_offsets() == {0: 0, 1: 0, 2: 0}
    expected = {0: 0, 1: 0, 2: 0}
    for round_ in range(6):
        for pos in log.append([rec(f"key-{i}", round_) for i in range(10)]):
            expected[pos.partition] = max(expected[pos.partition], pos.offset + 1)
        assert log.end_offsets() == expected
    assert sum(expected.values()) == 60


@pytest.mark.kafka
def test_log_time_never_goes_back_within_a_partition_and_reads_match_acks(
    make_log: MakeLog,
) -> None:
    """As-of-time rebuilds stop at the first record past a time, partition by partition."""
    log = make_log(partitions=2)
    acked = [pos for n in range(30) for pos in log.append([rec(f"k{n % 4}", n), rec("k9", n)])]
    read = [pos for pos, _ in read_until(log, log.end_offsets())]
    assert sorted(read) == sorted(acked)
    for partition in (0, 1):
        times = [p.log_time for p in sorted(read) if p.partition == partition]
        assert times == sorted(times)


@pytest.mark.kafka
def test_a_known_event_id_is_stored_again_and_the_log_says_it_does_not_dedup(
    make_log: MakeLog,
) -> None:
    log = make_log(partitions=1)
    record = rec("k", 1)
    first, second = log.append([record]) + log.append([record])
    assert (first.offset, second.offset) == (0, 1)
    assert KafkaEventLog.dedups_on_append is False
    assert [b for _, b in log.read({}, 10)] == [record.payload, record.payload]


@pytest.mark.kafka
def test_concurrent_appends_from_many_threads_are_all_stored_once(make_log: MakeLog) -> None:
    log = make_log(partitions=4)
    results: list[list[LogPosition]] = []
    lock = threading.Lock()

    def writer(w: int) -> None:
        for n in range(20):
            got = log.append([rec(f"w{w}-{n % 3}", n), rec(f"w{w}-x", n)])
            with lock:
                results.append(got)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    positions = [(p.partition, p.offset) for batch in results for p in batch]
    assert len(positions) == len(set(positions)) == 160
    assert sum(log.end_offsets().values()) == 160


# -- Kafka specifics ---------------------------------------------------------------------------


@pytest.mark.kafka
def test_keys_route_to_stable_partitions_across_appends_and_logs(make_log: MakeLog) -> None:
    topic = fresh_topic()
    one, two = make_log(topic, partitions=8), make_log(topic, partitions=8)
    keys = [f"iteration-{i:03d}" for i in range(64)]
    first = one.append([rec(k, 0) for k in keys])
    second = two.append([rec(k, 1) for k in reversed(keys)])[::-1]
    third = one.append([rec(k, 2) for k in keys])

    for a, b, c in zip(first, second, third, strict=True):
        assert a.partition == b.partition == c.partition
    assert len({p.partition for p in first}) >= 4


@pytest.mark.kafka
def test_a_topic_is_created_with_the_requested_partitions_and_then_kept(
    make_log: MakeLog,
) -> None:
    topic = fresh_topic()
    assert make_log(topic, partitions=3).partitions() == [0, 1, 2]
    # An existing topic is used as it is: its partition count fixes key -> partition.
    later = make_log(topic, partitions=8)
    assert later.partitions() == [0, 1, 2]
    assert set(later.end_offsets()) == {0, 1, 2}


@pytest.mark.kafka
def test_a_second_log_on_the_same_topic_sees_the_first_ones_records(make_log: MakeLog) -> None:
    topic = fresh_topic()
    first, second = make_log(topic, partitions=2), make_log(topic, partitions=2)
    batch = [rec(f"run-{i}", i) for i in range(10)]
    positions = first.append(batch)

    assert second.end_offsets() == first.end_offsets()
    seen = read_until(second, second.end_offsets())
    assert sorted(seen) == sorted(zip(positions, [r.payload for r in batch], strict=True))
    # ... and keeps seeing what the first one appends afterwards.
    [more] = first.append([rec("run-0", 99)])
    assert second.read({more.partition: more.offset}, 10) == [(more, b"run-0:99")]


@pytest.mark.kafka
def test_records_carry_their_key_and_event_id_header(
    make_log: MakeLog,
    kafka_bootstrap_server: str,  # noqa: F811
) -> None:
    """The faust worker consumes the topic directly; key and header are its contract."""
    topic = fresh_topic()
    record = rec("iteration-7", 1)
    [pos] = make_log(topic, partitions=2).append([record])

    async def fetch() -> Any:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=kafka_bootstrap_server, group_id=None, fetch_max_wait_ms=50
        )
        await consumer.start()
        try:
            tp = TopicPartition(topic, pos.partition)
            consumer.assign([tp])
            consumer.seek(tp, pos.offset)
            return await consumer.getone()
        finally:
            await consumer.stop()

    got = asyncio.run(asyncio.wait_for(fetch(), 20))
    assert (got.key, got.value) == (b"iteration-7", record.payload)
    assert dict(got.headers) == {"event_id": record.event_id.encode()}
    assert got.timestamp * 1000 == pos.log_time


@pytest.mark.kafka
def test_offsets_past_the_end_are_a_conflict_not_an_endless_empty_answer(
    make_log: MakeLog,
) -> None:
    """A projection ahead of its log means the log was wiped (a Tansu restart) or swapped."""
    log = make_log(partitions=1)
    log.append([rec("k", n) for n in range(3)])
    assert log.read({0: 3}, 10) == []  # the end itself is fine
    with pytest.raises(Conflict):
        log.read({0: 50}, 10)


@pytest.mark.kafka
def test_close_is_idempotent_and_a_closed_log_starts_again_on_use(make_log: MakeLog) -> None:
    log = make_log(partitions=1)
    [pos] = log.append([rec("k", 0)])
    log.close()
    log.close()
    assert log.read({}, 10) == [(pos, b"k:0")]
    assert log.end_offsets() == {0: 1}


@pytest.mark.kafka
def test_open_log_picks_the_kafka_adapter(kafka_bootstrap_server: str) -> None:  # noqa: F811
    log = open_log(f"kafka://{kafka_bootstrap_server}/{fresh_topic()}?partitions=2")
    try:
        assert isinstance(log, KafkaEventLog)
        assert log.partitions() == [0, 1]
    finally:
        log.close()


def test_an_unreachable_broker_is_unavailable_not_a_hang() -> None:
    log = KafkaEventLog.from_url(f"kafka://127.0.0.1:{free_port()}/t?timeout_s=1")
    try:
        for call in (lambda: log.append([rec("k", 0)]), log.end_offsets, log.partitions):
            with pytest.raises(Unavailable) as caught:
                call()
            assert caught.value.details.get("retryable") is True
    finally:
        log.close()


@pytest.mark.kafka
def test_a_broker_gone_mid_life_is_unavailable_within_the_bound(tmp_path: Path) -> None:
    with tansu_broker(tmp_path) as broker:
        log = KafkaEventLog.from_url(
            f"kafka://{broker.bootstrap}/{fresh_topic()}?partitions=1&timeout_s=1"
        )
        try:
            [pos] = log.append([rec("k", 0)])
            assert log.end_offsets() == {0: 1}
            assert log.read({}, 10) == [(pos, b"k:0")]
            broker.kill()
            calls = (
                lambda: log.append([rec("k", 1)]),
                lambda: log.read({0: 1}, 10),
                log.end_offsets,
            )
            for call in calls:
                with pytest.raises(Unavailable):
                    call()
        finally:
            log.close()


def test_a_log_unused_closes_without_touching_the_network() -> None:
    log = KafkaEventLog.from_url(f"kafka://127.0.0.1:{free_port()}/t")
    log.close()
    assert log.read({}, 0) == [] and log.append([]) == []


# -- URLs ------------------------------------------------------------------------------------------


def test_url_defaults_and_options() -> None:
    assert KafkaLogConfig.from_url("kafka://broker") == KafkaLogConfig(bootstrap=("broker:9092",))
    config = KafkaLogConfig.from_url(
        "kafka://a:1,b:2/my.topic?partitions=3&idempotence=true&timeout_s=2.5&compression=gzip"
    )
    assert config.bootstrap == ("a:1", "b:2")
    assert (config.topic, config.partitions, config.idempotence) == ("my.topic", 3, True)
    assert (config.timeout_s, config.compression) == (2.5, "gzip")
    assert KafkaLogConfig.from_url("kafka://a:1/").topic == "deardiary.events"
    assert KafkaLogConfig.from_url("kafka://a:1").partitions == 8


@pytest.mark.parametrize(
    "url",
    [
        "kafka:///topic",
        "kafka://a:1/bad topic",
        "kafka://a:1/t?partitions=0",
        "kafka://a:1/t?partitions=many",
        "kafka://a:1/t?idempotence=maybe",
        "kafka://a:1/t?partitons=3",
        "kafka://a:1/t?compression=zip",
    ],
)
def test_bad_urls_are_invalid_arguments(url: str) -> None:
    with pytest.raises(InvalidArgument):
        KafkaLogConfig.from_url(url)
