"""An embedded server with auth on and three people: root (an administrator, made with
the CLI as an operator would), ann and bob (made by root over HTTP), for end-to-end
tests that need owners and outsiders."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from deardiary.services.http import RunningServer, start_in_thread
from deardiary.services.server import EmbeddedServer

ADMIN_PW, ANN_PW, BOB_PW = "root-secret-1", "ann-secret-1", "bob-secret-1"
CLI = [sys.executable, "-m", "deardiary.services.cli"]


def login(url: str, user: str, password: str) -> dict[str, str]:
    r = httpx.post(f"{url}/api/v1/auth/login", json={"username": user, "password": password})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['token']}"}


@contextmanager
def serving_people(data: Path) -> Iterator[tuple[str, EmbeddedServer, dict[str, str]]]:
    """The server's URL, the server, and root's headers; stopped on exit."""
    made = subprocess.run(
        [*CLI, "users", "create", "--data", str(data), "root", "--admin"],
        input=ADMIN_PW + "\n",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert made.returncode == 0, made.stderr
    server = EmbeddedServer(data, auth=True)
    server.start()
    running: RunningServer = start_in_thread(server.app())
    try:
        admin = login(running.url, "root", ADMIN_PW)
        for name, pw in (("ann", ANN_PW), ("bob", BOB_PW)):
            r = httpx.post(
                f"{running.url}/api/v1/users",
                json={"username": name, "password": pw},
                headers=admin,
            )
            assert r.status_code == 200, r.text
        yield running.url, server, admin
    finally:
        running.stop()
        server.close()
