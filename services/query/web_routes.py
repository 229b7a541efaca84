"""Read routes the web page needs beyond the general API: the runs table by blocks of
columns, and the list of columns an experiment has. Same rules as every read route
(services/query/routes.py): a declared query Struct, the read pool, scoped cursors,
404 for an unknown experiment."""

from __future__ import annotations

import duckdb
import pyarrow as pa
from aiohttp import web

from deardiary.projections.queries import runs_table
from deardiary.services.http import query_params as qp
from deardiary.services.query import params as q
from deardiary.services.query.routes import QueryRoutes, Route, require


class WebRoutes(QueryRoutes):
    async def runs_table(self, request: web.Request) -> web.Response:
        exp, p = request.match_info["experiment_id"], qp.query(request, q.RunsTable)
        now, lost_before = await self._clock(request)

        def read(c: duckdb.DuckDBPyConnection) -> pa.Table:
            require(c, "experiment", exp)
            return runs_table.runs_table(
                c,
                exp,
                p.columns,
                now=now,
                lost_before=lost_before,
                filter_expression=p.filter,
                base=p.base,
            )

        return await self._table(request, read)

    async def columns(self, request: web.Request) -> web.Response:
        exp = request.match_info["experiment_id"]

        def read(c: duckdb.DuckDBPyConnection) -> pa.Table:
            require(c, "experiment", exp)
            return runs_table.columns(c, exp)

        return await self._table(request, read)


def web_routes(r: WebRoutes) -> list[Route]:
    return [
        Route(
            "GET",
            "/api/v1/experiments/{experiment_id}/runs-table",
            r.runs_table,
            "The runs table: a row per iteration (creation order), chosen columns of params,"
            " tags and metric summaries (ask for blocks of columns; format=arrow is compact)",
            q.RunsTable,
        ),
        Route(
            "GET",
            "/api/v1/experiments/{experiment_id}/columns",
            r.columns,
            "The param, metric and tag keys of an experiment's iterations, with counts",
            q.Read,
        ),
    ]
