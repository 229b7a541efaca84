"""Time travel over HTTP (``?as_of=``): reads answered from the state as it stood at a
log offset or a time, rebuilt from the log by the live projector's own folds.

A run's tag is changed, a tag added and more points logged after T: every read the web
page uses shows, as of T (an offset, or the ISO time), the old tag and none of the new
points, while the live reads show the new ones. A past state is built once however many
requests ask for it at once, and the cache keeps to its size. With auth, a restricted
user sees only her projects as of T -- by today's grants, so a grant revoked since does
not come back in the past.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

import deardiary as dd
from deardiary.services.http import RunningServer, start_in_thread
from deardiary.services.server import EmbeddedServer, embedded_server
from deardiary.services.settings import ServerSettings
from tests.faults.auth_world import AuthWorld, auth_world, login


@dataclass
class Past:
    url: str
    server: EmbeddedServer
    project_id: str
    experiment_id: str
    iteration_id: str
    offset: int  # the last record of the state before the changes
    time: str  # an ISO time between that record and the changes
    end: int  # the log's last offset


def _settle() -> str:
    """An ISO time strictly after what was logged so far and before what comes next."""
    time.sleep(0.02)
    moment = datetime.now(UTC).isoformat()
    time.sleep(0.02)
    return moment


@pytest.fixture(scope="module")
def past(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Past]:
    root = tmp_path_factory.mktemp("time-travel")
    with embedded_server(root / "data") as server:
        running = start_in_thread(server.app())
        # `end` must stay the log's end while the tests run: no heartbeat of the open run
        # (every 10 s by default; a slow machine ran past one)
        c = dd.connect(running.url, spool_dir=root / "spool", heartbeat_interval=3600.0)
        try:
            it = c.start_iteration(
                project="p",
                experiment="e",
                name="run",
                params={"lr": 0.1},
                tags={"stage": "old"},
                capture_env=False,
            )
            for step in range(10):
                it.log_metrics({"loss": 1 / (step + 1), "acc": step / 10}, step=step)
            offset = c.flush()
            moment = _settle()
            it.set_tags({"stage": "new", "reviewed": "yes"})
            for step in range(10, 25):
                it.log_metrics({"loss": 1 / (step + 1), "acc": step / 25}, step=step)
            it.log_metric("loss", 0.5, step=0, group="val")  # a new group after T
            c.start_iteration(project="p", experiment="later", capture_env=False).end()
            end = c.flush()
            yield Past(
                running.url,
                server,
                it.project_id,
                it.experiment_id,
                it.id,
                offset,
                moment,
                end,
            )
        finally:
            c.close()
            running.stop()


def _get(url: str, path: str, **params: Any) -> Any:
    r = httpx.get(f"{url}/api/v1{path}", params=params, timeout=60)
    assert r.status_code == 200, (path, params, r.text)
    return r.json()


def test_every_read_of_the_page_shows_the_state_as_of_an_offset_or_a_time(past: Past) -> None:
    it, exp = past.iteration_id, past.experiment_id
    for as_of in (str(past.offset), past.time):
        then = {"as_of": as_of}
        assert _get(past.url, f"/iterations/{it}", **then)["tags"] == {"stage": "old"}
        history = _get(past.url, f"/iterations/{it}/metric-history", key="loss", **then)
        assert [p["step"] for p in history["items"]] == list(range(10))
        compared = _get(past.url, "/compare", iteration_id=it, key="acc", max_points=4, **then)
        assert max(p["step"] for p in compared["items"]) == 9
        charted = _get(past.url, "/series", iteration_id=it, key="loss,acc", **then)["items"]
        assert {(p["key"], p["group"]) for p in charted} == {("loss", ""), ("acc", "")}
        assert max(p["step"] for p in charted) == 9
        summaries = _get(past.url, f"/iterations/{it}/metrics", **then)["items"]
        assert {(s["key"], s["group"], s["last_step"]) for s in summaries} == {
            ("loss", "", 9),
            ("acc", "", 9),
        }
        table = _get(
            past.url,
            f"/experiments/{exp}/runs-table",
            columns="metrics.loss.count,tags.stage",
            **then,
        )["items"]
        assert [(r["tags.stage"], r["metrics.loss.count"]) for r in table] == [("old", 10.0)]
        columns = _get(past.url, f"/experiments/{exp}/columns", **then)["items"]
        assert ("tag", "reviewed") not in {(c["kind"], c["key"]) for c in columns}
        assert {c["group"] for c in columns if c["kind"] == "metric"} == {""}
        found = _get(past.url, "/iterations", filter="tags.stage = 'old'", **then)
        assert [i["iteration_id"] for i in found["items"]] == [it]
        experiments = _get(past.url, "/experiments", project_id=past.project_id, **then)
        assert [e["name"] for e in experiments["items"]] == ["e"]
        events = _get(past.url, f"/history/{it}", **then)["items"]
        assert events and max(e["offset"] for e in events) <= past.offset
    # and now, live
    assert _get(past.url, f"/iterations/{it}")["tags"] == {"stage": "new", "reviewed": "yes"}
    assert len(_get(past.url, f"/iterations/{it}/metric-history", key="loss")["items"]) == 25
    assert _get(past.url, "/iterations", filter="tags.stage = 'old'")["items"] == []


def test_a_bound_at_the_logs_end_is_the_live_state_and_beyond_it_a_400(past: Past) -> None:
    builds = past.server.as_of.builds
    now = _get(past.url, f"/iterations/{past.iteration_id}", as_of=str(past.end))
    assert now["tags"]["stage"] == "new"
    future = _get(past.url, f"/iterations/{past.iteration_id}", as_of="9999-01-01T00:00:00")
    assert future["tags"]["stage"] == "new"
    assert past.server.as_of.builds == builds  # answered by the live projections
    r = httpx.get(f"{past.url}/api/v1/projects", params={"as_of": str(past.end + 1)})
    assert r.status_code == 400 and r.json()["error"]["details"]["parameter"] == "as_of"
    assert "beyond the log's end" in r.json()["error"]["message"]
    before = _get(past.url, "/projects", as_of="1970-01-01T00:00:00Z")
    assert before["items"] == [] and before["total"] == 0  # before the first record


def test_a_past_state_is_built_once_under_concurrent_requests(past: Past) -> None:
    builds = past.server.as_of.builds
    bound = str(past.offset + 2)  # a state nobody asked for yet
    path = f"/iterations/{past.iteration_id}/metric-history"

    def ask(_: int) -> int:
        return len(_get(past.url, path, key="loss", as_of=bound)["items"])

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(ask, range(8)))
    assert len(set(answers)) == 1
    assert past.server.as_of.builds == builds + 1


def test_the_cache_keeps_to_its_size(tmp_path: Path) -> None:
    with embedded_server(tmp_path / "data", settings=ServerSettings(as_of_cache_mb=1)) as server:
        server.as_of.max_bytes = 1  # smaller than any one state: one is kept, the newest
        running: RunningServer = start_in_thread(server.app())
        c = dd.connect(running.url, spool_dir=tmp_path / "spool")
        try:
            with c.start_iteration(project="p", experiment="e", capture_env=False) as it:
                it.log_metric("loss", 1.0)
                first = c.flush()
                it.log_metric("loss", 2.0)
                second = c.flush()
            c.flush()  # the iteration's end is in the log: `second` is history, not its end
            cache = tmp_path / "data" / "as-of-cache"
            path = f"/iterations/{it.id}/metrics"
            assert _get(running.url, path, as_of=str(first))["items"][0]["last"] == 1.0
            assert len([p for p in cache.rglob("state.duckdb")]) == 1
            assert _get(running.url, path, as_of=str(second))["items"][0]["last"] == 2.0
            assert len([p for p in cache.rglob("state.duckdb")]) == 1  # the first one went
            assert _get(running.url, path, as_of=str(first))["items"][0]["last"] == 1.0
            assert server.as_of.builds == 3
        finally:
            c.close()
            running.stop()
    assert not any((tmp_path / "data" / "as-of-cache").glob("pid-*/*"))  # removed at close


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthWorld]:
    with auth_world(tmp_path_factory.mktemp("time-travel-auth")) as built:
        yield built


def _project_names(world: AuthWorld, headers: dict[str, str], as_of: int) -> set[str]:
    r = httpx.get(f"{world.url}/api/v1/projects", params={"as_of": as_of}, headers=headers)
    assert r.status_code == 200, r.text
    return {p["name"] for p in r.json()["items"]}


def test_a_restricted_user_sees_only_her_projects_as_of_then(world: AuthWorld) -> None:
    url, admin, b = world.url, world.admin, world.b
    grant = {"username": "rita", "project": b.project, "read": True}
    r = httpx.post(f"{url}/api/v1/permissions", headers=admin, json=grant)
    assert r.status_code == 200, r.text
    granted_then = world.end_offsets()[0] - 1  # rita could read B as of here ...
    revoke = {"username": "rita", "project": b.project}
    r = httpx.delete(f"{url}/api/v1/permissions", headers=admin, params=revoke)
    assert r.status_code == 200, r.text  # ... and no longer can
    rita = login(url, "rita", "rita-secret-1")
    assert _project_names(world, rita, granted_then) == {world.a.project, world.c.project}
    assert b.project in _project_names(world, world.olive, granted_then)
    then = {"as_of": granted_then}
    for path, params in (
        ("/iterations", {"project_id": b.ids["project_id"]}),
        (f"/iterations/{b.ids['iteration_id']}", {}),
        (f"/experiments/{b.ids['experiment_id']}/runs-table", {}),
        ("/compare", {"iteration_id": b.ids["iteration_id"], "key": "loss"}),
        (f"/model-versions/{b.ids['model_version_id']}/lineage", {}),
    ):
        r = httpx.get(f"{url}/api/v1{path}", params={**params, **then}, headers=rita)
        assert r.status_code in (403, 404), (path, r.status_code, r.text)
        assert not any(secret in r.text for secret in b.secrets), path
    everything = httpx.get(f"{url}/api/v1/iterations", params=then, headers=rita).json()
    assert b.ids["iteration_id"] not in {i["iteration_id"] for i in everything["items"]}
    assert not any(secret in str(everything) for secret in b.secrets)
