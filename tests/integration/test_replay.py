"""Replay from offset 0 answers every query identically; --as-of rebuilds the past."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from deardiary.schemas import codec
from deardiary.schemas.envelope import wrap
from deardiary.schemas.events import Event, IterationEnded, IterationStatus, ParamsLogged
from deardiary.services.embedded import EmbeddedStore
from deardiary.services.log import LogRecord
from deardiary.services.log.sqlite import SqliteEventLog
from tests.builders import metrics, sweep_start
from tests.store_snapshot import snapshot


def _append(log: SqliteEventLog, events: list[Event]) -> int:
    envs = [wrap(e, actor="test") for e in events]
    positions = log.append([LogRecord(e.event_id, e.key, codec.encode(e)) for e in envs])
    return positions[-1].offset


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "deardiary.services.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    log = SqliteEventLog(str(data / "log.db"))
    _append(log, sweep_start())
    _append(log, [ParamsLogged(iteration_id="it-1", params={"lr": "0.01"})])
    for chunk in range(5):
        _append(
            log, [metrics("it-1", [("loss", 1.0 / (chunk * 10 + i + 1), -1) for i in range(10)])]
        )
    _append(log, [metrics("it-1", [("loss", float("nan"), -1), ("loss", float("inf"), -1)])])
    log.close()
    return data


def test_replay_answers_identically(data_dir: Path, tmp_path: Path) -> None:
    with EmbeddedStore(data_dir) as live:
        live.catch_up()
        live.store.compact()
        live_state = snapshot(live.store.reader())
    result = _cli("replay", "--data", str(data_dir), "--into", str(tmp_path / "rebuilt"))
    assert result.returncode == 0, result.stderr
    with EmbeddedStore(tmp_path / "rebuilt", create_log=False) as rebuilt:
        assert snapshot(rebuilt.store.reader()) == live_state
    assert live_state["metrics"] and len(live_state["metrics"]) == 52


def test_replay_refuses_a_folder_with_projections(data_dir: Path, tmp_path: Path) -> None:
    assert _cli("replay", "--data", str(data_dir), "--into", str(tmp_path / "r")).returncode == 0
    again = _cli("replay", "--data", str(data_dir), "--into", str(tmp_path / "r"))
    assert again.returncode == 2 and "CONFLICT" in again.stderr


def test_as_of_offset_and_time(tmp_path: Path) -> None:
    data = tmp_path / "data"
    log = SqliteEventLog(str(data / "log.db"))
    _append(log, sweep_start())
    mid = _append(log, [metrics("it-1", [("loss", 0.5, -1)])])
    cut = datetime.now(UTC)
    while datetime.now(UTC) <= cut:  # the next append gets a strictly later log time
        pass
    _append(log, [metrics("it-1", [("loss", 0.1, -1)])])
    _append(log, [IterationEnded(iteration_id="it-1", status=IterationStatus.SUCCEEDED)])
    log.close()

    by_offset = _cli(
        "replay", "--data", str(data), "--into", str(tmp_path / "o"), "--as-of", str(mid)
    )
    by_time = _cli(
        "replay", "--data", str(data), "--into", str(tmp_path / "t"), "--as-of", cut.isoformat()
    )
    assert by_offset.returncode == 0 and by_time.returncode == 0, by_offset.stderr + by_time.stderr
    for folder in ("o", "t"):
        out = _cli(
            "sql",
            "--data",
            str(tmp_path / folder),
            "--format",
            "json",
            "SELECT i.status, m.count, m.last"
            " FROM iterations i JOIN last_metrics m USING (iteration_id)",
        )
        assert [json.loads(line) for line in out.stdout.splitlines()] == [
            {"status": "RUNNING", "count": 1, "last": 0.5}
        ], out.stderr
    now = _cli("sql", "--data", str(data), "--format", "json", "SELECT status FROM iterations")
    assert json.loads(now.stdout) == {"status": "SUCCEEDED"}


def test_sql_cli_formats_and_refuses_writes(data_dir: Path) -> None:
    table = _cli(
        "sql", "--data", str(data_dir), "SELECT key, count(*) AS n FROM metrics GROUP BY key"
    )
    assert table.returncode == 0 and "loss" in table.stdout and "52" in table.stdout
    csv = _cli(
        "sql",
        "--data",
        str(data_dir),
        "--format",
        "csv",
        "SELECT value FROM metrics WHERE NOT isfinite(value) ORDER BY step",
    )
    assert csv.stdout.split() == ['"value"', "nan", "inf"]
    js = _cli(
        "sql",
        "--data",
        str(data_dir),
        "--format",
        "json",
        "SELECT value FROM metrics WHERE NOT isfinite(value) ORDER BY step",
    )
    values = [json.loads(line)["value"] for line in js.stdout.splitlines()]
    assert str(values) == "[nan, inf]"
    refused = _cli("sql", "--data", str(data_dir), "DELETE FROM metrics_hot")
    assert refused.returncode == 2 and "PERMISSION_DENIED" in refused.stderr
    refused = _cli("sql", "--data", str(data_dir), "SELECT * FROM read_csv('/etc/passwd')")
    assert refused.returncode == 2 and "PERMISSION_DENIED" in refused.stderr
