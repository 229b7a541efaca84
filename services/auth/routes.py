"""Sign-in, users, permissions and access tokens over HTTP.

Every change is an event appended to the log (grants, revocations, password changes,
tokens — secrets only as hashes), and a route answers once the projections show it,
so replay restores all of it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Annotated, Any, TypeVar

import duckdb
import msgspec
import pyarrow as pa
from aiohttp import web
from msgspec import Meta

from deardiary.schemas import ids
from deardiary.schemas.envelope import Envelope, LogPosition, wrap
from deardiary.schemas.errors import Conflict, InvalidArgument, NotFound, PermissionDenied
from deardiary.schemas.events import (
    AccessTokenCreated,
    AccessTokenRevoked,
    Event,
    PermissionGranted,
    PermissionRevoked,
    UserCreated,
    UserPasswordChanged,
)
from deardiary.schemas.ids import now_us
from deardiary.services.auth.identity import PRINCIPAL, Identity, Principal
from deardiary.services.auth.secrets import hash_password, hash_secret, new_secret
from deardiary.services.http import Endpoint, RoutePart, operation
from deardiary.services.http.query_params import query
from deardiary.services.query.context import FairPool, QueryContext
from deardiary.services.query.encoding import json_response, rows

T = TypeVar("T")
Appender = Callable[[Sequence[Envelope]], list[LogPosition]]

MAX_TOKEN_LIFESPAN_S = 366 * 24 * 3600


class Login(msgspec.Struct, forbid_unknown_fields=True):
    username: str
    password: str


class NewUser(msgspec.Struct, forbid_unknown_fields=True):
    username: str
    password: str
    is_admin: bool = False
    first_name: str = ""
    last_name: str = ""


class NewPassword(msgspec.Struct, forbid_unknown_fields=True):
    password: str


class Grant(msgspec.Struct, forbid_unknown_fields=True):
    username: str
    project: str
    create: bool = False
    read: bool = False
    update: bool = False
    delete: bool = False


class NewToken(msgspec.Struct, forbid_unknown_fields=True):
    lifespan_s: int | None = 30 * 24 * 3600
    description: str = ""


class _Query(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    pass


class PermissionsQuery(_Query, frozen=True, kw_only=True):
    username: Annotated[
        Annotated[str, Meta(min_length=1, max_length=100)] | None,
        Meta(description="user (default: the caller)"),
    ] = None


class RevokeQuery(_Query, frozen=True, kw_only=True):
    username: Annotated[str, Meta(min_length=1, max_length=100, description="user")]
    project: Annotated[str, Meta(min_length=1, description="project (id or name)")]


class TokensQuery(_Query, frozen=True, kw_only=True):
    all: Annotated[bool, Meta(description="every user's tokens (admin)")] = False


def _user_view(p: Principal) -> dict[str, Any]:
    return {"user_id": p.user_id, "username": p.username, "is_admin": p.is_admin}


class AuthRoutes:
    """Sign-in runs on the auth pool (shared with the auth middleware), never on the read
    pool or the default executor. Admin routes first wait, holding no thread, until the
    projections applied everything appended before the call (read-your-writes: a grant
    right after a client's flush finds the project it created), and every change answers
    once the projections show it."""

    def __init__(
        self,
        identity: Identity,
        reader: Callable[[], duckdb.DuckDBPyConnection],
        append: Appender,
        ctx: QueryContext,
        pool: FairPool,
    ) -> None:
        self.identity = identity
        self.reader = reader
        self.append = append
        self.ctx = ctx
        self.pool = pool

    async def _blocking(self, fn: Callable[[], T]) -> T:
        return await self.pool.run("", fn)

    async def _emit(self, principal: Principal | None, *events: Event) -> None:
        """Append, then wait (without a thread) until the projections show it."""
        actor = principal.username if principal else ""
        envelopes = [wrap(e, actor=actor) for e in events]
        positions = await self._blocking(lambda: self.append(envelopes))
        target: dict[int, int] = {}
        for pos in positions:
            target[pos.partition] = max(target.get(pos.partition, 0), pos.offset + 1)
        await self.ctx.wait(target)

    def _query(self, sql: str, params: list[Any]) -> list[dict[str, Any]]:
        conn = self.reader()
        try:
            found: list[dict[str, Any]] = conn.sql(sql, params=params).to_arrow_table().to_pylist()
            return found
        finally:
            conn.close()

    async def _read(self, sql: str, params: list[Any]) -> list[dict[str, Any]]:
        """A read after catching up with the log (read-your-writes)."""
        await self.ctx.catch_up()
        return await self._blocking(lambda: self._query(sql, params))

    async def _user_id(self, username: str) -> str:
        found = await self._read("SELECT user_id FROM users WHERE username = ?", [username])
        if not found:
            raise NotFound(f"user {username!r} not found")
        return str(found[0]["user_id"])

    async def _project_id(self, project: str) -> str:
        found = await self._read(
            "SELECT project_id FROM projects WHERE project_id = ? OR name = ?", [project, project]
        )
        if not found:
            raise NotFound(f"project {project!r} not found")
        return str(found[0]["project_id"])

    # -- sign-in ----------------------------------------------------------------------
    async def login(self, request: web.Request) -> web.Response:
        body = msgspec.json.decode(await request.read(), type=Login)
        client = request.remote or ""
        principal, token = await self._blocking(
            lambda: self.identity.login(body.username, body.password, client)
        )
        return json_response(
            {"token": token, "expires_at": principal.expires_at, "user": _user_view(principal)}
        )

    async def refresh(self, request: web.Request) -> web.Response:
        principal: Principal = request[PRINCIPAL]
        user = await self._blocking(
            lambda: self._query(
                "SELECT password_hash FROM users WHERE user_id = ?", [principal.user_id]
            )
        )
        token, expires = self.identity.issue_session(principal.user_id, user[0]["password_hash"])
        return json_response({"token": token, "expires_at": expires, "user": _user_view(principal)})

    async def me(self, request: web.Request) -> web.Response:
        principal: Principal = request[PRINCIPAL]
        return json_response({**_user_view(principal), "expires_at": principal.expires_at})

    # -- users ----------------------------------------------------------------------
    async def create_user(self, request: web.Request) -> web.Response:
        body = msgspec.json.decode(await request.read(), type=NewUser)
        principal: Principal = request[PRINCIPAL]
        if await self._read("SELECT 1 FROM users WHERE username = ?", [body.username]):
            raise Conflict(f"user {body.username!r} already exists")
        event = await self._blocking(
            lambda: new_user_event(
                body.username, body.password, body.is_admin, body.first_name, body.last_name
            )
        )
        await self._emit(principal, event)
        return json_response(
            {"user_id": event.user_id, "username": body.username, "is_admin": body.is_admin}
        )

    async def list_users(self, request: web.Request) -> web.Response:
        found = await self._read(
            "SELECT user_id, username, first_name, last_name, is_admin, created_at"
            " FROM users ORDER BY username",
            [],
        )
        return json_response({"items": rows_from(found), "total": len(found)})

    async def change_password(self, request: web.Request) -> web.Response:
        principal: Principal = request[PRINCIPAL]
        username = request.match_info["username"]
        if username != principal.username and not principal.is_admin:
            raise PermissionDenied("you may change only your own password")
        body = msgspec.json.decode(await request.read(), type=NewPassword)
        user_id = await self._user_id(username)
        password_hash = await self._blocking(lambda: hash_password(body.password))
        await self._emit(
            principal, UserPasswordChanged(user_id=user_id, password_hash=password_hash)
        )
        return json_response({"username": username, "changed": True})

    # -- permissions ----------------------------------------------------------------
    async def grant(self, request: web.Request) -> web.Response:
        body = msgspec.json.decode(await request.read(), type=Grant)
        principal: Principal = request[PRINCIPAL]
        user_id, project_id = (
            await self._user_id(body.username),
            await self._project_id(body.project),
        )
        await self._emit(
            principal,
            PermissionGranted(
                user_id=user_id,
                project_id=project_id,
                create=body.create,
                read=body.read,
                update=body.update,
                delete=body.delete,
            ),
        )
        return json_response(
            {
                "username": body.username,
                "project_id": project_id,
                "create": body.create,
                "read": body.read,
                "update": body.update,
                "delete": body.delete,
            }
        )

    async def revoke(self, request: web.Request) -> web.Response:
        principal: Principal = request[PRINCIPAL]
        p = query(request, RevokeQuery)
        user_id, project_id = await self._user_id(p.username), await self._project_id(p.project)
        await self._emit(principal, PermissionRevoked(user_id=user_id, project_id=project_id))
        return json_response({"username": p.username, "project": p.project, "revoked": True})

    async def permissions(self, request: web.Request) -> web.Response:
        principal: Principal = request[PRINCIPAL]
        username = query(request, PermissionsQuery).username or principal.username
        if username != principal.username and not principal.is_admin:
            raise PermissionDenied("you may list only your own permissions")
        found = await self._read(
            "SELECT p.project_id, pr.name AS project, can_create, can_read, can_update,"
            " can_delete FROM permissions p JOIN users u USING (user_id)"
            " LEFT JOIN projects pr USING (project_id) WHERE u.username = ?"
            " AND (can_create OR can_read OR can_update OR can_delete) ORDER BY project_id",
            [username],
        )
        return json_response({"items": rows_from(found), "total": len(found)})

    # -- access tokens ----------------------------------------------------------------
    async def create_token(self, request: web.Request) -> web.Response:
        principal: Principal = request[PRINCIPAL]
        body = msgspec.json.decode(await request.read() or b"{}", type=NewToken)
        if body.lifespan_s is not None and not 1 <= body.lifespan_s <= MAX_TOKEN_LIFESPAN_S:
            raise InvalidArgument(f"lifespan_s must be 1..{MAX_TOKEN_LIFESPAN_S}")
        token_id, secret = ids.new_id(), new_secret()
        expires = None if body.lifespan_s is None else now_us() + body.lifespan_s * 1_000_000
        event = AccessTokenCreated(
            token_id=token_id,
            user_id=principal.user_id,
            token_hash=hash_secret(secret),
            description=body.description,
            expires_at=expires,
        )
        await self._emit(principal, event)
        return json_response(
            {
                "token_id": token_id,
                "token": f"dda.{token_id}.{secret}",
                "expires_at": expires,
                "description": body.description,
            }
        )

    async def list_tokens(self, request: web.Request) -> web.Response:
        principal: Principal = request[PRINCIPAL]
        everyone = principal.is_admin and query(request, TokensQuery).all
        found = await self._read(
            "SELECT token_id, t.user_id, u.username, description, expires_at, revoked,"
            " t.created_at"
            " FROM access_tokens t JOIN users u USING (user_id)"
            " WHERE ? OR t.user_id = ? ORDER BY t.created_at",
            [everyone, principal.user_id],
        )
        return json_response({"items": rows_from(found), "total": len(found)})

    async def revoke_token(self, request: web.Request) -> web.Response:
        principal: Principal = request[PRINCIPAL]
        token_id = request.match_info["token_id"]
        found = await self._read("SELECT user_id FROM access_tokens WHERE token_id = ?", [token_id])
        if not found:
            raise NotFound(f"access token {token_id!r} not found")
        if found[0]["user_id"] != principal.user_id and not principal.is_admin:
            raise PermissionDenied("you may revoke only your own tokens")
        await self._emit(principal, AccessTokenRevoked(token_id=token_id))
        return json_response({"token_id": token_id, "revoked": True})

    def part(self) -> RoutePart:
        def body(schema: dict[str, Any]) -> dict[str, Any]:
            return {"required": True, "content": {"application/json": {"schema": schema}}}

        obj = {"type": "object"}
        return RoutePart(
            name="auth",
            contexts=[self.pool.lifetime],
            endpoints=[
                Endpoint(
                    "POST",
                    "/api/v1/auth/login",
                    self.login,
                    operation(
                        "Sign in with a password; returns an expiring bearer token",
                        tag="auth",
                        request_body=body(obj),
                    ),
                ),
                Endpoint(
                    "POST",
                    "/api/v1/auth/refresh",
                    self.refresh,
                    operation("A fresh session token for the caller", tag="auth"),
                ),
                Endpoint(
                    "GET",
                    "/api/v1/auth/me",
                    self.me,
                    operation("Who the token belongs to", tag="auth"),
                ),
                Endpoint(
                    "GET",
                    "/api/v1/users",
                    self.list_users,
                    operation("List users (admin)", tag="auth"),
                ),
                Endpoint(
                    "POST",
                    "/api/v1/users",
                    self.create_user,
                    operation("Create a user (admin)", tag="auth", request_body=body(obj)),
                ),
                Endpoint(
                    "PUT",
                    "/api/v1/users/{username}/password",
                    self.change_password,
                    operation(
                        "Change a password (self or admin)", tag="auth", request_body=body(obj)
                    ),
                ),
                Endpoint(
                    "GET",
                    "/api/v1/permissions",
                    self.permissions,
                    operation("A user's project permissions", tag="auth"),
                    PermissionsQuery,
                ),
                Endpoint(
                    "POST",
                    "/api/v1/permissions",
                    self.grant,
                    operation(
                        "Grant create/read/update/delete on a project (admin)",
                        tag="auth",
                        request_body=body(obj),
                    ),
                ),
                Endpoint(
                    "DELETE",
                    "/api/v1/permissions",
                    self.revoke,
                    operation("Revoke a user's permissions on a project (admin)", tag="auth"),
                    RevokeQuery,
                ),
                Endpoint(
                    "GET",
                    "/api/v1/tokens",
                    self.list_tokens,
                    operation("The caller's access tokens (admins: ?all=true)", tag="auth"),
                    TokensQuery,
                ),
                Endpoint(
                    "POST",
                    "/api/v1/tokens",
                    self.create_token,
                    operation(
                        "Create an access token; the secret is shown once",
                        tag="auth",
                        request_body=body(obj),
                    ),
                ),
                Endpoint(
                    "DELETE",
                    "/api/v1/tokens/{token_id}",
                    self.revoke_token,
                    operation("Revoke an access token", tag="auth"),
                ),
            ],
        )


def rows_from(found: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return rows(pa.Table.from_pylist(found)) if found else []


def new_user_event(
    username: str, password: str, is_admin: bool, first_name: str = "", last_name: str = ""
) -> UserCreated:
    if not username or len(username) > 100 or not all(c.isalnum() or c in "-_.@" for c in username):
        raise InvalidArgument("usernames are 1-100 letters, digits, '-', '_', '.', '@'")
    return UserCreated(
        user_id=ids.user_id(username),
        username=username,
        password_hash=hash_password(password),
        first_name=first_name,
        last_name=last_name,
        is_admin=is_admin,
    )
