"""What the MLflow-compatible routes need from the server, in either mode.

Writes become ordinary DearDiary events appended through the server's one append path
(`services/gateway/appender.py`: parents exist, params are write-once, and under --auth
the caller may write there), so nothing logged through MLflow is special afterwards.
Reads run on the query service's pool, scoped to what the caller may read, after
waiting for the caller's own writes: the MLflow client reads back what it just wrote
(``create_run`` then ``get_run``) and expects to see it.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import duckdb
from aiohttp import web

from deardiary.schemas.envelope import Envelope, LogPosition, wrap
from deardiary.schemas.events import Event
from deardiary.services.artifacts import ArtifactStore
from deardiary.services.auth.identity import PRINCIPAL, Principal
from deardiary.services.auth.permissions import Action, check
from deardiary.services.query.context import Offsets, QueryContext, caller_of
from deardiary.services.settings import ServerSettings

T = TypeVar("T")

Ingest = Callable[[web.Request, Sequence[Envelope]], Awaitable[list[LogPosition]]]
"""Check and append a batch (raising to refuse it); its positions in request order."""


class RunStates:
    """(deleted, is a logged model) of runs recently written to, for `ttl_s`: a client
    logging a batch per step must not cost a projection read per batch. Runs this server
    creates, deletes and restores are known at once (before the projections show it); a
    change made elsewhere (the SDK) is seen within `ttl_s`."""

    def __init__(self, ttl_s: float = 5.0, capacity: int = 100_000) -> None:
        self.ttl_s = ttl_s
        self.capacity = capacity
        self._known: OrderedDict[str, tuple[bool, bool, float]] = OrderedDict()

    def get(self, run_id: str) -> tuple[bool, bool] | None:
        hit = self._known.get(run_id)
        if hit is None or hit[2] < time.monotonic():
            return None
        return hit[0], hit[1]

    def put(self, run_id: str, deleted: bool, is_model: bool) -> None:
        self._known[run_id] = (deleted, is_model, time.monotonic() + self.ttl_s)
        self._known.move_to_end(run_id)
        while len(self._known) > self.capacity:
            self._known.popitem(last=False)

    def forget(self, run_id: str) -> None:
        self._known.pop(run_id, None)


HEARTBEAT_EVERY_S = 30.0


class Heartbeats:
    """When this server last beat for each run it logged to (bounded: oldest forgotten).
    Starting a run beats (its fold sets the heartbeat), so a run this server just created
    or resumed is not beaten again until `every_s` later: the first writes after
    ``create_run`` carry no heartbeat event (each costs the fold the run's row)."""

    def __init__(self, every_s: float = HEARTBEAT_EVERY_S, capacity: int = 100_000) -> None:
        self.every_s = every_s
        self.capacity = capacity
        self._last: OrderedDict[str, float] = OrderedDict()

    def due(self, run_id: str) -> bool:
        """Whether a write to the run should carry a heartbeat (then noted as sent)."""
        now = time.monotonic()
        last = self._last.get(run_id)
        if last is not None and now - last < self.every_s:
            return False
        self.beat(run_id, now)
        return True

    def beat(self, run_id: str, now: float | None = None) -> None:
        """Note that the run beat now (started, or a heartbeat sent)."""
        self._last[run_id] = time.monotonic() if now is None else now
        self._last.move_to_end(run_id)
        while len(self._last) > self.capacity:
            self._last.popitem(last=False)


def _nobody(request: web.Request) -> str:
    return ""


def _nothing_written() -> Offsets:
    return {}


@dataclass
class MlflowContext:
    """Readers (through `query`), the append path (`ingest`), the artifact store, who is
    asking (`actor`), and the server's settings.

    `written()` is how far this server's own appends reached per partition: where the
    projections cannot cheaply be caught up with the log's end (Kafka mode), a read
    waits for that instead."""

    query: QueryContext
    ingest: Ingest
    artifacts: ArtifactStore
    settings: ServerSettings = field(default_factory=ServerSettings)
    actor: Callable[[web.Request], str] = _nobody
    written: Callable[[], Offsets] = _nothing_written
    run_states: RunStates = field(default_factory=RunStates)
    beats: Heartbeats = field(default_factory=Heartbeats)

    @property
    def default_project(self) -> str:
        """The project MLflow experiments live in unless a tag names another (ids.py)."""
        return self.settings.mlflow_default_project

    async def emit(
        self, request: web.Request, events: Sequence[Event], client_time: int | None = None
    ) -> list[LogPosition]:
        """Wrap `events` as the caller (one envelope each, `client_time` in microseconds
        when the client said when) and append them as one checked batch."""
        actor = self.actor(request)
        return await self.ingest(request, [wrap(e, actor, client_time) for e in events])


def principal(request: web.Request) -> Principal | None:
    """The signed-in caller (None when the server runs without --auth)."""
    return request.get(PRINCIPAL)


async def read(
    ctx: MlflowContext, request: web.Request, fn: Callable[[duckdb.DuckDBPyConnection], T]
) -> T:
    """Run `fn(cursor)` on the read pool, within the caller's share, on a cursor scoped to
    what the caller may read -- after the projections applied everything appended before
    this call (embedded mode: the log's end; Kafka mode: this server's own appends)."""
    query = ctx.query
    await query.wait({} if query.catch_up_to_end else ctx.written())
    return await query.run(fn, caller_of(request))


def require(
    conn: duckdb.DuckDBPyConnection, who: Principal | None, project_id: str, action: Action
) -> None:
    """Under --auth, PERMISSION_DENIED unless `who` may `action` in the project (for a
    write whose target must be judged before anything else is said about it)."""
    if who is not None:
        check(conn, who, project_id, action)
