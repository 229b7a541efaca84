"""Several processes append to one embedded log; kill -9 of one loses nothing acknowledged."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from deardiary.schemas import codec
from deardiary.services.log.sqlite import SqliteEventLog


def test_kill_9_of_an_appender(tmp_path: Path) -> None:
    path = str(tmp_path / "log.db")
    script = Path(__file__).with_name("appender.py")
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), path, f"w{n}", "60" if n else "100000"],
            stdout=subprocess.PIPE,
            text=True,
        )
        for n in range(4)
    ]
    acknowledged: set[str] = set()
    victim = procs[0]
    assert victim.stdout is not None
    for _ in range(200):  # let it acknowledge ten batches, then kill it mid-stream
        acknowledged.add(victim.stdout.readline().strip())
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=30)
    acknowledged |= {line.strip() for line in victim.stdout if line.strip()}
    victim.stdout.close()
    for proc in procs[1:]:
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0
        acknowledged |= set(out.split())

    log = SqliteEventLog(path)
    records = log.read({}, 1_000_000)
    log.close()
    offsets = [pos.offset for pos, _ in records]
    assert offsets == list(range(len(records)))  # dense, ordered
    ids = [codec.decode(payload).event_id for _, payload in records]  # no torn record
    assert len(ids) == len(set(ids))  # no duplicates
    assert acknowledged <= set(ids)  # nothing acknowledged is lost
    assert len(acknowledged) >= 3 * 60 * 20 + 200
