"""Signing in from the SDK: a session that keeps a valid bearer token without rebuilding.

The token is refreshed shortly before it expires; when the server says the token is
no longer good (expired, password changed) and a password is known, the session
signs in again. Transports ask the session for the token on every request.
"""

from __future__ import annotations

from _thread import allocate_lock

from deardiary.schemas.errors import Unauthenticated, Unavailable
from deardiary.schemas.ids import now_us

from .pool import HttpPool
from .transport import error_from_response

TYPE_CHECKING = False
if TYPE_CHECKING:  # `typing` costs a trial process milliseconds to import
    from collections.abc import Sequence

    from deardiary.schemas.records import LogRecord

    from .transport import Acked, Transport

REFRESH_BEFORE_US = 120 * 1_000_000


class Session:
    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        username: str | None = None,
        password: str | None = None,
        timeout: float = 30.0,
        pool: HttpPool | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.username = username
        self._password = password
        self._token = token
        self.expires_at: int | None = None
        self.user: dict[str, object] = {}
        self._lock = allocate_lock()
        self._owned = pool is None
        self._http = pool or HttpPool(self.base_url, timeout=timeout)

    def _post(self, path: str, token: str | None, json: object = None) -> dict[str, object]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        response = self._http.post(path, json=json, headers=headers)  # Unavailable if down
        if response.status_code != 200:
            raise error_from_response(response.status_code, response.content)
        body: dict[str, object] = response.json()
        return body

    def _adopt(self, body: dict[str, object]) -> None:
        self._token = str(body["token"])
        expires = body.get("expires_at")
        self.expires_at = int(expires) if isinstance(expires, int) else None
        user = body.get("user")
        self.user = dict(user) if isinstance(user, dict) else {}

    def login(self) -> None:
        if self.username is None or self._password is None:
            raise Unauthenticated("no username and password to sign in with")
        body = self._post(
            "/api/v1/auth/login", None, {"username": self.username, "password": self._password}
        )
        with self._lock:
            self._adopt(body)

    def identify(self) -> None:
        """Learn who a given token belongs to (and when it expires)."""
        headers = {"Authorization": f"Bearer {self._token}"}
        response = self._http.get("/api/v1/auth/me", headers=headers)
        if response.status_code != 200:
            raise error_from_response(response.status_code, response.content)
        me = response.json()
        self.user = {k: me[k] for k in ("user_id", "username", "is_admin")}
        self.username = str(me["username"])
        self.expires_at = me.get("expires_at")

    def token(self) -> str | None:
        """The current token, refreshed first when it is about to expire."""
        with self._lock:
            token, expires = self._token, self.expires_at
        if (
            token
            and token.startswith("dds.")
            and expires
            and expires - now_us() < REFRESH_BEFORE_US
        ):
            try:
                body = self._post("/api/v1/auth/refresh", token)
                with self._lock:
                    self._adopt(body)
            except Unauthenticated:
                if self._password is not None:
                    self.login()
        with self._lock:
            return self._token

    def recover(self) -> bool:
        """After a 401: sign in again if a password is known."""
        if self._password is None:
            return False
        self.login()
        return True

    def close(self) -> None:
        if self._owned:
            self._http.close()


class SessionTransport:
    """A transport that signs in again on UNAUTHENTICATED instead of dropping events.

    Without a password to sign in with, the failure is reported as UNAVAILABLE so the
    events stay in the spool until a valid token is set (`Client.set_token`)."""

    def __init__(self, inner: Transport, session: Session) -> None:
        self.inner = inner
        self.session = session

    def send(self, records: Sequence[LogRecord]) -> Acked:
        try:
            return self.inner.send(records)
        except Unauthenticated as exc:
            if not self.session.recover():
                raise Unavailable(f"not signed in ({exc.message}); events kept") from exc
            return self.inner.send(records)

    def close(self) -> None:
        self.inner.close()
