"""Arrow results on the wire: JSON by default, Arrow IPC or MessagePack for volume.

JSON cannot carry NaN or infinities, so non-finite floats become the strings
"NaN", "Infinity" and "-Infinity" (the SDK turns them back); Arrow IPC and
MessagePack carry them natively. Columns holding JSON text are sent as objects.
"""

from __future__ import annotations

import math
import re
from datetime import datetime
from typing import Any

import msgspec
import pyarrow as pa
from aiohttp import payload, web
from aiohttp.abc import AbstractStreamWriter

ARROW_STREAM = "application/vnd.apache.arrow.stream"
MSGPACK = "application/msgpack"
JSON_TEXT_COLUMNS = frozenset(
    {"tags", "metadata", "environment", "aliases", "params", "metrics", "summary"}
)
_json = msgspec.json.Encoder()
_msgpack = msgspec.msgpack.Encoder()


def json_float(value: float) -> float | str:
    if math.isfinite(value):
        return value
    if math.isnan(value):
        return "NaN"
    return "Infinity" if value > 0 else "-Infinity"


def _cell(value: Any) -> Any:
    if isinstance(value, float):
        return json_float(value)
    if isinstance(value, datetime):
        # naive values are UTC (the tables' time type); aware ones carry their offset
        return value.isoformat() + ("Z" if value.tzinfo is None else "")
    if isinstance(value, bytes):
        return value.hex()
    return value


def rows(table: pa.Table, json_columns: frozenset[str] | None = None) -> list[dict[str, Any]]:
    """JSON-safe row dicts, JSON-text columns decoded into objects: `json_columns` when
    the caller knows them (user SQL knows its result's types), else by name."""
    decoded = JSON_TEXT_COLUMNS if json_columns is None else json_columns
    out = []
    for row in table.to_pylist():
        for col in decoded.intersection(row):
            if isinstance(row[col], str):
                row[col] = msgspec.json.decode(row[col])
        out.append({k: _cell(v) for k, v in row.items()})
    return out


def json_response(body: Any, status: int = 200) -> web.Response:
    return web.Response(body=_json.encode(body), status=status, content_type="application/json")


def wants(request: web.Request) -> str:
    """The representation asked for: ?format=json|arrow|msgpack, else the Accept header."""
    fmt = request.query.get("format")
    if fmt in ("json", "arrow", "msgpack"):
        return fmt
    accept = request.headers.get("Accept", "")
    if ARROW_STREAM in accept:
        return "arrow"
    if MSGPACK in accept:
        return "msgpack"
    return "json"


ARROW_CODECS = ("zstd", "lz4")
"""IPC buffer codecs a client may ask for in its Accept header's `codecs` parameter
(`application/vnd.apache.arrow.stream; codecs="zstd, lz4"`: its first one the server
has); without it the stream is uncompressed, which every Arrow reader takes (Arrow JS
reads compressed buffers only with codecs registered). A 1M-point series is 32 MB plain,
1-4.4 MB compressed: through httpx the bytes cost more than compressing them."""


_CODECS_PARAM = re.compile(
    r"application/vnd\.apache\.arrow\.stream\s*;[^,]*?\bcodecs\s*=\s*(?:\"([^\"]*)\"|([^;,\s]+))",
    re.IGNORECASE,
)


def arrow_codec(request: web.Request) -> str | None:
    """The IPC buffer codec the Accept header asks for, if any the server has."""
    found = _CODECS_PARAM.search(request.headers.get("Accept", ""))
    if found is None:
        return None
    for codec in re.split(r"[\s,]+", (found.group(1) or found.group(2)).lower()):
        if codec in ARROW_CODECS:
            return codec
    return None


SMALL_PIECE = 64 * 1024
"""Pieces of an Arrow stream below this size are gathered into one write (a message's
metadata is a few hundred bytes); larger ones are sent from the table's own memory."""
WRITE_SLICE = 512 * 1024
"""The most of a large piece handed to the socket at once: what the socket cannot take
at once is copied into the transport's buffer, so a slice bounds that copy."""


class _Pieces:
    """A file-like sink keeping what pyarrow writes: its Buffers are the table's own
    column buffers (the IPC writer hands them over without a copy)."""

    closed = False

    def __init__(self) -> None:
        self.pieces: list[memoryview] = []
        self._small = bytearray()

    def write(self, data: bytes | pa.Buffer) -> int:
        view = memoryview(data)
        if view.nbytes < SMALL_PIECE:
            self._small += view
        else:
            self._flush_small()
            self.pieces.append(view.cast("B"))
        return view.nbytes

    def _flush_small(self) -> None:
        if self._small:
            self.pieces.append(memoryview(bytes(self._small)))
            self._small.clear()

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self._flush_small()


class ArrowStreamPayload(payload.Payload):
    """A table as an Arrow IPC stream sent straight from its column buffers: no stream
    buffer to write the table into, no copy of it joined to the headers (aiohttp does
    that for one-piece bodies before Python 3.12.9), and at most a slice copied into the
    transport's buffer when the socket is full. A 1M-point series is 32 MB: the copies
    cost more of the server's CPU than reading it from its segments."""

    def __init__(self, table: pa.Table, codec: str | None = None) -> None:
        sink = _Pieces()
        options = pa.ipc.IpcWriteOptions(compression=codec)
        with pa.ipc.new_stream(pa.PythonFile(sink, mode="w"), table.schema, options=options) as w:
            w.write_table(table)
        sink.close()
        kind = ARROW_STREAM if codec is None else f"{ARROW_STREAM}; codecs={codec}"
        super().__init__(sink.pieces, content_type=kind)
        self._pieces = sink.pieces
        self._size = sum(p.nbytes for p in sink.pieces)

    async def write(self, writer: AbstractStreamWriter) -> None:
        for piece in self._pieces:
            for start in range(0, piece.nbytes, WRITE_SLICE):
                await writer.write(piece[start : start + WRITE_SLICE])

    def decode(self, encoding: str = "utf-8", errors: str = "strict") -> str:
        return b"".join(self._pieces).decode(encoding, errors)


def table_response(
    request: web.Request,
    table: pa.Table,
    json_columns: frozenset[str] | None = None,
    **extra: Any,
) -> web.Response:
    """A table as {"items": [...], **extra} in JSON, or the table itself in Arrow/MessagePack
    (`json_columns`: see `rows`)."""
    fmt = wants(request)
    if fmt == "arrow":
        return web.Response(body=ArrowStreamPayload(table, arrow_codec(request)))
    if fmt == "msgpack":
        body = _msgpack.encode({"columns": table.to_pydict(), **extra})
        return web.Response(body=body, content_type=MSGPACK)
    return json_response({"items": rows(table, json_columns), **extra})
