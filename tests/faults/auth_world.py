"""A served data folder with auth on and three users, for the authorisation fault tests.

root is an administrator. olive owns two projects, A and B, each with an experiment,
an iteration (params, a metric, tags, notes, log lines, a text sample, a histogram, a
checkpoint), a model with a version the iteration uses, and an artifact: a row in every
relation the SQL sandbox publishes, every name and value tagged with a random marker, so
a test can look for any of B's secrets in a response. rita may read A, has nothing on B,
and owns a project C of her own (with an artifact she uploaded). Built in-process on a
real server over HTTP: the same pattern as tests/e2e/test_auth.py.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import httpx
import msgspec

import deardiary as dd
from deardiary.schemas import ids
from deardiary.schemas.envelope import wrap
from deardiary.schemas.events import (
    Event,
    LogLinesLogged,
    ModelCreated,
    ModelVersionCreated,
    ModelVersionUsed,
)
from deardiary.schemas.ids import now_us
from deardiary.services.auth.routes import new_user_event
from deardiary.services.http import start_in_thread
from deardiary.services.server import EmbeddedServer
from deardiary.services.settings import ServerSettings

ADMIN_PW, OLIVE_PW, RITA_PW = "root-secret-1", "olive-secret-1", "rita-secret-1"
Headers = dict[str, str]
ENTITY_PARAMETERS = (
    "project_id",
    "experiment_id",
    "iteration_id",
    "model_id",
    "model_version_id",
    "artifact_id",
)


@dataclass
class Tenant:
    """One project of the world: its ids by parameter name, and what must not leak."""

    project: str
    ids: dict[str, str]
    content: bytes
    content_hash: str
    secrets: list[str] = field(default_factory=list)


@dataclass
class AuthWorld:
    url: str
    server: EmbeddedServer
    data: Path
    admin: Headers
    olive: Headers
    rita: Headers
    a: Tenant
    b: Tenant
    c: Tenant
    olive_token_id: str
    credential_hashes: list[str]  # every password and token hash in the projections

    def end_offsets(self) -> dict[int, int]:
        return dict(self.server.log.end_offsets())


def login(url: str, user: str, password: str) -> Headers:
    r = httpx.post(f"{url}/api/v1/auth/login", json={"username": user, "password": password})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['token']}"}


def events_body(*events: Event, actor: str = "") -> bytes:
    """A POST /api/v1/events JSON body (actor "" is the caller)."""
    return msgspec.json.encode({"events": [wrap(e, actor=actor) for e in events]})


def post_events(url: str, headers: Headers, *events: Event) -> httpx.Response:
    return httpx.post(
        f"{url}/api/v1/events",
        content=events_body(*events),
        headers={**headers, "Content-Type": "application/json"},
    )


def upload(
    url: str,
    headers: Headers,
    experiment_id: str,
    name: str,
    content: bytes,
    media_type: str = "text/plain",
    iteration_id: str | None = None,
) -> httpx.Response:
    params = {"experiment_id": experiment_id, "name": name}
    if iteration_id:
        params["iteration_id"] = iteration_id
    return httpx.post(
        f"{url}/api/v1/artifacts",
        params=params,
        content=content,
        headers={**headers, "Content-Type": media_type},
    )


def _tenant(url: str, user: str, password: str, headers: Headers, tag: str, spool: Path) -> Tenant:
    mark = f"{tag}{secrets.token_hex(6)}"
    project, experiment, iteration = f"{mark}-project", f"{mark}-experiment", f"{mark}-iteration"
    param_value, tag_value, note = f"{mark}-param-value", f"{mark}-tag-value", f"{mark}-notes"
    log_line, model, metric = f"{mark}-log-line", f"{mark}-model", 7000 + secrets.randbelow(10**6)
    metric_value = metric + 0.123456789
    media_text, checkpoint, purpose = f"{mark}-media-text", f"{mark}-ckpt", f"{mark}-purpose"
    client = dd.connect(url, username=user, password=password, spool_dir=spool)
    try:
        with client.start_iteration(
            project=project,
            experiment=experiment,
            name=iteration,
            params={"secret": param_value},
            tags={"secret": tag_value},
            capture_env=False,
        ) as it:
            it.log_metric("loss", metric_value)
            it.set_notes(note)
            it.log_text(f"{mark}-sample", media_text)
            it.log_histogram(f"{mark}-histogram", histogram=([0.0, 1.0], [3.0]))
            weights = spool.parent / f"{mark}-checkpoint.bin"
            weights.write_bytes(f"{mark}-checkpoint-bytes".encode())
            it.log_checkpoint(weights, step=0, name=checkpoint)
            client.buffer.emit(
                LogLinesLogged(
                    iteration_id=it.id, times=[now_us()], levels=["INFO"], messages=[log_line]
                )
            )
        model_id = ids.model_id(it.project_id, model)
        version_id = ids.new_id()
        client.buffer.emit(ModelCreated(model_id=model_id, project_id=it.project_id, name=model))
        client.buffer.emit(
            ModelVersionCreated(model_version_id=version_id, model_id=model_id, iteration_id=it.id)
        )
        client.buffer.emit(
            ModelVersionUsed(iteration_id=it.id, model_version_id=version_id, purpose=purpose)
        )
        client.flush(timeout=30)
    finally:
        client.close()
    content = f"{mark}-artifact-bytes".encode()
    up = upload(url, headers, it.experiment_id, f"{mark}-weights.txt", content, iteration_id=it.id)
    assert up.status_code == 200, up.text
    found = {
        "project_id": it.project_id,
        "experiment_id": it.experiment_id,
        "iteration_id": it.id,
        "model_id": model_id,
        "model_version_id": version_id,
        "artifact_id": up.json()["artifact_id"],
    }
    leakable = [project, experiment, iteration, param_value, tag_value, note, log_line, model]
    leakable += [media_text, f"{mark}-sample", f"{mark}-histogram", checkpoint, purpose]
    leakable += [repr(metric_value), content.decode(), up.json()["content_hash"], *found.values()]
    return Tenant(project, found, content, up.json()["content_hash"], leakable)


def credential_hashes(reader: Callable[[], duckdb.DuckDBPyConnection]) -> list[str]:
    """Every stored password and token hash, whole and in parts: no response may show one."""
    conn = reader()
    try:
        found = conn.sql(
            "SELECT password_hash AS h FROM users UNION ALL SELECT token_hash FROM access_tokens"
        ).fetchall()
    finally:
        conn.close()
    hashes = [str(row[0]) for row in found]
    # the secret part of each hash (salt and digest), as any response might show it
    return hashes + [part for h in hashes for part in h.split("$") if len(part) >= 16]


def people(url: str, admin: Headers, tmp: Path) -> dict[str, Any]:
    """olive and rita, their projects A, B and C, rita's grant on A and olive's token:
    the world's fields past the server's own, made over HTTP by the admin."""
    for name, pw in (("olive", OLIVE_PW), ("rita", RITA_PW)):
        r = httpx.post(
            f"{url}/api/v1/users", json={"username": name, "password": pw}, headers=admin
        )
        assert r.status_code == 200, r.text
    olive, rita = login(url, "olive", OLIVE_PW), login(url, "rita", RITA_PW)
    a = _tenant(url, "olive", OLIVE_PW, olive, "alpha", tmp / "spool-a")
    b = _tenant(url, "olive", OLIVE_PW, olive, "bravo", tmp / "spool-b")
    c = _tenant(url, "rita", RITA_PW, rita, "charlie", tmp / "spool-c")
    granted = httpx.post(
        f"{url}/api/v1/permissions",
        headers=admin,
        json={"username": "rita", "project": a.project, "read": True},
        timeout=60,
    )
    assert granted.status_code == 200, granted.text
    token = httpx.post(f"{url}/api/v1/tokens", headers=olive, json={"description": "ci"})
    assert token.status_code == 200, token.text
    token_id = token.json()["token_id"]
    return {"olive": olive, "rita": rita, "a": a, "b": b, "c": c, "olive_token_id": token_id}


@contextmanager
def serving_users(
    data: Path, users: Mapping[str, str] | None = None, settings: ServerSettings | None = None
) -> Iterator[tuple[EmbeddedServer, str]]:
    """A server over `data` with auth on, serving HTTP on a free loopback port, and its
    URL: root (password ADMIN_PW) an administrator and `users` (name: password) ordinary
    users, folded before the first request."""
    server = EmbeddedServer(data, auth=True, settings=settings)
    server.start()
    try:
        accounts = {"root": (ADMIN_PW, True)} | {n: (p, False) for n, p in (users or {}).items()}
        server.append_applied([wrap(new_user_event(n, p, a)) for n, (p, a) in accounts.items()])
        with start_in_thread(server.app()) as running:
            yield server, running.url
    finally:
        server.close()


@contextmanager
def auth_world(tmp: Path) -> Iterator[AuthWorld]:
    data = tmp / "data"
    with serving_users(data) as (server, url):
        admin = login(url, "root", ADMIN_PW)
        yield AuthWorld(
            url=url,
            server=server,
            data=data,
            admin=admin,
            credential_hashes=credential_hashes(server.embedded.store.reader),
            **people(url, admin, tmp),
        )


def leaks(response: httpx.Response, secrets_: list[str], sent: str = "") -> list[str]:
    """The secrets a response shows that the request did not itself carry."""
    text = response.text
    return [s for s in secrets_ if s in text and s not in sent]
