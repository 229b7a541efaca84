"""The SDK's HTTP pool against a real aiohttp server (and a real forward proxy).

Keep-alive reuse, a kept connection the server closed meanwhile, chunked and
close-delimited bodies, refused connections and timeouts as `Unavailable`, and the
proxy variables."""

from __future__ import annotations

import asyncio
import http.server
import shutil
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp import web

from deardiary.pool import ConnectFailed, HttpPool, Url, query_string
from deardiary.schemas.errors import InvalidArgument, Unavailable


class _Server:
    def __init__(self, keepalive_s: float, tls: ssl.SSLContext | None = None) -> None:
        self.peers: list[int] = []
        self.keepalive_s = keepalive_s
        self.tls = tls
        self.url = ""
        self._ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _app(self) -> web.Application:
        async def ok(request: web.Request) -> web.Response:
            peer = request.transport.get_extra_info("peername") if request.transport else None
            self.peers.append(int(peer[1]) if peer else -1)
            return web.json_response({"q": dict(request.query), "path": request.path})

        async def echo(request: web.Request) -> web.Response:
            body = await request.read()
            return web.Response(body=body, headers={"X-Auth": request.headers.get("A", "")})

        async def chunked(request: web.Request) -> web.StreamResponse:
            response = web.StreamResponse()
            response.enable_chunked_encoding()
            await response.prepare(request)
            for part in (b"one,", b"two,", b"three"):
                await response.write(part)
            await response.write_eof()
            return response

        async def closing(request: web.Request) -> web.Response:
            return web.Response(body=b"bye", headers={"Connection": "close"})

        async def slow(request: web.Request) -> web.Response:
            await asyncio.sleep(2)
            return web.Response(body=b"late")

        app = web.Application()
        app.router.add_get("/prefix/ok", ok)
        app.router.add_get("/ok", ok)
        app.router.add_post("/echo", echo)
        app.router.add_get("/chunked", chunked)
        app.router.add_get("/close", closing)
        app.router.add_get("/slow", slow)
        return app

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        runner = web.AppRunner(self._app(), keepalive_timeout=self.keepalive_s)
        self._loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=self.tls)
        self._loop.run_until_complete(site.start())
        port = runner.addresses[0][1]
        self.url = f"https://localhost:{port}" if self.tls else f"http://127.0.0.1:{port}"
        self._runner = runner
        self._ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(runner.cleanup())

    def __enter__(self) -> _Server:
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


@pytest.fixture
def server() -> Iterator[_Server]:
    with _Server(keepalive_s=0.3) as running:
        yield running


def test_one_connection_is_kept_and_reused(server: _Server) -> None:
    pool = HttpPool(server.url)
    try:
        for n in range(5):
            r = pool.get("/ok", params={"n": n, "text": "a b&c=d/é"})
            assert r.status_code == 200
            assert r.json()["q"] == {"n": str(n), "text": "a b&c=d/é"}
    finally:
        pool.close()
    assert len(set(server.peers)) == 1  # one TCP connection for all five


def test_a_connection_the_server_closed_while_idle_is_replaced(server: _Server) -> None:
    pool = HttpPool(server.url)
    try:
        assert pool.get("/ok").status_code == 200
        threading.Event().wait(0.8)  # past the server's keep-alive timeout: it hung up
        assert pool.post("/echo", content=b"again").content == b"again"
    finally:
        pool.close()


def test_bodies_by_length_chunks_or_close_and_headers(server: _Server) -> None:
    pool = HttpPool(server.url)
    try:
        assert pool.get("/chunked").content == b"one,two,three"
        assert pool.get("/close").content == b"bye"
        echoed = pool.post("/echo", json={"a": [1, 2]}, headers={"A": "token"})
        assert echoed.json() == {"a": [1, 2]} and echoed.headers["x-auth"] == "token"
        big = bytes(range(256)) * 4096  # 1 MiB: header and body sent apart
        assert pool.post("/echo", content=big).content == big
        assert pool.get("/missing").status_code == 404
    finally:
        pool.close()


def test_a_body_in_parts_arrives_whole_and_in_order(server: _Server) -> None:
    """`content` as a list: small and big parts, a big one first (the head goes alone)."""
    big = bytes(range(256)) * 1024
    pool = HttpPool(server.url)
    try:
        for parts in ([b"a", big, b"b", big[::-1]], [big, b"c"], [b"only"], [], [b"", b"x"]):
            assert pool.post("/echo", content=parts).content == b"".join(parts)
        assert pool.post("/echo", content=bytearray(b"as before")).content == b"as before"
    finally:
        pool.close()


