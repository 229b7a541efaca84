"""Kafka mode end to end on a real Kafka-protocol broker: SDK -> Kafka -> faust workers
-> partition stores -> query service; two workers, entity changes on model versions and
artifacts, replay, kill -9, an outage. Also the worker's partition ownership without a
broker: what it applies, where it seeks.

The tests that need running workers share one `cluster` (a topic, two workers, `serve
--broker`) in file order -- each checks the whole topic exactly once at its end, and the
kill -9 comes last -- so the module pays for the workers' start and group join once."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka.partitioner import DefaultPartitioner
from faust.types import TP

import deardiary as dd
from deardiary.projections.fold import Record
from deardiary.schemas import ids
from deardiary.schemas.codec import decode_record
from deardiary.schemas.envelope import Envelope
from deardiary.services.embedded import EmbeddedStore
from deardiary.services.kafka_mode import worker
from deardiary.services.kafka_mode.exports_view import ExportsView
from deardiary.services.kafka_mode.partitions import PartitionStore, read_manifests
from deardiary.services.kafka_mode.worker import PartitionOwner
from deardiary.services.log.kafka import KafkaEventLog
from tests.builders import metrics, records, sweep_start
from tests.e2e.serve_process import serve
from tests.kafka_broker import (  # noqa: F401
    Workers,
    cli,
    fresh_topic,
    kafka_bootstrap_server,
    tansu_broker,
)
from tests.ports import free_port
from tests.store_snapshot import snapshot
from tests.tcp_proxy import TcpProxy

PARTITIONS = 4
# A busy machine, simulated: every partition store a worker opens takes this long. Four of
# them take longer than the group's 6 s session, which the old worker spent opening them
# inside its rebalance callback (no heartbeats there), so it was expelled.
SLOW_OPEN_S = 2.0


def _cli(*args: str) -> list[str]:
    return cli(*args)


@pytest.fixture
def kafka(kafka_bootstrap_server: str, tmp_path: Path) -> Iterator[tuple[str, Path, Workers]]:  # noqa: F811
    broker = f"kafka://{kafka_bootstrap_server}/{fresh_topic()}?partitions={PARTITIONS}"
    KafkaEventLog.from_url(broker).partitions()  # create the topic before anyone uses it
    workers = Workers(broker, tmp_path / "data")
    try:
        yield broker, tmp_path, workers
    finally:
        workers.stop()


@dataclass
class Cluster:
    """One topic, two workers (each store takes SLOW_OPEN_S to open: a busy machine) and
    `serve --broker` at `url`, shared by the module's tests in file order."""

    broker: str
    tmp: Path
    workers: Workers
    url: str
    points: int = 0
    """Every metric point logged on the topic so far."""

    @property
    def data(self) -> Path:
        return self.tmp / "data"

    def exactly_once(self) -> None:
        """Lag 0, then every event of the topic projected once, every point once."""
        _wait_caught_up(self.broker, self.data, self.workers)
        _assert_exactly(self.data, _topic_event_ids(self.broker), self.points)


@pytest.fixture(scope="module")
def cluster(
    kafka_bootstrap_server: str,  # noqa: F811
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Cluster]:
    tmp = tmp_path_factory.mktemp("kafka-mode")
    broker = f"kafka://{kafka_bootstrap_server}/{fresh_topic()}?partitions={PARTITIONS}"
    KafkaEventLog.from_url(broker).partitions()
    workers = Workers(broker, tmp / "data")
    try:
        workers.start(slow_open_s=SLOW_OPEN_S)
        workers.start(slow_open_s=SLOW_OPEN_S)
        with serve(tmp / "data", 0, "--broker", broker) as url:
            yield Cluster(broker, tmp, workers, url)
    finally:
        workers.stop()


def _eventually(
    check: Callable[[], Any], timeout: float = 90.0, context: Callable[[], str] = str
) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.3)
    raise AssertionError(f"not reached within {timeout}s; last: {last!r}\n{context()}")


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


def _lagging(log: KafkaEventLog, data: Path) -> dict[int, tuple[int | None, int]]:
    """Partitions whose published offset is short of the log's end: {p: (published, end)},
    None where the partition was never published (one without records is published too)."""
    published: dict[int, int] = {}
    for manifest in read_manifests(data):
        partition = int(str(manifest["partition"]))
        offsets = manifest["next_offsets"]
        assert isinstance(offsets, dict)
        published[partition] = int(offsets.get(str(partition), 0))
    return {
        p: (published.get(p), end)
        for p, end in log.end_offsets().items()
        if published.get(p, -1) < end
    }


