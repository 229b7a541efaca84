"""Arrow results on the wire: JSON by default, Arrow IPC or MessagePack for volume.

JSON cannot carry NaN or infinities, so non-finite floats become the strings
"NaN", "Infinity" and "-Infinity" (the SDK turns them back); Arrow IPC and
MessagePack carry them natively. Columns holding JSON text are sent as objects.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

import msgspec
import pyarrow as pa
from aiohttp import web

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


def arrow_stream(table: pa.Table) -> memoryview:
    """The table as an Arrow IPC stream, handed to the socket without another copy. It is
    measured first and written once into a buffer of its size: a growing buffer copied a
    32 MB answer several times over while doubling."""
    measured = pa.MockOutputStream()
    with pa.ipc.new_stream(measured, table.schema) as writer:
        writer.write_table(table)
    buffer = pa.allocate_buffer(measured.size())
    with pa.ipc.new_stream(pa.FixedSizeBufferWriter(buffer), table.schema) as writer:
        writer.write_table(table)
    return memoryview(buffer)


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
        return web.Response(body=arrow_stream(table), content_type=ARROW_STREAM)
    if fmt == "msgpack":
        body = _msgpack.encode({"columns": table.to_pydict(), **extra})
        return web.Response(body=body, content_type=MSGPACK)
    return json_response({"items": rows(table, json_columns), **extra})
