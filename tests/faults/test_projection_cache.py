"""The projections are a cache of the log: damaged ones are moved aside and rebuilt.

Each case damages a real projections folder the way disks and crashes do -- a truncated
state.duckdb, a deleted metric segment, a write-ahead log with a bad checksum, a deleted
tile file -- then starts `deardiary serve` on it: the server starts, says why it
rebuilds, and answers exactly what a fresh `deardiary replay` of the same log builds.
`deardiary status` tells a sound folder (exit 0) from a damaged or lagging one (exit 1).
A replay killed midway leaves no folder behind, and the next one succeeds.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

import deardiary as dd
from deardiary.schemas.records import LogRecord
from deardiary.services.cli import main
from deardiary.services.embedded import EmbeddedStore
from deardiary.services.http import start_in_thread
from deardiary.services.log.sqlite import SqliteEventLog
from deardiary.services.replay import replay
from deardiary.services.server import EmbeddedServer
from deardiary.transport import HttpTransport
from tests.faults.served_folder import (
    CLI,
    Serve,
    cli,
    folder_snapshot,
    iteration_events,
    metric_batch,
    records,
    wait_until,
    write_log,
)

HOT_LIMIT = "300"  # small: the projections hold several segments and tiles
Snapshot = dict[str, list[tuple[Any, ...]]]


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Snapshot]:
    """A data folder whose projections have segments, tiles and an unapplied WAL; a copy
    of its projections taken while the store was open (what a crash leaves); and what a
    fresh replay of its log builds."""
    root = tmp_path_factory.mktemp("cache")
    data = root / "data"
    write_log(data, iterations=3, batches=6, points=100)
    crashed = root / "crashed-projections"
    store = EmbeddedStore(data, hot_points_limit=int(HOT_LIMIT))
    try:
        store.catch_up()
        assert store.store.segment_paths(), "the fixture wants segments"
        log = SqliteEventLog(str(data / "log.db"))  # and hot points after the last compaction
        try:
            log.append(records([metric_batch("it-0", 1_000, 100)]))
        finally:
            log.close()
        store.catch_up()
        assert (data / "projections" / "state.duckdb.wal").exists()
        shutil.copytree(data / "projections", crashed)  # the files as a kill -9 leaves them
    finally:
        store.close()
    log = SqliteEventLog(str(data / "log.db"))
    try:
        replay(log, root / "fresh")
    finally:
        log.close()
    return data, crashed, folder_snapshot(root / "fresh" / "projections")


def _copy(base: tuple[Path, Path, Snapshot], tmp_path: Path, crashed: bool = False) -> Path:
    data, crashed_projections, _ = base
    target = tmp_path / "data"
    shutil.copytree(data, target, ignore=shutil.ignore_patterns("server.json"))
    if crashed:
        shutil.rmtree(target / "projections")
        shutil.copytree(crashed_projections, target / "projections")
    return target


def _status(capsys: pytest.CaptureFixture[str], data: Path, *args: str) -> tuple[int, str]:
    """`deardiary status --data DATA ARGS` (in this process: the same code, no start-up)."""
    capsys.readouterr()
    code = main(["status", "--data", str(data), *args])
    return code, capsys.readouterr().out


def _truncate_state(projections: Path) -> None:
    state = projections / "state.duckdb"
    with open(state, "r+b") as fh:
        fh.truncate(state.stat().st_size // 2)


def _delete_segment(projections: Path) -> None:
    sorted((projections / "segments").glob("seg-*.parquet"))[0].unlink()


def _corrupt_wal(projections: Path) -> None:
    wal = projections / "state.duckdb.wal"
    size = wal.stat().st_size
    with open(wal, "r+b") as fh:  # in every quarter: where entries fall varies by run
        for at in (size // 8, size // 4, size // 2, 3 * size // 4):
            fh.seek(at)
            fh.write(b"\xde\xad\xbe\xef" * 64)


def _delete_tiles(projections: Path) -> None:
    sorted((projections / "tiles").glob("seg-*.parquet"))[-1].unlink()


@pytest.mark.parametrize(
    ("damage", "crashed", "cause"),
    [
        (_truncate_state, False, "truncated"),
        (_delete_segment, False, "metric segment"),
        (_corrupt_wal, True, "WAL"),
        (_delete_tiles, False, "tile file"),
    ],
    ids=["truncated-state", "deleted-segment", "corrupt-wal", "deleted-tiles"],
)
def test_serve_rebuilds_damaged_projections(
    base: tuple[Path, Path, Snapshot],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    damage: Callable[[Path], None],
    crashed: bool,
    cause: str,
) -> None:
    data = _copy(base, tmp_path, crashed)
    damage(data / "projections")

    code, out = _status(capsys, data)
    assert code == 1 and "damaged" in out and cause in out, out
    assert not list(tmp_path.glob("data/projections.damaged-*"))  # status only looks

    with Serve(data, env={"DEARDIARY_HOT_POINTS_LIMIT": HOT_LIMIT}) as server:
        assert httpx.get(f"{server.url}/healthz").status_code == 200
        ready = wait_until(
            lambda: httpx.get(f"{server.url}/readyz").status_code == 200, 60, "ready"
        )
        assert ready
        body = httpx.get(f"{server.url}/readyz").json()
        assert body["rebuild"]["cause"] and cause in body["rebuild"]["cause"]
        assert body["rebuild"]["fraction"] == 1.0 and body["lag_events"] == 0
        moved = Path(body["rebuild"]["moved_to"])
        assert moved.is_dir() and moved.name.startswith("projections.damaged-")
        # answers over HTTP, through the folder's server.json (a local reader)
        client = dd.connect(str(data))
        try:
            points = client.sql("SELECT count(*) AS n FROM metrics").to_pylist()[0]["n"]
        finally:
            client.close()
        assert points == 3 * 6 * 100 + 100  # with the fixture's last batch
        code, out = _status(capsys, data)
        assert code == 0 and "the server at" in out, out
        # the damaged copy is listed with its size: kept by us, the user's to delete
        size = sum(f.stat().st_size for f in moved.rglob("*") if f.is_file())
        assert size > 0
        line = next(x for x in out.splitlines() if x.startswith("moved aside:"))
        assert moved.name in line and "safe to delete" in line, out
        assert server.stop() == 0
    log = server.stderr()
    assert "WARNING" in log and "damaged" in log and str(moved) in log, log
    assert "records/s" in log, log  # progress
    assert folder_snapshot(data / "projections") == base[2]


def test_status_exit_codes_without_a_server(
    base: tuple[Path, Path, Snapshot], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = _copy(base, tmp_path)
    code, out = _status(capsys, data, "--format", "json")
    assert code == 0 and '"lag_events":0' in out and '"state":"stopped"' in out, out
    disk = {p["name"]: p for p in json.loads(out)["disk"]}
    assert disk["log"]["bytes"] == (data / "log.db").stat().st_size + sum(
        f.stat().st_size for f in data.glob("log.db-*")
    )
    assert disk["projections"]["bytes"] > 0 and not disk["projections"]["moved_aside"]
    assert "artifacts" in disk and not [p for p in disk.values() if p["moved_aside"]]
    log = SqliteEventLog(str(data / "log.db"))
    try:
        log.append(records([metric_batch("it-0", 10_000, 10)]))
    finally:
        log.close()
    code, out = _status(capsys, data)
    assert code == 1 and "1 events" in out, out
    # the real command, once: its exit status as a shell sees it
    missing = cli("status", "--data", str(tmp_path / "nowhere"))
    assert missing.returncode == 2 and "NOT_FOUND" in missing.stderr


def test_a_replay_output_cannot_be_rebuilt(
    base: tuple[Path, Path, Snapshot], tmp_path: Path
) -> None:
    """A folder without a log says so, rather than serving nothing."""
    data, _, _ = base
    out = tmp_path / "out"
    log = SqliteEventLog(str(data / "log.db"))
    try:
        replay(log, out)
    finally:
        log.close()
    _delete_segment(out / "projections")
    failed = cli("sql", "--data", str(out), "SELECT count(*) FROM metrics")
    assert failed.returncode == 2, failed.stdout
    assert "damaged" in failed.stderr and "no log to rebuild" in failed.stderr, failed.stderr


def test_a_killed_replay_leaves_no_folder_and_the_next_one_succeeds(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = tmp_path / "big"
    write_log(data, iterations=2, batches=100, points=300)
    log = SqliteEventLog(str(data / "log.db"))
    try:  # a record no fold accepts must not fail the replay: it is parked
        bad = records([metric_batch("it-0", 0, 2)])[0]
        log.append([LogRecord(bad.event_id, bad.key, b"\x93not an envelope")])
    finally:
        log.close()
    into = tmp_path / "rebuilt"
    proc = subprocess.Popen(
        [*CLI, "replay", "--data", str(data), "--into", str(into)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    partial = tmp_path / f"rebuilt.partial-{proc.pid}"
    wait_until(lambda: (partial / "projections" / "state.duckdb").exists(), 60, "replay began")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert partial.exists() and not into.exists()  # killed midway: nothing looks finished

    log = SqliteEventLog(str(data / "log.db"))
    try:
        with caplog.at_level(logging.WARNING, "deardiary.replay"):
            replay(log, into)  # the same code as the command, in this process
    finally:
        log.close()
    assert "did not finish" in caplog.text  # the leftover was named and removed
    assert not partial.exists() and into.is_dir()
    state = folder_snapshot(into / "projections")
    assert len(state["metrics"]) == 2 * 100 * 300
    assert len(state["parked_events"]) == 1


def test_a_segment_deleted_while_serving(base: tuple[Path, Path, Snapshot], tmp_path: Path) -> None:
    """Damage found while serving: the projector goes on applying the log, reads that need
    the lost file answer UNAVAILABLE naming it (at once, not after a wait), /readyz says
    not ready; the next start rebuilds."""
    data = _copy(base, tmp_path)
    with Serve(data, env={"DEARDIARY_HOT_POINTS_LIMIT": HOT_LIMIT}) as server:
        lost = sorted((data / "projections" / "segments").glob("seg-*.parquet"))[0]
        lost.unlink()
        more = records([*iteration_events("proj", "exp", "it-9"), metric_batch("it-9", 0, 40)])
        transport = HttpTransport(server.url)
        try:
            last = transport.send(more)[0]
        finally:
            transport.close()
        status = wait_until(
            lambda: (r := httpx.get(f"{server.url}/readyz").json())["applied"]["0"] > last and r,
            30,
            "the projector applies what came after the damage",
        )
        assert not status["ready"] and lost.name in status["last_error"], status
        answer = httpx.get(f"{server.url}/api/v1/sql", params={"q": "SELECT count(*) FROM metrics"})
        assert answer.status_code == 503, answer.text
        error = answer.json()["error"]
        assert error["code"] == "UNAVAILABLE" and lost.name in error["message"], error
        assert server.stop() == 0
    with Serve(data) as server:
        body = httpx.get(f"{server.url}/readyz").json()
        assert lost.name in body["rebuild"]["cause"]
        assert server.stop() == 0
    fresh = tmp_path / "fresh"
    log = SqliteEventLog(str(data / "log.db"))
    try:
        replay(log, fresh)
    finally:
        log.close()
    assert folder_snapshot(data / "projections") == folder_snapshot(fresh / "projections")


def test_readyz_says_rebuilding_while_healthz_answers(
    base: tuple[Path, Path, Snapshot], tmp_path: Path
) -> None:
    """In this process, the projector held back: the server answers while its
    projections are rebuilt, and says so."""
    data = _copy(base, tmp_path)
    _delete_segment(data / "projections")
    server = EmbeddedServer(data)  # damage found, moved aside; nothing applied yet
    try:
        with start_in_thread(server.app()) as http:
            assert httpx.get(f"{http.url}/healthz").status_code == 200
            answer = httpx.get(f"{http.url}/readyz")
            body = answer.json()
            assert answer.status_code == 503 and body["state"] == "rebuilding", body
            assert body["rebuild"]["applied_records"] == 0 and body["lag_events"] > 0
            assert "metric segment" in body["rebuild"]["cause"]
            server.start()  # the projector thread rebuilds
            wait_until(lambda: httpx.get(f"{http.url}/readyz").status_code == 200, 60, "ready")
            body = httpx.get(f"{http.url}/readyz").json()
            assert body["state"] == "running" and body["rebuild"]["fraction"] == 1.0
    finally:
        server.close()
