"""The query service's read routes: thin handlers over projections/queries.

Every route waits for `min_offset` first (read-your-writes), runs its read on a
fresh cursor in a worker thread, and answers JSON (or Arrow/MessagePack on request).
Each route carries its OpenAPI operation, so the served document cannot drift.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import duckdb
import pyarrow as pa
from aiohttp import web

from deardiary.projections.queries import (
    catalog,
    history,
    iterations,
    leaderboard,
    metric_series,
    stats,
)
from deardiary.projections.queries import logs as log_queries
from deardiary.projections.queries.catalog import Page
from deardiary.schemas.errors import InvalidArgument
from deardiary.services.query import params as q
from deardiary.services.query.context import QueryContext
from deardiary.services.query.encoding import json_response, rows, table_response
from deardiary.services.query.sandbox import SANDBOX

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
MAX_SERIES_POINTS = 50_000_000


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: Handler
    summary: str
    query: tuple[tuple[str, str, str], ...] = ()  # (name, json type, description)
    tag: str = "query"
    body: dict[str, Any] | None = field(default=None)


def page_response(request: web.Request, result: Page) -> web.Response:
    return table_response(
        request, result.items, total=result.total, limit=result.limit, offset=result.offset
    )


class QueryRoutes:
    """Route handlers bound to one QueryContext."""

    def __init__(self, ctx: QueryContext) -> None:
        self.ctx = ctx

    async def _read(
        self, request: web.Request, fn: Callable[[duckdb.DuckDBPyConnection], Any]
    ) -> Any:
        await self.ctx.wait(q.min_offsets(request))
        return await self.ctx.run(fn)

    # -- catalog ---------------------------------------------------------------
    def listing(self, kind: str, filters: tuple[str, ...]) -> Handler:
        async def handler(request: web.Request) -> web.Response:
            limit, offset = q.page(request)
            chosen = {f: request.query[f] for f in filters if f in request.query}
            archived = q.boolean(request, "include_archived", True)
            page = await self._read(
                request,
                lambda c: catalog.list_entities(c, kind, chosen, limit, offset, archived),
            )
            return page_response(request, page)

        return handler

    def getter(self, kind: str, id_param: str) -> Handler:
        async def handler(request: web.Request) -> web.Response:
            entity_id = request.match_info[id_param]
            table = await self._read(request, lambda c: catalog.get_entity(c, kind, entity_id))
            return json_response(rows(table)[0])

        return handler

    async def project_stats(self, request: web.Request) -> web.Response:
        project_id = request.match_info["project_id"]
        now = self.ctx.clock()

        def read(c: duckdb.DuckDBPyConnection) -> pa.Table:
            catalog.get_entity(c, "projects", project_id)
            return stats.project_stats(c, project_id, now, self.ctx.lost_after_s)

        return json_response(rows(await self._read(request, read))[0])

    # -- experiments -------------------------------------------------------------
    async def metric_names(self, request: web.Request) -> web.Response:
        exp = request.match_info["experiment_id"]
        return table_response(
            request, await self._read(request, lambda c: metric_series.metric_names(c, exp))
        )

    async def snapshot(self, request: web.Request) -> web.Response:
        exp = request.match_info["experiment_id"]
        key, step = q.required(request, "key"), q.integer(request, "step")
        if step is None:
            raise InvalidArgument("query parameter 'step' is required")
        table = await self._read(request, lambda c: metric_series.at_step(c, exp, key, step))
        return table_response(request, table)

    async def leaderboard(self, request: web.Request) -> web.Response:
        exp, key = request.match_info["experiment_id"], q.required(request, "key")
        goal = q.text(request, "goal", "min") or "min"
        agg, limit = q.text(request, "aggregate"), q.integer(request, "limit")
        table = await self._read(
            request, lambda c: leaderboard.summary(c, exp, key, goal, agg, limit)
        )
        return table_response(request, table)

    async def best(self, request: web.Request) -> web.Response:
        exp, key = request.match_info["experiment_id"], q.required(request, "key")
        goal, agg = q.text(request, "goal", "min") or "min", q.text(request, "aggregate")
        table = await self._read(request, lambda c: leaderboard.best(c, exp, key, goal, agg))
        if table.num_rows == 0:
            from deardiary.schemas.errors import NotFound

            raise NotFound(f"no iteration of experiment {exp!r} logged {key!r}")
        return json_response(rows(table)[0])

    async def running_best(self, request: web.Request) -> web.Response:
        exp, key = request.match_info["experiment_id"], q.required(request, "key")
        goal = q.text(request, "goal", "min") or "min"
        table = await self._read(request, lambda c: leaderboard.running_best(c, exp, key, goal))
        return table_response(request, table)

    # -- iterations --------------------------------------------------------------
    async def search(self, request: web.Request) -> web.Response:
        limit, offset = q.page(request)
        now, lost_before = self.ctx.now_and_lost_before()
        page = await self._read(
            request,
            lambda c: iterations.search_iterations(
                c,
                now=now,
                lost_before=lost_before,
                experiment_ids=q.listing(request, "experiment_id"),
                project_id=q.text(request, "project_id"),
                parent_iteration_id=q.text(request, "parent_iteration_id"),
                filter_expression=q.text(request, "filter", "") or "",
                order_by=q.text(request, "order_by", "") or "",
                limit=limit,
                offset=offset,
                include_archived=q.boolean(request, "include_archived", True),
            ),
        )
        return page_response(request, page)

    async def iteration(self, request: web.Request) -> web.Response:
        it = request.match_info["iteration_id"]
        now, lost_before = self.ctx.now_and_lost_before()
        table = await self._read(
            request, lambda c: iterations.get_iteration(c, it, now=now, lost_before=lost_before)
        )
        return json_response(rows(table)[0])

    async def params(self, request: web.Request) -> web.Response:
        it = request.match_info["iteration_id"]
        return table_response(
            request, await self._read(request, lambda c: iterations.iteration_params(c, it))
        )

    async def summaries(self, request: web.Request) -> web.Response:
        it = request.match_info["iteration_id"]
        table = await self._read(request, lambda c: iterations.iteration_metric_summaries(c, it))
        return table_response(request, table)

    async def history(self, request: web.Request) -> web.Response:
        it, key = request.match_info["iteration_id"], q.required(request, "key")
        max_points = q.integer(request, "max_points")
        if max_points is not None and not 2 <= max_points <= MAX_SERIES_POINTS:
            raise InvalidArgument("max_points must be at least 2")
        table = await self._read(request, lambda c: metric_series.series(c, it, key, max_points))
        return table_response(request, table)

    async def compare(self, request: web.Request) -> web.Response:
        ids, keys = q.listing(request, "iteration_id"), q.listing(request, "key")
        if not ids or not keys:
            raise InvalidArgument(
                "compare needs iteration_id and key (comma-separated or repeated)"
            )
        if len(ids) * len(keys) > 1000:
            raise InvalidArgument("compare at most 1000 series at once")
        max_points = q.integer(request, "max_points", 1000)
        table = await self._read(request, lambda c: metric_series.compare(c, ids, keys, max_points))
        return table_response(request, table)

    async def logs(self, request: web.Request) -> web.Response:
        it = request.match_info["iteration_id"]
        limit = q.integer(request, "limit", 1000) or 1000
        table = await self._read(
            request,
            lambda c: log_queries.log_lines(
                c,
                it,
                q.text(request, "contains"),
                q.text(request, "regex"),
                q.text(request, "level"),
                None,
                limit,
            ),
        )
        return table_response(request, table)

    async def lineage(self, request: web.Request) -> web.Response:
        """A model version with the iteration it came from, its params and metrics."""
        version_id = request.match_info["model_version_id"]
        now, lost_before = self.ctx.now_and_lost_before()

        def read(c: duckdb.DuckDBPyConnection) -> dict[str, Any]:
            version = rows(catalog.get_entity(c, "model_versions", version_id))[0]
            model = rows(catalog.get_entity(c, "models", version["model_id"]))[0]
            out: dict[str, Any] = {
                "version": version,
                "model": model,
                "iteration": None,
                "params": [],
                "metrics": [],
                "artifact": None,
            }
            if version["iteration_id"]:
                it = version["iteration_id"]
                out["iteration"] = rows(
                    iterations.get_iteration(c, it, now=now, lost_before=lost_before)
                )[0]
                out["params"] = rows(iterations.iteration_params(c, it))
                out["metrics"] = rows(iterations.iteration_metric_summaries(c, it))
            if version["artifact_id"]:
                out["artifact"] = rows(catalog.get_entity(c, "artifacts", version["artifact_id"]))[
                    0
                ]
            return out

        return json_response(await self._read(request, read))

    async def entity_history(self, request: web.Request) -> web.Response:
        entity_id = request.match_info["entity_id"]
        limit, offset = q.page(request, 1000)
        table = await self._read(
            request, lambda c: history.entity_history(c, entity_id, limit, offset)
        )
        return table_response(request, table)

    async def sql(self, request: web.Request) -> web.Response:
        if request.method == "POST":
            body = await request.json()
            query = body.get("query") if isinstance(body, dict) else None
        else:
            query = request.query.get("q")
        if not isinstance(query, str) or not query.strip():
            raise InvalidArgument('SQL is required: POST {"query": "SELECT ..."} or GET ?q=')
        await self.ctx.wait(q.min_offsets(request))
        result = await request.config_dict[SANDBOX].run_async(query)
        return table_response(request, result.table, json_columns=result.json_columns)