def _wait_caught_up(broker: str, data: Path, workers: Workers, timeout: float = 120.0) -> None:
    """Every partition published up to the log's end: the workers' whole obligation. After
    this the exports are final, so what they hold can be compared exactly, once."""
    log = KafkaEventLog.from_url(broker)
    try:
        deadline = time.monotonic() + timeout
        while lagging := _lagging(log, data):
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"partitions still behind the log after {timeout:g} s "
                    f"{{partition: (published, end)}}: {lagging}\n{workers.tails()}"
                )
            time.sleep(0.3)
    finally:
        log.close()


def _assert_exactly(data: Path, acked: set[str], points: int) -> None:
    projected_points, projected = _projected(data)
    assert projected == acked, (
        f"{len(acked - projected)} acknowledged events not projected, "
        f"{len(projected - acked)} projected that were never acknowledged"
    )
    assert projected_points == points  # no point lost, none twice


@pytest.mark.kafka
def test_two_workers_share_partitions_and_serve_answers(cluster: Cluster) -> None:
    """Two workers on a busy machine (each store takes SLOW_OPEN_S to open) split the
    partitions and project every record once; their rebalances wait for no store."""
    _log_sweep(cluster.broker, cluster.tmp / "spool", trials=6, points=100, tag="two")
    cluster.points += 6 * 100 * 2
    cluster.exactly_once()
    url = cluster.url
    experiment = ids.experiment_id(ids.project_id("k"), "two")
    rows = httpx.get(f"{url}/api/v1/iterations", params={"experiment_id": experiment})
    assert rows.json()["total"] == 6, rows.text
    q = "SELECT count(*) AS n FROM metrics JOIN iterations USING (iteration_id)"
    q += f" WHERE experiment_id = '{experiment}'"
    sql = httpx.get(f"{url}/api/v1/sql", params={"q": q})
    assert sql.json()["items"] == [{"n": 1200}], sql.text
    ready = httpx.get(f"{url}/readyz")  # the log's end against the published offsets
    assert ready.status_code == 200 and ready.json()["lag_events"] == 0, ready.text
    via_gateway = dd.connect(url, spool_dir=cluster.tmp / "spool-http")
    with via_gateway.start_iteration(project="k", experiment="http", capture_env=False) as it:
        it.log_metric("loss", 0.25)
    via_gateway.flush()
    cluster.points += 1
    _eventually(
        lambda: (
            httpx.get(
                f"{url}/api/v1/sql",
                params={"q": f"SELECT count(*) AS n FROM metrics WHERE iteration_id = '{it.id}'"},
            ).json()["items"]
            == [{"n": 1}]
        )
    )
    via_gateway.close()


def _partition(key: str) -> int:
    """The partition Kafka's default partitioner (murmur2 of the key) gives a key."""
    every = list(range(PARTITIONS))
    return int(DefaultPartitioner()(key.encode(), every, every))


@pytest.mark.kafka
def test_changes_to_model_versions_and_artifacts_reach_the_worker_holding_them(
    cluster: Cluster,
) -> None:
    """Tags, notes, archive, rename, delete and restore of a model version and of artifacts
    (an iteration's, an experiment's) go through the server's routes; each lands in the
    partition of the entity's own events -- chosen here so that it differs from the one
    its id alone would pick -- and is folded there: read back, no conflict recorded."""
    c = dd.connect(cluster.url, spool_dir=cluster.tmp / "spool-entities")
    file = cluster.tmp / "weights.bin"
    file.write_bytes(b"weights")
    model = ids.model_id(ids.project_id("k"), "clf")
    with c.start_iteration(project="k", experiment="owners", capture_env=False) as it:
        # ids (random, or derived from names) whose own partition is not their owner's
        artifact = next(
            a
            for n in range(100)
            if _partition(a := it.log_artifact(file, f"w{n}.bin")) != (_partition(it.id))
        )
        version = next(
            v
            for _ in range(100)
            if _partition(v := it.register_model("clf", artifact_id=artifact)) != _partition(model)
        )
    shared = next(
        a
        for n in range(100)
        if _partition(
            a := c.registry.log_artifact(it.experiment_id, None, file, f"s{n}.bin")["artifact_id"]
        )
        != _partition(it.experiment_id)
    )
    for target in (version, artifact, shared):
        c.set_tags(target, {"stage": "candidate"})
        c.set_notes(target, f"notes of {target}")
        c.archive(target)
        c.delete(target)
        c.restore_entity(target)
    c.rename(artifact, "renamed.bin")
    named = c.sql(f"SELECT name FROM artifacts WHERE artifact_id = '{shared}'").to_pylist()
    shared_name = named[0]["name"]
    versions = c.sql(
        f"SELECT tags, notes, archived, deleted FROM model_versions"
        f" WHERE model_version_id = '{version}'"
    ).to_pylist()
    assert [{**v, "tags": json.loads(v["tags"])} for v in versions] == [
        {
            "tags": {"stage": "candidate"},
            "notes": f"notes of {version}",
            "archived": True,
            "deleted": False,
        }
    ]
    artifacts = c.sql(
        "SELECT artifact_id, name, tags, notes, archived FROM artifacts"
        f" WHERE artifact_id IN ('{artifact}', '{shared}') ORDER BY name"
    ).to_pylist()
    assert [(a["name"], a["notes"], a["archived"]) for a in artifacts] == [
        ("renamed.bin", f"notes of {artifact}", True),
        (shared_name, f"notes of {shared}", True),
    ]
    assert all(json.loads(a["tags"]) == {"stage": "candidate"} for a in artifacts)
    conflicts = c.sql("SELECT kind, entity_id, detail FROM conflicts").to_pylist()
    assert conflicts == []
    c.close()
    cluster.exactly_once()


