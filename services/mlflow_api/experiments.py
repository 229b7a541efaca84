"""MLflow's experiment routes: create, get, get-by-name, search, update (rename), delete,
restore, set and delete tags -- as project, experiment and entity events of ours."""

from __future__ import annotations

from typing import Any

import duckdb
from aiohttp import web

from deardiary.schemas import ids as dd_ids
from deardiary.schemas.events import (
    DescriptionSet,
    EntityDeleted,
    EntityKind,
    EntityRenamed,
    EntityRestored,
    Event,
    ExperimentCreated,
    ProjectCreated,
    TagsDeleted,
    TagsSet,
)
from deardiary.schemas.limits import MAX_NAME_CHARS
from deardiary.services.http.query_params import query
from deardiary.services.mlflow_api import ids, reads, wire
from deardiary.services.mlflow_api.common import (
    active,
    check_tag,
    experiment_of,
    find_experiment_named,
    max_results,
    next_token,
    page_offset,
    renderer,
    required,
    view_type,
)
from deardiary.services.mlflow_api.context import MlflowContext, read
from deardiary.services.mlflow_api.endpoint import MlflowEndpoint, read_json
from deardiary.services.mlflow_api.errors import (
    RESOURCE_ALREADY_EXISTS,
    MlflowError,
    not_found,
)
from deardiary.services.mlflow_api.fields import NOTE_TAG, ExperimentResolve
from deardiary.services.mlflow_api.search import compile_filter, compile_order_by

Json = dict[str, Any]


def _check_name(name: str) -> None:
    if not name:
        raise MlflowError("Invalid experiment name: ''. Experiment name cannot be empty.")
    if len(name) > MAX_NAME_CHARS:
        raise MlflowError(f"Experiment name exceeds the maximum length of {MAX_NAME_CHARS}")


