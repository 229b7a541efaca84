"""The auth middleware: authenticate every call, then check the route's permission.

Policy is derived from the route itself, so a new route is covered without code of
its own: GET needs read, other methods create (the management verbs declare update or
delete: services/query/manage_routes.py ROUTE_ACTIONS), on every project an id in the
path or query names; reads are additionally scoped in the database (permissions.scope).
A few routes are public, some admin-only, and some only need a signed-in caller
(their handlers check ownership). The MLflow-compatible routes name what they touch in
JSON bodies: their handlers check it (services/mlflow_api), and their authentication
errors are answered in MLflow's error shape. A caller signs in with a bearer token or
HTTP Basic credentials (MLflow's MLFLOW_TRACKING_USERNAME/PASSWORD).
"""

from __future__ import annotations

import contextvars
from collections.abc import Awaitable, Callable
from functools import partial

import duckdb
from aiohttp import web
from aiohttp.typedefs import Middleware

from deardiary.schemas.errors import DearDiaryError, NotFound, PermissionDenied, Unauthenticated
from deardiary.services.auth.basic import BasicCredentials
from deardiary.services.auth.identity import PRINCIPAL, Identity, Principal
from deardiary.services.auth.permissions import (
    ID_PARAMETERS,
    Action,
    check,
    check_entity,
    project_of,
    scope,
)
from deardiary.services.mlflow_api.endpoint import is_mlflow_path
from deardiary.services.mlflow_api.errors import error_response, from_deardiary
from deardiary.services.query.context import CALLER, FairPool
from deardiary.services.query.tracking import ROUTE_ACTIONS
from deardiary.services.web.routes import PAGE_ROUTES