@pytest.mark.kafka
def test_replay_from_kafka_equals_the_live_projections(cluster: Cluster) -> None:
    _log_sweep(cluster.broker, cluster.tmp / "spool", trials=5, points=120, tag="replay")
    cluster.points += 5 * 120 * 2
    cluster.exactly_once()
    replayed = subprocess.run(
        _cli("replay", "--broker", cluster.broker, "--into", str(cluster.tmp / "r")),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert replayed.returncode == 0, replayed.stderr
    view = ExportsView(cluster.data)
    live = snapshot(view.reader())
    view.close()
    with EmbeddedStore(cluster.tmp / "r", create_log=False) as store:
        rebuilt = snapshot(store.store.reader())
    for name in ("projects", "experiments", "iterations", "params", "last_metrics"):
        assert sorted(map(repr, rebuilt[name])) == sorted(map(repr, live[name])), name
    assert sorted(map(repr, rebuilt["metrics"])) == sorted(map(repr, live["metrics"]))


@pytest.mark.kafka
def test_kill_9_of_a_worker_loses_and_duplicates_nothing(cluster: Cluster) -> None:
    """The victim dies mid-stream holding its stores; the worker taking over its
    partitions (on a busy machine: each store takes SLOW_OPEN_S to open) resumes each
    from its store's own offset and publishes all of them. Last of the cluster's tests."""
    victim = cluster.workers.procs[0]
    before = _projected(cluster.data)[0]
    _log_sweep(cluster.broker, cluster.tmp / "spool", trials=8, points=250, tag="kill")
    cluster.points += 8 * 250 * 2
    _eventually(lambda: _projected(cluster.data)[0] > before, context=cluster.workers.tails)
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=30)
    _log_sweep(cluster.broker, cluster.tmp / "spool", trials=4, points=250, tag="after")
    cluster.points += 4 * 250 * 2
    cluster.exactly_once()


@pytest.mark.kafka
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


@pytest.mark.kafka
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


@pytest.mark.kafka
def test_a_stopped_worker_leaves_its_stores_checkpointed(
    kafka: tuple[str, Path, Workers],
) -> None:
    """SIGTERM closes every partition store, so its hot points are in the file and no WAL
    is left (found by the benchmark: freezing the worker's heap out of garbage collection,
    89b25bf, left the stores unclosed at exit, 10.7 -> 55.4 bytes a point on disk)."""
    broker, tmp, workers = kafka
    worker = workers.start()
    _log_sweep(broker, tmp / "spool", trials=4, points=500, tag="stop")
    _wait_caught_up(broker, workers.data, workers)
    assert list(workers.data.rglob("*.duckdb.wal")), "the test needs hot points in a WAL"
    workers.stop_one(worker)
    assert worker.returncode == 0, workers.tails()
    assert not list(workers.data.rglob("*.duckdb.wal")), workers.tails()


_NO_FINALISERS = """
import os, sys
from deardiary.services.cli import main
try:
    main(sys.argv[1:])
finally:
    os._exit(0)  # no finaliser runs: what is not closed by now stays open
"""


