"""Arrow answers are sent from the table's own buffers (no stream buffer, no joined copy):
the bytes must be exactly the Arrow IPC stream pyarrow writes, over a real socket too."""

from __future__ import annotations

import asyncio
from datetime import datetime

import numpy as np
import pyarrow as pa
from aiohttp import ClientSession, web
from aiohttp.test_utils import TestServer

from deardiary.services.query.encoding import ArrowStreamPayload, table_response


def _stream(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return bytes(sink.getvalue().to_pybytes())


def _tables() -> list[pa.Table]:
    n = 1_000_000
    big = pa.table(
        {
            "step": pa.array(np.arange(n)),
            "value": pa.array(np.linspace(0.0, 1.0, n)),
            "recorded_at": pa.array(np.arange(n), pa.timestamp("us")),
        }
    )
    many = pa.concat_tables([big.slice(0, 3000), big.slice(5, 70_000), big.slice(10, 1)])
    mixed = pa.table(
        {
            "name": ["a", None, "ccc"],
            "when": [datetime(2026, 1, 1), None, datetime(2026, 1, 2)],
            "x": [1.5, -0.0, None],
        }
    )
    return [big, many, mixed, big.schema.empty_table()]


def test_the_pieces_are_the_stream_and_big_buffers_are_not_copied() -> None:
    for table in _tables():
        body = ArrowStreamPayload(table)
        pieces = body._pieces
        assert b"".join(pieces) == _stream(table)
        assert body.size == sum(p.nbytes for p in pieces)
    big = _tables()[0]
    sent = {pa.py_buffer(p).address for p in ArrowStreamPayload(big)._pieces}
    owned = {c.chunks[0].buffers()[1].address for c in big.columns}
    assert owned <= sent  # the columns' own memory goes to the socket


def test_an_arrow_answer_over_a_socket_reads_back_equal() -> None:
    async def main() -> None:
        tables = _tables()

        async def handler(request: web.Request) -> web.Response:
            return table_response(request, tables[int(request.query["i"])])

        app = web.Application()
        app.router.add_get("/t", handler)
        async with TestServer(app) as server, ClientSession() as session:
            for i, table in enumerate(tables):
                async with session.get(server.make_url(f"/t?i={i}&format=arrow")) as r:
                    body = await r.read()
                    assert r.headers["Content-Length"] == str(len(body))
                got = pa.ipc.open_stream(body).read_all()
                assert got.equals(table)

    asyncio.run(main())
