"""Registry reads beyond the catalog: the iterations that produced or used a model."""

from __future__ import annotations

import duckdb
import pyarrow as pa
from aiohttp import web

from deardiary.projections.queries import catalog
from deardiary.projections.queries.registry import model_iterations
from deardiary.services.http import query_params as qp
from deardiary.services.query import params as q
from deardiary.services.query.context import caller_of
from deardiary.services.query.encoding import table_response
from deardiary.services.query.routes import Route
from deardiary.services.query.writes import WriteContext


def registry_routes(writes: WriteContext) -> list[Route]:
    ctx = writes.query

    async def iterations(request: web.Request) -> web.Response:
        model_id = request.match_info["model_id"]

        def read(c: duckdb.DuckDBPyConnection) -> web.Response:
            catalog.get_entity(c, "models", model_id)  # 404 when unknown or not readable
            table: pa.Table = model_iterations(c, model_id)
            return table_response(request, table)

        parsed = qp.query_of(request)
        if isinstance(parsed, q.Past) and parsed.as_of is not None:  # declared: honoured
            bound = await ctx.bound(parsed.as_of, caller_of(request))
            past: web.Response = await ctx.run_as_of(bound, read, caller_of(request))
            return past
        await ctx.wait(q.min_offsets(request))
        response: web.Response = await ctx.run(read, caller_of(request))
        return response

    return [
        Route(
            "GET",
            "/api/v1/models/{model_id}/iterations",
            iterations,
            "The iterations a model's versions were made from or that used one (role), with"
            " their version numbers",
            q.Read,
            "registry",
        )
    ]
