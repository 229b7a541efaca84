"""Local readers of a folder that `deardiary serve` owns: answered at once, writes included.

DuckDB lets one process hold the projections; the server holds them. Local readers
(`deardiary sql --data`, `dd.connect(folder).sql()` / `metric_history`, `deardiary users
list`) find the server in <data>/server.json and ask it, waiting for the log's current end
-- so a write just made into the folder is in the answer. No lock error, no 30 s wait.
"""

from __future__ import annotations

import json
import stat
import time
from pathlib import Path

import pytest

import deardiary as dd
from deardiary.services.discovery import SERVER_FILE
from tests.faults.served_folder import Serve, cli

QUICK_S = 15.0  # far below the old 30 s lock wait, with room for a loaded machine


def _log_and_read(data: Path) -> None:
    client = dd.connect(str(data), spool_dir=data.parent / "spool")
    try:
        with client.start_iteration("proj", "exp", name="local", capture_env=False) as it:
            it.log_params({"lr": 0.1})
            for step in range(50):
                it.log_metric("loss", 1.0 / (step + 1), step=step)
            started = time.monotonic()
            rows = client.sql(
                f"SELECT count(*) AS n FROM metrics WHERE iteration_id = '{it.id}'"
            ).to_pylist()
            assert rows == [{"n": 50}]  # the points just written, through the server
            history = client.metric_history(it.id, "loss")
            assert history.num_rows == 50
            assert time.monotonic() - started < QUICK_S
    finally:
        client.close()


@pytest.mark.parametrize("auth", [False, True], ids=["no-auth", "auth"])
def test_local_readers_ask_the_server_that_owns_the_folder(tmp_path: Path, auth: bool) -> None:
    data = tmp_path / "data"
    with Serve(data, *(["--auth"] if auth else [])) as server:
        info = data / SERVER_FILE
        assert stat.S_IMODE(info.stat().st_mode) == 0o600
        assert json.loads(info.read_text())["pid"] == server.pid

        _log_and_read(data)

        started = time.monotonic()
        done = cli(
            "sql", "--data", str(data), "--format", "csv", "SELECT count(*) AS n FROM metrics"
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.split() == ['"n"', "50"]
        assert time.monotonic() - started < QUICK_S
        if auth:
            created = cli("users", "create", "ann", "--data", str(data), input="ann-password-1\n")
            assert created.returncode == 0, created.stderr
            listed = cli("users", "list", "--data", str(data))
            assert listed.returncode == 0 and "ann" in listed.stdout, listed.stderr
        assert server.stop() == 0
    assert not (data / SERVER_FILE).exists()  # removed at a clean shutdown


def test_a_stale_server_file_is_ignored(tmp_path: Path) -> None:
    data = tmp_path / "data"
    server = Serve(data)
    server.kill()  # kill -9: server.json stays, naming a dead process
    assert (data / SERVER_FILE).exists()
    _log_and_read(data)  # opens the folder itself
