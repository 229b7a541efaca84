"""MLflow 3's logged models (what ``log_model`` and autologging create), as iterations.

A logged model ``m-<id>`` is the iteration ``<id>``, a child of its source run, marked
with the metadata key ``mlflow.kind = logged_model``: its params, tags, metrics (those
logged with its ``model_id``), status (PENDING = RUNNING, READY = SUCCEEDED, upload
failed = FAILED) and artifacts are an iteration's, visible in SQL and replayed like
any. Run searches leave them out.
"""

from __future__ import annotations

from typing import Any

import duckdb
from aiohttp import web

from deardiary.schemas import ids as dd_ids
from deardiary.schemas.events import (
    EntityDeleted,
    EntityKind,
    Event,
    IterationEnded,
    IterationStarted,
    IterationStatus,
    ParamsLogged,
    TagsDeleted,
    TagsSet,
)
from deardiary.services.auth.permissions import Action
from deardiary.services.http.query_params import query
from deardiary.services.mlflow_api import ids, reads, wire
from deardiary.services.mlflow_api.common import (
    check_param,
    check_tag,
    experiment_to_write,
    find_run,
    max_results,
    next_token,
    page_offset,
    random_run_name,
    renderer,
    required,
)
from deardiary.services.mlflow_api.context import MlflowContext, principal, read, require
from deardiary.services.mlflow_api.endpoint import MlflowEndpoint, read_json
from deardiary.services.mlflow_api.errors import MlflowError, not_found
from deardiary.services.mlflow_api.fields import (
    IS_LOGGED_MODEL,
    KIND_LOGGED_MODEL,
    META_KIND,
    META_MODEL_TYPE,
    LoggedModelResolve,
)
from deardiary.services.mlflow_api.reads import Row
from deardiary.services.mlflow_api.render import is_logged_model
from deardiary.services.mlflow_api.search import compile_filter, compile_order_by

Json = dict[str, Any]

FINAL = {
    "LOGGED_MODEL_READY": IterationStatus.SUCCEEDED,
    "LOGGED_MODEL_UPLOAD_FAILED": IterationStatus.FAILED,
    2: IterationStatus.SUCCEEDED,
    3: IterationStatus.FAILED,
}


def _model_id(request: web.Request) -> tuple[str, str]:
    """(MLflow id, iteration id) named in the path (RESOURCE_DOES_NOT_EXIST if malformed)."""
    model_id = request.match_info["logged_model_id"]
    inner = ids.logged_model_from_mlflow(model_id)
    if inner is None:
        raise not_found(f"Logged model with ID '{model_id[:100]}' not found.")
    return model_id, inner


def _find_model(conn: duckdb.DuckDBPyConnection, model_id: str, inner: str, deleted: bool) -> Row:
    row = reads.run(conn, inner)
    if row is None or not is_logged_model(row) or (row["deleted"] and not deleted):
        raise not_found(f"Logged model with ID '{model_id[:100]}' not found.")
    return row


