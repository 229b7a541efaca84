"""What clients can do to the HTTP server of a real `deardiary serve` process.

Slow and half-open connections, stalled uploads, too many connections, floods of bad
requests, foreign Host headers, and a SIGTERM while a long request runs. Timeouts are
made tiny through ``DEARDIARY_*`` variables so that the whole file runs in seconds.
Every wait is on a condition (with a deadline); nothing sleeps to assert.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

import deardiary as dd
from deardiary.services.http.log_limits import RepeatFilter
from tests.ports import free_port

HEADER_TIMEOUT_S = 1.0
BODY_TIMEOUT_S = 1.0
SEND_TIMEOUT_S = 1.0
MAX_CONNECTIONS = 32
LOG_REPEAT_LIMIT = 5
LOG_REPEAT_INTERVAL_S = 2.0

SETTINGS = {
    "DEARDIARY_HEADER_TIMEOUT_S": str(HEADER_TIMEOUT_S),
    "DEARDIARY_BODY_TIMEOUT_S": str(BODY_TIMEOUT_S),
    "DEARDIARY_SEND_TIMEOUT_S": str(SEND_TIMEOUT_S),
    "DEARDIARY_KEEPALIVE_TIMEOUT_S": "60",  # so only the header/body timeouts can close
    "DEARDIARY_MAX_CONNECTIONS": str(MAX_CONNECTIONS),
    "DEARDIARY_LOG_REPEAT_LIMIT": str(LOG_REPEAT_LIMIT),
    "DEARDIARY_LOG_REPEAT_INTERVAL_S": str(LOG_REPEAT_INTERVAL_S),
}
SERVE = [sys.executable, "-m", "deardiary.services.cli", "serve"]
BAD_REQUEST = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nno colon in this header\r\n\r\n"


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached within {timeout} s: {what}")
        time.sleep(0.02)


@dataclass
class Served:
    proc: subprocess.Popen[bytes]
    port: int
    url: str
    banner: str
    stderr: Path

    def log_text(self) -> str:
        return self.stderr.read_text(errors="replace")


@contextlib.contextmanager
def deardiary_serve(data: Path, *extra: str, env: dict[str, str] | None = None) -> Iterator[Served]:
    """`deardiary serve` on a free port; stderr goes to a file next to `data`."""
    port = free_port()
    stderr = data.parent / f"serve-{port}.stderr"
    with stderr.open("wb") as err:
        proc = subprocess.Popen(
            [*SERVE, "--data", str(data), "--port", str(port), *extra],
            stdout=subprocess.PIPE,
            stderr=err,
            env={**os.environ, **SETTINGS, **(env or {})},
        )
    try:
        assert proc.stdout is not None
        banner = proc.stdout.readline().decode()  # printed once the socket listens
        assert banner, f"serve exited: {stderr.read_text(errors='replace')[-2000:]}"
        served = Served(proc, port, f"http://127.0.0.1:{port}", banner, stderr)
        wait_until(lambda: _healthy(served.url), 30, "healthy")
        yield served
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def closed_by_peer(sock: socket.socket) -> bool:
    """True once the server closed (or reset) the connection; never blocks."""
    sock.setblocking(False)
    try:
        return sock.recv(4096) == b""
    except BlockingIOError:
        return False
    except OSError:  # reset
        return True


def response_or_close(sock: socket.socket, timeout: float = 10.0) -> bytes:
    """What the server sends before closing ('' when it closes without a word)."""
    sock.settimeout(timeout)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except (ConnectionResetError, TimeoutError):
        pass
    return data


def _cpu_seconds(pid: int) -> float:
    """CPU time a process used so far (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with deardiary_serve(tmp_path_factory.mktemp("connections") / "data") as served:
        yield served
        served.proc.send_signal(signal.SIGTERM)
        assert served.proc.wait(timeout=30) == 0


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=10)


# -- read timeouts ----------------------------------------------------------------------


