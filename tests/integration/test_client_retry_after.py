"""The SDK waits as a 429 (or 503) asks: a real tiny HTTP server answers "too many
requests" with ``Retry-After`` before it accepts, for ingest (the shipper) and for reads;
a server that never accepts makes a read fail once the client's timeout would pass."""

from __future__ import annotations

import http.server
import itertools
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import deardiary as dd
from deardiary.schemas.errors import Unavailable
from deardiary.transport import RETRY_AFTER_MAX_S, error_from_response, retry_after


class _Busy(http.server.BaseHTTPRequestHandler):
    """429 with ``Retry-After: 1`` for the first `refusals` requests of each path, then
    what a DearDiary server answers; /api/v1/busy refuses for ever."""

    refusals = 2
    seen: dict[str, list[float]]
    lock = threading.Lock()

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        path = self.path.split("?")[0]
        with self.lock:
            times = self.seen.setdefault(path, [])
            times.append(time.monotonic())
            refused = path == "/api/v1/busy" or len(times) <= self.refusals
        if refused:
            # plain text for ingest (a proxy's page), our error body for reads
            body = b"slow down"
            if path != "/api/v1/events":
                error = {"code": "RESOURCE_EXHAUSTED", "message": "fair share", "details": {}}
                body = json.dumps({"error": error}).encode()
            self._send(429, body, {"Retry-After": "1"})
        elif path == "/api/v1/events":
            self._send(200, b'{"last_offset": 7}')
        else:
            self._send(200, b'{"items": ["ok"]}')

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in {"Content-Length": str(len(body)), **(headers or {})}.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def busy() -> Iterator[tuple[str, dict[str, list[float]]]]:
    seen: dict[str, list[float]] = {}
    handler = type("Handler", (_Busy,), {"seen": seen})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()


def _gaps(times: list[float]) -> list[float]:
    return [b - a for a, b in itertools.pairwise(times)]


def test_ingest_waits_as_retry_after_asks_then_delivers(
    busy: tuple[str, dict[str, list[float]]], tmp_path: Path
) -> None:
    url, seen = busy
    c = dd.connect(url, spool_dir=tmp_path / "spool")
    with c.start_iteration(project="p", experiment="e", capture_env=False) as it:
        it.log_metric("loss", 0.5, step=0)
    assert c.flush(timeout=30) == 7  # acknowledged in the end (the server's offset)
    c.close()
    posts = seen["/api/v1/events"]
    assert len(posts) == 3  # two refusals, then accepted
    # the shipper's own backoff would retry after 0.1 s, then 0.2 s
    assert all(gap >= 0.9 for gap in _gaps(posts)), _gaps(posts)


def test_a_read_waits_as_retry_after_asks_then_answers(
    busy: tuple[str, dict[str, list[float]]], tmp_path: Path
) -> None:
    url, seen = busy
    c = dd.connect(url, spool_dir=tmp_path / "spool")
    assert c.get("/api/v1/iterations") == {"items": ["ok"]}
    c.close()
    gets = seen["/api/v1/iterations"]
    assert len(gets) == 3
    assert all(gap >= 0.9 for gap in _gaps(gets)), _gaps(gets)


def test_a_read_the_server_never_accepts_fails_within_the_timeout(
    busy: tuple[str, dict[str, list[float]]], tmp_path: Path
) -> None:
    url, seen = busy
    c = dd.connect(url, spool_dir=tmp_path / "spool", timeout=2.5)
    with pytest.raises(Unavailable) as caught:
        c.get("/api/v1/busy")
    c.close()
    assert caught.value.status == 429
    assert caught.value.details["retry_after_s"] == 1.0
    assert 2 <= len(seen["/api/v1/busy"]) <= 3  # a wait of 1 s each, within 2.5 s


def test_retry_after_is_read_as_seconds_or_a_date_and_bounded() -> None:
    assert retry_after({"retry-after": "3"}) == 3.0
    assert retry_after({"retry-after": "999999"}) == RETRY_AFTER_MAX_S
    assert retry_after({"retry-after": "-5"}) == 0.0
    assert retry_after({"retry-after": "soon"}) is None
    assert retry_after({}) is None
    past = "Wed, 21 Oct 2015 07:28:00 GMT"
    assert retry_after({"retry-after": past}) == 0.0
    future = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 30))
    assert 25 <= (retry_after({"retry-after": future}) or 0) <= 31
    # a 429 of the server's own (its body says how long) keeps that wait
    body = {"error": {"code": "RESOURCE_EXHAUSTED", "message": "x", "details": {}}}
    body["error"]["details"] = {"retry_after_s": 2}
    error = error_from_response(429, json.dumps(body).encode())
    assert isinstance(error, Unavailable) and error.details["retry_after_s"] == 2.0
    # a non-retryable status keeps no wait
    assert "retry_after_s" not in error_from_response(400, b"x", {"retry-after": "1"}).details
