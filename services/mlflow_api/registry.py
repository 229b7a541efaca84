"""MLflow's model registry over DearDiary's: registered models and their versions.

Each call becomes ordinary registry events (ModelCreated, ModelVersionCreated,
ModelVersionStaged, ModelAliasSet, and the generic TagsSet, TagsDeleted,
DescriptionSet, EntityRenamed, EntityDeleted) appended through the server's one
checked path, so under --auth the caller needs create, update or delete permission in
the model's project; reads see only models of projects the caller may read.

* A registered model lives in the project its ``deardiary.project`` tag names at
  creation (created if missing, like an experiment's), else in the default project.
* A version's source URI, its logged model and run link are kept in its metadata under
  ``mlflow``; its run is the version's iteration. Versions are READY at once.
* MLflow resolves ``models:/<name>/<stage|latest>`` and ``models:/<name>@<alias>``
  through these routes on the client side; get-download-uri answers where the files
  are (for a logged model, its ``mlflow-artifacts`` location).
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
    EntityRenamed,
    Event,
    ModelAliasSet,
    ModelCreated,
    ModelStage,
    ModelVersionCreated,
    ModelVersionStaged,
    ProjectCreated,
    TagsDeleted,
    TagsSet,
)
from deardiary.services.http.query_params import query
from deardiary.services.mlflow_api import registry_wire as w
from deardiary.services.mlflow_api.context import MlflowContext, read
from deardiary.services.mlflow_api.endpoint import MlflowEndpoint, read_json
from deardiary.services.mlflow_api.errors import (
    PERMISSION_DENIED,
    RESOURCE_ALREADY_EXISTS,
    MlflowError,
    not_found,
)
from deardiary.services.mlflow_api.ids import PROJECT_TAG
from deardiary.services.mlflow_api.registry_checks import (
    alias_name,
    model_name,
    new_model_name,
    stage_name,
    tag_key,
    tags_of,
    version_number,
)
from deardiary.services.mlflow_api.registry_reads import (
    STAGES,
    Row,
    find_model,
    find_version,
    latest_versions,
    model_json,
    search_models,
    search_versions,
    version_by_alias,
    version_by_id,
    version_json,
    version_source,
    versions_of,
)
from deardiary.services.mlflow_api.registry_search import (
    MODELS,
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
MAX_MODELS_PAGE = 1_000
MAX_VERSIONS_PAGE = 200_000
TAG = "mlflow registry"


class Registry:
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

    # -- registered models ---------------------------------------------------------------
    async def create_model(self, request: web.Request) -> Json:
        body = await read_json(request, w.CreateRegisteredModel)
        name = new_model_name(body.name)
        tags = tags_of(body.tags)
        project = tags.get(PROJECT_TAG) or self._project
        project_id = ids.project_id(project)

        def plan(conn: duckdb.DuckDBPyConnection) -> tuple[str, bool]:
            if find_model(conn, name, self._default_id) is not None:
                raise MlflowError(
                    f"Registered Model (name={name}) already exists.", RESOURCE_ALREADY_EXISTS
                )
            return _free_model_id(conn, project_id, name), _project_exists(conn, project_id)

        model_id, project_exists = await self._read(request, plan)
        events: list[Event] = []
        if not project_exists:
            events.append(ProjectCreated(project_id=project_id, name=project))
        events.append(
            ModelCreated(
                model_id=model_id,
                project_id=project_id,
                name=name,
                description=body.description,
                tags=tags,
            )
        )
        await self._emit(request, events)
        return await self._model_answer(request, name)

    async def get_model(self, request: web.Request) -> Json:
        return await self._model_answer(request, query(request, w.RegisteredModelQuery).name)

    async def update_model(self, request: web.Request) -> Json:
        body = await read_json(request, w.UpdateRegisteredModel)
        model = await self._read(request, lambda c: self._model(c, body.name))
        if body.description is not None:
            event = DescriptionSet(
                entity=EntityKind.MODEL,
                entity_id=str(model["model_id"]),
                description=body.description,
            )
            await self._emit(request, [event])
        return await self._model_answer(request, body.name)

    async def rename_model(self, request: web.Request) -> Json:
        body = await read_json(request, w.RenameRegisteredModel)
        new_name = new_model_name(body.new_name, "new_name")

        def plan(conn: duckdb.DuckDBPyConnection) -> Row:
            model = self._model(conn, body.name)
            taken = find_model(conn, new_name, self._default_id)
            if taken is not None and taken["model_id"] != model["model_id"]:
                raise MlflowError(
                    f"Registered Model (name={new_name}) already exists.",
                    RESOURCE_ALREADY_EXISTS,
                )
            return model

        model = await self._read(request, plan)
        if model["name"] != new_name:
            event = EntityRenamed(
                entity=EntityKind.MODEL, entity_id=str(model["model_id"]), name=new_name
            )
            await self._emit(request, [event])
        return await self._model_answer(request, new_name)

    async def delete_model(self, request: web.Request) -> Json:
        body = await read_json(request, w.RegisteredModelRef)
        model = await self._read(request, lambda c: self._model(c, body.name))
        event = EntityDeleted(entity=EntityKind.MODEL, entity_id=str(model["model_id"]))
        await self._emit(request, [event])
        return {}

    async def search_models(self, request: web.Request) -> Json:
        q = query(request, w.SearchQuery)
        limit = _page_size(q.max_results, 100, MAX_MODELS_PAGE)
        offset = page_offset(q.page_token)
        compiled = Compiled()
        compile_filter(q.filter, MODELS, compiled)
        compile_order(list(q.order_by), MODELS, compiled)
        models, versions = await self._read(
            request, lambda c: search_models(c, compiled, limit, offset)
        )
        out: Json = {
            "registered_models": [model_json(m, versions, self._project) for m in models[:limit]]
        }
        if len(models) > limit:
            out["next_page_token"] = page_token(offset + limit)
        return out

    async def latest_versions(self, request: web.Request) -> Json:
        if request.method == "GET":
            q = query(request, w.LatestVersionsQuery)
            name, stages = q.name, list(q.stages)
        else:
            body = await read_json(request, w.GetLatestVersions)
            name, stages = body.name, body.stages
        wanted = [stage_name(s) for s in stages] or list(STAGES)

        def fetch(conn: duckdb.DuckDBPyConnection) -> list[Json]:
            model = self._model(conn, name)
            versions = versions_of(conn, [str(model["model_id"])])
            return [version_json(v, self._project) for v in latest_versions(versions, wanted)]

        return {"model_versions": await self._read(request, fetch)}

    async def set_model_tag(self, request: web.Request) -> Json:
        body = await read_json(request, w.SetRegisteredModelTag)
        tags = tags_of([w.RegistryTag(key=body.key, value=body.value)])
        model = await self._read(request, lambda c: self._model(c, body.name))
        event = TagsSet(entity=EntityKind.MODEL, entity_id=str(model["model_id"]), tags=tags)
        await self._emit(request, [event])
        return {}

    async def delete_model_tag(self, request: web.Request) -> Json:
        body = await read_json(request, w.DeleteRegisteredModelTag)
        key = tag_key(body.key)
        model = await self._read(request, lambda c: self._model(c, body.name))
        event = TagsDeleted(entity=EntityKind.MODEL, entity_id=str(model["model_id"]), keys=[key])
        await self._emit(request, [event])
        return {}

    # -- aliases -------------------------------------------------------------------------
    async def set_alias(self, request: web.Request) -> Json:
        body = await read_json(request, w.SetRegisteredModelAlias)
        alias = alias_name(body.alias)
        version = await self._read(request, lambda c: self._version(c, body.name, body.version))
        event = ModelAliasSet(
            model_id=str(version["model_id"]),
            alias=alias,
            model_version_id=str(version["model_version_id"]),
        )
        await self._emit(request, [event])
        return {}

    async def delete_alias(self, request: web.Request) -> Json:
        body = await read_json(request, w.DeleteRegisteredModelAlias)
        alias = alias_name(body.alias, reserved_ok=True)
        model = await self._read(request, lambda c: self._model(c, body.name))
        await self._emit(request, [ModelAliasSet(model_id=str(model["model_id"]), alias=alias)])
        return {}

    async def get_by_alias(self, request: web.Request) -> Json:
        q = query(request, w.AliasQuery)
        alias = alias_name(q.alias, reserved_ok=True)

        def fetch(conn: duckdb.DuckDBPyConnection) -> Json:
            model = self._model(conn, q.name)
            found = version_by_alias(conn, str(model["model_id"]), alias)
            if found is None:
                raise not_found(f"Registered model alias {alias} not found.")
            return version_json(found, self._project)

        return {"model_version": await self._read(request, fetch)}

    # -- model versions ------------------------------------------------------------------
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
        limit = _page_size(q.max_results, 10_000, MAX_VERSIONS_PAGE)
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


def _page_size(asked: int | None, default: int, most: int) -> int:
    if asked is None:
        return default
    if not 1 <= asked <= most:
        raise MlflowError(
            f"Invalid value for request parameter max_results. It must be at most {most}"
            f" and at least 1, but got value {asked}"
        )
    return asked


def _project_exists(conn: duckdb.DuckDBPyConnection, project_id: str) -> bool:
    """Whether the project exists at all (unscoped: one the caller cannot read counts)."""
    db = conn.execute("SELECT current_database()").fetchall()[0][0]
    found = conn.execute(f"SELECT 1 FROM {db}.main.projects WHERE project_id = ?", [project_id])
    return bool(found.fetchall())


def _free_model_id(conn: duckdb.DuckDBPyConnection, project_id: str, name: str) -> str:
    """The id of a new model `name`: the one the SDK derives from (project, name), or,
    when a deleted or renamed model holds that, the next numbered one. A live model of
    that name there that the caller cannot see is one it may not create over."""
    db = conn.execute("SELECT current_database()").fetchall()[0][0]
    for n in range(1, 10_000):
        model_id = ids.model_id(project_id, name)
        if n > 1:
            model_id = ids.derived_id("model", project_id, name, str(n))
        held = conn.execute(
            f"SELECT name, deleted FROM {db}.main.models WHERE model_id = ?", [model_id]
        ).fetchall()
        if not held:
            return model_id
        if held[0][0] == name and not held[0][1]:
            raise MlflowError(
                f"Registered Model (name={name}) exists in a project you may not read.",
                PERMISSION_DENIED,
            )
    raise MlflowError(f"Registered Model (name={name}) was created and deleted too often.")


def endpoints(ctx: MlflowContext) -> list[MlflowEndpoint]:
    r = Registry(ctx)
    models, versions = "/registered-models", "/model-versions"

    def ep(method: str, path: str, handler: Any, summary: str, **kw: Any) -> MlflowEndpoint:
        return MlflowEndpoint(method, path, handler, summary, tag=TAG, **kw)

    return [
        ep(
            "POST",
            f"{models}/create",
            r.create_model,
            "Create a registered model",
            body=w.CreateRegisteredModel,
        ),
        ep(
            "GET",
            f"{models}/get",
            r.get_model,
            "Get a registered model",
            query=w.RegisteredModelQuery,
        ),
        ep(
            "PATCH",
            f"{models}/update",
            r.update_model,
            "Update a registered model's description",
            body=w.UpdateRegisteredModel,
        ),
        ep(
            "POST",
            f"{models}/rename",
            r.rename_model,
            "Rename a registered model",
            body=w.RenameRegisteredModel,
        ),
        ep(
            "DELETE",
            f"{models}/delete",
            r.delete_model,
            "Delete a registered model",
            body=w.RegisteredModelRef,
        ),
        ep(
            "GET",
            f"{models}/search",
            r.search_models,
            "Search registered models",
            query=w.SearchQuery,
        ),
        ep(
            "POST",
            f"{models}/get-latest-versions",
            r.latest_versions,
            "The latest version of a registered model in each stage",
            body=w.GetLatestVersions,
        ),
        ep(
            "GET",
            f"{models}/get-latest-versions",
            r.latest_versions,
            "The latest version of a registered model in each stage",
            query=w.LatestVersionsQuery,
        ),
        ep(
            "POST",
            f"{models}/set-tag",
            r.set_model_tag,
            "Set a registered model's tag",
            body=w.SetRegisteredModelTag,
        ),
        ep(
            "DELETE",
            f"{models}/delete-tag",
            r.delete_model_tag,
            "Delete a registered model's tag",
            body=w.DeleteRegisteredModelTag,
        ),
        ep(
            "POST",
            f"{models}/alias",
            r.set_alias,
            "Point an alias at a model version",
            body=w.SetRegisteredModelAlias,
        ),
        ep(
            "DELETE",
            f"{models}/alias",
            r.delete_alias,
            "Delete an alias",
            body=w.DeleteRegisteredModelAlias,
        ),
        ep(
            "GET",
            f"{models}/alias",
            r.get_by_alias,
            "The model version an alias names",
            query=w.AliasQuery,
        ),
        ep(
            "POST",
            f"{versions}/create",
            r.create_version,
            "Create a model version",
            body=w.CreateModelVersion,
        ),
        ep(
            "GET",
            f"{versions}/get",
            r.get_version,
            "Get a model version",
            query=w.ModelVersionQuery,
        ),
        ep(
            "PATCH",
            f"{versions}/update",
            r.update_version,
            "Update a model version's description",
            body=w.UpdateModelVersion,
        ),
        ep(
            "POST",
            f"{versions}/transition-stage",
            r.transition_stage,
            "Move a model version to a stage",
            body=w.TransitionModelVersionStage,
        ),
        ep(
            "DELETE",
            f"{versions}/delete",
            r.delete_version,
            "Delete a model version",
            body=w.ModelVersionRef,
        ),
        ep(
            "GET",
            f"{versions}/search",
            r.search_versions,
            "Search model versions",
            query=w.SearchQuery,
        ),
        ep(
            "GET",
            f"{versions}/get-download-uri",
            r.download_uri,
            "Where a model version's files are",
            query=w.ModelVersionQuery,
        ),
        ep(
            "POST",
            f"{versions}/set-tag",
            r.set_version_tag,
            "Set a model version's tag",
            body=w.SetModelVersionTag,
        ),
        ep(
            "DELETE",
            f"{versions}/delete-tag",
            r.delete_version_tag,
            "Delete a model version's tag",
            body=w.DeleteModelVersionTag,
        ),
    ]
