"""One HTTP/1.1 connection pool for everything a client says to a server.

Why not a general HTTP library: a sweep starts a fresh process per trial, and each one
paid ~0.1 s to import httpx and load the system's CA bundle three times (one client
each for ingest, sign-in and reads) before its first point -- for a plain ``http://``
URL that never needs TLS. The SDK needs little of HTTP: a few request shapes to one
server, bodies with a length, keep-alive. This pool speaks exactly that over the
standard library's sockets; TLS (`ssl`) is imported and its context built only for
``https://``, once per pool. A plain ``http://`` connection is the C socket itself
(`_socket`) read through an `io.BufferedReader`: importing `socket` turns hundreds of
constants into enums, ~13M instructions (~5 ms) of every trial process.

* Connections are kept alive and reused by any thread; a request on a kept connection
  that the server closed meanwhile (idle timeout) is sent again once on a new one --
  nothing of it was read by the server, so a POST is safe to resend.
* Responses are read by ``Content-Length``, ``Transfer-Encoding: chunked`` or until
  the connection closes.
* Proxies: ``http_proxy``/``https_proxy``/``no_proxy`` (either case) are honoured as
  other HTTP clients do; loopback addresses never go through a proxy.
* Failures to connect or to talk are `Unavailable` (`ConnectFailed` when no connection
  could be made), so callers retry or spool them like any other outage.
"""

from __future__ import annotations

import io
import os
from _thread import allocate_lock  # threading.Lock itself; `threading` is ~0.7 ms to import

from deardiary.schemas.errors import InvalidArgument, Unavailable

TYPE_CHECKING = False
if TYPE_CHECKING:  # `typing` costs a trial process milliseconds to import
    import _socket
    import ssl
    from collections.abc import Mapping
    from typing import Any

_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_MAX_LINE = 65_536
_MAX_HEADERS = 100
_LOOPBACK = ("localhost", "127.0.0.1", "::1")


class ConnectFailed(Unavailable):
    """No connection could be made (refused, unreachable, DNS, TLS handshake)."""


def quote(text: str) -> str:
    """Percent-encode everything but RFC 3986's unreserved characters."""
    return "".join(chr(b) if b in _UNRESERVED else f"%{b:02X}" for b in text.encode())


def query_string(params: Mapping[str, Any]) -> str:
    """``a=1&b=x%20y`` from a mapping (None values left out; lists repeat the key)."""
    parts = []
    for key, value in params.items():
        values = value if isinstance(value, list | tuple) else [value]
        for v in values:
            if v is None:
                continue
            text = ("true" if v else "false") if isinstance(v, bool) else str(v)
            parts.append(f"{quote(str(key))}={quote(text)}")
    return "&".join(parts)


