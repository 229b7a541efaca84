"""Authorising a batch of events before the gateway appends it.

Every event is attributed to a project — directly, through its parent in the same
batch, or through the projections — and needs the caller's create (new things,
logging), update (changes) or delete permission there. A project that does not
exist yet may be created by any signed-in user, who is then granted everything on
it. Parents that exist nowhere are refused (INVALID_ARGUMENT), as are envelopes
claiming another actor.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

import duckdb
from aiohttp import web

from deardiary.schemas.envelope import Envelope, wrap
from deardiary.schemas.errors import InvalidArgument, PermissionDenied
from deardiary.schemas.events import (
    ArtifactStored,
    DescriptionSet,
    EntityArchived,
    EntityDeleted,
    EntityKind,
    Event,
    ExperimentCreated,
    ExperimentStatusChanged,
    IterationStarted,
    MetadataSet,
    ModelAliasSet,
    ModelCreated,
    ModelVersionCreated,
    ModelVersionStaged,
    NotesSet,
    PermissionGranted,
    ProjectCreated,
    TagsDeleted,
    TagsSet,
)
from deardiary.services.auth.identity import PRINCIPAL, Principal
from deardiary.services.auth.permissions import Action, check, project_of

Appender = Callable[[Sequence[Envelope]], object]

_KIND_PARAMETER = {
    EntityKind.PROJECT: "project_id",
    EntityKind.EXPERIMENT: "experiment_id",
    EntityKind.ITERATION: "iteration_id",
    EntityKind.MODEL: "model_id",
    EntityKind.MODEL_VERSION: "model_version_id",
    EntityKind.ARTIFACT: "artifact_id",
}


class _Batch:
    """Parents introduced earlier in the same batch, looked up before the projections."""

    def __init__(self, conn: duckdb.DuckDBPyConnection) -> None:
        self.conn = conn
        self.known: dict[tuple[str, str], str] = {}
        self.new_projects: set[str] = set()

    def project(self, parameter: str, value: str | None) -> str:
        if value is None:
            raise InvalidArgument(f"missing {parameter}")
        found = self.known.get((parameter, value)) or project_of(self.conn, parameter, value)
        if found is None:
            raise InvalidArgument(
                f"{parameter.removesuffix('_id')} {value!r} does not exist (missing parent)",
                {"parameter": parameter, "value": value},
            )
        return found

    def target(self, ev: Event) -> tuple[str, Action]:
        """The project an event writes into and the permission it needs."""
        match ev:
            case ProjectCreated():
                if project_of(self.conn, "project_id", ev.project_id) is None:
                    self.new_projects.add(ev.project_id)
                self.known[("project_id", ev.project_id)] = ev.project_id
                return ev.project_id, Action.CREATE
            case ExperimentCreated():
                project = self.project("project_id", ev.project_id)
                self.known[("experiment_id", ev.experiment_id)] = project
                return project, Action.CREATE
            case IterationStarted():
                project = self.project("experiment_id", ev.experiment_id)
                if ev.project_id and ev.project_id != project:
                    raise InvalidArgument("iteration's project_id differs from its experiment's")
                self.known[("iteration_id", ev.iteration_id)] = project
                return project, Action.CREATE
            case ArtifactStored():
                return self.project("experiment_id", ev.experiment_id), Action.CREATE
            case ModelCreated():
                project = self.project("project_id", ev.project_id)
                self.known[("model_id", ev.model_id)] = project
                return project, Action.CREATE
            case ModelVersionCreated():
                project = self.project("model_id", ev.model_id)
                self.known[("model_version_id", ev.model_version_id)] = project
                return project, Action.CREATE
            case ModelVersionStaged() | ModelAliasSet():
                return self.project("model_id", ev.model_id), Action.UPDATE
            case ExperimentStatusChanged():
                return self.project("experiment_id", ev.experiment_id), Action.UPDATE
            case TagsSet() | TagsDeleted() | NotesSet() | DescriptionSet() | MetadataSet():
                return self.project(_KIND_PARAMETER[ev.entity], ev.entity_id), Action.UPDATE
            case EntityArchived():
                return self.project(_KIND_PARAMETER[ev.entity], ev.entity_id), Action.UPDATE
            case EntityDeleted():
                return self.project(_KIND_PARAMETER[ev.entity], ev.entity_id), Action.DELETE
        iteration_id = getattr(ev, "iteration_id", None)
        if isinstance(iteration_id, str):  # metrics, params, logs, heartbeats, end, env
            return self.project("iteration_id", iteration_id), Action.CREATE
        raise PermissionDenied(f"{type(ev).__name__} events are not accepted here")


class IngestAuthorizer:
    def __init__(
        self,
        reader: Callable[[], duckdb.DuckDBPyConnection],
        catch_up: Callable[[], None],
        append: Appender,
    ) -> None:
        self.reader = reader
        self.catch_up = catch_up
        self.append = append

    def _authorize(self, principal: Principal, envelopes: Sequence[Envelope]) -> None:
        for env in envelopes:
            if env.actor not in ("", principal.username):
                raise PermissionDenied(f"events may only be sent as {principal.username!r}")
        self.catch_up()  # parents acknowledged earlier are visible
        conn = self.reader()
        try:
            batch = _Batch(conn)
            for env in envelopes:
                project, action = batch.target(env.body)
                if project in batch.new_projects:
                    continue
                check(conn, principal, project, action)
        finally:
            conn.close()
        grants = [
            wrap(
                PermissionGranted(
                    user_id=principal.user_id,
                    project_id=p,
                    create=True,
                    read=True,
                    update=True,
                    delete=True,
                ),
                actor=principal.username,
            )
            for p in sorted(batch.new_projects)
            if not principal.is_admin
        ]
        if grants:
            self.append(grants)

    async def __call__(self, request: web.Request, envelopes: Sequence[Envelope]) -> None:
        principal: Principal = request[PRINCIPAL]
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self._authorize, principal, envelopes)