class LoggedModels:
    def __init__(self, ctx: MlflowContext) -> None:
        self.ctx = ctx
        self.render = renderer(ctx)

    def _view(self, conn: duckdb.DuckDBPyConnection, row: Row) -> Json:
        params, metrics = reads.run_data(conn, [row["iteration_id"]])
        return self.render.logged_model(
            row, params[row["iteration_id"]], metrics[row["iteration_id"]]
        )

    async def _get(self, request: web.Request, model_id: str, inner: str, deleted: bool) -> Json:
        def fetch(conn: duckdb.DuckDBPyConnection) -> Json:
            return self._view(conn, _find_model(conn, model_id, inner, deleted))

        return {"model": await read(self.ctx, request, fetch)}

    async def create(self, request: web.Request) -> Json:
        body = await read_json(request, wire.CreateLoggedModel)
        for tag in body.tags:
            check_tag(tag.key, tag.value)
        params = {}
        for p in body.params:
            check_param(required(p.key, "key"), p.value)
            params[p.key] = p.value
        project_id, experiment_id, events = await experiment_to_write(
            self.ctx, request, body.experiment_id
        )
        source = body.source_run_id
        if source:
            await read(self.ctx, request, lambda conn: find_run(conn, source))
        metadata: dict[str, Any] = {META_KIND: KIND_LOGGED_MODEL}
        if body.model_type:
            metadata[META_MODEL_TYPE] = body.model_type
        inner = dd_ids.new_id()
        events.append(
            IterationStarted(
                iteration_id=inner,
                experiment_id=experiment_id,
                project_id=project_id,
                name=body.name or random_run_name(),
                parent_iteration_id=source or None,
                tags={t.key: t.value for t in body.tags},
                metadata=metadata,
            )
        )
        if params:
            events.append(ParamsLogged(iteration_id=inner, params=params))
        await self.ctx.emit(request, events)
        return await self._get(request, ids.logged_model_to_mlflow(inner), inner, False)

    async def get(self, request: web.Request) -> Json:
        model_id, inner = _model_id(request)
        allow_deleted = query(request, wire.GetLoggedModelQuery).allow_deleted
        return await self._get(request, model_id, inner, allow_deleted)

    async def _existing(
        self, request: web.Request, action: Action = Action.UPDATE
    ) -> tuple[str, str, Row]:
        """A logged model to change: the caller's permission on its project is judged
        before whether it is a logged model at all."""
        model_id, inner = _model_id(request)
        who = principal(request)

        def find(conn: duckdb.DuckDBPyConnection) -> Row:
            row = reads.run(conn, inner)
            if row is not None:
                require(conn, who, row["project_id"], action)
            return _find_model(conn, model_id, inner, False)

        return model_id, inner, await read(self.ctx, request, find)

    async def finalize(self, request: web.Request) -> Json:
        body = await read_json(request, wire.FinalizeLoggedModel)
        model_id, inner, _ = await self._existing(request)
        status = FINAL.get(body.status)
        if status is None:
            raise MlflowError(
                f"Invalid model status {body.status!r}: LOGGED_MODEL_READY or"
                " LOGGED_MODEL_UPLOAD_FAILED"
            )
        await self.ctx.emit(request, [IterationEnded(iteration_id=inner, status=status)])
        return await self._get(request, model_id, inner, False)

    async def delete(self, request: web.Request) -> Json:
        _, inner, _ = await self._existing(request, Action.DELETE)
        await self.ctx.emit(request, [EntityDeleted(entity=EntityKind.ITERATION, entity_id=inner)])
        self.ctx.run_states.forget(inner)
        return {}

    async def set_tags(self, request: web.Request) -> Json:
        body = await read_json(request, wire.SetLoggedModelTags)
        for tag in body.tags:
            check_tag(required(tag.key, "key"), tag.value)
        model_id, inner, _ = await self._existing(request)
        if body.tags:
            tags = {t.key: t.value for t in body.tags}
            event = TagsSet(entity=EntityKind.ITERATION, entity_id=inner, tags=tags)
            await self.ctx.emit(request, [event])
        return await self._get(request, model_id, inner, False)

    async def delete_tag(self, request: web.Request) -> Json:
        key = request.match_info["tag_key"]
        model_id, inner, row = await self._existing(request)
        if key not in row["tags"]:
            raise not_found(f"No tag with key {key!r} on logged model {model_id}")
        event: Event = TagsDeleted(entity=EntityKind.ITERATION, entity_id=inner, keys=[key])
        await self.ctx.emit(request, [event])
        return {}

    async def log_params(self, request: web.Request) -> Json:
        body = await read_json(request, wire.LogLoggedModelParams)
        params = {}
        for p in body.params:
            check_param(required(p.key, "key"), p.value)
            params[p.key] = p.value
        _, inner, _ = await self._existing(request)
        if params:
            await self.ctx.emit(request, [ParamsLogged(iteration_id=inner, params=params)])
        return {}

    async def search(self, request: web.Request) -> Json:
        body = await read_json(request, wire.SearchLoggedModels)
        limit = max_results(body.max_results, 100)
        offset = page_offset(body.page_token)
        default = self.ctx.default_project
        experiments = [ids.experiment_from_mlflow(e, default) for e in body.experiment_ids]
        resolve = LoggedModelResolve(self.render.default_experiment)
        where = compile_filter(body.filter, resolve)
        order = compile_order_by(
            [f"{o.field_name} {'ASC' if o.ascending else 'DESC'}" for o in body.order_by],
            resolve,
        )
        order_sql = ", ".join(s for s in (order.sql, "i.created_at DESC", "i.iteration_id") if s)
        condition = (
            f"list_contains(?, i.experiment_id) AND {IS_LOGGED_MODEL} AND NOT i.deleted"
            f" AND ({where.sql})"
        )
        params = [experiments, *where.params, *order.params]

        def fetch(conn: duckdb.DuckDBPyConnection) -> list[Json]:
            found = reads.page(conn, reads.RUN_SELECT, condition, params, order_sql, limit, offset)
            return [self._view(conn, r) for r in found]

        models = await read(self.ctx, request, fetch) if experiments else []
        out: Json = {"models": models}
        token = next_token(offset, len(models), limit)
        if token:
            out["next_page_token"] = token
        return out


def endpoints(ctx: MlflowContext) -> list[MlflowEndpoint]:
    m = LoggedModels(ctx)
    one = "/logged-models/{logged_model_id}"
    return [
        MlflowEndpoint(
            "POST", "/logged-models", m.create, "Create a logged model", body=wire.CreateLoggedModel
        ),
        MlflowEndpoint("GET", one, m.get, "Get a logged model", query=wire.GetLoggedModelQuery),
        MlflowEndpoint(
            "PATCH",
            one,
            m.finalize,
            "Finalize a logged model (READY or UPLOAD_FAILED)",
            body=wire.FinalizeLoggedModel,
        ),
        MlflowEndpoint("DELETE", one, m.delete, "Delete a logged model"),
        MlflowEndpoint(
            "POST",
            "/logged-models/search",
            m.search,
            "Search logged models",
            body=wire.SearchLoggedModels,
        ),
        MlflowEndpoint(
            "PATCH",
            one + "/tags",
            m.set_tags,
            "Set logged model tags",
            body=wire.SetLoggedModelTags,
        ),
        MlflowEndpoint(
            "DELETE", one + "/tags/{tag_key}", m.delete_tag, "Delete a logged model tag"
        ),
        MlflowEndpoint(
            "POST",
            one + "/params",
            m.log_params,
            "Log logged model params",
            body=wire.LogLoggedModelParams,
        ),
    ]
