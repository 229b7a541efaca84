"""Live log following over server-sent events: each new line is one `data:` message."""

from __future__ import annotations

import asyncio
import functools
import time

import msgspec
from aiohttp import web

from deardiary.projections.queries.logs import log_lines
from deardiary.services.query import params as q
from deardiary.services.query.context import QueryContext
from deardiary.services.query.encoding import rows
from deardiary.services.query.routes import Handler

POLL_S = 0.2


def follow_logs(ctx: QueryContext) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        iteration_id = request.match_info["iteration_id"]
        contains, regex = q.text(request, "contains"), q.text(request, "regex")
        level = q.text(request, "level")
        max_s = float(request.query.get("max_seconds", "3600"))
        # validate the filters before committing to a 200 stream
        await ctx.run(lambda c: log_lines(c, iteration_id, contains, regex, level, None, 1))
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)
        cursor: tuple[int, int, int] | None = None
        deadline = time.monotonic() + max_s
        while time.monotonic() < deadline:
            read = functools.partial(
                log_lines,
                iteration_id=iteration_id,
                contains=contains,
                regex=regex,
                level=level,
                after=cursor,
                limit=1000,
            )
            table = await ctx.run(read)
            for line in rows(table):
                cursor = (line["partition"], line["offset"], line["seq"])
                await response.write(b"data: " + msgspec.json.encode(line) + b"\n\n")
            if table.num_rows == 0:
                await asyncio.sleep(POLL_S)
        await response.write_eof()
        return response

    return handler
