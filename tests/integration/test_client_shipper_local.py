"""The shipper against the embedded log: exact, ordered, duplicate-free delivery."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from array import array
from collections.abc import Iterator
from pathlib import Path

import pytest

from deardiary.buffer import EventBuffer
from deardiary.schemas.codec import decode
from deardiary.schemas.envelope import Envelope
from deardiary.schemas.errors import InvalidArgument
from deardiary.schemas.events import IterationHeartbeat, MetricsLogged, ParamsLogged
from deardiary.services.log import LogRecord
from deardiary.services.log.sqlite import SqliteEventLog
from deardiary.shipper import Shipper
from deardiary.spool import Spool, encode_records
from deardiary.transport import LocalTransport

Point = tuple[str, str, int, float]


def read_log(data: Path) -> list[Envelope]:
    log = SqliteEventLog(str(data / "log.db"))
    try:
        rows = log.read({}, 10_000_000)
    finally:
        log.close()
    assert [pos.offset for pos, _ in rows] == list(range(len(rows)))
    return [decode(payload) for _, payload in rows]


def points_of(envelopes: list[Envelope]) -> list[Point]:
    out: list[Point] = []
    for env in envelopes:
        if isinstance(env.body, MetricsLogged):
            b = env.body
            out += [
                (b.iteration_id, b.keys[k], s, v)
                for k, s, v in zip(
                    array("H", b.key_index), array("q", b.steps), array("d", b.values), strict=True
                )
            ]
    return out


@pytest.fixture
def shipper(tmp_path: Path) -> Iterator[Shipper]:
    spool = Spool(tmp_path / "spool")
    buf = EventBuffer(spool, max_points=20_000, max_points_per_envelope=5_000)
    s = Shipper(buf, LocalTransport(tmp_path / "data"), spool, flush_interval=0.05)
    yield s
    s.close(timeout=5)


def test_threads_logging_arrive_exactly_once_in_order(shipper: Shipper, tmp_path: Path) -> None:
    buf = shipper.buffer

    def log(t: int) -> None:
        it = f"iter{t}"
        for i in range(25_000):
            buf.log_metric(it, "loss", float(i), step=i)
            if i % 10_000 == 0:
                buf.emit(ParamsLogged(iteration_id=it, params={f"mark{i}": str(i)}))

    workers = [threading.Thread(target=log, args=(t,)) for t in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    offset = shipper.flush(timeout=60)

    envs = read_log(tmp_path / "data")
    assert offset == len(envs) - 1
    assert len({e.event_id for e in envs}) == len(envs)
    points = points_of(envs)
    assert len(points) == 100_000
    for t in range(4):
        it = f"iter{t}"
        assert [(s, v) for i, _, s, v in points if i == it] == [
            (n, float(n)) for n in range(25_000)
        ]
        # each param event sits right after the point logged just before it
        seen = -1
        for env in envs:
            if env.key != it:
                continue
            if isinstance(env.body, ParamsLogged):
                (mark,) = env.body.params.values()
                assert seen == int(mark)
            elif isinstance(env.body, MetricsLogged):
                seen = int(array("q", env.body.steps)[-1])


def test_flush_returns_the_offset_of_everything_before_it(shipper: Shipper, tmp_path: Path) -> None:
    shipper.buffer.log_metric("it", "x", 1.0)
    first = shipper.flush(timeout=30)
    shipper.buffer.emit(ParamsLogged(iteration_id="it", params={"a": "b"}))
    second = shipper.flush(timeout=30)
    assert (first, second) == (0, 1)
    assert shipper.flush(timeout=30) == 1  # nothing new: same offset


def test_a_bad_event_is_isolated_and_raised_from_flush(shipper: Shipper, tmp_path: Path) -> None:
    buf = shipper.buffer
    buf.emit(ParamsLogged(iteration_id="it", params={"good": "1"}))
    buf.emit(ParamsLogged(iteration_id="it", params={"bad": 2}))  # type: ignore[dict-item]
    buf.emit(ParamsLogged(iteration_id="it", params={"good": "3"}))
    with pytest.raises(InvalidArgument, match=r"\$\.body\.params"):
        shipper.flush(timeout=30)
    assert shipper.dropped == 1
    stored = [e.body for e in read_log(tmp_path / "data")]
    assert stored == [
        ParamsLogged(iteration_id="it", params={"good": "1"}),
        ParamsLogged(iteration_id="it", params={"good": "3"}),
    ]
    assert shipper.flush(timeout=30) == 1  # the error is raised once


def test_heartbeats_are_sent_for_registered_iterations(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    shipper = Shipper(
        EventBuffer(spool),
        LocalTransport(tmp_path / "data"),
        spool,
        flush_interval=0.01,
        heartbeat_interval=0.01,
    )
    shipper.start_heartbeat("alive")
    beats: list[Envelope] = []
    for _ in range(1_000):
        shipper.flush(timeout=30)
        beats = [e for e in read_log(tmp_path / "data") if isinstance(e.body, IterationHeartbeat)]
        if len(beats) >= 3:
            break
        time.sleep(0.01)
    shipper.stop_heartbeat("alive")
    shipper.close(timeout=5)
    assert len(beats) >= 3 and {e.key for e in beats} == {"alive"}


def test_local_transport_stores_a_resent_record_once(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    buf = EventBuffer(spool)
    buf.log_metric("it", "x", 1.0)
    buf.emit(ParamsLogged(iteration_id="it", params={"a": "b"}))
    records = encode_records(buf.drain())
    spool.close()
    transport = LocalTransport(tmp_path / "data")
    try:
        assert transport.send(records) == {0: 1}
        assert transport.send(records[::-1]) == {0: 1}  # a resend answers the original positions
        with pytest.raises(InvalidArgument, match="malformed"):
            transport.send([LogRecord("x", "it", b"not msgpack")])
    finally:
        transport.close()
    assert [e.event_id for e in read_log(tmp_path / "data")] == [r.event_id for r in records]


CHILD = """
import sys, time
from deardiary.buffer import EventBuffer
from deardiary.schemas.events import ParamsLogged
from deardiary.spool import Spool, encode_records

spool = Spool(sys.argv[1])
buf = EventBuffer(spool, max_points=3_000)  # overflows three times
buf.emit(ParamsLogged(iteration_id="child", params={"lr": "0.1"}))
for i in range(10_000):
    buf.log_metric("child", "loss", float(i), step=i)
buf.spill()
print("spooled", flush=True)
time.sleep(600)  # killed here, holding its spool lock
"""


def test_what_a_killed_process_spooled_is_sent_by_the_next(tmp_path: Path) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(CHILD), str(tmp_path / "spool")],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline() == "spooled\n"
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        if child.stdout is not None:
            child.stdout.close()

    spool = Spool(tmp_path / "spool")
    shipper = Shipper(EventBuffer(spool), LocalTransport(tmp_path / "data"), spool)
    shipper.buffer.log_metric("next", "loss", 1.0)
    shipper.flush(timeout=30)
    shipper.close(timeout=5)

    envs = read_log(tmp_path / "data")
    assert isinstance(envs[0].body, ParamsLogged)  # the dead process's events come first
    points = points_of(envs)
    assert points == [("child", "loss", i, float(i)) for i in range(10_000)] + [
        ("next", "loss", -1, 1.0)
    ]
    assert list((tmp_path / "spool").iterdir()) == []
