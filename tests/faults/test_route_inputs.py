"""Every route's inputs, driven from the served OpenAPI document: each declared query
parameter refuses bad values with one 400 naming it, unknown parameters are refused
listing the known ones, unknown ids in paths answer 404, and the edge values the issue
names (limit=0, max_seconds=abc, a min_offset beyond the log's end) answer what they say.

One embedded server over real HTTP; the matrix is generated from the document, so a new
route or parameter is covered without a line here.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

import deardiary as dd
from deardiary.services.http import start_in_thread
from deardiary.services.server import embedded_server

UNKNOWN_ID = "0123456789abcdef0123456789abcdef"


@dataclass
class Served:
    url: str
    ids: dict[str, str]
    end: int  # the log's last offset
    doc: dict[str, Any]
    before: int  # the last offset before any of `ids` existed


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("route-inputs")
    with embedded_server(root / "data") as server:
        running = start_in_thread(server.app())
        c = dd.connect(running.url, spool_dir=root / "spool")
        with c.start_iteration(project="before", experiment="e", capture_env=False):
            pass
        before = c.flush()
        with c.start_iteration(
            project="p", experiment="e", params={"lr": 1}, capture_env=False
        ) as it:
            for step in range(5):
                it.log_metric("loss", 1.0 / (step + 1), step=step)
            it.log_text("notes", "a long text sample " * 5000)  # stored, so it has a hash
        c.flush()
        logged_model = httpx.post(  # an MLflow logged model (before the SDK's last write)
            f"{running.url}/api/2.0/mlflow/logged-models",
            json={"experiment_id": it.experiment_id, "source_run_id": it.id, "name": "m"},
        ).json()["model"]["info"]["model_id"]
        f = root / "w.bin"
        f.write_bytes(b"w")
        artifact = it.log_artifact(f)
        version = it.register_model("m", artifact_id=artifact)
        end = c.flush()
        models = c.get("/api/v1/models")["items"]
        c.close()
        ids = {
            "project_id": it.project_id,
            "experiment_id": it.experiment_id,
            "iteration_id": it.id,
            "artifact_id": artifact,
            "model_id": models[0]["model_id"],
            "model_version_id": version,
            "entity_id": it.id,
            "logged_model_id": logged_model,
            "tag_key": "k",
            "artifact_path": f"{it.experiment_id}/{it.id}/artifacts/w.bin",
        }
        media = httpx.get(f"{running.url}/api/v1/iterations/{it.id}/media").json()["items"]
        ids["hash"] = media[0]["content_hash"]  # ?hash= of GET .../content (issue 14)
        doc = httpx.get(f"{running.url}/openapi.json").json()
        try:
            yield Served(running.url, ids, end, doc, before)
        finally:
            running.stop()


# Valid values for required parameters, so one bad parameter is the only problem.
VALID = {"key": "loss", "step": "0", "q": "SELECT 1 AS one", "name": "x.txt"}


def _fill(path: str, ids: dict[str, str]) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: ids[m.group(1)], path)


def _operations(doc: dict[str, Any], method: str | None = "get") -> list[tuple[str, str, Any]]:
    return [
        (m, path, op)
        for path, item in doc["paths"].items()
        for m, op in item.items()
        if method is None or m == method
    ]


def _query(op: Any) -> list[dict[str, Any]]:
    return [p for p in op.get("parameters", []) if p["in"] == "query"]


def _required(op: Any, ids: dict[str, str]) -> dict[str, str]:
    """Values for the required parameters (and a short follow: it streams otherwise)."""
    out = {}
    for p in _query(op):
        if p["required"]:
            out[p["name"]] = VALID.get(p["name"]) or ids[p["name"]]
        elif p["name"] == "max_seconds":
            out["max_seconds"] = "0.1"
    return out


def _bad_values(schema: dict[str, Any]) -> list[str]:
    """Values the parameter's own schema forbids."""
    if schema.get("type") == "array":
        return _bad_values(schema.get("items", {}))
    bad: list[str] = []
    kind = schema.get("type")
    if kind in ("integer", "number"):
        bad.append("abc")
        if kind == "integer":
            bad.append("1.5")
        if "minimum" in schema:
            bad.append(str(schema["minimum"] - 1))
        if "exclusiveMinimum" in schema:
            bad.append(str(schema["exclusiveMinimum"]))
        if "maximum" in schema:
            bad.append(str(schema["maximum"] + 1))
    elif kind == "boolean":
        bad.append("maybe")
    elif "enum" in schema:
        bad.append("no-such-choice")
    elif kind == "string":
        if "pattern" in schema:
            bad.append("not an offset!")
        if "maxLength" in schema:
            bad.append("x" * (schema["maxLength"] + 1))
    return bad


