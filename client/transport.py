"""Where the shipper sends encoded records: the local log file, or the ingest gateway.

One small Protocol, so the shipper's retry and spool logic is the same for both. The
contract that logic relies on: `send` returns only once every record is durable, and
failures are typed -- `Unavailable` means "try again later, nothing is wrong with the
records"; any other `DearDiaryError` means retrying the same records cannot succeed.
"""

from __future__ import annotations

import sys
import time
from _thread import allocate_lock

from deardiary.schemas.errors import DearDiaryError, ErrorCode, Unavailable, error_for

from .pool import HttpPool

TYPE_CHECKING = False
if TYPE_CHECKING:  # `typing` costs a trial process milliseconds to import
    from collections.abc import Callable, Mapping, Sequence
    from pathlib import Path
    from typing import Any

    import pyarrow as pa

    from deardiary.schemas.envelope import LogPosition
    from deardiary.schemas.records import LogRecord
    from deardiary.services.log.sqlite import SqliteEventLog  # local-folder mode only

    from .pool import Response
    from .transport_protocol import Transport as Transport

# Statuses that say "later" whatever the body says: overload, rate limits, proxies.
_RETRYABLE_STATUS = frozenset({408, 429, 502, 503, 504})
# ... and of those, the ones that say the request was not processed at all (a rate or
# fairness limit, too many connections): safe to send again, whatever the method.
NOT_PROCESSED_STATUS = frozenset({429, 503})
ARROW_STREAM = "application/vnd.apache.arrow.stream"
ARROW_LZ4 = f'{ARROW_STREAM}; codecs="lz4"'  # compressed buffers: 32 -> 4.4 MB for 1M points


def __getattr__(name: str) -> Any:
    """`Transport`, the Protocol, lives in transport_protocol.py (a Protocol class costs
    `typing`, which a trial process never imports); still importable from here."""
    if name == "Transport":
        from .transport_protocol import Transport

        return Transport
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def arrow_accept(host: str) -> str:
    """Arrow answers plain from a loopback server (this client reads a plain 1M-point
    series in ~40 ms there, lz4 ~53: compressing costs more than the bytes), with lz4
    buffers from any other (the network is slower than lz4)."""
    import ipaddress

    name = host.strip("[]").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return ARROW_STREAM
    try:
        return ARROW_STREAM if ipaddress.ip_address(name).is_loopback else ARROW_LZ4
    except ValueError:
        return ARROW_LZ4


RETRY_AFTER_MAX_S = 60.0
"""The longest wait a Retry-After header gets: a server asking for more is asked again
after this (the shipper and reads still give up at their own deadlines)."""


Acked = dict[int, int]
"""The last acknowledged offset per partition (read-your-writes waits for these)."""


def acked_of(positions: Sequence[LogPosition]) -> Acked:
    acked: Acked = {}
    for p in positions:
        acked[p.partition] = max(acked.get(p.partition, -1), p.offset)
    return acked


class LocalTransport:
    """Appends straight to the embedded log at ``<data_dir>/log.db`` (no server needed).

    The log is opened on first use, in the thread that sends, so that constructing a
    client does no I/O and an unopenable log is a retryable `Unavailable` like any other.
    Payloads are decoded first, as the gateway would, so a bad event is refused with
    `INVALID_ARGUMENT` rather than stored.
    """

    def __init__(self, data_dir: str | Path) -> None:
        from pathlib import Path  # local-folder mode only: not at `import deardiary`

        self.data_dir = Path(data_dir)
        self._lock = allocate_lock()
        self._log: SqliteEventLog | None = None

    def send(self, records: Sequence[LogRecord]) -> Acked:
        if not records:
            return {}
        from deardiary.schemas.codec import decode

        for record in records:
            decode(record.payload)  # raises InvalidArgument with msgspec's $.path
        with self._lock:
            if self._log is None:
                from deardiary.services.log.sqlite import SqliteEventLog

                try:
                    self._log = SqliteEventLog(str(self.data_dir / "log.db"))
                except OSError as exc:
                    raise Unavailable(f"cannot open the log in {self.data_dir}: {exc}") from exc
            log = self._log
        return acked_of(log.append(list(records)))

    def close(self) -> None:
        with self._lock:
            log, self._log = self._log, None
        if log is not None:
            log.close()


