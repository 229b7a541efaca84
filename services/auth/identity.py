"""Who is calling: session tokens (signed, expiring) and access tokens (revocable).

Session token: ``dds.<payload>.<hmac>``; the payload names the user, the expiry and a
fingerprint of the password hash, so a password change ends every session. Access
token: ``dda.<token_id>.<secret>``; only a hash of the secret is stored (in events),
the secret is shown once.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import duckdb
import msgspec
from aiohttp import web

from deardiary.schemas.errors import ResourceExhausted, Unauthenticated
from deardiary.schemas.ids import now_us
from deardiary.services.auth.secrets import b64, secret_matches, sign, unb64, verify_password


@dataclass(frozen=True)
class Principal:
    user_id: str
    username: str
    is_admin: bool
    expires_at: int | None  # microseconds since the epoch


PRINCIPAL = web.RequestKey("principal", Principal)


class _SessionClaims(msgspec.Struct, array_like=True):
    user_id: str
    expires_at: int
    fingerprint: str


def _fingerprint(password_hash: str) -> str:
    return hashlib.sha256(password_hash.encode()).hexdigest()[:16]


def _micros(value: datetime | None) -> int | None:
    if value is None:
        return None
    return int((value - datetime(1970, 1, 1)).total_seconds() * 1_000_000)


class LoginLimiter:
    """At most `attempts` failed logins per key (a username, a client address) in `window_s`."""

    def __init__(self, attempts: int = 5, window_s: float = 60.0) -> None:
        self.attempts, self.window_s = attempts, window_s
        self._failures: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def check(self, *keys: str) -> None:
        now = time.monotonic()
        with self._lock:
            for key in keys:
                recent = [t for t in self._failures.get(key, []) if now - t < self.window_s]
                self._failures[key] = recent
                if len(recent) >= self.attempts:
                    wait = self.window_s - (now - recent[0])
                    raise ResourceExhausted(
                        "too many failed logins; try again later",
                        {"retry_after_s": max(1, int(wait) + 1)},
                    )

    def failed(self, *keys: str) -> None:
        with self._lock:
            for key in keys:
                self._failures.setdefault(key, []).append(time.monotonic())


class Identity:
    def __init__(
        self,
        key: bytes,
        reader: Callable[[], duckdb.DuckDBPyConnection],
        session_ttl_s: float = 3600.0,
    ) -> None:
        self.key = key
        self.reader = reader
        self.session_ttl_s = session_ttl_s
        self.per_user = LoginLimiter(attempts=5)
        self.per_client = LoginLimiter(attempts=50)  # many users may share one address

    def _user(self, column: str, value: str) -> dict[str, object] | None:
        conn = self.reader()
        try:
            rows = (
                conn.sql(
                    "SELECT user_id, username, password_hash, is_admin FROM users"
                    f" WHERE {column} = ?",
                    params=[value],
                )
                .to_arrow_table()
                .to_pylist()
            )
        finally:
            conn.close()
        return rows[0] if rows else None

    def issue_session(self, user_id: str, password_hash: str) -> tuple[str, int]:
        expires = now_us() + int(self.session_ttl_s * 1_000_000)
        claims = _SessionClaims(user_id, expires, _fingerprint(password_hash))
        payload = b64(msgspec.msgpack.encode(claims))
        return f"dds.{payload}.{sign(self.key, payload.encode())}", expires

    def login(self, username: str, password: str, client: str = "") -> tuple[Principal, str]:
        """Check a password (rate-limited); returns the principal and a session token."""
        self.per_user.check(username)
        self.per_client.check(client)
        user = self._user("username", username)
        # verify against a dummy hash when the user is unknown, so timing does not tell
        stored = str(user["password_hash"]) if user else _DUMMY_HASH
        if not verify_password(password, stored) or user is None:
            self.per_user.failed(username)
            self.per_client.failed(client)
            raise Unauthenticated("wrong username or password")
        token, expires = self.issue_session(str(user["user_id"]), stored)
        principal = Principal(str(user["user_id"]), username, bool(user["is_admin"]), expires)
        return principal, token

    # The token `deardiary serve` writes to <data>/server.json for local readers of its
    # folder (services/discovery.py): an admin, as whoever can read the folder's log is.
    local_admin_token: str | None = None

    def authenticate(self, token: str) -> Principal:
        local = self.local_admin_token
        if local and token.startswith("ddl.") and hmac.compare_digest(token, local):
            return Principal("", "local-admin", True, None)
        if token.startswith("dds."):
            return self._session(token)
        if token.startswith("dda."):
            return self._access_token(token)
        raise Unauthenticated("unrecognised bearer token")

    def _session(self, token: str) -> Principal:
        try:
            _, payload, signature = token.split(".")
            if not hmac.compare_digest(signature, sign(self.key, payload.encode())):
                raise Unauthenticated("invalid session token")
            claims = msgspec.msgpack.decode(unb64(payload), type=_SessionClaims)
        except (ValueError, msgspec.DecodeError) as exc:
            raise Unauthenticated("invalid session token") from exc
        if claims.expires_at <= now_us():
            raise Unauthenticated("session expired; log in again or refresh before expiry")
        user = self._user("user_id", claims.user_id)
        if user is None or not hmac.compare_digest(
            _fingerprint(str(user["password_hash"])), claims.fingerprint
        ):
            raise Unauthenticated("session no longer valid (user or password changed)")
        return Principal(
            claims.user_id, str(user["username"]), bool(user["is_admin"]), claims.expires_at
        )

    def _access_token(self, token: str) -> Principal:
        parts = token.split(".")
        if len(parts) != 3:
            raise Unauthenticated("invalid access token")
        _, token_id, secret = parts
        conn = self.reader()
        try:
            rows = (
                conn.sql(
                    "SELECT t.token_hash, t.expires_at, t.revoked,"
                    " u.user_id, u.username, u.is_admin"
                    " FROM access_tokens t JOIN users u USING (user_id) WHERE t.token_id = ?",
                    params=[token_id],
                )
                .to_arrow_table()
                .to_pylist()
            )
        finally:
            conn.close()
        row = rows[0] if rows else None
        if row is None or not secret_matches(secret, str(row["token_hash"])):
            raise Unauthenticated("invalid access token")
        if row["revoked"]:
            raise Unauthenticated("access token revoked")
        expires = _micros(row["expires_at"])
        if expires is not None and expires <= now_us():
            raise Unauthenticated("access token expired")
        return Principal(str(row["user_id"]), str(row["username"]), bool(row["is_admin"]), expires)


_DUMMY_HASH = "scrypt$16384$8$1$c2FsdHNhbHRzYWx0c2FsdA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
