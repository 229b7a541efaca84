"""Management verbs over any entity id: tags, notes, description, metadata, name, archive,
delete and restore; moving an iteration; an experiment's status.

Each route is a thin translation into one event (schemas/events/entities.py), appended
through the server's one append path and answered once applied (services/query/writes.py).
The kind of entity is looked up on the caller's scoped cursor, so an id the caller may
not read is a 404 like an unknown one. Under --auth the middleware checks the permission
each route declares (`ROUTE_ACTIONS`: update, or delete for delete and restore) on the
project the id names before the handler runs, and the append path checks every event
again.
"""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

import msgspec
from aiohttp import web
from msgspec import Meta

from deardiary.projections.queries.entities import kind_of
from deardiary.schemas import ids
from deardiary.schemas.errors import InvalidArgument, NotFound
from deardiary.schemas.events import (
    DescriptionSet,
    EntityArchived,
    EntityDeleted,
    EntityKind,
    EntityRenamed,
    EntityRestored,
    Event,
    ExperimentCreated,
    ExperimentStatus,
    ExperimentStatusChanged,
    IterationMoved,
    MetadataSet,
    NotesSet,
    TagsDeleted,
    TagsSet,
)
from deardiary.schemas.limits import MAX_NAME_CHARS, Id, Key, Metadata, Name, Tags, Text
from deardiary.services.http import query_params as qp
from deardiary.services.http.errors import invalid_argument_from_msgspec
from deardiary.services.query import params as q
from deardiary.services.query.context import caller_of
from deardiary.services.query.encoding import json_response
from deardiary.services.query.routes import Handler, Route
from deardiary.services.query.writes import WriteContext

B = TypeVar("B", bound=msgspec.Struct)