def _acked(content: bytes, content_type: str) -> Acked:
    """The last offsets of an ingest acknowledgement (``{"last_offset": n,
    "last_offsets": {"partition": n, ...}, ...}``); ValueError when it is not one. It is
    asked for in MessagePack, read by `schemas/wire.py` (a trial process imports neither
    msgspec nor json); JSON from a server that answers only that."""
    if content_type.partition(";")[0].strip() == "application/msgpack":
        msgspec = sys.modules.get("msgspec")
        if msgspec is not None:  # loaded anyway: decodes a 2,000-event ack ~100x faster
            ack = msgspec.msgpack.decode(content)
        else:
            from deardiary.schemas.wire import unpack  # loaded by the buffer already

            ack = unpack(content)
    else:
        import json

        ack = json.loads(content)
    if not isinstance(ack, dict):
        raise ValueError("not an object")
    offsets, last = ack.get("last_offsets") or {}, ack["last_offset"]
    if not isinstance(offsets, dict) or type(last) is not int:
        raise ValueError("not an acknowledgement")
    acked = {int(p): o for p, o in offsets.items()}
    if any(type(o) is not int for o in acked.values()):
        raise ValueError("offsets are not integers")
    return acked or {0: last}


def _error_detail(content: bytes) -> tuple[str, str, dict[str, Any]]:
    """(code, message, details) of an error body; ValueError when it is not one."""
    import json

    detail = json.loads(content)["error"]
    code, message, details = detail["code"], detail.get("message", ""), detail.get("details", {})
    if not (isinstance(code, str) and isinstance(message, str) and isinstance(details, dict)):
        raise ValueError("not an error body")
    return code, message, details


_OWN_PART = 65_536
"""A payload this big is a part of the request body of its own (see `body_parts`)."""


def body_parts(payloads: Sequence[bytes]) -> list[bytes]:
    """The body of ``POST /api/v1/events`` -- a MessagePack array of `bin`, byte for byte
    what msgspec encodes (the smallest headers) -- as parts to send one after another:
    a payload of `_OWN_PART` bytes or more is a part itself, not copied into a joined
    body (a sweep trial's 20,000 points are ~0.5 MB: one more copy cost its process
    ~130 page faults); the headers and smaller payloads between are joined."""
    n = len(payloads)
    if n < 16:
        head = bytes((0x90 | n,))
    else:
        head = (b"\xdc" + n.to_bytes(2, "big")) if n < 1 << 16 else (b"\xdd" + n.to_bytes(4, "big"))
    parts: list[bytes] = []
    small = [head]
    for payload in payloads:
        size = len(payload)
        if size < 1 << 8:
            small.append(b"\xc4" + size.to_bytes(1, "big"))
        elif size < 1 << 16:
            small.append(b"\xc5" + size.to_bytes(2, "big"))
        else:
            small.append(b"\xc6" + size.to_bytes(4, "big"))
        if size < _OWN_PART:
            small.append(payload)
        else:
            parts.append(b"".join(small))
            parts.append(payload)
            small = []
    if small:
        parts.append(b"".join(small))
    return parts


def retry_after(headers: Mapping[str, str]) -> float | None:
    """The seconds a response's ``Retry-After`` asks to wait (delta-seconds or an HTTP
    date), at most `RETRY_AFTER_MAX_S`; None when absent or unreadable."""
    value = headers.get("retry-after", "").strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        from email.utils import parsedate_to_datetime  # only for a date: rare

        try:
            seconds = parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
    if seconds != seconds:  # NaN
        return None
    return min(max(seconds, 0.0), RETRY_AFTER_MAX_S)


def error_from_response(
    status: int, content: bytes, headers: Mapping[str, str] | None = None
) -> DearDiaryError:
    """The typed error an HTTP error response stands for (`UNKNOWN` when the body is
    unreadable); retryable statuses are `Unavailable` whatever the body says, with the
    wait a ``Retry-After`` header asks for in ``details["retry_after_s"]``."""
    try:
        error = error_for(*_error_detail(content))
    except (ValueError, KeyError, TypeError, AttributeError):
        text = content[:200].decode("utf-8", "replace")
        error = error_for(ErrorCode.UNKNOWN, f"HTTP {status}: {text}")
    if status in _RETRYABLE_STATUS and not isinstance(error, Unavailable):
        asked = error.details.get("retry_after_s")
        error = Unavailable(f"HTTP {status}: {error.message}", {"code": str(error.code)})
        if isinstance(asked, int | float):
            error.details["retry_after_s"] = min(max(float(asked), 0.0), RETRY_AFTER_MAX_S)
    wait = retry_after(headers) if headers and status in _RETRYABLE_STATUS else None
    if wait is not None:
        error.details["retry_after_s"] = wait
    error.status = status
    return error


