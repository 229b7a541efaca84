"""Before a batch is appended: every event's parent exists, and its project is known.

Each event type declares its parent (`Event.parent()`: the entity whose project it
writes into). A parent is found earlier in the same batch, in a cache of entities this
server has seen, or in the projections; one that is found nowhere even after the
projections caught up with the log is a 404 NOT_FOUND naming it. The fold checks the
same again in the log's order (a `missing_parent` conflict), so this is the clear
answer, not the guarantee.

Entities an event names besides its parent (`Event.references()`: the model version an
iteration used) must exist too; under auth their writer must be able to read them.

Params are write-once: a batch that logs a different value for a stored (or earlier in
the batch) key is a 409 CONFLICT naming the key and both values.

Where an event lands is the server's to say: an entity event (tags, notes, archive, ...)
aimed at a model version or an artifact is stamped with its owner -- the partition key
of that entity's own events (its model; its iteration, else its experiment) -- so in
Kafka mode it reaches the worker that holds the entity (`EntityEvent.owner`); an
iteration started without its project is stamped with it, so its fold needs nothing of
the experiment's partition.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field

import duckdb
import msgspec

from deardiary.schemas.envelope import Envelope
from deardiary.schemas.errors import Conflict, NotFound
from deardiary.schemas.events import IterationStarted, ParamsLogged, ProjectCreated
from deardiary.schemas.events.entities import EntityEvent

Reader = Callable[[], duckdb.DuckDBPyConnection]
CaughtUp = Callable[[], Awaitable[None]]
"""Waits until the projections have applied everything appended so far."""
Absent = Callable[[str, str], bool]
"""(table, id) -> True when the projections certainly hold no such row (the embedded
store knows every key of its projects, experiments and iterations: `certainly_absent`)."""

_TABLE_OF = {"project": "projects", "experiment": "experiments", "iteration": "iterations"}

# How each kind of entity finds its project in the (unscoped) projections.
_PROJECT_OF: dict[str, str] = {
    "project": "SELECT project_id FROM projects WHERE project_id = ?",
    "experiment": "SELECT project_id FROM experiments WHERE experiment_id = ?",
    "iteration": "SELECT project_id FROM iterations WHERE iteration_id = ?",
    "model": "SELECT project_id FROM models WHERE model_id = ?",
    "model_version": "SELECT m.project_id FROM model_versions v JOIN models m USING (model_id)"
    " WHERE v.model_version_id = ?",
    "artifact": "SELECT e.project_id FROM artifacts a JOIN experiments e USING (experiment_id)"
    " WHERE a.artifact_id = ?",
}


# Kinds whose own events are partitioned by another id (their creating event's partition
# key), and how to find it in the projections.
_OWNER_OF: dict[str, str] = {
    "model_version": "SELECT model_id FROM model_versions WHERE model_version_id = ?",
    "artifact": "SELECT coalesce(nullif(iteration_id, ''), experiment_id) FROM artifacts"
    " WHERE artifact_id = ?",
}


def stored_owner(conn: duckdb.DuckDBPyConnection, kind: str, entity_id: str) -> str | None:
    """The partition key of an entity's own events, for kinds not keyed by their id."""
    rows = conn.execute(_OWNER_OF[kind], [entity_id]).fetchall()
    return str(rows[0][0]) if rows and rows[0][0] else None


def stored_project(conn: duckdb.DuckDBPyConnection, kind: str, entity_id: str) -> str | None:
    """The project an entity belongs to in the projections, or None if it is not there."""
    sql = _PROJECT_OF.get(kind)
    if sql is None:
        return None
    rows = conn.execute(sql, [entity_id]).fetchall()
    return str(rows[0][0]) if rows else None


class _NeedsDatabase(Exception):
    """The batch names an entity the cache does not know."""


class KnownEntities:
    """(kind, id) -> project of entities seen to exist; bounded, oldest forgotten first.
    Entities never move between projects, so a hit never goes stale."""

    def __init__(self, capacity: int = 200_000) -> None:
        self.capacity = capacity
        self._known: OrderedDict[tuple[str, str], str] = OrderedDict()

    def get(self, kind: str, entity_id: str) -> str | None:
        return self._known.get((kind, entity_id))

    def add(self, kind: str, entity_id: str, project: str) -> None:
        self._known[(kind, entity_id)] = project
        if len(self._known) > self.capacity:
            self._known.popitem(last=False)


@dataclass
class Resolved:
    """What a batch writes into: each event's project, and projects the batch creates."""

    projects: list[str] = field(default_factory=list)
    new_projects: set[str] = field(default_factory=set)
    missing: list[tuple[str, str]] = field(default_factory=list)
    referenced: set[str] = field(default_factory=set)
    """Projects of entities the batch names besides parents (`Event.references()`)."""
    envelopes: list[Envelope] = field(default_factory=list)
    """The batch as it is to be appended: entity events stamped with their owner."""


