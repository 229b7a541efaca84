"""What the tracking write routes (management verbs, media, checkpoints) need: the read
side, the server's one append path, the artifact store, and who is asking.

Each route turns its request into ordinary events appended through the same checker as
the ingest gateway (parents exist, params are write-once, under --auth the caller may
write there; services/gateway/appender.py) and answers once the projections show them, so
the caller's next read sees its change."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from deardiary.schemas.envelope import Envelope, LogPosition, wrap
from deardiary.schemas.errors import InvalidArgument
from deardiary.schemas.events import Event
from deardiary.services.artifacts import ArtifactStore
from deardiary.services.query.context import Offsets, QueryContext

Ingest = Callable[[web.Request, Sequence[Envelope]], Awaitable[list[LogPosition]]]


def _nobody(request: web.Request) -> str:
    return ""


@dataclass
class WriteContext:
    query: QueryContext
    ingest: Ingest
    artifacts: ArtifactStore
    actor: Callable[[web.Request], str] = field(default=_nobody)

    async def emit(self, request: web.Request, events: Sequence[Event]) -> dict[str, Any]:
        """Append `events` as one checked batch, wait until they are applied, and answer
        where the last one landed."""
        for event in events:  # what the gateway's validation refuses, refused here too
            problem = event.problem()
            if problem is not None:
                raise InvalidArgument(problem)
        actor = self.actor(request)
        positions = await self.ingest(request, [wrap(e, actor) for e in events])
        target: Offsets = {}
        for p in positions:
            target[p.partition] = max(target.get(p.partition, 0), p.offset + 1)
        await self.query.wait(target)
        last = positions[-1]
        return {"partition": last.partition, "offset": last.offset}
