"""Signing in while the server rebuilds its tables from the log: credentials the half-
built tables do not show yet answer 503 UNAVAILABLE (retryable, with Retry-After), not
401 -- a client told "wrong password" would give up, and the throttle would count the
real user's retries as guesses. Wrong passwords of users already folded stay 401."""

from __future__ import annotations

from pathlib import Path

import duckdb
import httpx

from deardiary.projections.integrity import STATE_FILE
from deardiary.services.http import start_in_thread
from deardiary.services.server import EmbeddedServer
from tests.faults.auth_world import ADMIN_PW, login, serving_users
from tests.faults.served_folder import wait_until

ANN_PW = "ann-secret-1"


def _outdate(data: Path) -> None:
    """Stamp the projections with an old format: the next start rebuilds them."""
    conn = duckdb.connect(str(data / "projections" / STATE_FILE))
    try:
        conn.execute("UPDATE projection_format SET version = 1")
    finally:
        conn.close()


def _login(url: str, user: str, password: str) -> httpx.Response:
    return httpx.post(f"{url}/api/v1/auth/login", json={"username": user, "password": password})


def test_credentials_not_yet_rebuilt_answer_unavailable(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with serving_users(data, {"ann": ANN_PW}) as (_, url):
        admin = login(url, "root", ADMIN_PW)
        made = httpx.post(f"{url}/api/v1/tokens", json={"description": "ci"}, headers=admin)
        assert made.status_code == 200, made.text
        token = {"Authorization": f"Bearer {made.json()['token']}"}
        assert httpx.get(f"{url}/api/v1/auth/me", headers=token).status_code == 200
    _outdate(data)

    server = EmbeddedServer(data, auth=True)  # moved aside; the projector is held back
    try:
        assert server.embedded.rebuild is not None
        with start_in_thread(server.app()) as http:
            for answer in (
                _login(http.url, "ann", ANN_PW),
                httpx.get(f"{http.url}/api/v1/auth/me", headers=admin),
                httpx.get(f"{http.url}/api/v1/auth/me", headers=token),
            ):
                assert answer.status_code == 503, answer.text
                error = answer.json()["error"]
                assert error["code"] == "UNAVAILABLE" and error["details"]["retryable"], error
                assert "rebuilding" in error["message"] and answer.headers["Retry-After"]
            # retries while rebuilding are not guesses: the pair's 5 a minute stay free
            for _ in range(8):
                assert _login(http.url, "ann", ANN_PW).status_code == 503
            garbage = httpx.get(
                f"{http.url}/api/v1/auth/me", headers={"Authorization": "Bearer dds.x.y"}
            )
            assert garbage.status_code == 401  # not a credential at all: no retry helps

            server.start()  # the projector thread rebuilds
            wait_until(
                lambda: server.embedded.rebuild is not None and not server.embedded.rebuild.running,
                60,
                "rebuilt",
            )
            assert _login(http.url, "ann", ANN_PW).status_code == 200
            assert httpx.get(f"{http.url}/api/v1/auth/me", headers=admin).status_code == 200
            assert httpx.get(f"{http.url}/api/v1/auth/me", headers=token).status_code == 200
            wrong = _login(http.url, "ann", "not-her-password")
            assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "UNAUTHENTICATED"
            nobody = _login(http.url, "nobody", "whatever-pw-1")
            assert nobody.status_code == 401
    finally:
        server.close()
