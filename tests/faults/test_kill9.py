"""kill -9 of `deardiary serve` while clients post events, and while it compacts.

An HTTP client posts metric batches with known event ids and keeps what was
acknowledged; the server is killed with SIGKILL mid-stream (then again the moment a
compaction is writing a segment), restarted, and sent what was never acknowledged (as
the SDK's spool would). The oracle: the acknowledged event ids are exactly the projected
ones, none twice, every metric point counted once, and the projections equal a fresh
`deardiary replay` of the log. A crash is not damage: the restarts rebuild nothing.
(kill -9 of `deardiary replay` is in test_projection_cache.py.)
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import httpx
import pyarrow as pa

from deardiary.pool import HttpPool
from deardiary.reads import HttpReader
from deardiary.schemas.errors import DearDiaryError
from deardiary.services.log import LogRecord
from deardiary.transport import HttpTransport
from tests.faults.served_folder import (
    Serve,
    folder_snapshot,
    iteration_events,
    log_event_ids,
    metric_batch,
    records,
    replayed_snapshot,
    wait_until,
)

POINTS = 400  # per event; two events a request


class Ingest:
    """Posts metric batches to /api/v1/events until a post fails (the server died)."""

    def __init__(self, url: str, iteration: str, first_step: int) -> None:
        self.transport = HttpTransport(url, timeout=30)
        self.iteration = iteration
        self.step = first_step
        self.acked: list[str] = []
        self.unacked: list[list[LogRecord]] = []
        self.points = 0
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while True:
            batch = records(
                [metric_batch(self.iteration, self.step + n * POINTS, POINTS) for n in range(2)]
            )
            self.step += 2 * POINTS
            try:
                self.transport.send(batch)
            except DearDiaryError:
                self.unacked.append(batch)  # may or may not be in the log: resent later
                return
            self.acked += [r.event_id for r in batch]
            self.points += 2 * POINTS

    def join(self) -> None:
        self.thread.join(timeout=60)
        self.transport.close()


def _send(url: str, batches: list[list[LogRecord]]) -> list[str]:
    transport = HttpTransport(url, timeout=30)
    try:
        for batch in batches:
            transport.send(batch)
    finally:
        transport.close()
    return [r.event_id for batch in batches for r in batch]


def _sql(url: str, query: str) -> pa.Table:
    reader = HttpReader(HttpPool(url, timeout=60), lambda: None)
    try:
        return reader.sql(query, {})
    finally:
        reader.close()


def _compacting(projections: Path) -> bool:
    """A segment or tile file is being written (compaction's temp file exists)."""
    for folder in (projections / "segments", projections / "tiles"):
        try:
            with os.scandir(folder) as entries:
                if any(e.name.endswith(".tmp") for e in entries):
                    return True
        except FileNotFoundError:
            pass
    return False


def _ready(url: str) -> dict[str, object]:
    def ready() -> dict[str, object] | None:
        answer = httpx.get(f"{url}/readyz", timeout=10)
        return answer.json() if answer.status_code == 200 else None

    found: dict[str, object] = wait_until(ready, 60, "/readyz 200")
    return found


def test_kill_9_during_ingest_and_compaction_loses_and_duplicates_nothing(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    # compacts every few requests; no linger: a step (and its compaction) per request
    small = {"DEARDIARY_HOT_POINTS_LIMIT": "1500", "DEARDIARY_PROJECTOR_LINGER_MS": "0"}
    acked: list[str] = []
    points = 0

    # 1. killed while clients post
    server = Serve(data)
    acked += _send(server.url, [records(iteration_events("proj", "exp", "it-1"))])
    ingest = Ingest(server.url, "it-1", first_step=0)
    wait_until(lambda: len(ingest.acked) >= 40, 60, "40 events acknowledged")
    server.kill()
    ingest.join()
    acked += ingest.acked
    points += ingest.points
    pending = ingest.unacked

    # 2. restarted with a small hot table; killed while a compaction writes a segment
    server = Serve(data, env=small)
    acked += _send(server.url, pending)
    points += 2 * POINTS * len(pending)
    ingest = Ingest(server.url, "it-1", first_step=10_000_000)
    caught = wait_until(
        lambda: "compaction" if _compacting(data / "projections") else ingest.points > 60_000,
        60,
        "a compaction",
    )
    server.kill()
    ingest.join()
    acked += ingest.acked
    points += ingest.points
    assert caught == "compaction"  # killed while a segment or tile file was being written

    # 3. restarted: nothing to rebuild, the rest resent, then the oracle
    server = Serve(data, env=small)
    try:
        acked += _send(server.url, ingest.unacked)
        points += 2 * POINTS * len(ingest.unacked)
        status = _ready(server.url)
        assert status["rebuild"] is None and status["parked_events"] == 0, status
        projected = _sql(server.url, "SELECT event_id FROM events").column(0).to_pylist()
        counts = _sql(
            server.url,
            "SELECT count(*) AS n, count(DISTINCT key || ':' || step) AS distinct_points"
            " FROM metrics",
        ).to_pylist()[0]
    finally:
        assert server.stop() == 0
    assert len(projected) == len(set(projected))  # no event applied twice
    assert set(projected) == set(acked)  # acknowledged == projected
    assert set(log_event_ids(data)) == set(acked)  # and the log holds nothing else
    assert counts == {"n": points, "distinct_points": points}  # every point once
    assert folder_snapshot(data / "projections") == replayed_snapshot(data, tmp_path / "fresh")
