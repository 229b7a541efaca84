"""Kafka mode under faults, short versions (the long ones are in bench/kafka_workloads.py):
read-your-writes through a worker restart and its bounded, clear failure; a rebalance
storm with a stalled worker while clients log; the broker connection cut under load.
Each ends with lag 0, every acknowledged event projected once and every point once."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import deardiary as dd
from deardiary.services.http import start_in_thread
from deardiary.services.kafka_mode.server import KafkaServer
from deardiary.services.log.kafka import KafkaEventLog
from deardiary.services.settings import ServerSettings
from tests.integration.test_kafka_mode import (
    _assert_exactly,
    _topic_event_ids,
    _wait_caught_up,
)
from tests.kafka_broker import Workers, fresh_topic, kafka_bootstrap_server, tansu_broker  # noqa: F401
from tests.ports import free_port
from tests.tcp_proxy import TcpProxy

PARTITIONS = 4


class Loggers:
    """Client threads logging small trials through Kafka until stopped; each counts the
    points it logged (every one acknowledged once `stop` returns)."""

    def __init__(self, broker: str, spool: Path, clients: int = 2) -> None:
        self.broker, self.spool = broker, spool
        self.points = [0] * clients
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, args=(n,), daemon=True) for n in range(clients)
        ]

    def start(self) -> None:
        for t in self._threads:
            t.start()

    def _run(self, n: int) -> None:
        try:
            c = dd.connect(self.broker, spool_dir=self.spool / f"c{n}")
            trial = 0
            while not self._stop.is_set():
                with c.start_iteration(
                    project="faults", experiment=f"c{n}", name=f"t{trial}", capture_env=False
                ) as it:
                    for step in range(200):
                        it.log_metrics({"loss": 1.0 / (step + 1), "acc": float(step)})
                self.points[n] += 400
                trial += 1
                time.sleep(0.05)
            c.flush(timeout=180)
            c.close()
        except BaseException as exc:
            self.errors.append(exc)

    def stop(self) -> int:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=240)
        assert not self.errors, self.errors
        return sum(self.points)


@pytest.fixture
def kafka(kafka_bootstrap_server: str, tmp_path: Path) -> Iterator[tuple[str, Path, Workers]]:  # noqa: F811
    broker = f"kafka://{kafka_bootstrap_server}/{fresh_topic()}?partitions={PARTITIONS}"
    KafkaEventLog.from_url(broker).partitions()
    workers = Workers(broker, tmp_path / "data")
    try:
        yield broker, tmp_path, workers
    finally:
        workers.stop()


@pytest.mark.kafka
def test_reads_wait_for_the_writes_they_name_through_a_worker_restart(
    kafka: tuple[str, Path, Workers],
) -> None:
    """A kafka:// client's reads carry the offsets its producer was acknowledged, and the
    query service answers only once the workers published them -- also when the worker
    was stopped in between and another one took over. With no worker, the read fails
    after DEARDIARY_MAX_WAIT_S with a clear, retryable error."""
    broker, tmp, workers = kafka
    server = KafkaServer(broker, tmp / "data", settings=ServerSettings(max_wait_s=60))
    running = start_in_thread(server.app())
    try:
        first = workers.start()
        workers.start()  # joins the group now; takes over when the first one stops
        c = dd.connect(broker, query_url=running.url, spool_dir=tmp / "spool")
        ids = []
        for round_ in range(3):
            with c.start_iteration(project="ryw", experiment="e", capture_env=False) as it:
                it.log_metrics({"loss": float(round_)})
            ids.append(it.id)
            c.flush(timeout=60)
            got = c.sql(f"SELECT count(*) AS n FROM metrics WHERE iteration_id = '{it.id}'")
            assert got.to_pylist() == [{"n": 1}]  # at once: the read waited for the write
            if round_ == 0:
                workers.stop_one(first)  # the next reads need the one taking over
        assert c.sql("SELECT count(*) AS n FROM iterations").to_pylist() == [{"n": 3}]
        workers.stop()
        with c.start_iteration(project="ryw", experiment="e", capture_env=False) as it:
            it.log_metrics({"loss": 9.0})
        c.flush(timeout=60)
        c.close()
        hurried = KafkaServer(broker, tmp / "data", settings=ServerSettings(max_wait_s=1))
        quick = start_in_thread(hurried.app())
        try:
            log = KafkaEventLog.from_url(broker)
            end = log.end_offsets()  # the last record included
            log.close()
            r = httpx.get(
                f"{quick.url}/api/v1/iterations",
                params={"min_offset": ",".join(f"{p}:{o - 1}" for p, o in end.items() if o)},
                timeout=30,
            )
            assert r.status_code == 503, r.text
            error = r.json()["error"]
            assert error["code"] == "UNAVAILABLE" and error["details"]["retryable"] is True
            assert "did not reach" in error["message"], error
        finally:
            quick.stop()
            hurried.close()
    finally:
        running.stop()
        server.close()


@pytest.mark.kafka
def test_a_rebalance_storm_with_a_stalled_worker_loses_and_duplicates_nothing(
    kafka: tuple[str, Path, Workers],
) -> None:
    """Clients log while workers join and leave every few seconds and one stalls past the
    group's session timeout (SIGSTOP for 7.5 s > 6 s, then SIGCONT: it comes back expelled,
    holding stores the others need). At the end: lag 0, every point exactly once."""
    broker, tmp, workers = kafka
    loggers = Loggers(broker, tmp / "spool")
    steady = workers.start()
    loggers.start()
    time.sleep(2)
    joined = workers.start()
    time.sleep(3)
    workers.stop_one(joined)  # leaves
    third = workers.start()  # joins
    time.sleep(3)
    third.send_signal(signal.SIGSTOP)  # stalls past the session timeout
    time.sleep(7.5)
    third.send_signal(signal.SIGCONT)
    time.sleep(2)
    workers.stop_one(steady)  # leaves while the stalled one recovers: it takes all
    points = loggers.stop()
    _wait_caught_up(broker, tmp / "data", workers, timeout=180)
    _assert_exactly(tmp / "data", _topic_event_ids(broker), points)


@pytest.mark.kafka
def test_a_cut_broker_connection_under_load_loses_and_duplicates_nothing(
    tmp_path: Path,
) -> None:
    """Every client and worker reaches the broker through a proxy, which is cut for a few
    seconds while clients log: producers spool, workers retry; nothing is lost or doubled."""
    proxy_port = free_port()
    with tansu_broker(tmp_path, advertised_port=proxy_port) as broker_proc:
        proxy = TcpProxy(proxy_port, broker_proc.port)
        proxy.start()
        broker = f"kafka://127.0.0.1:{proxy_port}/{fresh_topic()}?partitions=2&timeout_s=3"
        KafkaEventLog.from_url(broker).partitions()
        workers = Workers(broker, tmp_path / "data")
        try:
            workers.start()
            _wait_caught_up(broker, tmp_path / "data", workers)  # running, every partition
            loggers = Loggers(broker, tmp_path / "spool")
            loggers.start()
            time.sleep(2)
            proxy.cut()
            time.sleep(6)
            proxy.start()
            time.sleep(1)
            points = loggers.stop()
            _wait_caught_up(broker, tmp_path / "data", workers, timeout=180)
            _assert_exactly(tmp_path / "data", _topic_event_ids(broker), points)
        finally:
            workers.stop()
            proxy.stop()
