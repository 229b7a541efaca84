"""MLflow's model versions: create (from a resolved source), get, download URI, update,
stage transitions, delete, search and tags -- and what every registry handler shares
(`RegistryBase`). Registered models, aliases and the routes are in registry.py.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import duckdb
from aiohttp import web

from deardiary.schemas import ids
from deardiary.schemas.events import (
    DescriptionSet,
    EntityDeleted,
    EntityKind,
    Event,
    ModelAliasSet,
    ModelStage,
    ModelVersionCreated,
    ModelVersionStaged,
    TagsDeleted,
    TagsSet,
)
from deardiary.services.http.query_params import query
from deardiary.services.mlflow_api import registry_wire as w
from deardiary.services.mlflow_api.context import MlflowContext, read
from deardiary.services.mlflow_api.endpoint import read_json
from deardiary.services.mlflow_api.errors import (
    MlflowError,
    not_found,
)
from deardiary.services.mlflow_api.registry_checks import (
    model_name,
    stage_name,
    tag_key,
    tags_of,
    version_number,
)
from deardiary.services.mlflow_api.registry_reads import (
    Row,
    find_model,
    find_version,
    model_json,
    search_versions,
    version_by_id,
    version_json,
    version_source,
    versions_of,
)
from deardiary.services.mlflow_api.registry_search import (
    VERSIONS,
    Compiled,
    compile_filter,
    compile_order,
    page_offset,
    page_token,
)
from deardiary.services.mlflow_api.registry_sources import resolve_source

T = TypeVar("T")
Json = dict[str, Any]
MAX_VERSIONS_PAGE = 200_000


class RegistryBase:
    """What every registry handler shares: reads as the caller, appends, lookups."""

    def __init__(self, ctx: MlflowContext) -> None:
        self.ctx = ctx

    @property
    def _project(self) -> str:
        return self.ctx.default_project

    @property
    def _default_id(self) -> str:
        return ids.project_id(self.ctx.default_project)

    async def _read(self, request: web.Request, fn: Callable[[duckdb.DuckDBPyConnection], T]) -> T:
        return await read(self.ctx, request, fn)

    async def _emit(self, request: web.Request, events: Sequence[Event]) -> None:
        await self.ctx.emit(request, events)

    def _model(self, conn: duckdb.DuckDBPyConnection, name: str) -> Row:
        found = find_model(conn, model_name(name), self._default_id)
        if found is None:
            raise not_found(f"Registered Model with name={name} not found")
        return found

    def _version(self, conn: duckdb.DuckDBPyConnection, name: str, version: w.Version) -> Row:
        number = version_number(version)
        model = self._model(conn, name)
        found = find_version(conn, str(model["model_id"]), number)
        if found is None:
            raise not_found(f"Model Version (name={name}, version={number}) not found")
        return found

    async def _model_answer(self, request: web.Request, name: str) -> Json:
        def fetch(conn: duckdb.DuckDBPyConnection) -> Json:
            model = self._model(conn, name)
            versions = versions_of(conn, [str(model["model_id"])])
            return model_json(model, versions, self._project)

        return {"registered_model": await self._read(request, fetch)}


class VersionHandlers(RegistryBase):
    """The model-version routes."""

    async def _version_answer(self, request: web.Request, model_version_id: str) -> Json:
        def fetch(conn: duckdb.DuckDBPyConnection) -> Json:
            found = version_by_id(conn, model_version_id)
            if found is None:  # deleted meanwhile
                raise not_found(f"Model version {model_version_id} not found")
            return version_json(found, self._project)

        return {"model_version": await self._read(request, fetch)}

    async def create_version(self, request: web.Request) -> Json:
        body = await read_json(request, w.CreateModelVersion)
        tags = tags_of(body.tags)

        def plan(conn: duckdb.DuckDBPyConnection) -> tuple[Row, Json]:
            model = self._model(conn, body.name)
            resolved = resolve_source(conn, body, self._project, self._default_id)
            return model, resolved

        model, resolved = await self._read(request, plan)
        version_id = ids.new_id()
        run_id = resolved.pop("run_id", "") or None
        event = ModelVersionCreated(
            model_version_id=version_id,
            model_id=str(model["model_id"]),
            iteration_id=run_id,
            description=body.description,
            tags=tags,
            metadata={f"mlflow.{k}": v for k, v in resolved.items() if v},
        )
        await self._emit(request, [event])
        return await self._version_answer(request, version_id)

    async def get_version(self, request: web.Request) -> Json:
        q = query(request, w.ModelVersionQuery)
        row = await self._read(request, lambda c: self._version(c, q.name, q.version))
        return {"model_version": version_json(row, self._project)}

    async def download_uri(self, request: web.Request) -> Json:
        q = query(request, w.ModelVersionQuery)
        row = await self._read(request, lambda c: self._version(c, q.name, q.version))
        _, uri = version_source(row, self._project)
        return {"artifact_uri": uri}

    async def update_version(self, request: web.Request) -> Json:
        body = await read_json(request, w.UpdateModelVersion)
        row = await self._read(request, lambda c: self._version(c, body.name, body.version))
        if body.description is not None:
            event = DescriptionSet(
                entity=EntityKind.MODEL_VERSION,
                entity_id=str(row["model_version_id"]),
                description=body.description,
            )
            await self._emit(request, [event])
        return await self._version_answer(request, str(row["model_version_id"]))

    async def transition_stage(self, request: web.Request) -> Json:
        body = await read_json(request, w.TransitionModelVersionStage)
        stage = ModelStage(stage_name(body.stage))
        if body.archive_existing_versions and stage not in (
            ModelStage.STAGING,
            ModelStage.PRODUCTION,
        ):
            raise MlflowError(
                "Model version transition cannot archive existing model versions because "
                f"'{stage.value}' is not an Active stage. Valid stages are Staging, Production."
            )
        row = await self._read(request, lambda c: self._version(c, body.name, body.version))
        event = ModelVersionStaged(
            model_version_id=str(row["model_version_id"]),
            model_id=str(row["model_id"]),
            stage=stage,
            archive_existing=body.archive_existing_versions,
        )
        await self._emit(request, [event])
        return await self._version_answer(request, str(row["model_version_id"]))

    async def delete_version(self, request: web.Request) -> Json:
        body = await read_json(request, w.ModelVersionRef)
        row = await self._read(request, lambda c: self._version(c, body.name, body.version))
        version_id, model_id = str(row["model_version_id"]), str(row["model_id"])
        aliases = version_json(row, self._project)["aliases"]
        events: list[Event] = [ModelAliasSet(model_id=model_id, alias=a) for a in aliases]
        events.append(EntityDeleted(entity=EntityKind.MODEL_VERSION, entity_id=version_id))
        await self._emit(request, events)
        return {}

    async def search_versions(self, request: web.Request) -> Json:
        q = query(request, w.SearchQuery)
        limit = page_size(q.max_results, 10_000, MAX_VERSIONS_PAGE)
        offset = page_offset(q.page_token)
        compiled = Compiled()
        compile_filter(q.filter, VERSIONS, compiled)
        compile_order(list(q.order_by), VERSIONS, compiled)
        rows = await self._read(request, lambda c: search_versions(c, compiled, limit, offset))
        out: Json = {"model_versions": [version_json(r, self._project) for r in rows[:limit]]}
        if len(rows) > limit:
            out["next_page_token"] = page_token(offset + limit)
        return out

    async def set_version_tag(self, request: web.Request) -> Json:
        body = await read_json(request, w.SetModelVersionTag)
        tags = tags_of([w.RegistryTag(key=body.key, value=body.value)])
        row = await self._read(request, lambda c: self._version(c, body.name, body.version))
        entity_id = str(row["model_version_id"])
        await self._emit(
            request, [TagsSet(entity=EntityKind.MODEL_VERSION, entity_id=entity_id, tags=tags)]
        )
        return {}

    async def delete_version_tag(self, request: web.Request) -> Json:
        body = await read_json(request, w.DeleteModelVersionTag)
        key = tag_key(body.key)
        row = await self._read(request, lambda c: self._version(c, body.name, body.version))
        entity_id = str(row["model_version_id"])
        await self._emit(
            request,
            [TagsDeleted(entity=EntityKind.MODEL_VERSION, entity_id=entity_id, keys=[key])],
        )
        return {}


def page_size(asked: int | None, default: int, most: int) -> int:
    if asked is None:
        return default
    if not 1 <= asked <= most:
        raise MlflowError(
            f"Invalid value for request parameter max_results. It must be at most {most}"
            f" and at least 1, but got value {asked}"
        )
    return asked