@pytest.mark.kafka
def test_a_worker_closes_its_stores_before_exit_finalises_anything(
    kafka: tuple[str, Path, Workers],
) -> None:
    """The stores are closed by the worker's shutdown itself, not by objects finalised at
    interpreter exit (gc.freeze had kept them from ever being finalised): a worker whose
    process ends without finalisers after SIGTERM leaves no WAL either."""
    broker, tmp, workers = kafka
    log = tmp / "worker-no-finalisers.log"
    args = ["worker", "--broker", broker, "--data", str(workers.data)]
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", _NO_FINALISERS, *args], stdout=out, stderr=subprocess.STDOUT
        )
    workers.procs.append(proc)  # the fixture stops it if the test does not
    workers.logs.append(log)
    _log_sweep(broker, tmp / "spool", trials=4, points=500, tag="exit")
    _wait_caught_up(broker, workers.data, workers)
    assert list(workers.data.rglob("*.duckdb.wal")), "the test needs hot points in a WAL"
    workers.stop_one(proc)
    assert not list(workers.data.rglob("*.duckdb.wal")), workers.tails()


# -- the worker's partition ownership, without a broker ------------------------------------


def _sweep_records(n: int, partition: int = 0) -> list[Record]:
    """n events of one iteration at offsets 0..n-1 of `partition`."""
    events: list[Any] = sweep_start(iteration="it-k")
    events += [metrics("it-k", [("loss", float(i), i)]) for i in range(n - len(events))]
    return records(events, partition=partition)


def _stored_events(owner: PartitionOwner, partition: int) -> int:
    reader = owner.stores[partition].store.reader()
    return int(reader.execute("SELECT count(*) FROM events").fetchall()[0][0])


def test_a_partition_applies_only_the_records_that_continue_its_store(tmp_path: Path) -> None:
    recs = _sweep_records(8)
    owner = PartitionOwner(tmp_path)
    owner.assign([0])
    assert owner.apply({0: recs[:3]}) == {0: 3}  # opened: the consumer is put at its offset
    # Records fetched before the consumer was moved back arrive first: those beyond the
    # store's offset wait (the consumer is sent back), the ones continuing it are applied.
    assert owner.apply({0: [recs[6], recs[7], recs[3], recs[4]]}) == {0: 5}
    assert owner.stores[0].next_offset() == 5
    assert owner.apply({0: [recs[4], recs[5], recs[6], recs[7]]}) == {}  # in order again
    assert owner.stores[0].next_offset() == 8
    assert _stored_events(owner, 0) == 8
    assert owner.apply({1: _sweep_records(3, partition=1)}) == {}  # not ours: not opened
    assert 1 not in owner.stores
    owner.revoke([0])
    owner.release([0])
    assert owner.apply({0: recs}) == {} and owner.stores == {}  # revoked: never reopened


def test_a_batch_with_records_queued_behind_it_is_not_the_last() -> None:
    """Under load every batch is short of the count limit (the SDK's records are large), so
    the end of the stream is told by the consumer's high watermarks: a batch with records
    behind it is published at the timer's pace, the one reaching the end at once."""
    recs = {0: _sweep_records(6)[:4], 1: _sweep_records(6, partition=1)[:2]}
    ends = {0: 4, 1: 2}
    assert worker.drained(recs, ends.get)
    assert not worker.drained(recs, {**ends, 1: 3}.get)  # one more waits in partition 1
    assert worker.drained(recs, {0: 4}.get)  # not heard from partition 1 yet: the end
    assert worker.drained({0: []}, {0: 9}.get)


