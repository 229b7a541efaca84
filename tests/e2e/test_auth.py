"""Users, tokens and per-project permissions, through real HTTP on every route."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

import deardiary as dd
from deardiary.schemas import ids
from deardiary.schemas.events import ModelCreated, ModelVersionCreated
from deardiary.services.auth.middleware import ADMIN, PUBLIC, SIGNED_IN
from deardiary.services.embedded import EmbeddedStore
from deardiary.services.server import EmbeddedServer
from tests.e2e.auth_people import ANN_PW, BOB_PW, login, serving_people


@dataclass
class World:
    url: str
    server: EmbeddedServer
    data: Path
    admin: dict[str, str]
    ann: dict[str, str]
    bob: dict[str, str]
    ids: dict[str, str]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    data = tmp_path_factory.mktemp("auth") / "data"
    with serving_people(data) as (url, server, admin):
        ann, bob = login(url, "ann", ANN_PW), login(url, "bob", BOB_PW)
        c = dd.connect(url, username="ann", password=ANN_PW, spool_dir=data.parent / "spool-ann")
        with c.start_iteration(
            project="ann-proj", experiment="exp", params={"lr": 1}, capture_env=False
        ) as it:
            it.log_metric("loss", 0.5)
        model_id = ids.model_id(it.project_id, "m")
        c.buffer.emit(ModelCreated(model_id=model_id, project_id=it.project_id, name="m"))
        c.buffer.emit(
            ModelVersionCreated(model_version_id="mv", model_id=model_id, iteration_id=it.id)
        )
        c.flush()
        up = httpx.post(
            f"{url}/api/v1/artifacts",
            headers=ann,
            content=b"weights",
            params={"experiment_id": it.experiment_id, "iteration_id": it.id, "name": "model.bin"},
        ).json()
        c.close()
        known = {
            "project_id": it.project_id,
            "experiment_id": it.experiment_id,
            "iteration_id": it.id,
            "artifact_id": up["artifact_id"],
            "entity_id": it.id,
            "token_id": "nope",
            "username": "ann",
            "model_id": model_id,
            "model_version_id": "mv",
            "artifact_path": f"{it.experiment_id}/{it.id}/artifacts/model.bin",
            "logged_model_id": "m-nope",
            "tag_key": "k",
        }
        yield World(url, server, data, admin, ann, bob, known)


def _routes(world: World) -> list[tuple[str, str]]:
    spec = httpx.get(f"{world.url}/openapi.json").json()
    return sorted((method.upper(), path) for path, ops in spec["paths"].items() for method in ops)


def _fill(path: str, known: dict[str, str]) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: known[m.group(1)], path)


def test_every_route_refuses_an_unauthenticated_call(world: World) -> None:
    routes = _routes(world)
    assert len(routes) > 30
    for method, path in routes:
        if (method, path) in PUBLIC:
            continue
        r = httpx.request(method, world.url + _fill(path, world.ids))
        assert r.status_code == 401, (method, path, r.text)
        assert r.json()["error"]["code"] == "UNAUTHENTICATED"
        bad = httpx.request(
            method,
            world.url + _fill(path, world.ids),
            headers={"Authorization": "Bearer dds.forged.token"},
        )
        assert bad.status_code == 401, (method, path)


def test_every_route_refuses_a_caller_without_the_permission(world: World) -> None:
    """Bob has no grant on ann's project: every route naming it answers 403; lists and
    SQL show him none of its rows; admin routes are refused; routes about his own
    account work. MLflow's routes name what they act on in their bodies and answer in
    MLflow's terms (another project's run does not exist): tests/faults/test_restricted_user.py
    walks them with bodies naming ann's entities, tests/mlflow/test_*_auth.py in depth."""
    for method, path in _routes(world):
        key = (method, path)
        if key in PUBLIC or key in SIGNED_IN or "/mlflow" in path:
            continue
        params = {k: world.ids[k] for k in ("experiment_id", "iteration_id")}
        r = httpx.request(
            method,
            world.url + _fill(path, world.ids),
            headers=world.bob,
            params=params,
            content=b"{}",
        )
        if key in ADMIN or "{" in path or method != "GET":
            assert r.status_code == 403, (method, path, r.text)
            assert r.json()["error"]["code"] == "PERMISSION_DENIED"
        else:  # a list scoped by an id of ann's, or a global list/SQL
            assert r.status_code in (200, 403), (method, path, r.text)
            if r.status_code == 200 and "items" in r.json():
                assert r.json()["items"] in ([], [{}]) or all(
                    world.ids["project_id"] not in str(item) for item in r.json()["items"]
                ), (method, path)


def test_sql_sees_only_readable_projects(world: World) -> None:
    q = {"q": "SELECT count(*) AS n FROM metrics"}
    assert httpx.get(f"{world.url}/api/v1/sql", params=q, headers=world.bob).json()["items"] == [
        {"n": 0}
    ]
    assert httpx.get(f"{world.url}/api/v1/sql", params=q, headers=world.ann).json()["items"] == [
        {"n": 1}
    ]
    forbidden = {"q": "SELECT * FROM users"}
    r = httpx.get(f"{world.url}/api/v1/sql", params=forbidden, headers=world.admin)
    assert r.status_code == 400


