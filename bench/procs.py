"""Processes for the benchmark: free ports, servers started and stopped by PID, peak RSS."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _status_mb(pid: int | str, field: str) -> float:
    """A memory field of /proc/<pid>/status, in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def rss_mb(pid: int) -> float:
    """VmRSS: the process's resident set now."""
    return _status_mb(pid, "VmRSS")


def peak_rss_mb(pid: int | str = "self") -> float:
    """VmHWM: the process's peak resident set."""
    return _status_mb(pid, "VmHWM")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a running process has used so far, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_http(url: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2.0).status_code < 500:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise TimeoutError(url)


@contextmanager
def running(
    cmd: list[str], health_url: str, log: Path, start_timeout: float = 120.0
) -> Iterator[subprocess.Popen[bytes]]:
    """A server in a session of its own, up once `health_url` answers; stopping it stops
    every process it started (MLflow's server starts uvicorn workers, and job consumers
    unless job execution is off, as it is here: ~200 MB each, left running otherwise)."""
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, env=env, start_new_session=True
        )
    try:
        wait_http(health_url, start_timeout)
        yield proc
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def deardiary_serve(data: Path, port: int, log: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "deardiary.services.cli",
        "serve",
        "--data",
        str(data),
        "--port",
        str(port),
    ]


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
