"""Who is calling: session tokens (signed, expiring) and access tokens (revocable).

Session token: ``dds.<payload>.<hmac>``; the payload names the user, the expiry and a
fingerprint of the password hash, so a password change ends every session. Access
token: ``dda.<token_id>.<secret>``; only a hash of the secret is stored (in events),
the secret is shown once.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

import duckdb
import msgspec
from aiohttp import web

from deardiary.schemas.errors import ResourceExhausted, Unauthenticated, Unavailable
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
    """At most `attempts` failed logins per key in a sliding `window_s`.

    An attempt is counted when it starts (`begin`), so concurrent guesses cannot all slip
    past the check while the password hash is being computed; a success takes its own
    attempt back (`succeeded`). Memory is bounded: expired keys are dropped, and past
    `max_keys` the longest-idle keys are forgotten first."""

    def __init__(self, attempts: int = 5, window_s: float = 60.0, max_keys: int = 100_000):
        self.attempts, self.window_s, self.max_keys = attempts, window_s, max_keys
        self._failures: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: str, now: float) -> list[float]:
        recent = [t for t in self._failures.pop(key, ()) if now - t < self.window_s]
        if recent:
            self._failures[key] = recent  # re-inserted last: dict order is idleness order
        return recent

    def _refuse(self, recent: list[float], now: float) -> ResourceExhausted:
        wait = self.window_s - (now - recent[0])
        return ResourceExhausted(
            "too many failed logins; try again later",
            {"retry_after_s": max(1, int(wait) + 1)},
        )

    def blocked(self, key: str) -> bool:
        with self._lock:
            return len(self._recent(key, time.monotonic())) >= self.attempts

    def check(self, *keys: str) -> None:
        now = time.monotonic()
        with self._lock:
            for key in keys:
                recent = self._recent(key, now)
                if len(recent) >= self.attempts:
                    raise self._refuse(recent, now)

    def begin(self, *keys: str, stamp: float | None = None, enforce: bool = True) -> float:
        """Check every key (unless not `enforce`) and count one attempt against each,
        atomically; the stamp returned lets `succeeded` take the attempt back."""
        now = time.monotonic() if stamp is None else stamp
        with self._lock:
            for key in keys if enforce else ():
                recent = self._recent(key, now)
                if len(recent) >= self.attempts:
                    raise self._refuse(recent, now)
            for key in keys:
                self._failures.setdefault(key, []).append(now)
            self._bound(now)
        return now

    def succeeded(self, stamp: float, *keys: str, reset: Sequence[str] = ()) -> None:
        """The attempt begun at `stamp` was not a failure; keys in `reset` start afresh."""
        with self._lock:
            for key in keys:
                stamps = self._failures.get(key)
                if stamps is not None and stamp in stamps:
                    stamps.remove(stamp)
                    if not stamps:
                        del self._failures[key]
            for key in reset:
                self._failures.pop(key, None)

    def failed(self, *keys: str) -> None:
        now = time.monotonic()
        with self._lock:
            for key in keys:
                self._failures.setdefault(key, []).append(now)
            self._bound(now)

    def _bound(self, now: float) -> None:
        if len(self._failures) <= self.max_keys:
            return
        for key in list(self._failures):
            self._recent(key, now)
        while len(self._failures) > self.max_keys:
            del self._failures[next(iter(self._failures))]


def client_network(address: str) -> str:
    """The unit one client is throttled by: an IPv4 address, or the /64 an IPv6
    address belongs to (one host is handed a whole /64); anything else as it is."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