def test_half_open_connections_are_closed_after_the_header_timeout(served: Served) -> None:
    slow: list[socket.socket] = []
    opened: list[float] = []
    for _ in range(24):
        slow.append(connect(served.port))
        opened.append(time.monotonic())  # the server's clock for it starts after this
    try:
        for sock in slow:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        closed: dict[int, float] = {}
        with httpx.Client(base_url=served.url, timeout=5) as client:

            def all_closed() -> bool:
                # meanwhile a normal client is answered, and trickling bytes (every other
                # connection sends one more each round) does not extend the deadline
                assert client.get("/healthz").status_code == 200
                for i, sock in enumerate(slow):
                    if i not in closed and closed_by_peer(sock):
                        closed[i] = time.monotonic() - opened[i]
                    elif i not in closed and i % 2 == 0:
                        with contextlib.suppress(OSError):
                            sock.send(b"a")
                return len(closed) == len(slow)

            wait_until(all_closed, 15, "every half-open connection closed")
        assert min(closed.values()) >= HEADER_TIMEOUT_S * 0.9
        assert max(closed.values()) < HEADER_TIMEOUT_S + 5
    finally:
        for sock in slow:
            sock.close()


def test_a_stalled_body_upload_is_cut_and_a_slow_steady_one_is_not(served: Served) -> None:
    head = (
        "POST /api/v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        "Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n"
    )
    with connect(served.port) as stalled:
        stalled.sendall(head.format(1000).encode() + b"[{")
        started = time.monotonic()
        assert response_or_close(stalled) == b""  # cut without an answer
        assert BODY_TIMEOUT_S * 0.9 <= time.monotonic() - started < BODY_TIMEOUT_S + 5

    body = b"[" + b" " * 6 + b"]"  # takes more than two body timeouts, a byte at a time
    with connect(served.port) as steady:
        steady.sendall(head.format(len(body)).encode())
        for byte in body:
            time.sleep(BODY_TIMEOUT_S / 3)  # the pace of this client, not a wait
            steady.sendall(bytes([byte]))
        assert response_or_close(steady).startswith(b"HTTP/1.1 ")


def test_a_client_that_stops_reading_its_response_is_cut(served: Served) -> None:
    query = "SELECT repeat('x', 2000) AS s FROM range(3000)"  # a 6 MB answer
    body = f'{{"query": "{query}"}}'.encode()
    with socket.socket() as reader:
        reader.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        reader.connect(("127.0.0.1", served.port))
        reader.sendall(
            b"POST /api/v1/sql HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body) + body
        )
        # ... and reads nothing until the server says it gave up
        wait_until(lambda: "send timeout" in served.log_text(), 20, "the reader is cut")
        received = response_or_close(reader)
    head, _, start = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
    assert len(start) < length


def test_a_client_that_goes_away_cancels_its_statement(served: Served) -> None:
    query = "SELECT count(*) FROM range(100000000) a, range(1000000) b WHERE a.range + b.range < 0"
    body = f'{{"query": "{query}"}}'.encode()
    pid = served.proc.pid
    with connect(served.port) as client:
        before = _cpu_seconds(pid)
        client.sendall(
            b"POST /api/v1/sql HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body) + body
        )
        wait_until(lambda: _cpu_seconds(pid) - before > 1.0, 30, "the statement runs")
    # gone: the handler is cancelled and the statement interrupted -- the server goes idle

    def idle() -> bool:
        start = _cpu_seconds(pid)
        time.sleep(0.5)  # the window CPU time is measured over
        return _cpu_seconds(pid) - start < 0.15

    wait_until(idle, 10, "the server idles again")


# -- the connection cap -----------------------------------------------------------------


def _statuses(sockets: list[socket.socket]) -> list[int]:
    """Send one request on each socket; the status of each answer (0: closed unanswered)."""
    for sock in sockets:
        with contextlib.suppress(OSError):
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    statuses = []
    for sock in sockets:
        sock.settimeout(10)
        try:
            head = sock.recv(12)
        except OSError:
            head = b""
        statuses.append(int(head[9:12]) if head.startswith(b"HTTP/1.1 ") else 0)
    return statuses


def test_connections_beyond_the_cap_are_refused_and_the_count_recovers(served: Served) -> None:
    wait_until(lambda: _healthy(served.url), 10, "healthy")
    sockets = [connect(served.port) for _ in range(2 * MAX_CONNECTIONS)]
    try:
        statuses = _statuses(sockets)
        served_ok = statuses.count(200)
        assert 0 < served_ok <= MAX_CONNECTIONS  # kept alive: all still open
        assert set(statuses) <= {200, 503, 0}
        assert len(statuses) - served_ok >= MAX_CONNECTIONS
        with connect(served.port) as extra:
            refusal = response_or_close(extra)
        assert refusal == b"" or refusal.startswith(b"HTTP/1.1 503 ")
        if refusal:
            assert b'"code":"UNAVAILABLE"' in refusal
    finally:
        for sock in sockets:
            sock.close()

    def full_batch_served() -> bool:
        batch = [connect(served.port) for _ in range(MAX_CONNECTIONS)]
        try:
            return _statuses(batch) == [200] * MAX_CONNECTIONS
        finally:
            for sock in batch:
                sock.close()

    wait_until(full_batch_served, 15, f"{MAX_CONNECTIONS} connections served again")


