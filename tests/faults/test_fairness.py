"""No user can starve the others: read-your-writes waits hold no thread, one user's heavy
reads queue behind themselves, sign-in has threads of its own, and admin routes read
their writes.

A real EmbeddedServer with auth over real HTTP. Every assertion is about order and
completion (what is still pending when another user's call comes back), never about
wall-clock thresholds; the projector is held with its public `stop_before` hook where a
scenario needs writes that are not applied yet.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import httpx
import pytest

import deardiary as dd
from deardiary.schemas.envelope import wrap
from deardiary.schemas.events import LogLinesLogged, MetricsLogged
from deardiary.services.query.context import ProjectorProgress
from deardiary.services.server import EmbeddedServer
from deardiary.services.settings import ServerSettings
from tests.faults.auth_world import ADMIN_PW, serving_users

FLOOD_PW, CALM_PW = "flood-secret-1", "calm-secret-1"
HEAVY_POINTS = 25_000
T = TypeVar("T")


@dataclass
class World:
    url: str
    server: EmbeddedServer
    root: Path
    admin: dict[str, str]
    flood: dict[str, str]
    flood_iteration: str
    calm_iteration: str
    calm_offset: int


def _login(url: str, user: str, password: str) -> dict[str, str]:
    r = httpx.post(
        f"{url}/api/v1/auth/login", json={"username": user, "password": password}, timeout=120
    )
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['token']}"}


def _wait_until(condition: Callable[[], bool], what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not reached: {what}"
        time.sleep(0.01)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("fairness")
    settings = ServerSettings(read_threads=4, read_per_caller=2, auth_threads=2, max_wait_s=120)
    users = {"flood": FLOOD_PW, "calm": CALM_PW}
    with serving_users(root / "data", users, settings) as (server, url):
        admin = _login(url, "root", ADMIN_PW)
        made = {}
        for name, pw in users.items():
            c = dd.connect(url, username=name, password=pw, spool_dir=root / f"spool-{name}")
            with c.start_iteration(project=f"{name}-p", experiment="e", capture_env=False) as it:
                it.log_metric("loss", 1.0)
            made[name] = (it.id, c.flush(timeout=120))
            c.close()
        flood_it = made["flood"][0]
        heavy = MetricsLogged.from_points(
            flood_it,
            ["big"] * HEAVY_POINTS,
            [float(i) for i in range(HEAVY_POINTS)],
            list(range(HEAVY_POINTS)),
            [1_700_000_000_000_000 + i for i in range(HEAVY_POINTS)],
        )
        server.append_applied([wrap(heavy, actor="flood")])
        yield World(
            url=url,
            server=server,
            root=root,
            admin=admin,
            flood=_login(url, "flood", FLOOD_PW),
            flood_iteration=flood_it,
            calm_iteration=made["calm"][0],
            calm_offset=made["calm"][1],
        )


class Held:
    """The projector of `server` applies nothing new while this is entered."""

    def __init__(self, server: EmbeddedServer) -> None:
        self.server = server

    def __enter__(self) -> Held:
        self.server.projector.stop_before = lambda _pos: True
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.projector.stop_before = None
        self.server.wake.set()


def _progress(world: World) -> ProjectorProgress:
    progress = world.server.ctx.progress
    assert isinstance(progress, ProjectorProgress)
    return progress


def _calm_user_is_served(world: World) -> None:
    """Another user signs in, reads a list and their own iteration (read-your-writes)."""
    calm = _login(world.url, "calm", CALM_PW)
    own = {"min_offset": str(world.calm_offset)}
    with httpx.Client(base_url=world.url, headers=calm, timeout=120) as http:
        projects = http.get("/api/v1/projects", params=own)
        assert projects.status_code == 200, projects.text
        assert [p["name"] for p in projects.json()["items"]] == ["calm-p"]
        it = http.get(f"/api/v1/iterations/{world.calm_iteration}", params=own)
        assert it.status_code == 200, it.text
        assert http.get("/api/v1/auth/me").json()["username"] == "calm"


def _flood(n: int, call: Callable[[], T]) -> tuple[ThreadPoolExecutor, list[Future[T]]]:
    pool = ThreadPoolExecutor(n)
    return pool, [pool.submit(call) for _ in range(n)]


def test_reads_beyond_the_logs_end_are_refused_at_once(world: World) -> None:
    def beyond() -> httpx.Response:
        return httpx.get(
            f"{world.url}/api/v1/projects",
            params={"min_offset": "999999999"},
            headers=world.flood,
            timeout=120,
        )

    pool, calls = _flood(10, beyond)
    with pool:
        _calm_user_is_served(world)
        for call in calls:
            r = call.result()
            assert r.status_code == 400 and r.json()["error"]["code"] == "INVALID_ARGUMENT"
    assert _progress(world).waiting() == 0  # nobody was parked on an offset that never comes


def test_waiting_for_writes_holds_no_thread(world: World) -> None:
    """Ten reads wait for a write the projector has not applied (more than the read pool
    and the default executor have threads); another user's sign-in and reads go through
    while all ten still wait, and the ten answer once the write is applied."""
    with Held(world.server):
        (position,) = world.server.append(
            [
                wrap(
                    LogLinesLogged(
                        iteration_id=world.flood_iteration,
                        times=[1],
                        levels=["INFO"],
                        messages=["not applied yet"],
                    ),
                    actor="flood",
                )
            ]
        )

        def wait_for_it() -> httpx.Response:
            return httpx.get(
                f"{world.url}/api/v1/iterations/{world.flood_iteration}/logs",
                params={"min_offset": str(position.offset), "contains": "not applied"},
                headers=world.flood,
                timeout=120,
            )

        pool, calls = _flood(10, wait_for_it)
        _wait_until(lambda: _progress(world).waiting() == 10, "ten reads waiting")
        _calm_user_is_served(world)
        assert not any(call.done() for call in calls)  # all ten still wait
        assert world.server.ctx.reads.busy() == (0, 0)  # and no read thread is held
    with pool:  # released by leaving Held
        for call in calls:
            r = call.result()
            assert r.status_code == 200, r.text
            assert [line["message"] for line in r.json()["items"]] == ["not applied yet"]


def test_one_users_heavy_reads_do_not_delay_another(world: World) -> None:
    """Twenty heavy reads of one user run at most `read_per_caller` at a time; another
    user's sign-in and reads are served while most of the twenty are still queued."""
    done: list[float] = []

    def heavy() -> int:
        r = httpx.get(
            f"{world.url}/api/v1/iterations/{world.flood_iteration}/metric-history",
            params={"key": "big"},
            headers=world.flood,
            timeout=300,
        )
        assert r.status_code == 200, r.text
        done.append(time.monotonic())
        return len(r.json()["items"])

    pool, calls = _flood(20, heavy)
    with pool:
        reads = world.server.ctx.reads
        _wait_until(lambda: sum(reads.busy()) + len(done) == 20, "twenty reads queued")
        assert reads.busy()[0] <= 2  # one caller's share of the read pool
        _calm_user_is_served(world)
        outstanding = sum(not call.done() for call in calls)
        assert outstanding >= 10, f"another user waited for {20 - outstanding} heavy reads"
        assert all(call.result() == HEAVY_POINTS for call in calls)


