"""Management verbs from the SDK: tags, notes, description, metadata, names, archive,
delete/restore over any entity id; moving an iteration; an experiment's status.

`Client` takes these methods from `ManageMixin`. Against a server they call its REST
routes (/api/v1/entities/{id}/..., which find the kind of entity the id names and append
the event); against a data folder with no server, the kind is looked up in the folder's
projections and the event goes through this client's buffer like any other. Either way
the call returns once the change is in the log, and this client's next read sees it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from deardiary.schemas import events
from deardiary.schemas.errors import InvalidArgument, NotFound

from .transport import Acked

if TYPE_CHECKING:
    from deardiary.services.embedded import EmbeddedStore

    from .buffer import EventBuffer
    from .iteration import Iteration
    from .reads import HttpReader, Reader

    # (kind, entity id, project id) -> the events of a change (the union: annotations only)
    Make = Callable[[events.EntityKind, str, str], Sequence[events.Event]]


if TYPE_CHECKING:  # annotations only: a Protocol class costs every trial process
    # ~0.5M instructions to create
    class _Client(Protocol):
        reader: Reader

        @property
        def buffer(self) -> EventBuffer: ...  # made by the first write

        def flush(self, timeout: float | None = None) -> int: ...

        def _written(self) -> Acked: ...


def offsets_param(at: Acked) -> dict[str, str]:
    """The read-your-writes query parameter for what this client wrote."""
    if not at:
        return {}
    return {"min_offset": ",".join(f"{p}:{o}" for p, o in sorted(at.items()))}


def _id(entity: str | Iteration) -> str:
    return entity if isinstance(entity, str) else entity.id


def _local_kind(store: EmbeddedStore, entity_id: str) -> tuple[events.EntityKind, str] | None:
    from deardiary.projections.queries.entities import kind_of

    conn = store.store.reader()
    try:
        return kind_of(conn, entity_id)
    finally:
        conn.close()


def change(
    client: _Client,
    method: str,
    path: str,
    body: Mapping[str, Any] | None,
    entity_id: str,
    make: Make,
    params: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """One management change: REST `method path` with `body` on a server, or the events of
    `make` appended through the buffer on a folder without one."""
    from .reads import HttpReader, LocalReader

    at = client._written()
    query = {**offsets_param(at), **(params or {})}

    def remote(reader: HttpReader, to: Acked) -> dict[str, Any]:
        sent = {**query, **offsets_param(to)}
        answer: dict[str, Any] = reader.request(method, path, params=sent, json=body)
        return answer

    reader = client.reader
    if isinstance(reader, HttpReader):
        return remote(reader, at)
    if not isinstance(reader, LocalReader):
        raise InvalidArgument("management changes need a server or a data folder to ask")
    answer: dict[str, Any] | tuple[events.EntityKind, str] | None = reader.read(
        remote, lambda store: _local_kind(store, entity_id), at
    )
    if isinstance(answer, dict):  # a server owns the folder and answered
        return answer
    if answer is None:
        raise NotFound(f"{entity_id!r} not found", {"id": entity_id})
    kind, project = answer
    for event in make(kind, entity_id, project):
        client.buffer.emit(event)
    offset = client.flush()
    return {"entity_id": entity_id, "kind": kind.value, "offset": offset}


def _entity(verb: str, entity_id: str) -> str:
    return f"/api/v1/entities/{entity_id}/{verb}"


class ManageMixin:
    """The management verbs of `Client` (any entity id: project, experiment, iteration,
    model, model version or artifact; an `Iteration` handle works too)."""

    def set_tags(self: _Client, entity: str | Iteration, tags: Mapping[str, str]) -> None:
        """Merge key/value tags into the entity's tags (a label is a tag with value "")."""
        i, body = _id(entity), {"tags": dict(tags)}
        change(
            self,
            "PUT",
            _entity("tags", i),
            body,
            i,
            lambda k, e, _: [events.TagsSet(entity=k, entity_id=e, tags=dict(tags))],
        )

    def delete_tags(self: _Client, entity: str | Iteration, keys: Sequence[str]) -> None:
        i = _id(entity)
        change(
            self,
            "DELETE",
            _entity("tags", i),
            None,
            i,
            lambda k, e, _: [events.TagsDeleted(entity=k, entity_id=e, keys=list(keys))],
            params={"key": list(keys)},
        )

    def set_notes(self: _Client, entity: str | Iteration, notes: str) -> None:
        i = _id(entity)
        change(
            self,
            "PUT",
            _entity("notes", i),
            {"notes": notes},
            i,
            lambda k, e, _: [events.NotesSet(entity=k, entity_id=e, notes=notes)],
        )

    def set_description(self: _Client, entity: str | Iteration, description: str) -> None:
        i = _id(entity)
        change(
            self,
            "PUT",
            _entity("description", i),
            {"description": description},
            i,
            lambda k, e, _: [events.DescriptionSet(entity=k, entity_id=e, description=description)],
        )

    def set_metadata(self: _Client, entity: str | Iteration, metadata: Mapping[str, Any]) -> None:
        """Merge JSON-compatible metadata into the entity's metadata."""
        i = _id(entity)
        change(
            self,
            "PUT",
            _entity("metadata", i),
            {"metadata": dict(metadata)},
            i,
            lambda k, e, _: [events.MetadataSet(entity=k, entity_id=e, metadata=dict(metadata))],
        )

    def rename(self: _Client, entity: str | Iteration, name: str) -> None:
        """A new display name. Ids never change: a project or experiment keeps the id its
        first name gave it, so start_iteration(project=<first name>) still finds it."""
        i = _id(entity)
        change(
            self,
            "PUT",
            _entity("name", i),
            {"name": name},
            i,
            lambda k, e, _: [events.EntityRenamed(entity=k, entity_id=e, name=name)],
        )

    def archive(self: _Client, entity: str | Iteration) -> None:
        i = _id(entity)
        change(
            self,
            "POST",
            _entity("archive", i),
            None,
            i,
            lambda k, e, _: [events.EntityArchived(entity=k, entity_id=e, archived=True)],
        )

    def unarchive(self: _Client, entity: str | Iteration) -> None:
        i = _id(entity)
        change(
            self,
            "POST",
            _entity("unarchive", i),
            None,
            i,
            lambda k, e, _: [events.EntityArchived(entity=k, entity_id=e, archived=False)],
        )

    def delete(self: _Client, entity: str | Iteration) -> None:
        """Hide the entity -- and what it contains -- from reads; `restore` undoes it."""
        i = _id(entity)
        change(
            self,
            "POST",
            _entity("delete", i),
            None,
            i,
            lambda k, e, _: [events.EntityDeleted(entity=k, entity_id=e)],
        )

    def restore_entity(self: _Client, entity: str | Iteration) -> None:
        """Undo `delete` (also `c.restore(entity_id)`)."""
        i = _id(entity)
        change(
            self,
            "POST",
            _entity("restore", i),
            None,
            i,
            lambda k, e, _: [events.EntityRestored(entity=k, entity_id=e)],
        )

    def move(
        self: _Client,
        iteration: str | Iteration,
        experiment: str | None = None,
        *,
        experiment_id: str | None = None,
    ) -> None:
        """Move an iteration into another experiment of its project: by name (created
        when missing) or by id."""
        from deardiary.schemas import ids

        if (experiment is None) == (experiment_id is None):
            raise InvalidArgument("give one of experiment (a name) or experiment_id")
        i = _id(iteration)

        def make(kind: events.EntityKind, e: str, project: str) -> list[events.Event]:
            if kind is not events.EntityKind.ITERATION:
                raise InvalidArgument(f"{e!r} is a {kind.value}, not an iteration")
            if experiment is None:
                assert experiment_id is not None
                return [events.IterationMoved(iteration_id=e, experiment_id=experiment_id)]
            target = ids.experiment_id(project, experiment)
            return [
                events.ExperimentCreated(experiment_id=target, project_id=project, name=experiment),
                events.IterationMoved(iteration_id=e, experiment_id=target),
            ]

        body = {"experiment": experiment} if experiment is not None else {}
        if experiment_id is not None:
            body = {"experiment_id": experiment_id}
        change(self, "POST", f"/api/v1/iterations/{i}/move", body, i, make)

    def set_experiment_status(self: _Client, experiment_id: str, status: str) -> None:
        """COMPLETED, FAILED or CANCELED end the experiment (its end time is set); ACTIVE
        reopens it."""
        wanted = events.ExperimentStatus(status.upper())

        def make(kind: events.EntityKind, e: str, project: str) -> list[events.Event]:
            if kind is not events.EntityKind.EXPERIMENT:
                raise InvalidArgument(f"{e!r} is a {kind.value}, not an experiment")
            return [events.ExperimentStatusChanged(experiment_id=e, status=wanted)]

        path = f"/api/v1/experiments/{experiment_id}/status"
        change(self, "PUT", path, {"status": wanted.value}, experiment_id, make)


class CloneMixin:
    """`Client.clone`."""

    def clone(
        self: _Client,
        iteration: str | Iteration,
        *,
        name: str = "",
        experiment: str | None = None,
        params: Mapping[str, Any] | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> Iteration:
        """A new iteration started from another's params and config (lineage kept in
        `cloned_from`); `params` override copied ones. Use it with `with`."""
        from typing import cast

        from .clone import clone_iteration

        return clone_iteration(
            cast(Any, self),
            _id(iteration),
            name=name,
            experiment=experiment,
            params=params,
            tags=tags,
        )
