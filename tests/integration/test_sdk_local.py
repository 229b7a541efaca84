"""The Python entry point without any server: dd.connect(folder), iterations, flush, sql."""

from __future__ import annotations

import math
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest

import deardiary as dd


@pytest.fixture
def client(tmp_path: Path) -> Iterator[dd.Client]:
    c = dd.connect(str(tmp_path / "store"), spool_dir=tmp_path / "spool")
    yield c
    c.close()


def test_iteration_statuses_follow_the_block(client: dd.Client) -> None:
    with client.start_iteration(project="p", experiment="e", params={"lr": 0.1}) as ok:
        ok.log_metric("loss", 0.5)
    with pytest.raises(ValueError), client.start_iteration(project="p", experiment="e") as bad:
        raise ValueError("diverged at step 3")
    with pytest.raises(KeyboardInterrupt), client.start_iteration(project="p", experiment="e") as k:
        raise KeyboardInterrupt
    rows = client.sql("SELECT iteration_id, status, error_message FROM iterations").to_pylist()
    by_id = {r["iteration_id"]: r for r in rows}
    assert by_id[ok.id]["status"] == "SUCCEEDED"
    assert by_id[bad.id]["status"] == "FAILED"
    assert by_id[bad.id]["error_message"].startswith("ValueError: diverged at step 3")
    assert by_id[k.id]["status"] == "KILLED"


def test_metrics_default_steps_nan_and_sql_arrow(client: dd.Client) -> None:
    with client.start_iteration(project="p", experiment="e") as it:
        for v in (3.0, float("nan"), float("inf"), -float("inf"), 1.0):
            it.log_metric("loss", v)
        it.log_metrics({"a": 1.0, "b": 2.0}, step=7)
        it.log_metric("a", 5.0)
    client.flush()
    table = client.sql(
        f"SELECT key, step, value FROM metrics WHERE iteration_id = '{it.id}' ORDER BY key, step"
    )
    assert isinstance(table, pa.Table)
    got = [(r["key"], r["step"], r["value"]) for r in table.to_pylist()]
    assert got[:2] == [("a", 7, 1.0), ("a", 8, 5.0)] and got[2] == ("b", 7, 2.0)
    loss = [v for k, _, v in got if k == "loss"]
    assert [s for k, s, _ in got if k == "loss"] == [0, 1, 2, 3, 4]
    assert loss[0] == 3.0 and math.isnan(loss[1]) and loss[2] == math.inf and loss[3] == -math.inf
    history = client.metric_history(it.id, "loss")
    assert (
        history.column_names == ["step", "value", "recorded_at", "client_time"]
        and history.num_rows == 5
    )


def test_flush_makes_everything_durable_in_the_log(tmp_path: Path) -> None:
    c = dd.connect(str(tmp_path / "store"), spool_dir=tmp_path / "spool")
    with c.start_iteration(project="p", experiment="e", capture_env=False) as it:
        for i in range(10_000):
            it.log_metric("x", float(i))
    offset = c.flush()
    from deardiary.services.log.sqlite import SqliteEventLog

    log = SqliteEventLog(str(tmp_path / "store" / "log.db"))
    assert log.end_offsets() == {0: offset + 1}
    log.close()
    c.close()


def test_sweep_processes_resolve_names_to_one_entity(tmp_path: Path) -> None:
    store, script = tmp_path / "store", Path(__file__).with_name("sweep_trial.py")
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), str(store), str(tmp_path / f"s{t}"), str(t), "200"]
        )
        for t in range(6)
    ]
    assert [p.wait(timeout=120) for p in procs] == [0] * 6
    c = dd.connect(str(store), spool_dir=tmp_path / "reader-spool")
    counts = c.sql(
        "SELECT (SELECT count(*) FROM projects) AS projects,"
        " (SELECT count(*) FROM experiments) AS experiments,"
        " (SELECT count(*) FROM iterations) AS iterations,"
        " (SELECT count(*) FROM metrics) AS points,"
        " (SELECT count(DISTINCT status) FROM iterations) AS statuses"
    ).to_pylist()[0]
    assert counts == {
        "projects": 1,
        "experiments": 1,
        "iterations": 6,
        "points": 2400,
        "statuses": 1,
    }
    c.close()


def test_restore_writes_the_recorded_environment_back(client: dd.Client, tmp_path: Path) -> None:
    with client.start_iteration(project="p", experiment="e") as it:
        pass
    for _ in range(300):  # the snapshot is captured off the training thread
        if client.environment_of(it.id) is not None:
            break
    env = client.environment_of(it.id)
    assert env is not None and env.python_version.startswith("3.")
    written = dd.restore(it, tmp_path / "restored")
    names = {p.name for p in written}
    assert "requirements-freeze.txt" in names
    assert "msgspec" in (tmp_path / "restored" / "requirements-freeze.txt").read_text()
