"""Read routes the web page needs beyond the general API: the runs table by blocks of
columns, the list of columns an experiment has, and the series of many charts at once.
Same rules as every read route (services/query/routes.py): a declared query Struct, the
read pool, scoped cursors, 404 for an unknown experiment or iteration, ``?as_of=``."""

from __future__ import annotations

from typing import Annotated

import duckdb
import pyarrow as pa
from aiohttp import web
from msgspec import Meta

from deardiary.projections.queries import runs_table, series_window
from deardiary.projections.queries.visibility import visible
from deardiary.schemas.errors import InvalidArgument, NotFound
from deardiary.services.http import query_params as qp
from deardiary.services.query import params as q
from deardiary.services.query.routes import MAX_COMPARED_SERIES, QueryRoutes, Route, require


class ChartSeries(q.StepWindow, frozen=True, kw_only=True):
    iteration_id: Annotated[list[q.Id], Meta(min_length=1, description="iterations")]
    key: Annotated[list[q.Key], Meta(min_length=1, description="metric keys")]
    group: Annotated[
        list[q.Group], Meta(description="only these groups (default: every group of each key)")
    ] = []
    max_points: Annotated[q.Points, Meta(description="points per series (the chart's width)")] = (
        1000
    )


def require_iterations(conn: duckdb.DuckDBPyConnection, ids: list[str]) -> None:
    """NotFound naming the first of `ids` that does not exist on this (scoped) cursor."""
    found = conn.execute(
        "SELECT iteration_id FROM iterations WHERE list_contains(?, iteration_id)"
        f" AND {visible('iterations')}",
        [ids],
    ).fetchall()
    missing = [i for i in ids if i not in {str(r[0]) for r in found}]
    if missing:
        raise NotFound(f"iteration {missing[0]!r} not found", {"id": missing[0]})


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

    async def series(self, request: web.Request) -> web.Response:
        p = qp.query(request, ChartSeries)
        ids, keys = list(dict.fromkeys(p.iteration_id)), list(dict.fromkeys(p.key))
        if len(ids) * len(keys) > MAX_COMPARED_SERIES:
            raise InvalidArgument(
                f"at most {MAX_COMPARED_SERIES} iterations x keys at once",
                {"parameter": "iteration_id"},
            )

        def read(c: duckdb.DuckDBPyConnection) -> pa.Table:
            require_iterations(c, ids)
            return series_window.many(c, ids, keys, p.group, p.min_step, p.max_step, p.max_points)

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
        Route(
            "GET",
            "/api/v1/series",
            r.series,
            "Charts' series at once: every iteration x key, each group of a key its own"
            " series, downsampled to max_points each (min and max per step bucket)",
            ChartSeries,
        ),
    ]