def _assert_400(r: httpx.Response, parameter: str, where: str) -> None:
    assert r.status_code == 400, (where, r.status_code, r.text)
    body = r.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}, where
    assert body["error"]["code"] == "INVALID_ARGUMENT", where
    assert body["error"]["details"].get("parameter") == parameter, (where, body)
    assert repr(parameter) in body["error"]["message"], (where, body)


def test_every_declared_parameter_refuses_bad_values(served: Served) -> None:
    checked = 0
    with httpx.Client(base_url=served.url, timeout=60) as http:
        for _, path, op in _operations(served.doc):
            url, base = _fill(path, served.ids), _required(op, served.ids)
            for param in _query(op):
                for bad in _bad_values(param["schema"]):
                    r = http.get(url, params={**base, param["name"]: bad})
                    _assert_400(r, param["name"], f"GET {path}?{param['name']}={bad[:20]}")
                    checked += 1
                if param["required"]:
                    missing = {k: v for k, v in base.items() if k != param["name"]}
                    _assert_400(http.get(url, params=missing), param["name"], f"{path} missing")
                elif param["schema"].get("type") != "array":
                    name = str(param["name"])
                    twice: list[tuple[str, str | int | float | bool | None]] = [
                        *base.items(),
                        (name, "1"),
                        (name, "2"),
                    ]
                    _assert_400(
                        http.get(url, params=httpx.QueryParams(twice)), name, f"{path} twice"
                    )
    assert checked > 60  # the matrix really ran


def test_unknown_parameters_are_refused_listing_the_known_ones(served: Served) -> None:
    with httpx.Client(base_url=served.url, timeout=60) as http:
        for method, path, op in _operations(served.doc, method=None):
            r = http.request(method, _fill(path, served.ids), params={"bogus": "1"})
            _assert_400(r, "bogus", f"{method.upper()} {path}")
            known = sorted(p["name"] for p in _query(op))
            assert r.json()["error"]["details"]["known"] == known, path


def test_unknown_ids_in_paths_answer_404(served: Served) -> None:
    tried = 0
    with httpx.Client(base_url=served.url, timeout=60) as http:
        for _, path, op in _operations(served.doc):
            for name in re.findall(r"\{(\w+)\}", path):
                url = _fill(path, {**served.ids, name: UNKNOWN_ID})
                r = http.get(url, params=_required(op, served.ids))
                assert r.status_code == 404, (path, name, r.text)
                assert r.json()["error"]["code"] == "NOT_FOUND", (path, r.text)
                tried += 1
                good = http.get(_fill(path, served.ids), params=_required(op, served.ids))
                assert good.status_code == 200, (path, good.text)
        compared = http.get(
            "/api/v1/compare",
            params={"iteration_id": f"{served.ids['iteration_id']},{UNKNOWN_ID}", "key": "loss"},
        )
        assert compared.status_code == 404 and UNKNOWN_ID in compared.text
    assert tried >= 20


def test_limit_zero_answers_no_items_but_the_total(served: Served) -> None:
    with httpx.Client(base_url=served.url, timeout=60) as http:
        # the "before" project's iteration, the run and its MLflow logged model (a child)
        for path, total in (
            ("/api/v1/projects", 2),
            ("/api/v1/experiments", 2),
            ("/api/v1/iterations", 3),
        ):
            page = http.get(path, params={"limit": 0}).json()
            assert page["items"] == [] and page["total"] == total and page["limit"] == 0, page
        it = served.ids["iteration_id"]
        history = http.get(f"/api/v1/history/{it}", params={"limit": 0})
        assert history.status_code == 200 and history.json()["items"] == []
        full = http.get("/api/v1/projects").json()
        assert full["limit"] == 100 and len(full["items"]) == 2