# -- the server log ---------------------------------------------------------------------


def test_the_log_stays_small_under_a_flood_of_bad_requests(served: Served) -> None:
    def bad_request() -> bytes:
        with connect(served.port) as sock:
            sock.sendall(BAD_REQUEST)
            return response_or_close(sock)

    assert bad_request().startswith(b"HTTP/1.")  # aiohttp's 400: each one is logged
    wait_until(lambda: "Error handling request" in served.log_text(), 10, "logged")
    text = served.log_text()
    one = len(text.split("Error handling request")[1].encode())  # one line with traceback
    started, before = time.monotonic(), len(text.encode())
    flood = 400
    for _ in range(flood):
        bad_request()
    grown = len(served.log_text().encode()) - before
    # each interval the flood spans lets LOG_REPEAT_LIMIT lines through, and one summary
    intervals = (time.monotonic() - started) / LOG_REPEAT_INTERVAL_S + 2
    assert grown <= intervals * (LOG_REPEAT_LIMIT + 1) * (one + 200), (grown, intervals)
    assert grown < flood * one / 4

    # after the interval, the next such line says how many were left out
    def summarised() -> bool:
        bad_request()
        return "identical messages" in served.log_text()

    wait_until(summarised, 3 * LOG_REPEAT_INTERVAL_S + 5, "a 'suppressed' summary")
    assert "suppressed" in served.log_text()


def test_repeat_filter_passes_the_first_lines_then_says_how_many_it_left_out() -> None:
    now = [0.0]
    repeat = RepeatFilter(limit=3, interval_s=10, clock=lambda: now[0])
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    repeat.attach(handler)
    log = logging.getLogger("deardiary.tests.repeat")
    log.addHandler(handler)
    log.propagate = False
    try:
        for port in range(100):
            log.error("bad request from %s", port)
        log.error("another kind %s", 1)  # its own budget
        assert stream.getvalue().splitlines() == [
            "bad request from 0",
            "bad request from 1",
            "bad request from 2",
            "another kind 1",
        ]
        now[0] = 10.0  # the next interval: the first line of it carries the count
        log.error("bad request from %s", 100)
        assert stream.getvalue().splitlines()[-1] == (
            "bad request from 100 (... suppressed 97 identical messages in 10 s)"
        )
        for port in range(5):
            log.error("bad request from %s", port)
        repeat.flush()  # at shutdown: what is still counted is said
        assert stream.getvalue().splitlines()[-1] == (
            "... suppressed 3 identical messages like: bad request from 100"
        )
        assert repeat.suppressed_total == 100
    finally:
        log.removeHandler(handler)
        repeat.detach(handler)


# -- the Host header (no auth: DNS rebinding) ---------------------------------------------


@pytest.mark.parametrize(
    "host", ["localhost:{port}", "127.0.0.1:{port}", "[::1]:{port}", "LOCALHOST", "127.0.0.2"]
)
def test_loopback_host_names_are_answered(served: Served, host: str) -> None:
    answer = httpx.get(
        f"{served.url}/api/v1/projects", headers={"Host": host.format(port=served.port)}
    )
    assert answer.status_code == 200, answer.text


@pytest.mark.parametrize(
    "host", ["evil.example:{port}", "localhost.evil.example", "127.0.0.1.nip.io:{port}", "[::1"]
)
def test_other_host_names_are_refused_with_the_error_body(served: Served, host: str) -> None:
    header = host.format(port=served.port)
    for method, path in (("GET", "/api/v1/projects"), ("POST", "/api/v1/sql")):
        answer = httpx.request(
            method, f"{served.url}{path}", headers={"Host": header}, json={"query": "SELECT 1"}
        )
        assert answer.status_code == 403, answer.text
        error = answer.json()["error"]
        assert error["code"] == "PERMISSION_DENIED" and error["details"] == {"host": header}
    # liveness probes may use any name
    assert httpx.get(f"{served.url}/healthz", headers={"Host": header}).status_code == 200


# -- stopping -----------------------------------------------------------------------------