class Experiments:
    def __init__(self, ctx: MlflowContext) -> None:
        self.ctx = ctx
        self.render = renderer(ctx)

    @property
    def default_project(self) -> str:
        return self.ctx.default_project

    def _where(self, name: str, tags: list[wire.Tag]) -> tuple[str, str]:
        """(project, experiment name) a new MLflow experiment `name` goes to."""
        chosen = [t.value for t in tags if t.key == ids.PROJECT_TAG]
        if chosen and chosen[-1]:
            return chosen[-1], name
        return self.default_project, name

    async def create(self, request: web.Request) -> Json:
        body = await read_json(request, wire.CreateExperiment)
        _check_name(body.name)
        for tag in body.tags:
            check_tag(tag.key, tag.value)
        project, name = self._where(body.name, body.tags)

        def plan(conn: duckdb.DuckDBPyConnection) -> tuple[bool, str, str, bool]:
            """(project exists, project, name, derived id taken)."""
            if project == self.default_project and ids.split_name(name):
                found = find_experiment_named(conn, name, self.default_project)
                split = ids.split_name(name)
                assert split is not None
                where = split if reads.project_exists(conn, split[0]) else (project, name)
            else:
                found = reads.experiment_named(conn, project, name)
                where = (project, name)
            if found is not None:
                state = " in deleted state" if found["deleted"] else ""
                raise MlflowError(
                    f"Experiment '{body.name}' already exists{state}.", RESOURCE_ALREADY_EXISTS
                )
            derived = dd_ids.experiment_id(dd_ids.project_id(where[0]), where[1])
            taken = reads.experiment(conn, derived) is not None
            return reads.project_exists(conn, where[0]), where[0], where[1], taken

        exists, project, name, taken = await read(self.ctx, request, plan)
        project_id = dd_ids.project_id(project)
        experiment_id = dd_ids.new_id() if taken else dd_ids.experiment_id(project_id, name)
        events: list[Event] = []
        if not exists:
            events.append(ProjectCreated(project_id=project_id, name=project))
        events.append(
            ExperimentCreated(experiment_id=experiment_id, project_id=project_id, name=name)
        )
        events += self._tag_events(experiment_id, {t.key: t.value for t in body.tags})
        await self.ctx.emit(request, events)
        return {"experiment_id": self.render.experiment_id(experiment_id)}

    @staticmethod
    def _tag_events(experiment_id: str, tags: dict[str, str]) -> list[Event]:
        tags = {k: v for k, v in tags.items() if k != ids.PROJECT_TAG}
        events: list[Event] = []
        if NOTE_TAG in tags:
            events.append(
                DescriptionSet(
                    entity=EntityKind.EXPERIMENT,
                    entity_id=experiment_id,
                    description=tags.pop(NOTE_TAG),
                )
            )
        if tags:
            events.append(TagsSet(entity=EntityKind.EXPERIMENT, entity_id=experiment_id, tags=tags))
        return events

    async def get(self, request: web.Request) -> Json:
        q = query(request, wire.GetExperimentQuery)
        if q.experiment_id == ids.DEFAULT_EXPERIMENT_ID:
            mine = ids.default_experiment(self.default_project)
            row = await read(self.ctx, request, lambda conn: reads.experiment(conn, mine))
            if row is None:
                return {"experiment": self.render.default_experiment_view()}
        else:
            row = await experiment_of(self.ctx, request, q.experiment_id)
        return {"experiment": self.render.experiment(row)}

    async def get_by_name(self, request: web.Request) -> Json:
        name = required(
            query(request, wire.GetExperimentByNameQuery).experiment_name, "experiment_name"
        )
        row = await read(
            self.ctx, request, lambda conn: find_experiment_named(conn, name, self.default_project)
        )
        if row is None:
            if name == ids.DEFAULT_EXPERIMENT_NAME:
                return {"experiment": self.render.default_experiment_view()}
            raise not_found(f"Could not find experiment with name '{name}'")
        return {"experiment": self.render.experiment(row)}

    async def search_get(self, request: web.Request) -> Json:
        q = query(request, wire.SearchExperimentsQuery)
        return await self._search(
            request,
            wire.SearchExperiments(
                max_results=q.max_results,
                page_token=q.page_token,
                filter=q.filter,
                order_by=list(q.order_by),
                view_type=q.view_type,
            ),
        )

    async def search(self, request: web.Request) -> Json:
        return await self._search(request, await read_json(request, wire.SearchExperiments))

    async def _search(self, request: web.Request, body: wire.SearchExperiments) -> Json:
        limit = max_results(body.max_results, 1000)
        offset = page_offset(body.page_token)
        resolve = ExperimentResolve(self.default_project, self.render.default_experiment)
        where = compile_filter(body.filter, resolve)
        order = compile_order_by(body.order_by, resolve)
        order_sql = ", ".join(s for s in (order.sql, "e.created_at DESC", "e.experiment_id") if s)
        condition = f"{view_type(body.view_type).format(t='e')} AND ({where.sql})"
        found = await read(
            self.ctx,
            request,
            lambda conn: reads.page(
                conn,
                reads.EXPERIMENT_SELECT,
                condition,
                [*where.params, *order.params],
                order_sql,
                limit,
                offset,
            ),
        )
        out: Json = {"experiments": [self.render.experiment(r) for r in found]}
        token = next_token(offset, len(found), limit)
        if token:
            out["next_page_token"] = token
        return out

    async def delete(self, request: web.Request) -> Json:
        body = await read_json(request, wire.ExperimentRef)
        if body.experiment_id == ids.DEFAULT_EXPERIMENT_ID:
            raise MlflowError(
                "Cannot delete the default experiment '0'. This is an internally reserved"
                " experiment."
            )
        row = await experiment_of(self.ctx, request, body.experiment_id)
        await self.ctx.emit(
            request, [EntityDeleted(entity=EntityKind.EXPERIMENT, entity_id=row["experiment_id"])]
        )
        return {}

    async def restore(self, request: web.Request) -> Json:
        body = await read_json(request, wire.ExperimentRef)
        row = await experiment_of(self.ctx, request, body.experiment_id)
        if not row["deleted"]:
            raise MlflowError(
                f"Cannot restore an active experiment. Experiment {body.experiment_id} is active."
            )
        await self.ctx.emit(
            request, [EntityRestored(entity=EntityKind.EXPERIMENT, entity_id=row["experiment_id"])]
        )
        return {}

    async def update(self, request: web.Request) -> Json:
        body = await read_json(request, wire.UpdateExperiment)
        new_name = required(body.new_name, "new_name")
        _check_name(new_name)
        row = await experiment_of(self.ctx, request, body.experiment_id)
        active(row, "experiment")
        prefix = f"{row['project']}/"
        name = new_name
        if row["project"] != self.default_project and name.startswith(prefix):
            name = name[len(prefix) :]

        def taken(conn: duckdb.DuckDBPyConnection) -> bool:
            other = reads.experiment_named(conn, row["project"], name)
            return other is not None and other["experiment_id"] != row["experiment_id"]

        if await read(self.ctx, request, taken):
            raise MlflowError(f"Experiment '{new_name}' already exists.", RESOURCE_ALREADY_EXISTS)
        event = EntityRenamed(
            entity=EntityKind.EXPERIMENT, entity_id=row["experiment_id"], name=name
        )
        await self.ctx.emit(request, [event])
        return {}

    async def set_tag(self, request: web.Request) -> Json:
        body = await read_json(request, wire.SetExperimentTag)
        required(body.key, "key")
        check_tag(body.key, body.value)
        row = await experiment_of(self.ctx, request, body.experiment_id)
        active(row, "experiment")
        events = self._tag_events(row["experiment_id"], {body.key: body.value})
        if events:
            await self.ctx.emit(request, events)
        return {}

    async def delete_tag(self, request: web.Request) -> Json:
        body = await read_json(request, wire.DeleteExperimentTag)
        key = required(body.key, "key")
        row = await experiment_of(self.ctx, request, body.experiment_id)
        active(row, "experiment")
        entity = row["experiment_id"]
        event: Event
        if key == NOTE_TAG and row["description"]:
            event = DescriptionSet(entity=EntityKind.EXPERIMENT, entity_id=entity, description="")
        elif key in row["tags"]:
            event = TagsDeleted(entity=EntityKind.EXPERIMENT, entity_id=entity, keys=[key])
        else:
            raise not_found(f"No tag with name: {key} in experiment with id {body.experiment_id}")
        await self.ctx.emit(request, [event])
        return {}


