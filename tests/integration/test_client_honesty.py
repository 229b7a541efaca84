"""Fire-and-forget, honestly: what the SDK says when events cannot be delivered, a
scheme-less address refused, the environment snapshot of a short script, log lines
with their levels (it.log, DiaryHandler, captured logging)."""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import deardiary as dd
from deardiary.schemas import codec
from deardiary.schemas.errors import InvalidArgument, Unavailable
from deardiary.schemas.events import EnvironmentCaptured, IterationEnded, LogLinesLogged
from deardiary.services.log.sqlite import SqliteEventLog


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A loopback port nobody listens on (held bound, not listening, so it stays so)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


@pytest.mark.parametrize("target", ["localhost:9311", "127.0.0.1:9000", "[::1]:9000/"])
def test_a_server_address_without_scheme_is_refused(target: str, tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="http://"):
        dd.connect(target, spool_dir=tmp_path / "spool")


def test_an_existing_folder_with_a_colon_is_still_a_folder(tmp_path: Path) -> None:
    folder = tmp_path / "runs:2024"
    folder.mkdir()
    with dd.connect(str(folder), spool_dir=tmp_path / "spool") as c:
        assert c.url == str(folder.resolve())


UNREACHABLE = """
import sys
import deardiary as dd
c = dd.connect(sys.argv[1], spool_dir=sys.argv[2], exit_timeout=0.5)
with c.start_iteration(project="p", experiment="e", capture_env=False) as it:
    for step in range(10):
        it.log_metric("loss", 1.0, step)
print("logged")
"""


def test_an_unreachable_server_is_said_once_with_what_waits_where(
    closed_port: int, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    done = subprocess.run(
        [sys.executable, "-c", UNREACHABLE, f"http://127.0.0.1:{closed_port}", str(spool)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0 and done.stdout == "logged\n"
    lines = done.stderr.strip().splitlines()
    outage = [line for line in lines if "cannot deliver" in line]
    assert len(outage) == 1, done.stderr  # once, not once per retry
    assert str(spool) in outage[0] and f"127.0.0.1:{closed_port}" in outage[0]
    left = [line for line in lines if "before closing" in line]
    assert len(left) == 1 and str(spool) in left[0] and "events wait" in left[0], done.stderr
    assert any(p.suffix == ".rec" for p in spool.iterdir())  # kept for the next process


def test_flush_reports_what_is_undelivered(closed_port: int, tmp_path: Path) -> None:
    c = dd.connect(f"http://127.0.0.1:{closed_port}", spool_dir=tmp_path / "spool")
    try:
        it = c.start_iteration(project="p", experiment="e", capture_env=False)
        it.log_metric("loss", 1.0, 0)
        with pytest.raises(Unavailable) as caught:
            c.flush(timeout=0.5)
        message = caught.value.message
        assert "not acknowledged" in message and str(tmp_path / "spool") in message
        assert "events wait" in message
        assert c.undelivered() >= 3  # project, experiment, iteration, points
    finally:
        c.close(timeout=0.1)


SHORT_SCRIPT = """
import sys
import deardiary as dd
c = dd.connect(sys.argv[1], spool_dir=sys.argv[2])
with c.start_iteration(project="p", experiment="e") as it:
    it.log_metric("loss", 0.5, 0)
"""


def _bodies(data: Path) -> list[object]:
    log = SqliteEventLog(str(data / "log.db"))
    try:
        records = log.read({}, 10_000)
    finally:
        log.close()
    return [codec.decode(payload).body for _, payload in records]


def test_a_short_script_records_its_environment_before_its_end(tmp_path: Path) -> None:
    data = tmp_path / "data"
    subprocess.run(
        [sys.executable, "-c", SHORT_SCRIPT, str(data), str(tmp_path / "spool")],
        check=True,
        timeout=120,
        cwd=tmp_path,
    )
    kinds = [type(b).__name__ for b in _bodies(data)]
    assert "EnvironmentCaptured" in kinds, kinds
    assert kinds.index("EnvironmentCaptured") < kinds.index("IterationEnded")
    env = next(b for b in _bodies(data) if isinstance(b, EnvironmentCaptured)).environment
    assert "msgspec==" in env.pip_freeze and env.python_version.count(".") == 2
    assert any(isinstance(b, IterationEnded) for b in _bodies(data))


def _lines(data: Path) -> list[tuple[str, str, str]]:
    out = []
    for body in _bodies(data):
        if isinstance(body, LogLinesLogged):
            out += [
                (body.source, level, message)
                for level, message in zip(body.levels, body.messages, strict=True)
            ]
    return out


def test_log_lines_keep_their_levels(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    logger = logging.getLogger("test-honesty-trainer")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    console = logging.StreamHandler(sys.stderr)  # bound to the console before the capture
    logger.addHandler(console)
    try:
        with dd.connect(str(data), spool_dir=tmp_path / "spool") as c:
            with c.start_iteration(
                project="p", experiment="e", capture_output=True, capture_env=False
            ) as it:
                it.log("explicit", level="warning")
                it.log("numbered", level=logging.ERROR)
                handler = it.log_handler()
                logger.addHandler(handler)
                logger.info("via handler")
                logger.removeHandler(handler)
                logger.warning("to the console")
                print("printed")
                sys.stderr.write("raw stderr\n")
            c.flush()
    finally:
        logger.removeHandler(console)
    lines = _lines(data)
    assert ("log", "WARNING", "explicit") in lines
    assert ("log", "ERROR", "numbered") in lines
    assert ("logging", "INFO", "via handler") in lines
    assert ("stderr", "WARNING", "to the console") in lines  # not ERROR: the record's level
    assert ("stdout", "INFO", "printed") in lines
    assert ("stderr", "ERROR", "raw stderr") in lines
    assert console.stream is sys.stderr  # given back after the capture
    assert logging.getLogRecordFactory() is logging.LogRecord  # and the record factory
    out, err = capsys.readouterr()
    assert "printed" in out and "to the console" in err  # still shown (a tee)


def test_environment_snapshot_and_lines_come_before_the_end_in_the_log(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with dd.connect(str(data), spool_dir=tmp_path / "spool") as c:
        with c.start_iteration(project="p", experiment="e") as it:
            it.log("last words")
        c.flush()
    kinds = [type(b).__name__ for b in _bodies(data)]
    end = kinds.index("IterationEnded")
    assert kinds.index("EnvironmentCaptured") < end, kinds
    assert kinds.index("LogLinesLogged") < end, kinds


def test_the_readmes_artifact_and_registry_calls(tmp_path: Path) -> None:
    (tmp_path / "model.pt").write_bytes(b"weights")
    with dd.connect(str(tmp_path / "data"), spool_dir=tmp_path / "spool") as c:
        with c.start_iteration(project="mnist", experiment="lr-sweep", capture_env=False) as it:
            artifact_id = it.log_artifact(tmp_path / "model.pt")
            version_id = it.register_model("mnist-cnn", artifact_id)
        c.registry.stage("mnist", "mnist-cnn", version_id, "Production", archive_existing=True)
        c.registry.set_alias("mnist", "mnist-cnn", "champion", version_id)
        with pytest.raises(InvalidArgument, match="one of None, Staging, Production"):
            c.registry.stage("mnist", "mnist-cnn", version_id, "prod")
        c.flush()
        rows = c.sql("SELECT version, stage, artifact_id FROM model_versions").to_pylist()
    assert rows == [{"version": 1, "stage": "Production", "artifact_id": artifact_id}]