def test_grant_right_after_flush_into_a_new_project(world: World) -> None:
    """An administrator logs into a new project, flushes, and grants a user on it at once:
    the grant waits (holding no thread) for the projections to reach the log's end."""
    admin = dd.connect(
        world.url, username="root", password=ADMIN_PW, spool_dir=world.root / "spool-admin"
    )
    try:
        with Held(world.server):
            with admin.start_iteration(project="fresh", experiment="e", capture_env=False) as it:
                it.log_metric("loss", 0.5)
            admin.flush(timeout=120)
            with ThreadPoolExecutor(1) as pool:
                granted = pool.submit(admin.grant, "calm", "fresh", read=True)
                _wait_until(lambda: _progress(world).waiting() >= 1, "the grant waiting")
                assert not granted.done()
                world.server.projector.stop_before = None  # the projector catches up
                world.server.wake.set()
                granted.result(timeout=120)
        calm = _login(world.url, "calm", CALM_PW)
        r = httpx.get(f"{world.url}/api/v1/iterations/{it.id}", headers=calm, timeout=120)
        assert r.status_code == 200, r.text
        revoke = httpx.delete(
            f"{world.url}/api/v1/permissions",
            params={"username": "calm", "project": "fresh"},
            headers=world.admin,
            timeout=120,
        )
        assert revoke.status_code == 200, revoke.text
    finally:
        admin.close()
