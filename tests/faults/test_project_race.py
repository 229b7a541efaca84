"""Two users create the same new project at the same moment: the log decides who owns it.

Each try sends, from two users at once, a batch that creates project P and an
experiment and iteration in it. Exactly one of them (the first ProjectCreated in the
log's order) gets every permission on P; the other's batch is refused with 403 and
nothing of it but its (no-op) ProjectCreated reaches the log. Formerly both received
full grants in 7 of 10 tries.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import msgspec
import pytest

from deardiary.schemas import ids
from deardiary.schemas.envelope import wrap
from deardiary.schemas.events import ExperimentCreated, IterationStarted, ProjectCreated
from deardiary.services.auth.routes import new_user_event
from deardiary.services.http import start_in_thread
from deardiary.services.server import EmbeddedServer

PASSWORDS = {"root": "root-secret-1", "ann": "ann-secret-1", "bob": "bob-secret-1"}
TRIES = 10


def _login(url: str, user: str) -> dict[str, str]:
    r = httpx.post(f"{url}/api/v1/auth/login", json={"username": user, "password": PASSWORDS[user]})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['token']}", "Content-Type": "application/json"}


@pytest.fixture
def url(tmp_path: Path) -> Iterator[str]:
    server = EmbeddedServer(tmp_path / "data", auth=True)
    server.start()
    server.append_applied([wrap(new_user_event(u, pw, u == "root")) for u, pw in PASSWORDS.items()])
    try:
        with start_in_thread(server.app()) as running:
            yield running.url
    finally:
        server.close()


def _create(url: str, headers: dict[str, str], project: str, go: threading.Barrier) -> int:
    pid = ids.project_id(project)
    eid = ids.experiment_id(pid, "e")
    body = msgspec.json.encode(
        {
            "events": [
                wrap(ProjectCreated(project_id=pid, name=project)),
                wrap(ExperimentCreated(experiment_id=eid, project_id=pid, name="e")),
                wrap(IterationStarted(iteration_id=ids.new_id(), experiment_id=eid)),
            ]
        }
    )
    go.wait()
    return httpx.post(f"{url}/api/v1/events", content=body, headers=headers, timeout=60).status_code


def _race(url: str, users: dict[str, dict[str, str]], project: str) -> dict[str, int]:
    """Both users send their creating batch at the same moment; their statuses."""
    go = threading.Barrier(len(users))
    statuses: dict[str, int] = {}

    def send(user: str) -> None:
        statuses[user] = _create(url, users[user], project, go)

    threads = [threading.Thread(target=send, args=(u,)) for u in users]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return statuses


def test_the_first_creator_in_the_log_owns_a_new_project(url: str) -> None:
    users = {u: _login(url, u) for u in ("ann", "bob")}
    root = _login(url, "root")
    for n in range(TRIES):
        project = f"race-{n}"
        statuses = _race(url, users, project)
        assert sorted(statuses.values()) == [200, 403], statuses
        winner = next(u for u, s in statuses.items() if s == 200)
        loser = next(u for u, s in statuses.items() if s == 403)
        owners = set()
        for user in users:
            grants = httpx.get(
                f"{url}/api/v1/permissions", params={"username": user}, headers=root
            ).json()["items"]
            if any(g["project_id"] == ids.project_id(project) and g["can_read"] for g in grants):
                owners.add(user)
        assert owners == {winner}, statuses
        listed = httpx.get(f"{url}/api/v1/projects", headers=users[loser]).json()["items"]
        assert project not in {p["name"] for p in listed}
        iterations = httpx.get(
            f"{url}/api/v1/iterations",
            params={"project_id": ids.project_id(project)},
            headers=root,
        ).json()["items"]
        assert len(iterations) == 1  # only the winner's batch went in