class LoginThrottle:
    """Failed sign-ins limited per (username, client address), per address, and per
    username -- without letting anyone lock a user out from elsewhere.

    * a (username, address) pair gets `per_pair` failures a window: guessing one
      account from one place is slow, and it slows only that place;
    * an address gets `per_address` failures a window over all usernames (looser: many
      people may share one address), so one place cannot spray many accounts;
    * a username gets `per_user` failures a window over all addresses (a distributed
      guess), but that limit never applies to an address the user has signed in from
      successfully: the real user keeps working from their usual places, whoever
      hammers the account from elsewhere.
    """

    def __init__(
        self,
        per_pair: int = 5,
        per_address: int = 30,
        per_user: int = 100,
        window_s: float = 60.0,
        max_known: int = 100_000,
    ) -> None:
        self.pairs = LoginLimiter(per_pair, window_s)
        self.addresses = LoginLimiter(per_address, window_s)
        self.users = LoginLimiter(per_user, window_s)
        self.max_known = max_known
        self._known: dict[tuple[str, str], None] = {}  # (username, network) signed in from
        self._lock = threading.Lock()

    def _keys(self, username: str, client: str) -> tuple[str, str, str]:
        network = client_network(client)
        return f"{username}\x00{network}", network, username

    def _is_known(self, username: str, network: str) -> bool:
        with self._lock:
            return (username, network) in self._known

    def begin(self, username: str, client: str) -> float:
        """Count a sign-in attempt, or refuse it (RESOURCE_EXHAUSTED with retry_after_s)."""
        pair, network, user = self._keys(username, client)
        stamp = self.pairs.begin(pair)
        try:
            self.addresses.begin(network, stamp=stamp)
            # counted always, limiting only places the user has not signed in from
            self.users.begin(user, stamp=stamp, enforce=not self._is_known(username, network))
        except ResourceExhausted:
            self.pairs.succeeded(stamp, pair)  # refused before trying: not a failure
            self.addresses.succeeded(stamp, network)
            raise
        return stamp

    def withdraw(self, stamp: float, username: str, client: str) -> None:
        """The attempt begun at `stamp` was not judged (no answer could be given)."""
        pair, network, user = self._keys(username, client)
        self.pairs.succeeded(stamp, pair)
        self.addresses.succeeded(stamp, network)
        self.users.succeeded(stamp, user)

    def succeeded(self, stamp: float, username: str, client: str) -> None:
        pair, network, user = self._keys(username, client)
        self.pairs.succeeded(stamp, pair, reset=[pair])
        self.addresses.succeeded(stamp, network)
        self.users.succeeded(stamp, user)
        with self._lock:
            self._known.pop((username, network), None)
            self._known[(username, network)] = None
            while len(self._known) > self.max_known:
                del self._known[next(iter(self._known))]


class Identity:
    def __init__(
        self,
        key: bytes,
        reader: Callable[[], duckdb.DuckDBPyConnection],
        session_ttl_s: float = 3600.0,
        incomplete: Callable[[], str | None] = lambda: None,
    ) -> None:
        """`incomplete` says why the users and tokens tables may still lack what the log
        holds (projections being rebuilt from it), None once they are whole: until then
        a credential not found there is "retry soon", not "wrong"."""
        self.key = key
        self.reader = reader
        self.session_ttl_s = session_ttl_s
        self.incomplete = incomplete
        self.throttle = LoginThrottle()

    def _not_yet(self) -> None:
        """Raise UNAVAILABLE (retryable) while the tables are incomplete."""
        why = self.incomplete()
        if why is not None:
            raise Unavailable(
                f"{why}; sign-in works again when it is done",
                {"retryable": True, "retry_after_s": 2},
            )

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
        """Check a password (throttled per user and client address, see LoginThrottle);
        returns the principal and a session token."""
        stamp = self.throttle.begin(username, client)
        user = self._user("username", username)
        # verify against a dummy hash when the user is unknown, so timing does not tell
        stored = str(user["password_hash"]) if user else _DUMMY_HASH
        if not verify_password(password, stored) or user is None:
            try:  # the user, or a password change, may not be folded yet
                self._not_yet()
            except Unavailable:
                if user is None:  # nothing was guessed: the attempt does not count
                    self.throttle.withdraw(stamp, username, client)
                raise
            raise Unauthenticated("wrong username or password")  # the attempt stays counted
        self.throttle.succeeded(stamp, username, client)
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
            self._not_yet()
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
        if row is None:
            self._not_yet()
        if row is None or not secret_matches(secret, str(row["token_hash"])):
            raise Unauthenticated("invalid access token")
        if row["revoked"]:
            raise Unauthenticated("access token revoked")
        expires = _micros(row["expires_at"])
        if expires is not None and expires <= now_us():
            raise Unauthenticated("access token expired")
        return Principal(str(row["user_id"]), str(row["username"]), bool(row["is_admin"]), expires)


_DUMMY_HASH = "scrypt$16384$8$1$c2FsdHNhbHRzYWx0c2FsdA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
