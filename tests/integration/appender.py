"""Subprocess for the crash test: append batches forever, print each acknowledged id."""

from __future__ import annotations

import sys

from deardiary.schemas import codec
from deardiary.schemas.envelope import wrap
from deardiary.schemas.events import IterationHeartbeat
from deardiary.services.log import LogRecord
from deardiary.services.log.sqlite import SqliteEventLog


def main(path: str, name: str, batches: int) -> None:
    log = SqliteEventLog(path)
    for b in range(batches):
        envs = [wrap(IterationHeartbeat(iteration_id=f"{name}-{b}-{i}")) for i in range(20)]
        log.append([LogRecord(e.event_id, e.key, codec.encode(e)) for e in envs])
        sys.stdout.write("".join(f"{e.event_id}\n" for e in envs))
        sys.stdout.flush()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