class IngestParents:
    """Resolves a batch's parents and checks its params, against the projections."""

    def __init__(
        self,
        reader: Reader,
        caught_up: CaughtUp,
        executor: Executor | None = None,
        absent: Absent | None = None,
    ) -> None:
        self.reader = reader
        self.caught_up = caught_up
        self.executor = executor
        self.absent = absent
        """Answers, without a query, that an entity is not stored: a batch that creates
        one (a sweep trial's new iteration) is checked on the event loop, no thread hop
        and no query."""
        self.known = KnownEntities()
        self.owners = KnownEntities()  # (kind, id) -> owner, for the kinds of _OWNER_OF

    async def check(self, request: object, envelopes: Sequence[Envelope]) -> Sequence[Envelope]:
        """The gateway's check without auth: parents exist, params do not change; entity
        events stamped with their owner."""
        resolved = await self.resolve(envelopes)
        await self.check_params(resolved.envelopes)
        return resolved.envelopes

    async def check_params(self, envelopes: Sequence[Envelope]) -> None:
        """Conflict for a param that would change (call only once the caller may see the
        iteration: the error names the stored value)."""
        params = [e.body for e in envelopes if isinstance(e.body, ParamsLogged)]
        if not params:
            return
        loop = asyncio.get_running_loop()
        started = {e.body.iteration_id for e in envelopes if isinstance(e.body, IterationStarted)}
        fresh = {i for i in started if self._certainly_absent("iteration", i)}
        if started - fresh:  # a thread hop only when there is something to look up
            fresh |= await loop.run_in_executor(self.executor, self._fresh, started - fresh)
        if any(p.iteration_id not in fresh for p in params):
            await self.caught_up()  # params logged earlier are visible
        try:  # params of new iterations only: nothing to look up, no thread hop
            self._check_params(params, fresh, self._no_database)
        except _NeedsDatabase:
            await loop.run_in_executor(self.executor, self._check_params, params, fresh)

    def _certainly_absent(self, kind: str, entity_id: str) -> bool:
        table = _TABLE_OF.get(kind)
        return self.absent is not None and table is not None and self.absent(table, entity_id)

    def _fresh(self, started: set[str]) -> set[str]:
        """Iterations this batch starts that did not exist: they have no stored params."""
        if not started:
            return set()
        conn = self.reader()
        try:
            return {i for i in started if stored_project(conn, "iteration", i) is None}
        finally:
            conn.close()

    def appended(self, envelopes: Sequence[Envelope]) -> None:
        """Remember what an appended batch introduced, so the next batch of the same
        iteration finds its parent without asking the projections."""
        batch: dict[tuple[str, str], str] = {}
        for env in envelopes:
            kind, parent_id = env.body.parent()
            key = (kind, parent_id or "")
            project = batch.get(key) or self.known.get(*key)
            if project is None and isinstance(env.body, ProjectCreated):
                project = env.body.project_id
            if project:
                batch[env.body.subject()] = project
                self.known.add(*env.body.subject(), project)
            subject = env.body.subject()
            if subject[0] in _OWNER_OF and not isinstance(env.body, EntityEvent):
                self.owners.add(*subject, env.body.partition_key())

    async def resolve(self, envelopes: Sequence[Envelope]) -> Resolved:
        """The batch's projects; NotFound for a parent that does not exist."""
        loop = asyncio.get_running_loop()
        try:  # the usual batch: parents this server has seen, answered without a thread hop
            resolved = self._resolve(envelopes, self._no_database)
        except _NeedsDatabase:
            resolved = await loop.run_in_executor(self.executor, self._resolve, envelopes)
        if resolved.missing:  # maybe appended a moment ago and not projected yet
            await self.caught_up()
            resolved = await loop.run_in_executor(self.executor, self._resolve, envelopes)
        if resolved.missing:
            kind, entity_id = resolved.missing[0]
            raise NotFound(
                f"{kind} {entity_id!r} does not exist",
                {"kind": kind, "id": entity_id},
            )
        return resolved

    @staticmethod
    def _no_database() -> duckdb.DuckDBPyConnection:
        raise _NeedsDatabase

    def _resolve(self, envelopes: Sequence[Envelope], connect: Reader | None = None) -> Resolved:
        connect = connect or self.reader
        out = Resolved()
        batch: dict[tuple[str, str], str] = {}
        owners: dict[tuple[str, str], str] = {}
        conn: duckdb.DuckDBPyConnection | None = None

        def found(kind: str, entity_id: str) -> str | None:
            """The project of an entity: earlier in the batch, remembered, or stored."""
            nonlocal conn
            project = batch.get((kind, entity_id)) or self.known.get(kind, entity_id)
            if project is None and entity_id and not self._certainly_absent(kind, entity_id):
                conn = conn or connect()
                project = stored_project(conn, kind, entity_id)
                if project is not None:
                    self.known.add(kind, entity_id, project)
            return project

        try:
            for env in envelopes:
                kind, parent_id = env.body.parent()
                if not kind:  # users, grants, tokens: no project (the admin paths write them)
                    out.projects.append("")
                    out.envelopes.append(env)
                    continue
                key = (kind, parent_id or "")
                project = found(*key)
                if project is None and isinstance(env.body, ProjectCreated):
                    project = env.body.project_id
                    out.new_projects.add(project)
                if project is None:
                    out.missing.append(key)
                    project = ""
                out.projects.append(project)
                batch[key] = project
                subject = env.body.subject()
                elsewhere = subject != key and subject not in batch and project
                if (
                    elsewhere
                    and self.known.get(*subject) != project
                    and not self._certainly_absent(*subject)
                ):
                    conn = conn or connect()
                    self._check_not_elsewhere(conn, subject, project)
                batch[subject] = project
                for ref in env.body.references():
                    ref_project = found(*ref)
                    if ref_project is None:
                        out.missing.append(ref)
                    else:
                        out.referenced.add(ref_project)
                if subject[0] in _OWNER_OF and not isinstance(env.body, EntityEvent):
                    owners[subject] = env.body.partition_key()  # created (or moved) here
                if isinstance(env.body, EntityEvent):
                    owner = owners.get(subject) or self.owners.get(*subject)
                    if owner is None and subject[0] in _OWNER_OF:
                        conn = conn or connect()
                        owner = stored_owner(conn, *subject)
                        if owner is not None:
                            self.owners.add(*subject, owner)
                    env = _owned(env, env.body, owner or "")
                elif isinstance(env.body, IterationStarted) and not env.body.project_id and project:
                    # the fold then needs nothing of the experiment (another partition)
                    body = msgspec.structs.replace(env.body, project_id=project)
                    env = msgspec.structs.replace(env, body=body)
                out.envelopes.append(env)
        finally:
            if conn is not None:
                conn.close()
        return out

    def _check_not_elsewhere(
        self, conn: duckdb.DuckDBPyConnection, subject: tuple[str, str], project: str
    ) -> None:
        """An event naming an existing entity of another project (an iteration "resumed"
        from someone else's experiment, an artifact id reused) is refused."""
        kind, entity_id = subject
        stored = self.known.get(kind, entity_id) or stored_project(conn, kind, entity_id)
        if stored is None:
            return
        self.known.add(kind, entity_id, stored)
        if stored != project:
            raise Conflict(
                f"{kind} {entity_id!r} already exists in another project",
                {"kind": kind, "id": entity_id},
            )

    def _check_params(
        self, events: Sequence[ParamsLogged], fresh: set[str], connect: Reader | None = None
    ) -> None:
        """Conflict for a param that differs from one stored or earlier in the batch; the
        stored ones are looked up only for iterations not `fresh` (on `connect`, opened
        when first needed)."""
        connect = connect or self.reader
        values: dict[tuple[str, str, str], str] = {}  # (iteration, section, key)
        conn: duckdb.DuckDBPyConnection | None = None
        try:
            for event in events:
                for key, value in sorted(event.params.items()):
                    wanted = (event.iteration_id, event.section, key)
                    if wanted not in values and event.iteration_id in fresh:
                        values[wanted] = value
                    elif wanted not in values:
                        conn = conn or connect()
                        rows = conn.execute(
                            "SELECT value FROM params WHERE iteration_id = ? AND section = ?"
                            " AND key = ?",
                            list(wanted),
                        ).fetchall()
                        values[wanted] = str(rows[0][0]) if rows else value
                    if values[wanted] != value:
                        shown = f"{event.section}/{key}" if event.section else key
                        raise Conflict(
                            f"param {shown!r} of iteration {event.iteration_id} is"
                            f" {values[wanted]!r}; params are write-once, refused {value!r}",
                            {"key": key, "stored": values[wanted], "refused": value}
                            | ({"section": event.section} if event.section else {}),
                        )
        finally:
            if conn is not None:
                conn.close()


def _owned(env: Envelope, body: EntityEvent, owner: str) -> Envelope:
    """The envelope with its entity event stamped with `owner` and keyed by it (the same
    envelope when it already is); whatever owner a client sent is replaced."""
    if body.owner == owner:
        return env
    stamped = msgspec.structs.replace(body, owner=owner)
    return msgspec.structs.replace(env, body=stamped, key=stamped.partition_key())