def test_follow_with_max_seconds_abc_is_a_400(served: Served) -> None:
    it = served.ids["iteration_id"]
    for bad in ("abc", "0", "-1", "nan", "inf", "1e9"):
        r = httpx.get(
            f"{served.url}/api/v1/iterations/{it}/logs/follow", params={"max_seconds": bad}
        )
        _assert_400(r, "max_seconds", bad)
    r = httpx.get(f"{served.url}/api/v1/iterations/{it}/logs/follow", params={"max_seconds": "0.2"})
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/event-stream")


def test_min_offset_beyond_the_logs_end_is_a_400_at_once(served: Served) -> None:
    with httpx.Client(base_url=served.url, timeout=60) as http:
        reached = http.get("/api/v1/projects", params={"min_offset": served.end})
        assert reached.status_code == 200, reached.text
        both = http.get("/api/v1/projects", params={"min_offset": [f"0:{served.end}", "0"]})
        assert both.status_code == 200, both.text
        for beyond in (str(served.end + 1), "999999999", f"0:{served.end + 5}", "7:0"):
            r = http.get("/api/v1/projects", params={"min_offset": beyond})
            _assert_400(r, "min_offset", beyond)
            assert "beyond the log's end" in r.json()["error"]["message"]
        for path in ("/api/v1/sql", f"/api/v1/artifacts/{served.ids['artifact_id']}/content"):
            r = http.get(path, params={**_q(path), "min_offset": "999999999"})
            _assert_400(r, "min_offset", path)


def _q(path: str) -> dict[str, str]:
    return {"q": VALID["q"]} if path.endswith("/sql") else {}


def test_every_operation_documents_its_parameters_from_one_declaration(served: Served) -> None:
    """Defaults and bounds in the document are the ones the parser enforces."""
    ops = {(m, p): op for m, p, op in _operations(served.doc, method=None)}
    projects = {p["name"]: p for p in _query(ops[("get", "/api/v1/projects")])}
    assert projects["limit"]["schema"] == {
        "type": "integer",
        "minimum": 0,
        "maximum": 10_000,
        "default": 100,
    }
    follow = {
        p["name"]: p for p in _query(ops[("get", "/api/v1/iterations/{iteration_id}/logs/follow")])
    }
    assert follow["max_seconds"]["schema"]["exclusiveMinimum"] == 0
    compare = {p["name"]: p for p in _query(ops[("get", "/api/v1/compare")])}
    assert compare["iteration_id"]["required"] and compare["iteration_id"]["explode"]
    assert ops[("get", "/healthz")].get("parameters", []) == []


def test_auth_routes_declare_their_parameters_too(tmp_path_factory: pytest.TempPathFactory) -> None:
    from tests.faults.auth_world import ADMIN_PW, login, serving_users

    data = tmp_path_factory.mktemp("auth-inputs") / "data"
    with (
        serving_users(data) as (_, url),
        httpx.Client(base_url=url, headers=login(url, "root", ADMIN_PW), timeout=60) as http,
    ):
        _assert_400(http.get("/api/v1/tokens", params={"all": "maybe"}), "all", "all")
        _assert_400(http.get("/api/v1/auth/me", params={"x": "1"}), "x", "me")
        _assert_400(http.get("/api/v1/permissions", params={"user": "a"}), "user", "p")
        missing = http.delete("/api/v1/permissions", params={"username": "root"})
        _assert_400(missing, "project", "revoke")
        unknown = http.delete("/api/v1/permissions", params={"username": "nobody", "project": "p"})
        assert unknown.status_code == 404, unknown.text
        assert http.get("/api/v1/tokens", params={"all": "true"}).status_code == 200


def test_every_route_declaring_as_of_answers_the_past(served: Served) -> None:
    """As of a time before every id in the path existed, a route that declares ?as_of=
    answers 404 or something other than the present -- one that declared it and answered
    the present anyway (media, a model's runs) is caught here."""
    checked = []
    for _, path, op in _operations(served.doc):
        if "as_of" not in {p["name"] for p in _query(op)}:
            continue
        url, params = served.url + _fill(path, served.ids), _required(op, served.ids)
        live = httpx.get(url, params=params)
        assert live.status_code == 200, (path, live.text[:300])
        past = httpx.get(url, params={**params, "as_of": str(served.before)})
        assert past.status_code in (200, 404), (path, past.text[:300])
        if past.status_code == 200:
            assert past.content != live.content, f"{path} answered the present as of the past"
        checked.append(path)
    assert len(checked) > 25, checked