class HttpTransport:
    """POSTs records to the gateway's ``/api/v1/events`` as a MessagePack array of `bin`.

    `token` is a bearer token, or a callable returning the current one (so a refreshed
    token is used without rebuilding anything). `pool` is the client's one connection
    pool (a new one for `base_url` when not given).
    """

    def __init__(
        self,
        base_url: str,
        token: str | Callable[[], str | None] | None = None,
        timeout: float = 30.0,
        pool: HttpPool | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._token = token
        self._owned = pool is None
        self._pool = pool or HttpPool(self.base_url, timeout=timeout)

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/msgpack", "Accept": "application/msgpack"}
        token = self._token() if callable(self._token) else self._token
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return headers

    def send(self, records: Sequence[LogRecord]) -> Acked:
        if not records:
            return {}
        body = body_parts([r.payload for r in records])
        # refused, reset, timeout, DNS, TLS, ...: the pool raises Unavailable
        response = self._pool.post("/api/v1/events", content=body, headers=self._headers())
        if response.status_code != 200:
            error = error_from_response(response.status_code, response.content, response.headers)
            if error.code is ErrorCode.UNKNOWN:  # not our error body: keep the events
                raise Unavailable(self._not_deardiary(f"HTTP {response.status_code}"))
            raise error
        try:
            return _acked(response.content, response.headers.get("content-type", ""))
        except (ValueError, KeyError, TypeError) as exc:
            raise Unavailable(self._not_deardiary("an unreadable acknowledgement")) from exc

    def _not_deardiary(self, answer: str) -> str:
        """Events are never dropped on the word of something that is not a DearDiary
        server (a wrong URL, a proxy's error page): they wait in the spool."""
        return f"{self.base_url} answered {answer}, not as a DearDiary server does; events kept"

    def close(self) -> None:
        if self._owned:
            self._pool.close()


class HttpReader:
    """Reads over HTTP through the client's connection pool (`http`). (Here, not in
    reads.py with the other readers: every HTTP client makes one, and a sweep's trial,
    which reads nothing, then loads no reads module.)"""

    def __init__(self, pool: HttpPool, token: Callable[[], str | None]) -> None:
        self.http = pool
        self.token = token

    def headers(self, accept: str = "application/json") -> dict[str, str]:
        token = self.token()
        auth = {"Authorization": f"Bearer {token}"} if token else {}
        return {"Accept": accept, **auth}

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """A JSON call (used by the admin methods); errors raised as typed errors."""
        response = self._send(method, path, headers=self.headers(), **kwargs)
        if response.status_code != 200:
            raise error_from_response(response.status_code, response.content, response.headers)
        return response.json()

    def _get(self, path: str, params: dict[str, Any], at: Acked, accept: str) -> bytes:
        query = {k: v for k, v in params.items() if v is not None}
        if at:
            query["min_offset"] = ",".join(f"{p}:{o}" for p, o in sorted(at.items()))
        response = self._send("GET", path, params=query, headers=self.headers(accept))
        if response.status_code != 200:
            raise error_from_response(response.status_code, response.content, response.headers)
        return response.content

    def _send(self, method: str, path: str, **kwargs: Any) -> Response:
        """One call, sent again while the server answers that it did not process it (429
        or 503: a fairness or rate limit, too many connections), after the wait its
        ``Retry-After`` asks or a backoff (0.1 s, doubling up to 5 s), whichever is longer,
        until the pool's timeout would pass; then that answer is returned for the caller
        to raise."""
        deadline = time.monotonic() + self.http.timeout
        delay = 0.1
        while True:
            response = self.http.request(method, path, **kwargs)
            if response.status_code not in NOT_PROCESSED_STATUS:
                return response
            wait = max(retry_after(response.headers) or 0.0, delay)
            delay = min(delay * 2, 5.0)
            if time.monotonic() + wait > deadline:
                return response
            time.sleep(wait)

    def _arrow(self, path: str, params: dict[str, Any], at: Acked) -> pa.Table:
        from .reads import _pyarrow

        body = self._get(path, params, at, arrow_accept(self.http.url.host))
        return _pyarrow().ipc.open_stream(body).read_all()

    def sql(self, query: str, at: Acked) -> pa.Table:
        return self._arrow("/api/v1/sql", {"q": query}, at)

    def metric_history(
        self, iteration_id: str, key: str, max_points: int | None, at: Acked
    ) -> pa.Table:
        return self._arrow(
            f"/api/v1/iterations/{iteration_id}/metric-history",
            {"key": key, "max_points": max_points},
            at,
        )

    def get_json(self, path: str, params: dict[str, Any], at: Acked) -> Any:
        import msgspec

        return msgspec.json.decode(self._get(path, params, at, "application/json"))

    def close(self) -> None:
        self.http.close()