def endpoints(ctx: MlflowContext) -> list[MlflowEndpoint]:
    e = Experiments(ctx)
    return [
        MlflowEndpoint(
            "POST",
            "/experiments/create",
            e.create,
            "Create an experiment",
            body=wire.CreateExperiment,
        ),
        MlflowEndpoint(
            "GET", "/experiments/get", e.get, "Get an experiment", query=wire.GetExperimentQuery
        ),
        MlflowEndpoint(
            "GET",
            "/experiments/get-by-name",
            e.get_by_name,
            "Get an experiment by its MLflow name",
            query=wire.GetExperimentByNameQuery,
        ),
        MlflowEndpoint(
            "POST",
            "/experiments/search",
            e.search,
            "Search experiments (filter, order, paging, view type)",
            body=wire.SearchExperiments,
        ),
        MlflowEndpoint(
            "GET",
            "/experiments/search",
            e.search_get,
            "Search experiments (filter, order, paging, view type)",
            query=wire.SearchExperimentsQuery,
        ),
        MlflowEndpoint(
            "POST", "/experiments/delete", e.delete, "Delete an experiment", body=wire.ExperimentRef
        ),
        MlflowEndpoint(
            "POST",
            "/experiments/restore",
            e.restore,
            "Restore a deleted experiment",
            body=wire.ExperimentRef,
        ),
        MlflowEndpoint(
            "POST",
            "/experiments/update",
            e.update,
            "Rename an experiment",
            body=wire.UpdateExperiment,
        ),
        MlflowEndpoint(
            "POST",
            "/experiments/set-experiment-tag",
            e.set_tag,
            "Set an experiment tag",
            body=wire.SetExperimentTag,
        ),
        MlflowEndpoint(
            "POST",
            "/experiments/delete-experiment-tag",
            e.delete_tag,
            "Delete an experiment tag",
            body=wire.DeleteExperimentTag,
        ),
    ]
