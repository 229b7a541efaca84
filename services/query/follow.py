"""Live log following over server-sent events: each new line is one `data:` message."""

from __future__ import annotations

import asyncio
import functools
import time

import duckdb
import msgspec
import pyarrow as pa
from aiohttp import web

from deardiary.projections.queries.logs import log_lines
from deardiary.services.http.query_params import query
from deardiary.services.query import params as q
from deardiary.services.query.context import QueryContext, caller_of
from deardiary.services.query.encoding import rows
from deardiary.services.query.routes import Handler, require

POLL_S = 0.2


def follow_logs(ctx: QueryContext) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        iteration_id = request.match_info["iteration_id"]
        p = query(request, q.Follow)
        caller = caller_of(request)

        def check(c: duckdb.DuckDBPyConnection) -> pa.Table:
            require(c, "iteration", iteration_id)
            return log_lines(c, iteration_id, p.contains, p.regex, p.level, None, 1)

        # the iteration and the filters are checked before committing to a 200 stream
        await ctx.run(check, caller)
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)
        cursor: tuple[int, int, int] | None = None
        deadline = time.monotonic() + p.max_seconds
        while time.monotonic() < deadline:
            read = functools.partial(
                log_lines,
                iteration_id=iteration_id,
                contains=p.contains,
                regex=p.regex,
                level=p.level,
                after=cursor,
                limit=1000,
            )
            table = await ctx.run(read, caller)
            for line in rows(table):
                cursor = (line["partition"], line["offset"], line["seq"])
                await response.write(b"data: " + msgspec.json.encode(line) + b"\n\n")
            if table.num_rows == 0:
                await asyncio.sleep(min(POLL_S, max(0.0, deadline - time.monotonic())))
        await response.write_eof()
        return response

    return handler