def test_grant_then_revoke_read(world: World) -> None:
    it = world.ids["iteration_id"]
    assert httpx.get(f"{world.url}/api/v1/iterations/{it}", headers=world.bob).status_code == 403
    g = httpx.post(
        f"{world.url}/api/v1/permissions",
        headers=world.admin,
        json={"username": "bob", "project": "ann-proj", "read": True},
    )
    assert g.status_code == 200, g.text
    assert httpx.get(f"{world.url}/api/v1/iterations/{it}", headers=world.bob).status_code == 200
    art = world.ids["artifact_id"]
    got = httpx.get(f"{world.url}/api/v1/artifacts/{art}/content", headers=world.bob)
    assert got.content == b"weights"
    r = httpx.delete(
        f"{world.url}/api/v1/permissions",
        headers=world.admin,
        params={"username": "bob", "project": "ann-proj"},
    )
    assert r.status_code == 200
    assert httpx.get(f"{world.url}/api/v1/iterations/{it}", headers=world.bob).status_code == 403


def test_ingest_for_a_project_the_caller_may_not_write(world: World, tmp_path: Path) -> None:
    bob = dd.connect(world.url, username="bob", password=BOB_PW, spool_dir=tmp_path / "s")
    before = httpx.get(
        f"{world.url}/api/v1/sql",
        headers=world.admin,
        params={"q": "SELECT count(*) AS n FROM events"},
    ).json()["items"]
    with bob.start_iteration(project="ann-proj", experiment="exp", capture_env=False) as it:
        it.log_metric("loss", 1.0)
    with pytest.raises(dd.ClientError) as err:
        bob.flush(timeout=30)
    assert err.value.code == "PERMISSION_DENIED"
    after = httpx.get(
        f"{world.url}/api/v1/sql",
        headers=world.admin,
        params={"q": "SELECT count(*) AS n FROM events"},
    ).json()["items"]
    assert before == after  # nothing of it was appended
    bob.close()


def test_bad_credentials_and_rate_limit(world: World) -> None:
    r = httpx.post(f"{world.url}/api/v1/auth/login", json={"username": "ann", "password": "x"})
    assert r.status_code == 401 and r.json()["error"]["code"] == "UNAUTHENTICATED"
    for _ in range(6):
        r = httpx.post(
            f"{world.url}/api/v1/auth/login", json={"username": "nobody", "password": "x"}
        )
    assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1


def test_access_tokens_create_use_revoke(world: World, tmp_path: Path) -> None:
    ann = dd.connect(world.url, username="ann", password=ANN_PW, spool_dir=tmp_path / "a")
    token = ann.create_token(lifespan_s=600, description="sweep")
    machine = dd.connect(world.url, token=token, spool_dir=tmp_path / "m")
    assert machine.user == "ann"
    assert machine.sql("SELECT count(*) AS n FROM projects").to_pylist() == [{"n": 1}]
    listed = httpx.get(f"{world.url}/api/v1/tokens", headers=world.ann).json()["items"]
    assert [t["description"] for t in listed if not t["revoked"]] == ["sweep"]
    assert "secret" not in str(listed) and token.split(".")[2] not in str(listed)
    ann.revoke_token(token)
    r = httpx.get(f"{world.url}/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 401 and "revoked" in r.json()["error"]["message"]
    machine.close()
    ann.close()


def test_expired_session_refreshes_and_spooled_events_survive(world: World, tmp_path: Path) -> None:
    world.server.identity.session_ttl_s = 1.0
    try:
        c = dd.connect(world.url, username="ann", password=ANN_PW, spool_dir=tmp_path / "e")
        time.sleep(1.5)  # the session token has expired; the client signs in again itself
        with c.start_iteration(project="ann-proj", experiment="late", capture_env=False) as it:
            it.log_metric("loss", 0.25)
        c.flush(timeout=30)
        rows = c.sql(f"SELECT value FROM metrics WHERE iteration_id = '{it.id}'").to_pylist()
        assert rows == [{"value": 0.25}]
        c.close()
    finally:
        world.server.identity.session_ttl_s = 3600.0


def test_password_change_ends_sessions_and_replay_restores_access(world: World) -> None:
    old = login(world.url, "bob", BOB_PW)
    r = httpx.put(
        f"{world.url}/api/v1/users/bob/password", headers=old, json={"password": "bob-secret-2"}
    )
    assert r.status_code == 200
    assert httpx.get(f"{world.url}/api/v1/auth/me", headers=old).status_code == 401
    assert (
        httpx.put(
            f"{world.url}/api/v1/users/ann/password",
            headers=login(world.url, "bob", "bob-secret-2"),
            json={"password": "hijacked-1"},
        ).status_code
        == 403
    )
    from deardiary.services.replay import replay

    target = world.data.parent / "replayed"
    replay(world.server.log, target)
    with EmbeddedStore(target, create_log=False) as rebuilt:
        users = (
            rebuilt.store.reader()
            .sql(
                "SELECT username, is_admin, password_hash LIKE 'scrypt$%' AS hashed FROM users"
                " ORDER BY username"
            )
            .to_arrow_table()
            .to_pylist()
        )
        grants = (
            rebuilt.store.reader()
            .sql("SELECT count(*) AS n FROM permissions WHERE can_read")
            .to_arrow_table()
            .to_pylist()
        )
    assert users == [
        {"username": "ann", "is_admin": False, "hashed": True},
        {"username": "bob", "is_admin": False, "hashed": True},
        {"username": "root", "is_admin": True, "hashed": True},
    ]
    assert grants == [{"n": 1}]  # ann's own grant on the project she created


def test_serving_beyond_loopback_without_auth_is_refused(tmp_path: Path) -> None:
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "deardiary.services.cli",
            "serve",
            "--data",
            str(tmp_path),
            "--host",
            "0.0.0.0",
            "--port",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert r.returncode == 2 and "refusing to serve" in r.stderr
