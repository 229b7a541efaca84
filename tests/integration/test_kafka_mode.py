"""Kafka mode end to end on a real Kafka-protocol broker: SDK -> Kafka -> faust workers
-> partition stores -> query service; two workers, kill -9, an outage, replay."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import deardiary as dd
from deardiary.schemas.codec import decode_record
from deardiary.schemas.envelope import Envelope
from deardiary.services.embedded import EmbeddedStore
from deardiary.services.kafka_mode.exports_view import ExportsView
from deardiary.services.log.kafka import KafkaEventLog
from tests.e2e.serve_process import serve
from tests.kafka_broker import fresh_topic, kafka_bootstrap_server, tansu_broker  # noqa: F401
from tests.ports import free_port
from tests.store_snapshot import snapshot
from tests.tcp_proxy import TcpProxy

pytestmark = pytest.mark.kafka
PARTITIONS = 4


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "deardiary.services.cli", *args]


class Workers:
    def __init__(self, broker: str, data: Path) -> None:
        self.broker, self.data = broker, data
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            _cli("worker", "--broker", self.broker, "--data", str(self.data)),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.procs.append(proc)
        return proc

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture
def kafka(kafka_bootstrap_server: str, tmp_path: Path) -> Iterator[tuple[str, Path, Workers]]:  # noqa: F811
    broker = f"kafka://{kafka_bootstrap_server}/{fresh_topic()}?partitions={PARTITIONS}"
    KafkaEventLog.from_url(broker).partitions()  # create the topic before anyone uses it
    workers = Workers(broker, tmp_path / "data")
    try:
        yield broker, tmp_path, workers
    finally:
        workers.stop()


def _eventually(check: Callable[[], Any], timeout: float = 90.0) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.3)
    raise AssertionError(f"not reached within {timeout}s; last: {last!r}")


def _log_sweep(broker: str, spool: Path, trials: int, points: int, tag: str) -> set[str]:
    """Log through Kafka; returns the acknowledged event ids (read back from the topic)."""
    c = dd.connect(broker, spool_dir=spool)
    for t in range(trials):
        with c.start_iteration(
            project="k", experiment=tag, name=f"{tag}-{t}", capture_env=False
        ) as it:
            for step in range(points):
                it.log_metrics({"loss": 1.0 / (step + 1), "acc": float(step)})
    c.flush(timeout=120)
    c.close()
    return set()


def _topic_event_ids(broker: str) -> set[str]:
    log = KafkaEventLog.from_url(broker)
    ids: set[str] = set()
    offsets: dict[int, int] = {}
    end = log.end_offsets()
    while any(offsets.get(p, 0) < o for p, o in end.items()):
        for pos, payload in log.read(offsets, 5000, timeout=1.0):
            offsets[pos.partition] = pos.offset + 1
            env = decode_record(payload)
            assert isinstance(env, Envelope)
            ids.add(env.event_id)
    log.close()
    return ids


def _projected(data: Path) -> tuple[int, set[str]]:
    view = ExportsView(data)
    try:
        c = view.reader()
        points = c.execute("SELECT count(*) FROM metrics").fetchall()[0][0]
        ids = {r[0] for r in c.execute("SELECT event_id FROM events").fetchall()}
        return int(points), ids
    finally:
        view.close()


def test_two_workers_share_partitions_and_serve_answers(kafka: tuple[str, Path, Workers]) -> None:
    broker, tmp, workers = kafka
    workers.start()
    workers.start()
    _log_sweep(broker, tmp / "spool", trials=6, points=100, tag="two")
    acked = _topic_event_ids(broker)
    _eventually(lambda: _projected(tmp / "data") == (6 * 100 * 2, acked))

    def published() -> list[Path]:  # a partition with no records is published on a timer
        parts = (tmp / "data" / "partitions").iterdir()
        return [p for p in parts if (p / "manifest.json").exists()]

    assert len(_eventually(lambda: len(published()) == PARTITIONS and published())) == PARTITIONS
    with serve(tmp / "data", free_port(), "--broker", broker) as url:
        rows = httpx.get(f"{url}/api/v1/iterations", params={"limit": 50}).json()
        assert rows["total"] == 6
        sql = httpx.get(f"{url}/api/v1/sql", params={"q": "SELECT count(*) AS n FROM metrics"})
        assert sql.json()["items"] == [{"n": 1200}]
        ready = httpx.get(f"{url}/readyz")  # the log's end against the published offsets
        assert ready.status_code == 200 and ready.json()["lag_events"] == 0, ready.text
        via_gateway = dd.connect(url, spool_dir=tmp / "spool-http")
        with via_gateway.start_iteration(project="k", experiment="http", capture_env=False) as it:
            it.log_metric("loss", 0.25)
        via_gateway.flush()
        _eventually(
            lambda: (
                httpx.get(
                    f"{url}/api/v1/sql",
                    params={
                        "q": f"SELECT count(*) AS n FROM metrics WHERE iteration_id = '{it.id}'"
                    },
                ).json()["items"]
                == [{"n": 1}]
            )
        )
        via_gateway.close()


def test_kill_9_of_a_worker_loses_and_duplicates_nothing(kafka: tuple[str, Path, Workers]) -> None:
    broker, tmp, workers = kafka
    victim = workers.start()
    _log_sweep(broker, tmp / "spool", trials=8, points=250, tag="kill")
    _eventually(lambda: _projected(tmp / "data")[0] > 0)
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=30)
    _log_sweep(broker, tmp / "spool", trials=4, points=250, tag="after")
    workers.start()
    acked = _topic_event_ids(broker)
    points, _ = _eventually(lambda: (r := _projected(tmp / "data"))[1] == acked and r, timeout=120)
    assert points == 12 * 250 * 2  # no point lost, none twice


def test_an_outage_between_client_and_broker_loses_nothing(tmp_path: Path) -> None:
    proxy_port = free_port()
    with tansu_broker(tmp_path, advertised_port=proxy_port) as broker:
        proxy = TcpProxy(proxy_port, broker.port)
        proxy.start()
        url = f"kafka://127.0.0.1:{proxy_port}/{fresh_topic()}?partitions=2&timeout_s=3"
        KafkaEventLog.from_url(url).partitions()
        c = dd.connect(url, spool_dir=tmp_path / "spool")
        with c.start_iteration(project="k", experiment="outage", capture_env=False) as it:
            for step in range(500):
                it.log_metric("loss", float(step))
            c.flush(timeout=60)
            proxy.cut()  # the broker is unreachable; logging goes on without blocking
            for step in range(500, 1500):
                it.log_metric("loss", float(step))
            with pytest.raises(dd.ClientError):
                c.flush(timeout=2)
            proxy.start()
        c.flush(timeout=120)
        c.close()
        log = KafkaEventLog.from_url(url)
        steps: list[float] = []
        offsets: dict[int, int] = {}
        seen: set[str] = set()
        for _ in range(50):
            batch = log.read(offsets, 5000, timeout=0.5)
            if not batch:
                break
            for pos, payload in batch:
                offsets[pos.partition] = pos.offset + 1
                env = decode_record(payload)
                assert isinstance(env, Envelope)
                if env.event_id in seen:
                    continue  # a resend after the cut: the folds drop it the same way
                seen.add(env.event_id)
                body = env.body
                if hasattr(body, "values"):
                    import numpy as np

                    steps += np.frombuffer(body.values, "<f8").tolist()
        log.close()
        proxy.stop()
        assert sorted(steps) == [float(s) for s in range(1500)]


def test_replay_from_kafka_equals_the_live_projections(kafka: tuple[str, Path, Workers]) -> None:
    broker, tmp, workers = kafka
    workers.start()
    _log_sweep(broker, tmp / "spool", trials=5, points=120, tag="replay")
    acked = _topic_event_ids(broker)
    _eventually(lambda: _projected(tmp / "data")[1] == acked)
    replayed = subprocess.run(
        _cli("replay", "--broker", broker, "--into", str(tmp / "r")),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert replayed.returncode == 0, replayed.stderr
    view = ExportsView(tmp / "data")
    live = snapshot(view.reader())
    view.close()
    with EmbeddedStore(tmp / "r", create_log=False) as store:
        rebuilt = snapshot(store.store.reader())
    for name in ("projects", "experiments", "iterations", "params", "last_metrics"):
        assert sorted(map(repr, rebuilt[name])) == sorted(map(repr, live[name])), name
    assert sorted(map(repr, rebuilt["metrics"])) == sorted(map(repr, live["metrics"]))


def test_a_burst_of_points_fits_in_kafka_records(kafka: tuple[str, Path, Workers]) -> None:
    """Points logged faster than the shipper drains become envelopes that each fit in the
    broker's default 1 MiB record limit (found by the benchmark: 50,000 points did not)."""
    broker, tmp, _ = kafka
    c = dd.connect(broker, spool_dir=tmp / "spool", flush_interval=60.0)
    with c.start_iteration(project="k", experiment="burst", capture_env=False) as it:
        for step in range(30_000):
            for key in ("loss", "acc", "lr", "grad_norm"):
                it.log_metric(key, 1.0 / (step + 1), step)
    c.flush(timeout=120)  # raises when the log refused a record
    c.close()
    log = KafkaEventLog.from_url(broker)
    points, offsets, end = 0, dict[int, int](), log.end_offsets()
    while any(offsets.get(p, 0) < o for p, o in end.items()):
        for pos, payload in log.read(offsets, 5000, timeout=1.0):
            offsets[pos.partition] = pos.offset + 1
            env = decode_record(payload)
            assert isinstance(env, Envelope)
            points += getattr(env.body, "num_points", 0)
    log.close()
    assert points == 120_000
