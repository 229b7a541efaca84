"""The API both servers serve -- embedded and Kafka mode -- with or without auth.

One wiring for the two modes, so they answer the same routes under the same checks:
the gateway, reads, artifacts, the MLflow-compatible and tracking routes, /readyz, the
SQL sandbox and the page; with auth also the sign-in routes, the auth middleware and
the ingest authoriser. What differs between the modes is theirs (`ApiServer`).
"""

from __future__ import annotations

import abc
import asyncio
from collections.abc import Callable, Sequence
from concurrent.futures import Executor

from aiohttp import web
from aiohttp.typedefs import Middleware

from deardiary.schemas.envelope import Envelope, LogPosition
from deardiary.services.artifacts.fs import FsArtifactStore
from deardiary.services.artifacts.routes import ArtifactRoutes
from deardiary.services.auth.identity import PRINCIPAL, Identity, Principal
from deardiary.services.auth.ingest import IngestAuthorizer
from deardiary.services.auth.middleware import AuthMiddleware
from deardiary.services.auth.routes import AuthRoutes
from deardiary.services.gateway import gateway_part
from deardiary.services.gateway.appender import Appender
from deardiary.services.gateway.parents import IngestParents
from deardiary.services.http import Endpoint, RoutePart, build_app, operation
from deardiary.services.http.host_check import host_check
from deardiary.services.log import EventLog
from deardiary.services.mlflow_api import MlflowContext, mlflow_part
from deardiary.services.query import params as query_params
from deardiary.services.query.context import QueryContext
from deardiary.services.query.sandbox import SqlSandbox, install
from deardiary.services.query.table import query_part
from deardiary.services.query.tracking import WriteContext, tracking_part
from deardiary.services.settings import ServerSettings
from deardiary.services.status import Readiness, readiness_part
from deardiary.services.web.routes import mount_web

Actor = Callable[[web.Request], str]


class ApiServer(abc.ABC):
    """A server of the shared API: embedded and Kafka mode set these parts up their own
    way, and say how they append and how ready they are."""

    auth: bool
    log: EventLog
    ctx: QueryContext
    parents: IngestParents
    artifacts: FsArtifactStore
    identity: Identity
    sandbox: SqlSandbox
    settings: ServerSettings
    ingest_checks: Executor
    """Ingest's own lookups (parents, params, permissions): never behind slow reads."""

    @abc.abstractmethod
    def append(self, envelopes: Sequence[Envelope]) -> list[LogPosition]: ...

    @abc.abstractmethod
    def readiness(self) -> Readiness: ...

    def on_appended(self, positions: list[LogPosition]) -> None:
        """Runs on the event loop after each append (keep it cheap); nothing by default."""
        return None

    def guards(self) -> list[Middleware]:
        """Middlewares with and without auth (embedded mode: damaged projection files)."""
        return []

    def app(self, bind_host: str | None = None) -> web.Application:
        return served_app(self, bind_host)


def applied_target(positions: Sequence[LogPosition]) -> dict[int, int]:
    """partition -> the offset reads must have applied to show `positions`."""
    target: dict[int, int] = {}
    for pos in positions:
        target[pos.partition] = max(target.get(pos.partition, 0), pos.offset + 1)
    return target


def served_app(s: ApiServer, bind_host: str | None = None) -> web.Application:
    """Without auth, only Host names of loopback, `bind_host` and the allowed_hosts
    setting are answered (DNS rebinding; see services/http/host_check.py)."""
    if not s.auth:
        appender = Appender(s.log, s.parents, s.on_appended)
        parts = _parts(s, appender, _anonymous, s.parents)
        allowed = s.settings.allowed_hosts.split(",")
        app = build_app(parts, middlewares=[host_check(bind_host, allowed), *s.guards()])
        return mount_web(install(app, s.sandbox))
    reader = s.ctx.reader

    async def append_applied(envelopes: Sequence[Envelope]) -> None:
        """Append, then wait (holding no thread) until reads show it: a new project's
        grants, decided by the log, before the batch's permissions are checked."""
        loop = asyncio.get_running_loop()
        positions = await loop.run_in_executor(s.ingest_checks, s.append, envelopes)
        await s.ctx.wait(applied_target(positions))

    authorize = IngestAuthorizer(s.parents, reader, append_applied, s.artifacts, s.ingest_checks)
    middleware = AuthMiddleware(
        s.identity,
        reader,
        s.ctx.catch_up,
        s.settings.auth_threads,
        basic_cache_s=s.settings.basic_auth_cache_s,
    )
    appender = Appender(s.log, authorize, s.on_appended)
    parts = _parts(s, appender, _username, authorize)
    parts.insert(3, AuthRoutes(s.identity, reader, s.append, s.ctx, middleware.pool).part())
    app = build_app(parts, middlewares=[middleware.middleware(), *s.guards()])
    return mount_web(install(app, s.sandbox))


def _parts(
    s: ApiServer, appender: Appender, actor: Actor, checker: IngestParents | IngestAuthorizer
) -> list[RoutePart]:
    mlflow = MlflowContext(s.ctx, appender.append, s.artifacts, s.settings, actor, appender.written)
    return [
        gateway_part(s.log, actor=actor, appender=appender),
        query_part(s.ctx),
        artifact_part(ArtifactRoutes(s.ctx, s.append, actor, checker=checker)),
        readiness_part(s.readiness),
        mlflow_part(mlflow),
        tracking_part(WriteContext(s.ctx, appender.append, s.artifacts, actor)),
    ]


def _anonymous(request: web.Request) -> str:
    return ""


def _username(request: web.Request) -> str:
    principal: Principal = request[PRINCIPAL]
    return principal.username


def artifact_part(routes: ArtifactRoutes) -> RoutePart:
    return RoutePart(
        name="artifacts",
        endpoints=[
            Endpoint(
                "POST",
                "/api/v1/artifacts",
                routes.upload,
                operation(
                    "Upload an artifact (raw body); identical bytes are stored once",
                    tag="artifacts",
                    request_body={
                        "content": {
                            "application/octet-stream": {
                                "schema": {"type": "string", "format": "binary"}
                            }
                        }
                    },
                ),
                query_params.ArtifactUpload,
            ),
            Endpoint(
                "GET",
                "/api/v1/artifacts/{artifact_id}/content",
                routes.download,
                operation("Download an artifact's bytes", tag="artifacts"),
                query_params.Fresh,
            ),
        ],
    )