PUBLIC = frozenset(
    {
        ("GET", "/healthz"),
        ("GET", "/readyz"),
        ("GET", "/openapi.json"),
        ("POST", "/api/v1/auth/login"),
        *PAGE_ROUTES,  # the web page and its assets (its data still needs a token)
    }
)
ADMIN = frozenset(
    {
        ("GET", "/api/v1/users"),
        ("POST", "/api/v1/users"),
        ("POST", "/api/v1/permissions"),
        ("DELETE", "/api/v1/permissions"),
    }
)
SIGNED_IN = frozenset(
    {
        ("POST", "/api/v1/auth/refresh"),
        ("GET", "/api/v1/auth/me"),
        ("GET", "/api/v1/permissions"),
        ("PUT", "/api/v1/users/{username}/password"),
        ("GET", "/api/v1/tokens"),
        ("POST", "/api/v1/tokens"),
        ("DELETE", "/api/v1/tokens/{token_id}"),
        ("POST", "/api/v1/events"),  # each event is authorised by the ingest hook
    }
)
CURRENT: contextvars.ContextVar[Principal | None] = contextvars.ContextVar(
    "deardiary_principal", default=None
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def scoper() -> Callable[[duckdb.DuckDBPyConnection], None] | None:
    """For QueryContext: scope read cursors to the current caller, if there is one."""
    principal = CURRENT.get()
    if principal is None or principal.is_admin:
        return None  # administrators read everything: no scoping to prepare
    return partial(_scope, principal)


def past_scoper() -> Callable[[duckdb.DuckDBPyConnection, duckdb.DuckDBPyConnection], None] | None:
    """For time travel: how to scope a cursor of a past state (second argument) to the
    current caller by today's grants, read on a live cursor (first argument)."""
    principal = CURRENT.get()
    if principal is None or principal.is_admin:
        return None
    return partial(_scope_past, principal)


def _scope_past(
    principal: Principal, live: duckdb.DuckDBPyConnection, past: duckdb.DuckDBPyConnection
) -> None:
    scope(past, principal, grants_from=live)


def current_username() -> str | None:
    """Who the current request is (for per-user limits), None when nobody signed in."""
    principal = CURRENT.get()
    return None if principal is None else principal.username


def _scope(principal: Principal, conn: duckdb.DuckDBPyConnection) -> None:
    scope(conn, principal)


def bearer(request: web.Request) -> str:
    header = request.headers.get("Authorization", "")
    if not header.lower().startswith("bearer ") or not header[7:].strip():
        raise Unauthenticated("sign in: send Authorization: Bearer <token>")
    return header[7:].strip()


class AuthMiddleware:
    """Authentication and route permission checks run on a small pool of their own
    (`pool`, shared with sign-in), never on the threads reads or ingest use, and an id the
    projections do not show yet is retried after catching up -- waiting without a thread."""

    def __init__(
        self,
        identity: Identity,
        reader: Callable[[], duckdb.DuckDBPyConnection],
        catch_up: Callable[[], Awaitable[None]],
        threads: int = 2,
        basic_cache_s: float = 30.0,
    ) -> None:
        self.identity = identity
        self.reader = reader
        self.catch_up = catch_up
        self.pool = FairPool("deardiary-auth", threads)
        self.basic = BasicCredentials(identity, basic_cache_s)

    async def authenticate(self, request: web.Request) -> Principal:
        """A bearer token (session or access token), or HTTP Basic username and password
        (MLflow clients; as throttled as a sign-in, see auth/basic.py)."""
        header = request.headers.get("Authorization", "")
        if header[:6].lower() == "basic ":
            check = partial(self.basic.authenticate, header[6:], request.remote or "")
            return await self.pool.run("", check)
        token = bearer(request)
        return await self.pool.run("", partial(self.identity.authenticate, token))

    async def _check_route(
        self, principal: Principal, ids: list[tuple[str, str]], action: Action
    ) -> None:
        check_ids = partial(self._check_ids, principal, ids, action)
        try:
            await self.pool.run("", check_ids)
        except NotFound:
            await self.catch_up()  # created by an append the projections have not applied yet
            await self.pool.run("", check_ids)

    def _check_ids(self, principal: Principal, ids: list[tuple[str, str]], action: Action) -> None:
        conn = self.reader()
        try:
            for parameter, value in ids:
                if parameter == "entity_id":
                    self._check_any(conn, principal, value, action)
                else:
                    check_entity(conn, principal, parameter, value, action)
        finally:
            conn.close()

    @staticmethod
    def _check_any(
        conn: duckdb.DuckDBPyConnection, principal: Principal, value: str, action: Action
    ) -> None:
        for parameter in sorted(ID_PARAMETERS):
            project = project_of(conn, parameter, value)
            if project is not None:
                check(conn, principal, project, action)
                return
        if not principal.is_admin:
            raise NotFound(f"{value!r} not found")

    def middleware(self) -> Middleware:
        """The aiohttp middleware (a plain function: aiohttp inspects it for its marker)."""

        @web.middleware
        async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
            return await self.handle(request, handler)

        return authenticate

    async def handle(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        route = request.match_info.route.resource
        path = route.canonical if route is not None else request.path
        key = (request.method, path)
        if key in PUBLIC or route is None:
            return await handler(request)
        if is_mlflow_path(path):  # MLflow's error shape; the handlers check what is named
            try:
                principal = await self.authenticate(request)
            except DearDiaryError as exc:
                return error_response(from_deardiary(exc))
            self._signed_in(request, principal)
            return await handler(request)
        principal = await self.authenticate(request)
        self._signed_in(request, principal)
        if key in ADMIN and not principal.is_admin:
            raise PermissionDenied("only administrators may do this")
        if key not in ADMIN and key not in SIGNED_IN:
            action = Action.READ if request.method == "GET" else Action.CREATE
            action = Action(ROUTE_ACTIONS.get(key, action))  # management verbs: update/delete
            ids = [(k, v) for k, v in request.match_info.items() if k in ID_PARAMETERS]
            ids += _query_ids(request)
            if "entity_id" in request.match_info:
                ids.append(("entity_id", request.match_info["entity_id"]))
            if ids:
                await self._check_route(principal, ids, action)
        return await handler(request)

    @staticmethod
    def _signed_in(request: web.Request, principal: Principal) -> None:
        request[PRINCIPAL] = principal
        request[CALLER] = principal.username
        CURRENT.set(principal)


def _query_ids(request: web.Request) -> list[tuple[str, str]]:
    """Every id the query string names, declared by the route or not, lists split (the
    route's Struct judges the query string after this; permission is judged first, on
    whatever the caller named)."""
    return [
        (name, one)
        for name in sorted(ID_PARAMETERS)
        for raw in request.query.getall(name, [])
        for one in raw.split(",")
        if one
    ]
