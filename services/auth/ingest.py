"""Authorising a batch of events before the gateway appends it.

Every event writes into the project of its declared parent (`Event.parent()`, resolved
by services/gateway/parents.py) and needs the caller's create, update or delete
permission there (`Event.permission`). Events are stamped with the caller as actor;
one claiming another actor is refused.

Who owns a new project is decided by the log, not by a check before the append: the
batch's ProjectCreated events are appended first, alone, and once the projections have
applied them the fold has granted everything on each new project to its first creator
in the log's order. Then the whole batch is checked like any other -- a user who lost
a creation race to another now lacks the permission and is refused.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import Executor

import duckdb
import msgspec
from aiohttp import web

from deardiary.schemas.envelope import Envelope
from deardiary.schemas.errors import PermissionDenied
from deardiary.schemas.events import ArtifactStored, Permission, ProjectCreated
from deardiary.services.artifacts import ArtifactStore
from deardiary.services.artifacts.provenance import check_artifact_record, check_contents
from deardiary.services.auth.identity import PRINCIPAL, Principal
from deardiary.services.auth.permissions import Action, check
from deardiary.services.gateway.parents import IngestParents, Resolved

AppendApplied = Callable[[Sequence[Envelope]], Awaitable[None]]
"""Append envelopes and return once the projections have applied them."""


def stamped(envelopes: Sequence[Envelope], username: str) -> list[Envelope]:
    """The envelopes with the caller as actor (refusing any that name someone else)."""
    out = []
    for env in envelopes:
        if env.actor == username:
            out.append(env)
        elif env.actor == "":
            out.append(msgspec.structs.replace(env, actor=username))
        else:
            raise PermissionDenied(f"events may only be sent as {username!r}")
    return out


class IngestAuthorizer:
    """The gateway's check under --auth: parents, permissions, artifact records."""

    def __init__(
        self,
        parents: IngestParents,
        reader: Callable[[], duckdb.DuckDBPyConnection],
        append_applied: AppendApplied,
        artifacts: ArtifactStore | None = None,
        executor: Executor | None = None,
    ) -> None:
        self.parents = parents
        self.reader = reader
        self.append_applied = append_applied
        self.artifacts = artifacts  # artifact records are checked against its bytes
        self.executor = executor

    async def check(self, request: web.Request, envelopes: Sequence[Envelope]) -> list[Envelope]:
        principal: Principal = request[PRINCIPAL]
        envelopes = stamped(envelopes, principal.username)
        resolved = await self.parents.resolve(envelopes)
        envelopes = resolved.envelopes  # entity events stamped with their owner
        if resolved.new_projects and not principal.is_admin:
            await self.append_applied(
                [
                    e
                    for e in envelopes
                    if isinstance(e.body, ProjectCreated)
                    and e.body.project_id in resolved.new_projects
                ]
            )
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self.executor, self._permitted, principal, envelopes, resolved)
        await self.parents.check_params(envelopes)  # after the permission check: it names values
        return envelopes

    def appended(self, envelopes: Sequence[Envelope]) -> None:
        self.parents.appended(envelopes)

    def _permitted(
        self, principal: Principal, envelopes: Sequence[Envelope], resolved: Resolved
    ) -> None:
        conn = self.reader()
        try:
            for project in sorted(resolved.referenced):  # a model version it used, ...
                check(conn, principal, project, Action.READ)
            for env, project in zip(envelopes, resolved.projects, strict=True):
                body = env.body
                if body.permission is Permission.ADMIN:
                    raise PermissionDenied(f"{type(body).__name__} events are not accepted here")
                check(conn, principal, project, Action(body.permission.value))
                if isinstance(body, ArtifactStored) and self.artifacts is not None:
                    check_artifact_record(conn, self.artifacts, principal, project, body)
                if self.artifacts is not None and body.contents():  # media, checkpoints
                    check_contents(conn, self.artifacts, principal, body.contents())
        finally:
            conn.close()
