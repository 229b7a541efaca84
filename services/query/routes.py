"""The query service's read routes: thin handlers over projections/queries.

Every route declares its query string as a Struct (services/query/params.py), waits for
`min_offset` first (read-your-writes, holding no thread), runs its read on a fresh cursor
on the read pool -- the existence of the ids in its path checked in that same read, so an
unknown id is a 404 -- and answers JSON (or Arrow/MessagePack on request), encoded on the
read pool too. Each route carries its OpenAPI operation, so the served document cannot
drift. With ``?as_of=`` a read runs on the past state it names instead
(services/query/as_of.py), with that state's clock for durations and lost runs.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

import duckdb
import msgspec
import pyarrow as pa
from aiohttp import web

from deardiary.projections.queries import (
    catalog,
    history,
    iterations,
    leaderboard,
    metric_series,
    series_window,
    stats,
)
from deardiary.projections.queries import logs as log_queries
from deardiary.projections.queries.catalog import Page
from deardiary.projections.queries.visibility import visible
from deardiary.schemas.errors import InvalidArgument, NotFound
from deardiary.services.http import query_params as qp
from deardiary.services.query import params as q
from deardiary.services.query.as_of import Bound
from deardiary.services.query.context import QueryContext, caller_of
from deardiary.services.query.encoding import json_response, rows, table_response
from deardiary.services.query.sandbox import SANDBOX, responder

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
T = TypeVar("T")
MAX_COMPARED_SERIES = 1000
_BOUND = web.RequestKey("deardiary_as_of", list[Bound])  # [] for now, [bound] for a past


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: Handler
    summary: str
    query: type[msgspec.Struct] = qp.NoQuery  # the query string, parsed and documented
    tag: str = "query"
    body: dict[str, Any] | None = field(default=None)


def page_response(request: web.Request, result: Page) -> web.Response:
    return table_response(
        request, result.items, total=result.total, limit=result.limit, offset=result.offset
    )


# Where an id in a path must exist (not deleted) for the route to answer 200. An
# iteration's check is `visible('iterations')` with its hidden containers listed by
# uncorrelated NOT IN subqueries instead of correlated EXISTS ones: the same rows (the ids
# are never NULL), ~2.4 ms of CPU a check here instead of ~4 (DuckDB plans fewer joins).
_EXISTS = {
    "experiment": f"SELECT 1 FROM experiments WHERE experiment_id = ? AND {visible('experiments')}",
    "iteration": "SELECT 1 FROM iterations i WHERE i.iteration_id = ? AND NOT i.deleted"
    " AND i.experiment_id NOT IN (SELECT experiment_id FROM experiments WHERE deleted"
    " OR project_id IN (SELECT project_id FROM projects WHERE deleted))"
    " AND i.project_id NOT IN (SELECT project_id FROM projects WHERE deleted)",
}
_ANY_ENTITY = " UNION ALL ".join(
    f"(SELECT 1 FROM {table} WHERE {column} = $id LIMIT 1)"
    for table, column in (
        ("events", "entity_id"),
        ("projects", "project_id"),
        ("experiments", "experiment_id"),
        ("iterations", "iteration_id"),
        ("models", "model_id"),
        ("model_versions", "model_version_id"),
        ("artifacts", "artifact_id"),
    )
)


def require(conn: duckdb.DuckDBPyConnection, kind: str, entity_id: str) -> None:
    """NotFound unless the entity exists on this cursor (so in the caller's scope)."""
    if not conn.execute(_EXISTS[kind], [entity_id]).fetchall():
        raise NotFound(f"{kind} {entity_id!r} not found", {"id": entity_id})


def require_any(conn: duckdb.DuckDBPyConnection, entity_id: str) -> None:
    """NotFound unless some entity or event has this id."""
    if not conn.execute(f"SELECT 1 FROM ({_ANY_ENTITY}) LIMIT 1", {"id": entity_id}).fetchall():
        raise NotFound(f"{entity_id!r} not found", {"id": entity_id})


class QueryRoutes:
    """Route handlers bound to one QueryContext."""

    def __init__(self, ctx: QueryContext) -> None:
        self.ctx = ctx

    async def _read(self, request: web.Request, fn: Callable[[duckdb.DuckDBPyConnection], T]) -> T:
        """`fn` on a cursor after the caller's writes -- or of the past `as_of` names."""
        bound = await self._bound(request)
        if bound is not None:
            return await self.ctx.run_as_of(bound, fn, caller_of(request))
        await self.ctx.wait(q.min_offsets(request))
        return await self.ctx.run(fn, caller_of(request))

    async def _bound(self, request: web.Request) -> Bound | None:
        """The past state ``?as_of=`` names (resolved once per request), None for now."""
        if _BOUND not in request:
            parsed = qp.query_of(request)
            request[_BOUND] = []
            if isinstance(parsed, q.Past) and parsed.as_of is not None:
                request[_BOUND] = [await self.ctx.bound(parsed.as_of, caller_of(request))]
        return request[_BOUND][0] if request[_BOUND] else None

    async def _clock(self, request: web.Request) -> tuple[datetime, datetime]:
        """(now, lost_before) of the state read: now, or the moment ``as_of`` names."""
        return self.ctx.now_and_lost_before(await self._bound(request))

    async def _table(
        self, request: web.Request, fn: Callable[[duckdb.DuckDBPyConnection], pa.Table]
    ) -> web.Response:
        """A table read, encoded on the read pool (a big answer must not stall the loop)."""
        return await self._read(request, lambda c: table_response(request, fn(c)))

    async def _page(
        self, request: web.Request, fn: Callable[[duckdb.DuckDBPyConnection], Page]
    ) -> web.Response:
        return await self._read(request, lambda c: page_response(request, fn(c)))

    async def _json(
        self, request: web.Request, fn: Callable[[duckdb.DuckDBPyConnection], Any]
    ) -> web.Response:
        return await self._read(request, lambda c: json_response(fn(c)))

    # -- catalog ---------------------------------------------------------------
    def listing(self, kind: str, params: type[q.Paged]) -> Handler:
        declared = {f.name for f in msgspec.structs.fields(params)}
        filters = sorted(catalog.LISTINGS[kind].filters & declared)

        async def handler(request: web.Request) -> web.Response:
            p = qp.query(request, params)
            chosen = {f: getattr(p, f) for f in filters if getattr(p, f) is not None}
            archived = p.include_archived if isinstance(p, q.Listing) else True
            return await self._page(
                request,
                lambda c: catalog.list_entities(c, kind, chosen, p.limit, p.offset, archived),
            )

        return handler

    def getter(self, kind: str, id_param: str) -> Handler:
        async def handler(request: web.Request) -> web.Response:
            entity_id = request.match_info[id_param]
            return await self._json(
                request, lambda c: rows(catalog.get_entity(c, kind, entity_id))[0]
            )

        return handler

    async def project_stats(self, request: web.Request) -> web.Response:
        project_id = request.match_info["project_id"]
        now, _ = await self._clock(request)

        def read(c: duckdb.DuckDBPyConnection) -> dict[str, Any]:
            catalog.get_entity(c, "projects", project_id)
            return rows(stats.project_stats(c, project_id, now, self.ctx.lost_after_s))[0]

        return await self._json(request, read)

    # -- experiments -------------------------------------------------------------
    async def metric_names(self, request: web.Request) -> web.Response:
        exp = request.match_info["experiment_id"]

        def read(c: duckdb.DuckDBPyConnection) -> pa.Table:
            require(c, "experiment", exp)
            return metric_series.metric_names(c, exp)

        return await self._table(request, read)

    async def snapshot(self, request: web.Request) -> web.Response:
        exp, p = request.match_info["experiment_id"], qp.query(request, q.Snapshot)

        def read(c: duckdb.DuckDBPyConnection) -> pa.Table:
            require(c, "experiment", exp)
            return metric_series.at_step(c, exp, p.key, p.step, p.group)

        return await self._table(request, read)

    async def leaderboard(self, request: web.Request) -> web.Response:
        exp, p = request.match_info["experiment_id"], qp.query(request, q.Leaderboard)

        def read(c: duckdb.DuckDBPyConnection) -> pa.Table:
            require(c, "experiment", exp)
            return leaderboard.summary(c, exp, p.key, p.goal, p.aggregate, p.limit, p.group)

        return await self._table(request, read)

    async def best(self, request: web.Request) -> web.Response:
        exp, p = request.match_info["experiment_id"], qp.query(request, q.Best)

        def read(c: duckdb.DuckDBPyConnection) -> dict[str, Any]:
            require(c, "experiment", exp)
            table = leaderboard.best(c, exp, p.key, p.goal, p.aggregate, p.group)
            if table.num_rows == 0:
                shown = repr(p.key) + (f" in group {p.group!r}" if p.group else "")
                raise NotFound(f"no iteration of experiment {exp!r} logged {shown}")
            return rows(table)[0]

        return await self._json(request, read)

    async def running_best(self, request: web.Request) -> web.Response:
        exp, p = request.match_info["experiment_id"], qp.query(request, q.Ranking)

        def read(c: duckdb.DuckDBPyConnection) -> pa.Table:
            require(c, "experiment", exp)
            return leaderboard.running_best(c, exp, p.key, p.goal, p.group)

        return await self._table(request, read)

    # -- iterations --------------------------------------------------------------
    async def search(self, request: web.Request) -> web.Response:
        p = qp.query(request, q.Iterations)
        now, lost_before = await self._clock(request)
        return await self._page(
            request,
            lambda c: iterations.search_iterations(
                c,
                now=now,
                lost_before=lost_before,
                experiment_ids=p.experiment_id,
                project_id=p.project_id,
                parent_iteration_id=p.parent_iteration_id,
                filter_expression=p.filter,
                order_by=p.order_by,
                limit=p.limit,
                offset=p.offset,
                include_archived=p.include_archived,
            ),
        )

    async def iteration(self, request: web.Request) -> web.Response:
        it = request.match_info["iteration_id"]
        now, lost_before = await self._clock(request)
        return await self._json(
            request,
            lambda c: rows(iterations.get_iteration(c, it, now=now, lost_before=lost_before))[0],
        )

    async def params(self, request: web.Request) -> web.Response:
        it = request.match_info["iteration_id"]

        def read(c: duckdb.DuckDBPyConnection) -> pa.Table:
            require(c, "iteration", it)
            return iterations.iteration_params(c, it)

        return await self._table(request, read)

    async def summaries(self, request: web.Request) -> web.Response:
        it = request.match_info["iteration_id"]

        def read(c: duckdb.DuckDBPyConnection) -> pa.Table:
            require(c, "iteration", it)
            return iterations.iteration_metric_summaries(c, it)

        return await self._table(request, read)

    async def history(self, request: web.Request) -> web.Response:
        it, p = request.match_info["iteration_id"], qp.query(request, q.Series)

        def read(c: duckdb.DuckDBPyConnection) -> pa.Table:
            require(c, "iteration", it)
            return series_window.window(c, it, p.key, p.min_step, p.max_step, p.max_points, p.group)

        return await self._table(request, read)

    async def compare(self, request: web.Request) -> web.Response:
        p = qp.query(request, q.Compare)
        ids, keys = list(dict.fromkeys(p.iteration_id)), list(dict.fromkeys(p.key))
        if len(ids) * len(keys) > MAX_COMPARED_SERIES:
            raise InvalidArgument(
                f"compare at most {MAX_COMPARED_SERIES} series at once",
                {"parameter": "iteration_id"},
            )

        def read(c: duckdb.DuckDBPyConnection) -> pa.Table:
            for it in ids:
                require(c, "iteration", it)
            return series_window.compare_window(
                c, ids, keys, p.min_step, p.max_step, p.max_points, p.group
            )

        return await self._table(request, read)

    async def logs(self, request: web.Request) -> web.Response:
        it, p = request.match_info["iteration_id"], qp.query(request, q.Logs)

        def read(c: duckdb.DuckDBPyConnection) -> pa.Table:
            require(c, "iteration", it)
            return log_queries.log_lines(c, it, p.contains, p.regex, p.level, None, p.limit)

        return await self._table(request, read)

    async def lineage(self, request: web.Request) -> web.Response:
        """A model version with the iteration it came from, its params and metrics."""
        version_id = request.match_info["model_version_id"]
        now, lost_before = await self._clock(request)

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

        return await self._json(request, read)

    async def entity_history(self, request: web.Request) -> web.Response:
        entity_id, p = request.match_info["entity_id"], qp.query(request, q.History)

        def read(c: duckdb.DuckDBPyConnection) -> pa.Table:
            require_any(c, entity_id)
            return history.entity_history(c, entity_id, p.limit, p.offset)

        return await self._table(request, read)

    async def sql(self, request: web.Request) -> web.Response:
        if request.method == "POST":
            body = await request.json()
            query = body.get("query") if isinstance(body, dict) else None
        else:
            query = request.query.get("q")
        if not isinstance(query, str) or not query.strip():
            raise InvalidArgument('SQL is required: POST {"query": "SELECT ..."} or GET ?q=')
        await self.ctx.wait(q.min_offsets(request))
        return await request.config_dict[SANDBOX].run_async(query, responder(request))
