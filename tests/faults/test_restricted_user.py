"""A restricted user tries every route of the served OpenAPI document against a project
she has no grant on, and every write against one she may only read.

rita may read project A, owns project C, and has nothing on project B (all olive's;
see auth_world.py). For every (method, path) the server documents -- read from
/openapi.json, so a new route is covered without editing this file -- she sends B's
ids in each path and id query parameter, and forged bodies: events into B, artifact
records naming B's bytes, grants, tokens and passwords of others. The oracle:

* an attempt naming anything of B answers 403 or 404, and an admin route 403;
* a write naming A answers 403 (read-only);
* no response shows anything of B she did not send herself (ids, names, param and
  metric values, log lines, artifact bytes), nor any password or token hash;
* nothing at all is appended to the log.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import msgspec
import pytest

from deardiary.schemas import ids
from deardiary.schemas.events import (
    AccessTokenCreated,
    ArtifactStored,
    CheckpointFile,
    CheckpointSaved,
    EntityArchived,
    EntityDeleted,
    EntityKind,
    Event,
    ExperimentCreated,
    IterationStarted,
    LogLinesLogged,
    MediaKind,
    MediaLogged,
    MetricsLogged,
    ModelAliasSet,
    ModelStage,
    ModelVersionCreated,
    ModelVersionStaged,
    NotesSet,
    ParamsLogged,
    PermissionGranted,
    TagsSet,
    UserAdminSet,
    UserPasswordChanged,
)
from deardiary.services.auth.middleware import ADMIN, PUBLIC
from tests.faults.auth_world import AuthWorld, Tenant, auth_world, events_body

ENTITY_KINDS = {
    "project_id": EntityKind.PROJECT,
    "experiment_id": EntityKind.EXPERIMENT,
    "iteration_id": EntityKind.ITERATION,
    "model_id": EntityKind.MODEL,
    "model_version_id": EntityKind.MODEL_VERSION,
    "artifact_id": EntityKind.ARTIFACT,
}
SQL_PROBES = (
    "SELECT * FROM projects",
    "SELECT * FROM params",
    "SELECT * FROM metrics",
    "SELECT * FROM logs",
    "SELECT * FROM artifacts",
    "SELECT * FROM model_versions",
    "SELECT * FROM users",
    "SELECT * FROM access_tokens",
    "SELECT * FROM permissions",
)


@dataclass
class Attempt:
    method: str
    route: str  # the documented path
    path: str
    params: dict[str, str]
    body: bytes | None = None
    json_body: bool = True
    expect: frozenset[int] | None = None  # None: any status, but still no leak
    why: str = ""

    def sent(self) -> str:
        return self.path + str(self.params) + (self.body or b"").decode(errors="replace")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthWorld]:
    with auth_world(tmp_path_factory.mktemp("restricted")) as built:
        yield built


def _operations(world: AuthWorld) -> list[tuple[str, str, dict[str, object]]]:
    spec = httpx.get(f"{world.url}/openapi.json").json()
    return sorted(
        (method.upper(), path, op)
        for path, ops in spec["paths"].items()
        for method, op in ops.items()
    )


def _path_values(tenant: Tenant, world: AuthWorld) -> dict[str, list[str]]:
    """What to put in each path parameter to aim at `tenant` (B, or A for writes)."""
    entities = [tenant.ids[k] for k in ENTITY_KINDS]
    return {
        **{k: [v] for k, v in tenant.ids.items()},
        "entity_id": entities,
        "username": ["olive", "root"],
        "token_id": [world.olive_token_id],
        # MLflow routes: a logged model id naming the tenant's iteration, a tag, a path
        "logged_model_id": ["m-" + tenant.ids["iteration_id"]],
        "tag_key": ["secret"],
        "artifact_path": [f"{tenant.ids['experiment_id']}/{tenant.ids['iteration_id']}/artifacts"],
    }


def _query_value(name: str, tenant: Tenant, world: AuthWorld) -> str | None:
    if name in tenant.ids:
        return tenant.ids[name]
    return {"username": "olive", "project": tenant.project, "all": "true"}.get(name)


def _fills(route: str, values: dict[str, list[str]]) -> list[str]:
    """The route with its path parameters filled, once per value of each."""
    names = re.findall(r"\{(\w+)\}", route)
    for name in names:
        assert name in values, f"{route}: no value for path parameter {name!r}; teach the test"
    paths = [route]
    for name in names:
        paths = [p.replace("{" + name + "}", v) for p in paths for v in values[name]]
    return paths


DENIED = frozenset({403, 404})
FORBIDDEN = frozenset({403})
Body = tuple[str, bytes, bool, frozenset[int] | None]
"""(why, body, is it JSON, the statuses it may answer -- None: any, but no leak)."""


def _forged_events(world: AuthWorld, target: Tenant) -> list[tuple[str, Event]]:
    """Events a caller without write permission on `target` must not get in."""
    t, mine, t0 = target.ids, world.c, 1_700_000_000_000_000
    new_id = ids.new_id
    return [
        (
            "experiment",
            ExperimentCreated(experiment_id=new_id(), project_id=t["project_id"], name="x"),
        ),
        (
            "iteration",
            IterationStarted(
                iteration_id=new_id(),
                experiment_id=t["experiment_id"],
                project_id=t["project_id"],
            ),
        ),
        ("params", ParamsLogged(iteration_id=t["iteration_id"], params={"secret": "changed"})),
        ("metrics", MetricsLogged.from_points(t["iteration_id"], ["loss"], [1.0], [5], [t0])),
        (
            "logs",
            LogLinesLogged(
                iteration_id=t["iteration_id"], times=[t0], levels=["I"], messages=["x"]
            ),
        ),
        ("tags", TagsSet(entity=EntityKind.PROJECT, entity_id=t["project_id"], tags={"x": "y"})),
        ("notes", NotesSet(entity=EntityKind.EXPERIMENT, entity_id=t["experiment_id"], notes="x")),
        ("archive", EntityArchived(entity=EntityKind.ITERATION, entity_id=t["iteration_id"])),
        ("delete", EntityDeleted(entity=EntityKind.PROJECT, entity_id=t["project_id"])),
        ("version", ModelVersionCreated(model_version_id=new_id(), model_id=t["model_id"])),
        (
            "stage",
            ModelVersionStaged(
                model_version_id=t["model_version_id"],
                model_id=t["model_id"],
                stage=ModelStage.PRODUCTION,
            ),
        ),
        (
            "alias",
            ModelAliasSet(
                model_id=t["model_id"], alias="prod", model_version_id=t["model_version_id"]
            ),
        ),
        (
            "artifact into the project",
            ArtifactStored(
                artifact_id=new_id(),
                experiment_id=t["experiment_id"],
                name="x.bin",
                uri="file:///x",
                size_bytes=len(mine.content),
                content_hash=mine.content_hash,
            ),
        ),
        (
            "artifact taking over its artifact, from rita's own project",
            ArtifactStored(
                artifact_id=t["artifact_id"],
                experiment_id=mine.ids["experiment_id"],
                name="stolen.txt",
                uri="file:///x",
                size_bytes=len(mine.content),
                content_hash=mine.content_hash,
            ),
        ),
        (
            "grant to herself",
            PermissionGranted(
                user_id=ids.user_id("rita"),
                project_id=t["project_id"],
                create=True,
                read=True,
                update=True,
                delete=True,
            ),
        ),
    ]


def _taken(why: str) -> frozenset[int]:
    """Reusing another project's artifact id into rita's own project (where she may
    write) may also be answered 409: the id is taken, whoever asks."""
    return frozenset({409}) if "taking over" in why else frozenset()


def _stolen_bytes(world: AuthWorld) -> ArtifactStored:
    """B's bytes recorded in rita's own project, served as HTML if it got through."""
    return ArtifactStored(
        artifact_id=ids.new_id(),
        experiment_id=world.c.ids["experiment_id"],
        name="stolen.txt",
        uri="file:///x",
        size_bytes=len(world.b.content),
        content_hash=world.b.content_hash,
        media_type="text/html",
    )


def _stolen_media(world: AuthWorld) -> list[tuple[str, Event]]:
    """B's bytes named by media and checkpoint events of rita's own iteration (issue 14):
    served back through her iteration if they got through."""
    mine, b = world.c.ids["iteration_id"], world.b
    return [
        (
            "media naming B's bytes, in rita's iteration",
            MediaLogged(
                iteration_id=mine,
                key="stolen",
                kind=MediaKind.IMAGE,
                content_hash=b.content_hash,
                size_bytes=len(b.content),
                media_type="image/png",
            ),
        ),
        (
            "a checkpoint naming B's bytes, in rita's iteration",
            CheckpointSaved(
                iteration_id=mine,
                checkpoint_id=ids.new_id(),
                files=[
                    CheckpointFile(
                        path="stolen.bin", content_hash=b.content_hash, size_bytes=len(b.content)
                    )
                ],
            ),
        ),
    ]


def _account_events() -> list[tuple[str, Event]]:
    rita, olive = ids.user_id("rita"), ids.user_id("olive")
    token = AccessTokenCreated(token_id=ids.new_id(), user_id=olive, token_hash="sha256$00")
    return [
        ("admin for herself", UserAdminSet(user_id=rita, is_admin=True)),
        ("olive's password", UserPasswordChanged(user_id=olive, password_hash="scrypt$1$1$1$a$b")),
        ("a token for olive", token),
    ]


def _json(value: object) -> bytes:
    return msgspec.json.encode(value)


def _bodies(route: str, world: AuthWorld, target: Tenant) -> list[Body]:
    """Forged bodies for a route that takes one."""
    if route == "/api/v1/events":
        forged = _forged_events(world, target) + _account_events()
        if target is world.b:
            forged.append(("artifact naming B's bytes, in rita's project", _stolen_bytes(world)))
            forged += _stolen_media(world)
        return [
            (f"event: {why}", events_body(ev), True, DENIED | _taken(why)) for why, ev in forged
        ]
    if route == "/api/v1/artifacts":
        return [("bytes into the project", b"forged bytes", False, None)]
    if route.endswith("/metrics"):
        return [("a metric", _json({"metrics": [{"key": "loss", "value": 1.0}]}), True, None)]
    if route == "/api/v1/permissions":
        grant = {"username": "rita", "project": target.project, "create": True, "read": True}
        return [("grant to herself", _json(grant), True, FORBIDDEN)]
    if route == "/api/v1/users":
        user = {"username": "evil", "password": "evil-secret-1", "is_admin": True}
        return [("an admin of her own", _json(user), True, FORBIDDEN)]
    if route.endswith("/password"):
        return [("another's password", _json({"password": "hijacked-1"}), True, FORBIDDEN)]
    if route == "/api/v1/tokens":
        for_olive = {"user_id": ids.user_id("olive"), "username": "olive", "lifespan_s": 60}
        return [("a token for olive", _json(for_olive), True, frozenset({400, 403}))]
    if route == "/api/v1/auth/login":
        login = {"username": "olive", "password": "x" * 8}
        return [("olive's account", _json(login), True, frozenset({401}))]
    if route == "/api/v1/sql":
        return [(q, _json({"query": q}), True, frozenset({200, 400})) for q in SQL_PROBES]
    # a route this test does not know yet: a body stuffed with the target's ids
    return [("the target's ids", _json({**target.ids, "username": "olive"}), True, None)]


_PLAUSIBLE = {"key": "loss", "step": "0", "goal": "min", "q": "SELECT 1", "name": "x"}
_BY_TYPE = {"integer": "0", "number": "1", "boolean": "false", "array": "x", "string": "x"}


def _required(op: dict[str, object]) -> dict[str, str]:
    """A value for each required query parameter, so a request is refused for what it
    names, not for being malformed."""
    found: dict[str, str] = {}
    parameters = op.get("parameters", [])
    assert isinstance(parameters, list)
    for p in parameters:
        if p.get("in") == "query" and p.get("required"):
            kind = str(p.get("schema", {}).get("type", "string"))
            found[p["name"]] = _PLAUSIBLE.get(p["name"], _BY_TYPE.get(kind, "x"))
    return found


def _query_names(op: dict[str, object]) -> list[str]:
    parameters = op.get("parameters", [])
    assert isinstance(parameters, list)
    return [str(p["name"]) for p in parameters if p.get("in") == "query"]


def _attempts(world: AuthWorld) -> list[Attempt]:
    attempts: list[Attempt] = []
    for method, route, op in _operations(world):
        if (method, route) not in PUBLIC or route == "/api/v1/auth/login":
            attempts += _route_attempts(world, method, route, op)
    return attempts


def _route_attempts(
    world: AuthWorld, method: str, route: str, op: dict[str, object]
) -> list[Attempt]:
    attempts: list[Attempt] = []
    b_values, a_values = _path_values(world.b, world), _path_values(world.a, world)
    query, base = _query_names(op), _required(op)
    path_ids, admin, has_body = "{" in route, (method, route) in ADMIN, "requestBody" in op

    def add(path: str, params: dict[str, str], named: bool, why: str, target: Tenant) -> None:
        bodies: list[Body] = _bodies(route, world, target) if has_body else [("", b"", True, None)]
        sent = {**base, **params}
        for why_body, body, is_json, expect in bodies:
            if admin:
                expect = FORBIDDEN
            elif named:
                expect = DENIED if target is world.b else FORBIDDEN
            why_all = f"{why} {why_body}".strip()
            attempts.append(
                Attempt(method, route, path, sent, body or None, is_json, expect, why_all)
            )

    # 1. B's ids (each entity id, other users' names and tokens) in the path
    for path in _fills(route, b_values):
        add(path, {}, path_ids, "B in the path" if path_ids else "", world.b)
    # 2. B's values in each query parameter that can name something
    for name in query:
        value = _query_value(name, world.b, world)
        if value is not None:
            named = name in world.b.ids or name in ("project", "username")
            add(_fills(route, b_values)[0], {name: value}, named, f"B in ?{name}", world.b)
        if name == "q":
            for probe in SQL_PROBES:
                attempts.append(Attempt(method, route, route, {**base, "q": probe}, why=probe))
    # 3. writes aimed at A, which rita may only read
    if method != "GET":
        a_params = {n: world.a.ids[n] for n in query if n in world.a.ids}
        for path in _fills(route, a_values):
            if a_params or any(v in path for v in world.a.ids.values()):
                add(path, a_params, True, "write to A", world.a)
        if route == "/api/v1/events":
            for why, body, is_json, _ in _bodies(route, world, world.a):
                expect = FORBIDDEN | _taken(why)
                attempts.append(
                    Attempt(method, route, route, {}, body, is_json, expect, f"A: {why}")
                )
    return attempts


def _send(world: AuthWorld, attempt: Attempt) -> httpx.Response:
    headers = dict(world.rita)
    if attempt.body is not None:
        headers["Content-Type"] = "application/json" if attempt.json_body else "text/plain"
    return httpx.request(
        attempt.method,
        world.url + attempt.path,
        params=attempt.params,
        content=attempt.body,
        headers=headers,
        timeout=60,
    )


def test_every_documented_route_refuses_the_restricted_user(world: AuthWorld) -> None:
    attempts = _attempts(world)
    routes = {(a.method, a.route) for a in attempts}
    assert len(routes) >= 40, sorted(routes)  # the whole document, not a sample
    before = world.end_offsets()
    problems: list[str] = []
    for attempt in attempts:
        r = _send(world, attempt)
        where = f"{attempt.method} {attempt.path} {attempt.params} ({attempt.why})"
        if attempt.expect is not None and r.status_code not in attempt.expect:
            problems.append(
                f"{where}: {r.status_code}, wanted {sorted(attempt.expect)}: {r.text[:300]}"
            )
        if r.status_code >= 400 and r.headers.get("Content-Type", "").startswith(
            "application/json"
        ):
            error = r.json().get("error", {})
            if set(error) != {"code", "message", "details"}:
                problems.append(f"{where}: not the one error body: {r.text[:300]}")
        if r.status_code >= 500:
            problems.append(f"{where}: {r.status_code}: {r.text[:300]}")
        sent = attempt.sent()
        shown = [s for s in world.b.secrets if s in r.text and s not in sent]
        shown += [h for h in world.credential_hashes if h in r.text]
        if shown:
            problems.append(f"{where}: shows {shown}: {r.text[:300]}")
    assert not problems, "\n".join(problems)
    assert world.end_offsets() == before, "a refused attempt appended to the log"


def test_b_is_unchanged_and_a_still_readable(world: AuthWorld) -> None:
    """After the sweep: B's artifact is B's bytes, and rita still reads A."""
    got = httpx.get(
        f"{world.url}/api/v1/artifacts/{world.b.ids['artifact_id']}/content", headers=world.olive
    )
    assert got.content == world.b.content
    it = httpx.get(
        f"{world.url}/api/v1/iterations/{world.a.ids['iteration_id']}", headers=world.rita
    )
    assert it.status_code == 200, it.text
