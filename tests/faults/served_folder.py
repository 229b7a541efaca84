"""Real `deardiary` subprocesses over a data folder, and the oracle the fault tests share.

`Serve` starts `deardiary serve --port 0` and reads the URL it prints (no guessed ports);
it is stopped with SIGTERM or killed with SIGKILL, by its PID. The oracle: every
acknowledged event id is projected, none twice, and the projections equal what a fresh
`deardiary replay` of the same log builds.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import duckdb

from deardiary.schemas import codec, ids
from deardiary.schemas.envelope import Envelope, wrap
from deardiary.schemas.events import (
    Event,
    ExperimentCreated,
    IterationStarted,
    MetricsLogged,
    ParamsLogged,
    ProjectCreated,
)
from deardiary.services.log import LogRecord
from deardiary.services.log.sqlite import SqliteEventLog
from tests.store_snapshot import snapshot

CLI = [sys.executable, "-m", "deardiary.services.cli"]


def wait_until(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll `condition` until it returns something truthy; fail naming `what`."""
    deadline = time.monotonic() + timeout
    while True:
        found = condition()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached within {timeout:.0f} s: {what}")
        time.sleep(0.02)


def cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60.0, input: str = ""
) -> Any:
    """`deardiary ARGS` to completion (`input` on its stdin): the CompletedProcess (text)."""
    return subprocess.run(
        [*CLI, *args],
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, **(env or {})},
    )


class Serve:
    """`deardiary serve --data DATA --port 0 EXTRA...` in a subprocess."""

    def __init__(self, data: Path, *extra: str, env: dict[str, str] | None = None) -> None:
        self.data = data
        self.stderr_path = data.parent / f"{data.name}.serve-{time.monotonic_ns()}.log"
        self._stderr = open(self.stderr_path, "w")  # noqa: SIM115 - closed in stop()/kill()
        self.proc = subprocess.Popen(
            [*CLI, "serve", "--data", str(data), "--port", "0", *extra],
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            env={**os.environ, **(env or {})},
        )
        lines: queue.Queue[str] = queue.Queue()
        self._pump_thread = threading.Thread(target=self._pump, args=(lines,), daemon=True)
        self._pump_thread.start()
        try:
            line = lines.get(timeout=60)
        except queue.Empty:
            self.kill()
            raise AssertionError(f"serve did not start: {self.stderr()}") from None
        if " on http" not in line:
            self.kill()
            raise AssertionError(f"serve did not start: {line!r} {self.stderr()}")
        self.url = line.split(" on ", 1)[1].split()[0]

    def _pump(self, lines: queue.Queue[str]) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            lines.put(line)
        lines.put("")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stderr(self) -> str:
        return self.stderr_path.read_text()

    def _reap(self, sig: int, timeout: float) -> int:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)
        code = self.proc.wait(timeout=timeout)
        self._pump_thread.join(timeout=10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._stderr.close()
        return code

    def kill(self) -> None:
        """SIGKILL by PID: no cleanup of any kind runs."""
        self._reap(signal.SIGKILL, 30)

    def stop(self) -> int:
        """SIGTERM, then wait for a clean exit; returns the exit status."""
        return self._reap(signal.SIGTERM, 60)

    def __enter__(self) -> Serve:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.stop()


# -- events -------------------------------------------------------------------------
def iteration_events(project: str, experiment: str, iteration: str) -> list[Event]:
    pid = ids.project_id(project)
    eid = ids.experiment_id(pid, experiment)
    return [
        ProjectCreated(project_id=pid, name=project),
        ExperimentCreated(experiment_id=eid, project_id=pid, name=experiment),
        IterationStarted(iteration_id=iteration, experiment_id=eid, project_id=pid, name=iteration),
        ParamsLogged(iteration_id=iteration, params={"lr": "0.01"}),
    ]


def metric_batch(iteration: str, first_step: int, points: int) -> MetricsLogged:
    """`points` points of two keys with explicit steps (so counts are exact)."""
    now = ids.now_us()
    keys = ["loss" if i % 2 == 0 else "acc" for i in range(points)]
    steps = [first_step + i // 2 for i in range(points)]
    values = [1.0 / (s + 1) if k == "loss" else s / 1e4 for k, s in zip(keys, steps, strict=True)]
    return MetricsLogged.from_points(iteration, keys, values, steps, [now] * points)


def records(events: Sequence[Event]) -> list[LogRecord]:
    envelopes: list[Envelope] = [wrap(e, actor="test") for e in events]
    return [LogRecord(e.event_id, e.key, codec.encode(e)) for e in envelopes]


def write_log(data: Path, iterations: int, batches: int, points: int) -> int:
    """A log of `iterations` iterations with `batches` metric batches each; returns the
    number of metric points."""
    log = SqliteEventLog(str(data / "log.db"))
    try:
        for n in range(iterations):  # one transaction an iteration: fsyncs are slow
            it = f"it-{n}"
            batch = [metric_batch(it, b * points, points) for b in range(batches)]
            log.append(records([*iteration_events("proj", "exp", it), *batch]))
    finally:
        log.close()
    return iterations * batches * points


def log_event_ids(data: Path) -> list[str]:
    log = SqliteEventLog(str(data / "log.db"))
    try:
        found = log.read({}, 10_000_000)
    finally:
        log.close()
    return [codec.decode(payload).event_id for _, payload in found]


# -- the oracle -----------------------------------------------------------------------
def folder_snapshot(projections: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every published relation of a projections folder no process holds, read-only."""
    from deardiary.projections.store import DuckDBProjectionStore

    store = DuckDBProjectionStore(projections)  # views over the segments, as served
    try:
        return snapshot(store.reader())
    finally:
        store.close()


def replayed_snapshot(data: Path, into: Path) -> dict[str, list[tuple[Any, ...]]]:
    """What a fresh `deardiary replay` of `data`'s log builds."""
    done = cli("replay", "--data", str(data), "--into", str(into), timeout=120)
    assert done.returncode == 0, done.stderr
    return folder_snapshot(into / "projections")


def projected_ids(conn: duckdb.DuckDBPyConnection) -> list[str]:
    return [r[0] for r in conn.execute("SELECT event_id FROM events").fetchall()]
