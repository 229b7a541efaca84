"""A DearDiary client process for the ingest workload: one iteration, 5 keys, flat out.

Prints "ready" once connected, starts logging when "go" arrives on stdin (the benchmark
sends it to every client at once), prints one JSON line as soon as every point is
acknowledged -- when logging started, when the calls returned, when the last point was
acknowledged, peak RSS and CPU time used -- and exits when stdin closes."""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from procs import peak_rss_mb

import deardiary as dd

KEYS = ("loss", "acc", "lr", "grad_norm", "val_loss")


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main(target: str, spool: str, points: int, name: str) -> None:
    client = dd.connect(target, spool_dir=spool, max_buffer_points=2_000_000)
    it = client.start_iteration(project="bench", experiment="ingest", name=name, capture_env=False)
    client.flush(timeout=60)
    steps = points // len(KEYS)
    print("ready", flush=True)
    sys.stdin.readline()  # "go", sent to every client at once
    cpu_at_start = _cpu_seconds()
    began = time.time()
    log_metric = it.log_metric
    for step in range(steps):
        v = 1.0 / (step + 1)
        for key in KEYS:
            log_metric(key, v, step)
    logged = time.time()
    it.end()
    client.flush(timeout=600)
    flushed = time.time()
    print(
        json.dumps(
            {
                "points": steps * len(KEYS),
                "began": began,
                "logged": logged,
                "flushed": flushed,
                "rss_mb": peak_rss_mb(),
                "cpu_s": _cpu_seconds() - cpu_at_start,
            }
        ),
        flush=True,  # the benchmark queries as soon as every client has reported
    )
    # Stay up, idle, until the benchmark has measured: a training process goes on after
    # its last point, and eight interpreters shutting down would steal the CPU the
    # server still needs to make the points visible.
    sys.stdin.read()
    client.close()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4])