def test_records_queued_behind_are_gathered_into_one_batch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Folding a batch has a fixed cost, so while records are queued behind, the agent
    gathers up to GATHER_RECORDS records (or GATHER_S seconds' worth) into one batch; the
    records keep their partition and offset order."""
    monkeypatch.setattr(worker, "GATHER_RECORDS", 5)
    recs = _sweep_records(8)
    gathered = worker.Gathered()
    assert not gathered.full(time.monotonic()) and gathered.take() == {}
    gathered.add({0: recs[:2]}, 2)
    gathered.add({0: recs[2:4], 1: _sweep_records(6, partition=1)[:1]}, 3)
    assert gathered.full(time.monotonic())  # 5 records
    taken = gathered.take()
    assert taken[0] == recs[:4] and len(taken[1]) == 1
    assert gathered.count == 0 and not gathered.full(time.monotonic())
    gathered.add({0: recs[4:5]}, 1)
    assert not gathered.full(time.monotonic())
    assert gathered.full(time.monotonic() + worker.GATHER_S)  # the timer folds them then


def test_a_new_assignment_opens_its_stores_one_after_another(tmp_path: Path) -> None:
    owner = PartitionOwner(tmp_path)
    owner.assign([0, 1, 2])
    opened = []
    while owner.unopened():
        opened.append(owner.open_next())
    assert opened == [{0: 0}, {1: 0}, {2: 0}]  # each positioned at its store's offset
    owner.revoke([0, 1, 2])
    owner.release([0, 1, 2])
    assert not owner.unopened() and owner.stores == {}


def test_a_failed_batch_is_read_again_from_the_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    recs = _sweep_records(5)
    monkeypatch.setattr(worker, "RETRY_AFTER_S", 0.0)  # the back-off ends at the next tick
    owner = PartitionOwner(tmp_path)
    owner.assign([0])
    assert owner.apply({0: recs[:2]}) == {0: 2}
    store = owner.stores[0]
    with monkeypatch.context() as failing:
        failing.setattr(store, "apply", lambda batch: 1 / 0)
        assert owner.apply({0: recs[2:]}) == {}  # logged; nothing skipped, nothing moved
    assert owner.apply({0: recs[2:]}) == {}  # backing off until the timer's next tick
    assert store.next_offset() == 2
    assert owner.tend() == {0: 2}  # read again from the store's offset
    assert owner.apply({0: recs[2:]}) == {} and store.next_offset() == 5
    owner.release([0])


_HOLD_STORE = """
import sys
from pathlib import Path
from deardiary.services.kafka_mode.partitions import PartitionStore
store = PartitionStore(Path(sys.argv[1]), 0)
print("held", flush=True)
sys.stdin.read()
"""


def test_a_store_still_held_by_its_previous_owner_loses_no_record(tmp_path: Path) -> None:
    """The partition is ours before its previous owner let go of the store (a rebalance
    that outran it, an expelled member): what arrives meanwhile is not skipped; once the
    store opens, the consumer goes back to the store's offset."""
    recs = _sweep_records(6)
    owner = PartitionOwner(tmp_path)
    owner.assign([0])
    with subprocess.Popen(
        [sys.executable, "-c", _HOLD_STORE, str(tmp_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    ) as holder:
        assert holder.stdout is not None and holder.stdout.readline() == b"held\n"
        assert owner.apply({0: recs[:4]}) == {}  # the store is not ours yet
        assert owner.tend() == {}
    # leaving the block closed its stdin and waited: the previous owner is gone
    assert owner.tend() == {0: 0}  # opened on the timer: back to offset 0
    assert owner.apply({0: recs[4:]}) == {0: 0}  # still ahead of the store: back again
    assert owner.apply({0: recs}) == {}
    assert owner.stores[0].next_offset() == 6 and _stored_events(owner, 0) == 6
    owner.release([0])


@pytest.mark.kafka
def test_rebalance_callbacks_open_no_store(
    kafka: tuple[str, Path, Workers], monkeypatch: pytest.MonkeyPatch
) -> None:
    """aiokafka sends no heartbeats while partitions are being assigned: a callback that
    opened stores outlived the session on a busy machine and got the member expelled."""
    broker, tmp, _ = kafka
    opened: list[int] = []

    def slow_store(data: Path, partition: int) -> Any:
        opened.append(partition)
        time.sleep(SLOW_OPEN_S)
        raise AssertionError("a store was opened in a rebalance callback")

    monkeypatch.setattr(worker, "PartitionStore", slow_store)
    app = worker.build_app(broker, tmp / "data")
    topic = KafkaEventLog.from_url(broker).config.topic
    assert app.conf.id == worker.group_id(topic) != worker.group_id(fresh_topic())
    tps = {TP(topic, p) for p in range(PARTITIONS)}

    async def rebalance() -> float:
        started = time.monotonic()
        await app.on_partitions_revoked.send(set())
        await app.on_partitions_assigned.send(tps)
        await app.on_partitions_revoked.send(tps)
        await app.on_partitions_assigned.send(tps)
        return time.monotonic() - started

    assert asyncio.run(rebalance()) < 1.0
    assert opened == []


def test_a_throttled_publish_happens_when_it_was_wanted(tmp_path: Path) -> None:
    """A drained batch asks to be published soon after the previous publish; when that is
    throttled, a later call asking for a longer interval (the timer's, or the worker's
    follow-up `publish_due`) still publishes it when the batch wanted."""
    store = PartitionStore(tmp_path, 0)
    recs = _sweep_records(4)
    store.apply(recs[:2])
    assert store.publish(1.0)  # the first one is never throttled
    store.apply(recs[2:])
    store._published_at = time.time()  # as if that publish had just ended
    assert not store.publish(1.0)  # too soon: remembered
    assert not store.publish(60.0)  # still too soon for the wish
    time.sleep(1.05)
    assert store.publish(60.0)  # the wish, not the timer's interval
    assert read_manifests(tmp_path)[0]["next_offset"] == 4
    assert not store.publish(worker.PUBLISH_EVERY_S)  # nothing new
    store.close()