def _iteration(url: str, spool: Path) -> str:
    client = dd.connect(url, spool_dir=spool)
    with client.start_iteration(project="p", experiment="e", capture_env=False) as it:
        it.log_metric("loss", 0.5)
    client.flush()
    client.close()
    wait_until(
        lambda: httpx.get(f"{url}/api/v1/iterations/{it.id}").status_code == 200,
        30,
        "the iteration is projected",
    )
    return it.id


def _follow_in_background(url: str, iteration_id: str) -> threading.Event:
    """A log-follow stream that would last ten minutes; the event is set once it runs."""
    streaming = threading.Event()

    def follow() -> None:
        with (
            contextlib.suppress(httpx.HTTPError),
            httpx.stream(
                "GET",
                f"{url}/api/v1/iterations/{iteration_id}/logs/follow",
                params={"max_seconds": "600"},
                timeout=httpx.Timeout(5, read=None),
            ) as response,
        ):
            assert response.status_code == 200
            streaming.set()
            for _ in response.iter_bytes():
                pass

    threading.Thread(target=follow, daemon=True).start()
    return streaming


def _heavy_sql_in_background(served: Served) -> dict[str, httpx.Response]:
    """A cross join that would run for minutes; returns once the server burns CPU on it."""
    answer: dict[str, httpx.Response] = {}
    query = "SELECT count(*) FROM range(100000000) a, range(1000000) b WHERE a.range + b.range < 0"
    before = _cpu_seconds(served.proc.pid)

    def run() -> None:
        with contextlib.suppress(httpx.HTTPError):
            answer["sql"] = httpx.post(
                f"{served.url}/api/v1/sql", json={"query": query}, timeout=60
            )

    threading.Thread(target=run, daemon=True).start()
    wait_until(lambda: _cpu_seconds(served.proc.pid) - before > 1.0, 30, "the statement runs")
    return answer


@pytest.mark.parametrize("in_flight", ["log-follow stream", "heavy SQL statement"])
def test_sigterm_stops_a_server_with_a_long_request_in_flight(
    tmp_path: Path, in_flight: str
) -> None:
    env = {"DEARDIARY_SHUTDOWN_TIMEOUT_S": "1", "DEARDIARY_SQL_TIMEOUT_S": "600"}
    with deardiary_serve(tmp_path / "data", env=env) as served:
        if in_flight == "log-follow stream":
            iteration_id = _iteration(served.url, tmp_path / "spool")
            streaming = _follow_in_background(served.url, iteration_id)
            wait_until(streaming.is_set, 30, "the follow stream runs")
            answer: dict[str, httpx.Response] = {}
        else:
            answer = _heavy_sql_in_background(served)
            assert not answer
        started = time.monotonic()
        served.proc.send_signal(signal.SIGTERM)
        assert served.proc.wait(timeout=20) == 0, served.log_text()[-3000:]
        assert time.monotonic() - started < 10  # grace 1 s, then seconds at most
        if in_flight == "heavy SQL statement":  # interrupted, and told so
            wait_until(lambda: "sql" in answer, 5, "the SQL client is answered")
            assert answer["sql"].status_code == 503
            assert answer["sql"].json()["error"]["code"] == "UNAVAILABLE"


def test_a_second_signal_exits_at_once_and_a_wildcard_bind_is_reported(tmp_path: Path) -> None:
    with deardiary_serve(
        tmp_path / "data",
        "--host",
        "0.0.0.0",
        "--allow-remote-without-auth",
        env={"DEARDIARY_SHUTDOWN_TIMEOUT_S": "120"},
    ) as served:
        # what was bound, and a URL that reaches it
        assert f"0.0.0.0:{served.port}" in served.banner
        assert f"http://127.0.0.1:{served.port}" in served.banner
        streaming = _follow_in_background(served.url, _iteration(served.url, tmp_path / "spool"))
        wait_until(streaming.is_set, 30, "the follow stream runs")
        served.proc.send_signal(signal.SIGTERM)

        def refusing() -> bool:  # the first signal stopped the listener ...
            try:
                connect(served.port).close()
            except ConnectionRefusedError:
                return True
            return False

        wait_until(refusing, 10, "the listener closed")
        assert served.proc.poll() is None  # ... and waits for the stream (grace: 120 s)
        started = time.monotonic()
        served.proc.send_signal(signal.SIGINT)
        assert served.proc.wait(timeout=10) == 128 + signal.SIGINT
        assert time.monotonic() - started < 5