class Body(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Base of the JSON bodies of these routes."""


class TagsBody(Body, frozen=True, kw_only=True):
    tags: Tags


class NotesBody(Body, frozen=True, kw_only=True):
    notes: Text


class DescriptionBody(Body, frozen=True, kw_only=True):
    description: Text


class MetadataBody(Body, frozen=True, kw_only=True):
    metadata: Metadata


class NameBody(Body, frozen=True, kw_only=True):
    name: Name


class MoveBody(Body, frozen=True, kw_only=True):
    experiment_id: Id | None = None
    experiment: Name | None = None
    """An experiment of the iteration's project by name (created when it does not exist)."""


class StatusBody(Body, frozen=True, kw_only=True):
    status: ExperimentStatus


class TagKeys(q.Fresh, frozen=True, kw_only=True):
    key: Annotated[list[Key], Meta(min_length=1, description="tag keys to delete")]


def _object(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": required,
        "properties": properties,
        "additionalProperties": False,
    }


_STRING = {"type": "string"}
_NAME = {"type": "string", "maxLength": MAX_NAME_CHARS}
_SCHEMAS: dict[type[msgspec.Struct], dict[str, Any]] = {
    TagsBody: _object(
        {"tags": {"type": "object", "additionalProperties": {"type": "string"}}}, ["tags"]
    ),
    NotesBody: _object({"notes": _STRING}, ["notes"]),
    DescriptionBody: _object({"description": _STRING}, ["description"]),
    MetadataBody: _object({"metadata": {"type": "object"}}, ["metadata"]),
    NameBody: _object({"name": _NAME}, ["name"]),
    MoveBody: _object({"experiment_id": _STRING, "experiment": _NAME}, []),
    StatusBody: _object({"status": {"enum": [s.value for s in ExperimentStatus]}}, ["status"]),
}

ENTITY = "/api/v1/entities/{entity_id}"
MOVE = "/api/v1/iterations/{iteration_id}/move"
STATUS = "/api/v1/experiments/{experiment_id}/status"
ROUTE_ACTIONS: dict[tuple[str, str], str] = {
    ("PUT", f"{ENTITY}/tags"): "update",
    ("DELETE", f"{ENTITY}/tags"): "update",
    ("PUT", f"{ENTITY}/notes"): "update",
    ("PUT", f"{ENTITY}/description"): "update",
    ("PUT", f"{ENTITY}/metadata"): "update",
    ("PUT", f"{ENTITY}/name"): "update",
    ("POST", f"{ENTITY}/archive"): "update",
    ("POST", f"{ENTITY}/unarchive"): "update",
    ("POST", f"{ENTITY}/delete"): "delete",
    ("POST", f"{ENTITY}/restore"): "delete",
    ("POST", MOVE): "update",
    ("PUT", STATUS): "update",
}
"""The permission each write route needs on the project its path names (the auth
middleware reads this; every other non-GET route needs create)."""


async def _body(request: web.Request, kind: type[B]) -> B:
    raw = await request.read()
    try:
        return msgspec.json.decode(raw, type=kind)
    except msgspec.DecodeError as exc:
        raise invalid_argument_from_msgspec(exc) from None


class ManageRoutes:
    def __init__(self, writes: WriteContext) -> None:
        self.w = writes

    async def _entity(self, request: web.Request, id_param: str) -> tuple[EntityKind, str, str]:
        """(kind, id, project) of the entity the path names, as the caller may see it."""
        entity_id = request.match_info[id_param]
        ctx = self.w.query
        await ctx.wait(q.min_offsets(request))
        found = await ctx.run(lambda c: kind_of(c, entity_id), caller_of(request))
        if found is None:  # maybe appended a moment ago
            await ctx.catch_up()
            found = await ctx.run(lambda c: kind_of(c, entity_id), caller_of(request))
        if found is None:
            raise NotFound(f"{entity_id!r} not found", {"id": entity_id})
        return found[0], entity_id, found[1]

    async def _apply(
        self, request: web.Request, kind: EntityKind, entity_id: str, *events: Event
    ) -> web.Response:
        where = await self.w.emit(request, events)
        return json_response({"entity_id": entity_id, "kind": kind.value, **where})

    def entity_change(self, body: type[B] | None, make: Any) -> Handler:
        """A handler: resolve the entity, read the body, append `make(kind, id, body)`."""

        async def handler(request: web.Request) -> web.Response:
            kind, entity_id, _ = await self._entity(request, "entity_id")
            parsed = await _body(request, body) if body is not None else None
            return await self._apply(request, kind, entity_id, make(kind, entity_id, parsed))

        return handler

    async def delete_tags(self, request: web.Request) -> web.Response:
        keys = qp.query(request, TagKeys).key
        kind, entity_id, _ = await self._entity(request, "entity_id")
        event = TagsDeleted(entity=kind, entity_id=entity_id, keys=list(dict.fromkeys(keys)))
        return await self._apply(request, kind, entity_id, event)

    async def move(self, request: web.Request) -> web.Response:
        kind, iteration_id, project = await self._entity(request, "iteration_id")
        body = await _body(request, MoveBody)
        if (body.experiment_id is None) == (body.experiment is None):
            raise InvalidArgument('give one of "experiment_id" or "experiment" (a name)')
        events: list[Event] = []
        experiment_id = body.experiment_id
        if body.experiment is not None:
            if not body.experiment.strip():
                raise InvalidArgument("an experiment name cannot be empty")
            experiment_id = ids.experiment_id(project, body.experiment)
            events.append(
                ExperimentCreated(
                    experiment_id=experiment_id, project_id=project, name=body.experiment
                )
            )
        assert experiment_id is not None
        events.append(IterationMoved(iteration_id=iteration_id, experiment_id=experiment_id))
        response = await self._apply(request, kind, iteration_id, *events)
        return response

    async def status(self, request: web.Request) -> web.Response:
        kind, experiment_id, _ = await self._entity(request, "experiment_id")
        body = await _body(request, StatusBody)
        event = ExperimentStatusChanged(experiment_id=experiment_id, status=body.status)
        return await self._apply(request, kind, experiment_id, event)


def manage_routes(writes: WriteContext) -> list[Route]:
    r = ManageRoutes(writes)

    def change(method: str, verb: str, summary: str, body: type[B] | None, make: Any) -> Route:
        schema = _SCHEMAS[body] if body is not None else None
        handler = r.entity_change(body, make)
        return Route(method, f"{ENTITY}/{verb}", handler, summary, q.Fresh, "manage", schema)

    return [
        change(
            "PUT",
            "tags",
            "Merge tags into any entity (project, experiment, iteration, model, version, artifact)",
            TagsBody,
            lambda k, i, b: TagsSet(entity=k, entity_id=i, tags=b.tags),
        ),
        Route(
            "DELETE",
            f"{ENTITY}/tags",
            r.delete_tags,
            "Delete tags of any entity by key",
            TagKeys,
            "manage",
        ),
        change(
            "PUT",
            "notes",
            "Set the notes of any entity",
            NotesBody,
            lambda k, i, b: NotesSet(entity=k, entity_id=i, notes=b.notes),
        ),
        change(
            "PUT",
            "description",
            "Set the description of any entity",
            DescriptionBody,
            lambda k, i, b: DescriptionSet(entity=k, entity_id=i, description=b.description),
        ),
        change(
            "PUT",
            "metadata",
            "Merge JSON metadata into any entity",
            MetadataBody,
            lambda k, i, b: MetadataSet(entity=k, entity_id=i, metadata=b.metadata),
        ),
        change(
            "PUT",
            "name",
            "Rename an entity (its display name; ids never change)",
            NameBody,
            lambda k, i, b: EntityRenamed(entity=k, entity_id=i, name=b.name),
        ),
        change(
            "POST",
            "archive",
            "Archive an entity (hidden from listings that exclude archived ones)",
            None,
            lambda k, i, b: EntityArchived(entity=k, entity_id=i, archived=True),
        ),
        change(
            "POST",
            "unarchive",
            "Unarchive an entity",
            None,
            lambda k, i, b: EntityArchived(entity=k, entity_id=i, archived=False),
        ),
        change(
            "POST",
            "delete",
            "Delete an entity: hidden from reads with everything it contains (restorable)",
            None,
            lambda k, i, b: EntityDeleted(entity=k, entity_id=i),
        ),
        change(
            "POST",
            "restore",
            "Restore a deleted entity (and what it contains)",
            None,
            lambda k, i, b: EntityRestored(entity=k, entity_id=i),
        ),
        Route(
            "POST",
            MOVE,
            r.move,
            "Move an iteration to another experiment of its project (by id, or by name:"
            " created when missing)",
            q.Fresh,
            "manage",
            _SCHEMAS[MoveBody],
        ),
        Route(
            "PUT",
            STATUS,
            r.status,
            "Set an experiment's status (COMPLETED, FAILED, CANCELED end it; ACTIVE reopens)",
            q.Fresh,
            "manage",
            _SCHEMAS[StatusBody],
        ),
    ]