def test_a_base_path_prefixes_every_request(server: _Server) -> None:
    pool = HttpPool(server.url + "/prefix/")
    try:
        assert pool.get("/ok").json()["path"] == "/prefix/ok"
    finally:
        pool.close()


def test_refused_and_slow_are_unavailable(server: _Server, tmp_path: Path) -> None:
    import socket

    with socket.socket() as held:  # bound, not listening: connecting is refused
        held.bind(("127.0.0.1", 0))
        pool = HttpPool(f"http://127.0.0.1:{held.getsockname()[1]}", timeout=2)
        with pytest.raises(ConnectFailed):
            pool.get("/ok")
    slow = HttpPool(server.url, timeout=0.3)
    try:
        with pytest.raises(Unavailable, match="in time"):
            slow.get("/slow")
        assert slow.get("/ok").status_code == 200  # the pool goes on with a new connection
    finally:
        slow.close()


class _Proxy(http.server.BaseHTTPRequestHandler):
    seen: list[str] = []

    def do_GET(self) -> None:
        _Proxy.seen.append(self.requestline)
        body = f"proxied {self.path}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_proxy_variables_are_honoured_but_not_for_loopback(
    server: _Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    proxy = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Proxy)
    thread = threading.Thread(target=proxy.serve_forever, daemon=True)
    thread.start()
    try:
        monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{proxy.server_address[1]}")
        monkeypatch.setenv("no_proxy", "skip.example")
        via = HttpPool("http://tracking.example:9000")
        assert via.get("/ok", params={"a": 1}).content == (
            b"proxied http://tracking.example:9000/ok?a=1"
        )
        via.close()
        assert _Proxy.seen == ["GET http://tracking.example:9000/ok?a=1 HTTP/1.1"]
        direct = HttpPool(server.url)  # loopback: never through the proxy
        assert direct.get("/ok").status_code == 200
        direct.close()
        assert len(_Proxy.seen) == 1
        assert HttpPool("http://skip.example")._proxy is None  # no_proxy
    finally:
        proxy.shutdown()
        proxy.server_close()


def test_a_plain_http_pool_never_imports_the_socket_module(server: _Server) -> None:
    """http:// talks over the C socket (`socket` costs a trial process ~5 ms of enums)."""
    probe = (
        "import sys\n"
        "from deardiary.pool import HttpPool\n"
        "pool = HttpPool(sys.argv[1])\n"
        "assert pool.get('/ok', params={'a': 1}).json()['q'] == {'a': '1'}\n"
        "assert pool.post('/echo', content=b'x' * 100_000).content == b'x' * 100_000\n"
        "print('socket' in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe, server.url], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False"]


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_https_verifies_the_server_and_keeps_the_connection(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """TLS on top of the pool's own socket: a server certificate the system trusts (here
    via SSL_CERT_FILE) is accepted, the connection is kept, and one not trusted fails
    to connect."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    request = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2"]
    subject = ["-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost"]
    subprocess.run(
        [*request, "-keyout", str(key), "-out", str(cert), *subject],
        check=True,
        capture_output=True,
    )
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert, key)
    with _Server(keepalive_s=30, tls=tls) as running:
        untrusted = HttpPool(running.url, timeout=10)
        with pytest.raises(ConnectFailed):
            untrusted.get("/ok")
        untrusted.close()
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))
        pool = HttpPool(running.url, timeout=10)
        try:
            assert pool.get("/ok", params={"n": 1}).json() == {"q": {"n": "1"}, "path": "/ok"}
            assert pool.post("/echo", content=b"y" * 200_000).content == b"y" * 200_000
            assert pool.get("/ok").status_code == 200
        finally:
            pool.close()
        assert len(set(running.peers)) == 1  # one TLS connection, kept


def test_urls_and_query_strings() -> None:
    assert Url.parse("https://h.example/base/") == Url("https", "h.example", 443, "/base")
    assert Url.parse("http://[::1]:9000").authority == "[::1]:9000"
    assert Url.parse("http://u:p@h:81").userinfo == "u:p"
    for bad in ("ftp://h", "h:9000", "http://", "http://h:99999", "http://h:x"):
        with pytest.raises(InvalidArgument):
            Url.parse(bad)
    assert query_string({"a": None, "b": True, "c": [1, 2], "d": "x y"}) == (
        "b=true&c=1&c=2&d=x%20y"
    )
    with pytest.raises(InvalidArgument, match="line breaks"):
        HttpPool("http://127.0.0.1:1").get("/", headers={"X": "a\r\nInjected: 1"})