class Url:
    """The parts of an ``http(s)://[user@]host[:port][/prefix]`` URL this pool needs."""

    __slots__ = ("host", "port", "prefix", "scheme", "userinfo")

    def __init__(self, scheme: str, host: str, port: int, prefix: str, userinfo: str = "") -> None:
        self.scheme = scheme
        self.host = host
        self.port = port
        self.prefix = prefix  # path prefix without a trailing slash ("" for the root)
        self.userinfo = userinfo

    def _parts(self) -> tuple[str, str, int, str, str]:
        return self.scheme, self.host, self.port, self.prefix, self.userinfo

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Url) and self._parts() == other._parts()

    def __hash__(self) -> int:
        return hash(self._parts())

    def __repr__(self) -> str:
        return "Url({!r}, {!r}, {!r}, {!r}, {!r})".format(*self._parts())

    @classmethod
    def parse(cls, url: str) -> Url:
        scheme, sep, rest = url.partition("://")
        scheme = scheme.lower()
        if not sep or scheme not in ("http", "https"):
            raise InvalidArgument(f"not an http(s):// URL: {url!r}")
        authority, slash, path = rest.partition("/")
        userinfo, at, hostport = authority.rpartition("@")
        if not at:
            userinfo, hostport = "", authority
        if hostport.startswith("["):  # [IPv6]:port
            host, _, after = hostport[1:].partition("]")
            port_text = after.removeprefix(":")
        else:
            host, _, port_text = hostport.partition(":")
        if not host:
            raise InvalidArgument(f"no host in {url!r}")
        try:
            port = int(port_text) if port_text else (443 if scheme == "https" else 80)
        except ValueError:
            raise InvalidArgument(f"bad port in {url!r}") from None
        if not 0 < port < 65536:
            raise InvalidArgument(f"bad port in {url!r}")
        prefix = ("/" + path).rstrip("/") if slash else ""
        return cls(scheme, host, port, prefix, userinfo)

    @property
    def authority(self) -> str:
        """What the ``Host`` header says."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"

    @property
    def origin(self) -> str:
        return f"{self.scheme}://{self.authority}"


class Response:
    """A whole response: status, headers (lower-case names) and body bytes."""

    __slots__ = ("content", "headers", "status_code")

    def __init__(self, status_code: int, headers: dict[str, str], content: bytes) -> None:
        self.status_code = status_code
        self.headers = headers
        self.content = content

    def json(self) -> Any:
        import msgspec  # reads only: a trial process that writes never imports it

        return msgspec.json.decode(self.content)

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")


class _Stale(Exception):
    """A kept connection was closed by the server before it answered anything."""


class _SocketReader(io.RawIOBase):
    """What ``socket.makefile("rb")`` reads through, on the C socket (no `socket` module):
    an `io.BufferedReader` over this gives `readline` and `read(n)`."""

    def __init__(self, sock: _socket.socket) -> None:
        super().__init__()
        self._sock = sock

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        return self._sock.recv_into(buffer)


class _Connection:
    __slots__ = ("file", "sock")

    def __init__(self, sock: _socket.socket) -> None:
        self.sock = sock
        self.file = io.BufferedReader(_SocketReader(sock))

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def _env_proxy(scheme: str) -> str | None:
    for name in (f"{scheme}_proxy", f"{scheme.upper()}_PROXY", "all_proxy", "ALL_PROXY"):
        value = os.environ.get(name)
        if value:
            return value
    return None


def _bypassed(host: str) -> bool:
    if host in _LOOPBACK or host.startswith("127."):
        return True
    no_proxy = os.environ.get("no_proxy") or os.environ.get("NO_PROXY") or ""
    host = host.lower()
    for entry in no_proxy.replace(" ", "").split(","):
        entry = entry.lower().split(":")[0].lstrip(".")
        if entry == "*" or (entry and (host == entry or host.endswith("." + entry))):
            return True
    return False


class HttpPool:
    """Keep-alive connections to one server, shared by every thread of a client.

    Nothing is done on construction: the first request connects."""

    def __init__(self, base_url: str, timeout: float = 30.0, max_idle: int = 4) -> None:
        self.base_url = base_url.rstrip("/")
        self.url = Url.parse(self.base_url)
        self.timeout = timeout
        self.max_idle = max_idle
        self._idle: list[_Connection] = []
        self._lock = allocate_lock()
        self._closed = False
        self._ssl: ssl.SSLContext | None = None
        proxy = None if _bypassed(self.url.host) else _env_proxy(self.url.scheme)
        self._proxy = Url.parse(proxy if "://" in proxy else "http://" + proxy) if proxy else None

    # -- requests --------------------------------------------------------------------------

    def get(self, path: str, **kwargs: Any) -> Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> Response:
        return self.request("POST", path, **kwargs)

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        content: bytes | list[bytes] | None = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> Response:
        """Send one request and read its whole response; `Unavailable` when the server
        cannot be reached or stops talking (after one retry on a stale kept connection).
        `content` as a list: the body's parts, sent one after another (never joined)."""
        head = dict(headers or {})
        if json is not None:
            import msgspec  # reads and sign-in only, as above

            content = msgspec.json.encode(json)
            head.setdefault("Content-Type", "application/json")
        target = self.url.prefix + path
        if params:
            query = query_string(params)
            if query:
                target += ("&" if "?" in target else "?") + query
        data = self._encode_request(method, target, head, content)
        for attempt in (0, 1):
            conn, reused = self._checkout(timeout)
            try:
                response, keep = self._exchange(conn, method, data, content, reused)
            except _Stale:
                conn.close()
                if attempt:
                    raise Unavailable(f"{self.url.origin} closed the connection") from None
                continue
            except TimeoutError as exc:
                conn.close()
                raise Unavailable(f"no answer from {self.url.origin} in time: {exc}") from exc
            except (OSError, ValueError) as exc:
                conn.close()
                raise Unavailable(f"lost the connection to {self.url.origin}: {exc!r}") from exc
            if keep:
                self._checkin(conn)
            else:
                conn.close()
            return response
        raise AssertionError("unreachable")  # pragma: no cover

    def _encode_request(
        self, method: str, target: str, headers: dict[str, str], content: bytes | list[bytes] | None
    ) -> bytes:
        if self._proxy is not None and self.url.scheme == "http":
            target = self.url.origin + target  # absolute form, for the proxy
            if self._proxy.userinfo:
                headers.setdefault("Proxy-Authorization", _basic(self._proxy.userinfo))
        lines = [f"{method} {target} HTTP/1.1", f"Host: {self.url.authority}"]
        if content is not None or method in ("POST", "PUT", "PATCH"):
            size = sum(map(len, content)) if isinstance(content, list) else len(content or b"")
            lines.append(f"Content-Length: {size}")
        lines.append("Accept-Encoding: identity")
        lines.extend(f"{k}: {v}" for k, v in headers.items())
        for line in lines:
            if "\r" in line or "\n" in line:
                raise InvalidArgument(f"line breaks in a request header: {line[:80]!r}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def _exchange(
        self,
        conn: _Connection,
        method: str,
        head: bytes,
        content: bytes | list[bytes] | None,
        reused: bool,
    ) -> tuple[Response, bool]:
        parts = content if isinstance(content, list) else [] if content is None else [content]
        try:
            if parts and len(parts[0]) <= 65_536:  # a small start goes with the head
                conn.sock.sendall(head + parts[0])
                parts = parts[1:]
            else:
                conn.sock.sendall(head)
            for part in parts:
                conn.sock.sendall(part)
            status_line = conn.file.readline(_MAX_LINE + 1)
        except (ConnectionError, BrokenPipeError) as exc:
            if reused:
                raise _Stale from exc
            raise
        if not status_line:
            if reused:
                raise _Stale
            raise ConnectionResetError("the server closed the connection without answering")
        version, status, headers = self._read_head(conn, status_line)
        while 100 <= status < 200:  # interim responses (we never ask for them)
            version, status, headers = self._read_head(conn, conn.file.readline(_MAX_LINE + 1))
        body = self._read_body(conn, method, status, headers)
        connection = headers.get("connection", "").lower()
        delimited = (
            "content-length" in headers
            or "chunked" in headers.get("transfer-encoding", "").lower()
            or method == "HEAD"
            or status in (204, 304)
        )
        keep = (
            delimited
            and "close" not in connection
            and (version == "HTTP/1.1" or "keep-alive" in connection)
        )
        return Response(status, headers, body), keep

    @staticmethod
    def _read_head(conn: _Connection, status_line: bytes) -> tuple[str, int, dict[str, str]]:
        parts = status_line.decode("latin-1").rstrip("\r\n").split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
            raise ValueError(f"not an HTTP response: {status_line[:80]!r}")
        headers: dict[str, str] = {}
        for _ in range(_MAX_HEADERS + 1):
            line = conn.file.readline(_MAX_LINE + 1)
            if line in (b"\r\n", b"\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        else:
            raise ValueError("too many response headers")
        return parts[0], int(parts[1]), headers

    @staticmethod
    def _read_body(conn: _Connection, method: str, status: int, headers: dict[str, str]) -> bytes:
        if method == "HEAD" or status in (204, 304):
            return b""
        if "chunked" in headers.get("transfer-encoding", "").lower():
            chunks: list[bytes] = []
            while True:
                size_line = conn.file.readline(_MAX_LINE + 1)
                size = int(size_line.split(b";", 1)[0].strip() or b"x", 16)
                if size == 0:
                    while conn.file.readline(_MAX_LINE + 1) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                chunk = conn.file.read(size)
                if len(chunk) < size:
                    raise ConnectionResetError("the response ended inside a chunk")
                chunks.append(chunk)
                conn.file.readline(_MAX_LINE + 1)
        length = headers.get("content-length")
        if length is not None:
            n = int(length)
            body = conn.file.read(n)
            if len(body) < n:
                raise ConnectionResetError("the response ended before its Content-Length")
            return body
        return conn.file.read()  # until the server closes

    # -- connections -----------------------------------------------------------------------

    def _checkout(self, timeout: float | None) -> tuple[_Connection, bool]:
        with self._lock:
            if self._closed:
                raise Unavailable(f"the connection pool for {self.url.origin} is closed")
            conn = self._idle.pop() if self._idle else None
        if conn is not None:
            conn.sock.settimeout(self.timeout if timeout is None else timeout)
            return conn, True
        return self._connect(self.timeout if timeout is None else timeout), False

    def _checkin(self, conn: _Connection) -> None:
        with self._lock:
            if not self._closed and len(self._idle) < self.max_idle:
                self._idle.append(conn)
                return
        conn.close()

    def _connect(self, timeout: float) -> _Connection:
        # here: a client writing into a local folder never needs a socket
        import _socket

        hop = self._proxy or self.url
        # An ASCII host as bytes: a str host makes getaddrinfo load the idna codec (with
        # stringprep and unicodedata), milliseconds of a trial process for nothing.
        host: str | bytes = hop.host.encode() if hop.host.isascii() else hop.host
        try:
            sock = _open(host, hop.port, timeout)
        except OSError as exc:
            raise ConnectFailed(f"cannot reach {self.url.origin}: {exc}") from exc
        try:
            sock.setsockopt(_socket.IPPROTO_TCP, _socket.TCP_NODELAY, 1)
            if self.url.scheme == "https":
                import socket  # TLS wraps a `socket.socket`

                sock = plain = socket.socket(sock.family, sock.type, sock.proto, sock.detach())
                plain.settimeout(timeout)
                if self._proxy is not None:
                    self._tunnel(plain)
                sock = self._tls().wrap_socket(plain, server_hostname=self.url.host)
        except Exception as exc:
            sock.close()
            if isinstance(exc, Unavailable):
                raise
            raise ConnectFailed(f"cannot reach {self.url.origin}: {exc}") from exc
        return _Connection(sock)

    def _tunnel(self, sock: _socket.socket) -> None:
        """CONNECT through the proxy, for https."""
        assert self._proxy is not None
        lines = [f"CONNECT {self.url.host}:{self.url.port} HTTP/1.1", f"Host: {self.url.host}"]
        if self._proxy.userinfo:
            lines.append(f"Proxy-Authorization: {_basic(self._proxy.userinfo)}")
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        conn = _Connection(sock)
        _, status, _ = self._read_head(conn, conn.file.readline(_MAX_LINE + 1))
        conn.file.close()  # the socket stays open for TLS
        if status != 200:
            raise ConnectFailed(f"the proxy refused to connect to {self.url.origin}: {status}")

    def _tls(self) -> ssl.SSLContext:
        with self._lock:
            if self._ssl is None:
                import ssl

                self._ssl = ssl.create_default_context()
            return self._ssl

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


def _open(host: str | bytes, port: int, timeout: float) -> _socket.socket:
    """A connected TCP socket to the first address of `host` that answers (what
    `socket.create_connection` does, on the C module)."""
    import _socket

    error: OSError | None = None
    for family, kind, proto, _, address in _socket.getaddrinfo(host, port, 0, _socket.SOCK_STREAM):
        sock = _socket.socket(family, kind, proto)
        try:
            sock.settimeout(timeout)
            sock.connect(address)
        except OSError as exc:
            sock.close()
            error = exc
            continue
        return sock
    raise error or OSError(f"no address found for {host!r}")


def _basic(userinfo: str) -> str:
    import base64
    from urllib.parse import unquote

    return "Basic " + base64.b64encode(unquote(userinfo).encode()).decode()
