"""`deardiary serve` as a real subprocess on a loopback port, stopped by its PID.

The server prints the URL it really listens on; that line, not a port picked in
advance, is where the tests go (a port picked in advance can be taken by another
process before the server binds it: then the server is started again on port 0).
Its stderr goes to a file, so a chatty server can never block on a full pipe.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import httpx

_BANNER = re.compile(r"deardiary serving .* on (http://\S+)")


def wait_healthy(url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"{url} did not become healthy")


def _start(data: Path, port: int, extra: tuple[str, ...], log: IO[bytes]) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "deardiary.services.cli", "serve", "--data", str(data)]
    return subprocess.Popen(
        [*command, "--port", str(port), *extra],
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
    )


def _url(proc: subprocess.Popen[str]) -> str | None:
    """The URL of the banner, or None when the server stopped before printing it."""
    assert proc.stdout is not None
    for line in proc.stdout:
        found = _BANNER.search(line)
        if found:
            return found.group(1)
    return None


def _stop(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()


@contextmanager
def serve(data: Path, port: int = 0, *extra: str) -> Iterator[str]:
    """Serve `data` (on `port`, 0 for any free one); yields the URL it listens on."""
    with tempfile.TemporaryFile() as log:
        proc = _start(data, port, extra, log)
        url = _url(proc)
        if url is None and port != 0:  # the port was taken meanwhile: any port will do
            proc.wait()
            proc = _start(data, 0, extra, log)
            url = _url(proc)
        try:
            if url is None:
                log.seek(0)
                raise RuntimeError(f"deardiary serve did not start: {log.read()[-2000:]!r}")
            wait_healthy(url)
            yield url
        finally:
            _stop(proc)
