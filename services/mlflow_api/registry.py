"""MLflow's model registry over DearDiary's: registered models and their versions.

Each call becomes ordinary registry events (ModelCreated, ModelVersionCreated,
ModelVersionStaged, ModelAliasSet, and the generic TagsSet, TagsDeleted,
DescriptionSet, EntityRenamed, EntityDeleted) appended through the server's one
checked path, so under --auth the caller needs create, update or delete permission in
the model's project; reads see only models of projects the caller may read.

* A registered model lives in the project its ``deardiary.project`` tag names at
  creation (created if missing, like an experiment's), else in the default project.
* A version's source URI, where its files are, its logged model and run link are kept
  in its metadata (``mlflow.*`` keys); its run is the version's iteration. Versions are
  READY at once.
* MLflow resolves ``models:/<name>/<stage|latest>`` and ``models:/<name>@<alias>``
  through these routes on the client side; get-download-uri answers where the files
  are (for a logged model, its ``mlflow-artifacts`` location).
"""

from __future__ import annotations

from typing import Any

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
    ProjectCreated,
    TagsDeleted,
    TagsSet,
)
from deardiary.services.http.query_params import query
from deardiary.services.mlflow_api import registry_wire as w
from deardiary.services.mlflow_api.context import MlflowContext
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
    new_model_name,
    stage_name,
    tag_key,
    tags_of,
)
from deardiary.services.mlflow_api.registry_reads import (
    STAGES,
    Row,
    find_model,
    latest_versions,
    model_json,
    search_models,
    version_by_alias,
    version_json,
    versions_of,
)
from deardiary.services.mlflow_api.registry_search import (
    MODELS,
    Compiled,
    compile_filter,
    compile_order,
    page_offset,
    page_token,
)
from deardiary.services.mlflow_api.registry_versions import Json, VersionHandlers, page_size

MAX_MODELS_PAGE = 1_000
TAG = "mlflow registry"


class Registry(VersionHandlers):
    """The registered-model and alias routes (and, inherited, the version routes)."""

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
        limit = page_size(q.max_results, 100, MAX_MODELS_PAGE)
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

        def held(conn: duckdb.DuckDBPyConnection) -> tuple[str, bool]:
            model_id = str(self._model(conn, body.name)["model_id"])
            return model_id, version_by_alias(conn, model_id, alias) is not None

        model_id, is_set = await self._read(request, held)
        if is_set:  # deleting an alias that names nothing is no change, as in MLflow
            await self._emit(request, [ModelAliasSet(model_id=model_id, alias=alias)])
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
    m, v = "/registered-models", "/model-versions"
    latest = "The latest version of a registered model in each stage"

    def ep(method: str, path: str, handler: Any, summary: str, schema: Any) -> MlflowEndpoint:
        """A registry route; `schema` is its query Struct (GET) or JSON body."""
        kind = "query" if method == "GET" else "body"
        return MlflowEndpoint(method, path, handler, summary, tag=TAG, **{kind: schema})

    return [
        ep(
            "POST",
            f"{m}/create",
            r.create_model,
            "Create a registered model",
            w.CreateRegisteredModel,
        ),
        ep("GET", f"{m}/get", r.get_model, "Get a registered model", w.RegisteredModelQuery),
        ep(
            "PATCH",
            f"{m}/update",
            r.update_model,
            "Set a model's description",
            w.UpdateRegisteredModel,
        ),
        ep(
            "POST",
            f"{m}/rename",
            r.rename_model,
            "Rename a registered model",
            w.RenameRegisteredModel,
        ),
        ep(
            "DELETE",
            f"{m}/delete",
            r.delete_model,
            "Delete a registered model",
            w.RegisteredModelRef,
        ),
        ep("GET", f"{m}/search", r.search_models, "Search registered models", w.SearchQuery),
        *(
            ep(method, f"{m}/get-latest-versions", r.latest_versions, latest, schema)
            for method, schema in (("POST", w.GetLatestVersions), ("GET", w.LatestVersionsQuery))
        ),
        ep("POST", f"{m}/set-tag", r.set_model_tag, "Set a model's tag", w.SetRegisteredModelTag),
        ep(
            "DELETE",
            f"{m}/delete-tag",
            r.delete_model_tag,
            "Delete a tag",
            w.DeleteRegisteredModelTag,
        ),
        ep(
            "POST",
            f"{m}/alias",
            r.set_alias,
            "Point an alias at a version",
            w.SetRegisteredModelAlias,
        ),
        ep("DELETE", f"{m}/alias", r.delete_alias, "Delete an alias", w.DeleteRegisteredModelAlias),
        ep("GET", f"{m}/alias", r.get_by_alias, "The version an alias names", w.AliasQuery),
        ep("POST", f"{v}/create", r.create_version, "Create a model version", w.CreateModelVersion),
        ep("GET", f"{v}/get", r.get_version, "Get a model version", w.ModelVersionQuery),
        ep(
            "PATCH",
            f"{v}/update",
            r.update_version,
            "Set a version's description",
            w.UpdateModelVersion,
        ),
        ep(
            "POST",
            f"{v}/transition-stage",
            r.transition_stage,
            "Move to a stage",
            w.TransitionModelVersionStage,
        ),
        ep("DELETE", f"{v}/delete", r.delete_version, "Delete a model version", w.ModelVersionRef),
        ep("GET", f"{v}/search", r.search_versions, "Search model versions", w.SearchQuery),
        ep(
            "GET",
            f"{v}/get-download-uri",
            r.download_uri,
            "Where its files are",
            w.ModelVersionQuery,
        ),
        ep("POST", f"{v}/set-tag", r.set_version_tag, "Set a version's tag", w.SetModelVersionTag),
        ep(
            "DELETE",
            f"{v}/delete-tag",
            r.delete_version_tag,
            "Delete a tag",
            w.DeleteModelVersionTag,
        ),
    ]
