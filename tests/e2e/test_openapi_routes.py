"""The served OpenAPI document is well formed, and every route in it answers a real call."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import msgspec
import pytest

import deardiary as dd
from deardiary.schemas import codec
from deardiary.schemas.envelope import wrap
from deardiary.schemas.events import LogLinesLogged, MediaKind, MediaLogged
from deardiary.services.http import start_in_thread
from deardiary.services.server import embedded_server
from tests.mlflow.test_registry_routes import exercise_registry_and_artifacts
from tests.mlflow.test_tracking_routes import exercise_tracking


class Recorder:
    """An httpx client that remembers which (method, path) pairs were called."""

    def __init__(self, url: str) -> None:
        self.http = httpx.Client(base_url=url, timeout=30)
        self.calls: list[tuple[str, str]] = []

    def __call__(self, method: str, path: str, expect: int = 200, **kwargs: Any) -> httpx.Response:
        """`expect`: the status the route documents for this call (200 but for MLflow's
        multipart upload, which answers "not supported")."""
        self.calls.append((method, path))
        response = self.http.request(method, path, **kwargs)
        assert response.status_code == expect, (method, path, response.text)
        return response


def _segment(parameter: re.Match[str]) -> str:
    """A path parameter's pattern: one segment, but an MLflow artifact path may hold several."""
    return ".+" if parameter.group(1) == "artifact_path" else "[^/]+"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str]]]:
    root = tmp_path_factory.mktemp("openapi")
    with embedded_server(root / "data") as server:
        running = start_in_thread(server.app())
        c = dd.connect(running.url, spool_dir=root / "spool")
        f = root / "w.bin"
        f.write_bytes(b"w")
        with c.start_iteration(
            project="p", experiment="e", params={"lr": 1}, capture_env=False
        ) as it:
            it.log_metric("loss", 0.5)
            artifact = it.log_artifact(f)
            version = it.register_model("m", artifact_id=artifact)
        c.flush()
        c.close()
        known = {
            "iteration_id": it.id,
            "experiment_id": it.experiment_id,
            "project_id": it.project_id,
            "artifact_id": artifact,
            "model_version_id": version,
            "entity_id": it.id,
        }
        try:
            yield running.url, known
        finally:
            running.stop()


def test_document_is_valid_openapi(served: tuple[str, dict[str, str]]) -> None:
    doc = httpx.get(f"{served[0]}/openapi.json").json()
    assert doc["openapi"].startswith("3.") and doc["info"]["title"]
    for path, ops in doc["paths"].items():
        assert path.startswith("/")
        for method, op in ops.items():
            assert method in {"get", "post", "put", "delete", "patch"}
            assert op["responses"] and op["summary"]
            declared = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
            assert declared == set(re.findall(r"\{(\w+)\}", path)), (method, path)


def test_every_route_is_exercised(served: tuple[str, dict[str, str]]) -> None:
    url, ids = served
    call = Recorder(url)
    it, exp, proj = ids["iteration_id"], ids["experiment_id"], ids["project_id"]
    models = call("GET", "/api/v1/models").json()["items"]
    model_id = models[0]["model_id"]
    log_line = wrap(
        LogLinesLogged(iteration_id=it, times=[1], levels=["INFO"], messages=["hello world"])
    )
    body = msgspec.msgpack.encode([codec.encode(log_line)])
    offset = call(
        "POST", "/api/v1/events", content=body, headers={"Content-Type": "application/msgpack"}
    ).json()["last_offset"]
    call(
        "POST",
        f"/api/v1/iterations/{it}/metrics",
        json={"metrics": [{"key": "acc", "value": "NaN"}]},
    )
    call("POST", "/api/v1/artifacts", params={"experiment_id": exp, "name": "x.txt"}, content=b"x")
    fresh = {"min_offset": str(offset)}
    call("GET", "/healthz")
    call("GET", "/openapi.json")
    call("GET", "/api/v1/projects")
    call("GET", f"/api/v1/projects/{proj}")
    call("GET", f"/api/v1/projects/{proj}/stats")
    call("GET", "/api/v1/experiments", params={"project_id": proj})
    call("GET", f"/api/v1/experiments/{exp}")
    call("GET", f"/api/v1/experiments/{exp}/best", params={"key": "loss"})
    call("GET", f"/api/v1/experiments/{exp}/leaderboard", params={"key": "loss"})
    call("GET", f"/api/v1/experiments/{exp}/metric-names")
    call("GET", f"/api/v1/experiments/{exp}/running-best", params={"key": "loss"})
    call("GET", f"/api/v1/experiments/{exp}/snapshot", params={"key": "loss", "step": 0})
    cols = call("GET", f"/api/v1/experiments/{exp}/columns").json()["items"]
    assert {(c["kind"], c["key"]) for c in cols} >= {("param", "lr"), ("metric", "loss")}
    table = call(
        "GET",
        f"/api/v1/experiments/{exp}/runs-table",
        params={"columns": "params.lr,metrics.loss.min", "filter": "params.lr = 1"},
    ).json()["items"]
    assert [(r["params.lr"], r["metrics.loss.min"]) for r in table] == [("1", 0.5)]
    call("GET", f"/api/v1/history/{it}")
    call("GET", "/api/v1/iterations", params={"filter": "metrics.loss < 1"})
    call("GET", f"/api/v1/iterations/{it}")
    lines = call("GET", f"/api/v1/iterations/{it}/logs", params={**fresh, "contains": "world"})
    assert [r["message"] for r in lines.json()["items"]] == ["hello world"]
    follow = call(
        "GET",
        f"/api/v1/iterations/{it}/logs/follow",
        params={"max_seconds": "0.5", "regex": "^hello"},
    )
    assert b"data: " in follow.content and b"hello world" in follow.content
    call("GET", f"/api/v1/iterations/{it}/metric-history", params={"key": "loss"})
    call("GET", f"/api/v1/iterations/{it}/metrics")
    call("GET", f"/api/v1/iterations/{it}/params")
    call("GET", "/api/v1/compare", params={"iteration_id": it, "key": "loss"})
    charts = call("GET", "/api/v1/series", params={"iteration_id": it, "key": "loss"}).json()
    assert [p["value"] for p in charts["items"]] == [0.5]
    call("GET", "/api/v1/model-versions", params={"model_id": model_id})
    call("GET", f"/api/v1/model-versions/{ids['model_version_id']}")
    call("GET", f"/api/v1/model-versions/{ids['model_version_id']}/lineage")
    call("GET", f"/api/v1/models/{model_id}")
    call("GET", "/api/v1/artifacts", params={"iteration_id": it})
    call("GET", f"/api/v1/artifacts/{ids['artifact_id']}")
    assert call("GET", f"/api/v1/artifacts/{ids['artifact_id']}/content").content == b"w"
    call("GET", "/api/v1/sql", params={"q": "SELECT 1 AS one"})
    call("GET", "/readyz")
    call("POST", "/api/v1/sql", json={"query": "SELECT count(*) AS n FROM metrics"})
    # management verbs (issue 14)
    call("PUT", f"/api/v1/entities/{it}/tags", json={"tags": {"a": "b"}})
    call("DELETE", f"/api/v1/entities/{it}/tags", params={"key": "a"})
    call("PUT", f"/api/v1/entities/{it}/notes", json={"notes": "n"})
    call("PUT", f"/api/v1/entities/{it}/description", json={"description": "d"})
    call("PUT", f"/api/v1/entities/{it}/metadata", json={"metadata": {"m": 1}})
    call("PUT", f"/api/v1/entities/{it}/name", json={"name": "renamed"})
    call("POST", f"/api/v1/entities/{it}/archive")
    call("POST", f"/api/v1/entities/{it}/unarchive")
    call("POST", f"/api/v1/entities/{ids['artifact_id']}/delete")
    call("POST", f"/api/v1/entities/{ids['artifact_id']}/restore")
    call("POST", f"/api/v1/iterations/{it}/move", json={"experiment": "e"})
    call("PUT", f"/api/v1/experiments/{exp}/status", json={"status": "ACTIVE"})
    # media and checkpoints (issue 14): bytes first, then the event naming them
    up = call("POST", f"/api/v1/iterations/{it}/blobs", content=b"\x89PNG\r\n\x1a\n-ish")
    image = MediaLogged(
        iteration_id=it,
        key="samples",
        kind=MediaKind.IMAGE,
        content_hash=up.json()["content_hash"],
        size_bytes=up.json()["size_bytes"],
        media_type="image/png",
    )
    logged = call(
        "POST",
        "/api/v1/events",
        content=msgspec.msgpack.encode([codec.encode(wrap(image))]),
        headers={"Content-Type": "application/msgpack"},
    ).json()["last_offset"]
    listed = call("GET", f"/api/v1/iterations/{it}/media", params={"min_offset": logged})
    assert [m["key"] for m in listed.json()["items"]] == ["samples"]
    shown = call("GET", f"/api/v1/iterations/{it}/content", params={"hash": image.content_hash})
    assert shown.content == b"\x89PNG\r\n\x1a\n-ish"
    call("GET", f"/api/v1/iterations/{it}/histograms")
    call("GET", f"/api/v1/iterations/{it}/checkpoints", params={"order_by": "loss"})
    call("POST", f"/api/v1/iterations/{it}/checkpoints/retain", json={"keep": 1})
    call("GET", f"/api/v1/models/{model_id}/iterations")

    # the MLflow tracking, registry and mlflow-artifacts routes (tests/mlflow: in depth)
    exercise_tracking(call)
    exercise_registry_and_artifacts(call, exp, it)

    call.http.close()
    doc = httpx.get(f"{url}/openapi.json").json()
    documented = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    exercised = set()
    for method, path in call.calls:
        for dm, dp in documented:
            pattern = "^" + re.sub(r"\{(\w+)\}", _segment, dp) + "$"
            if dm == method and re.match(pattern, path):
                exercised.add((dm, dp))
    assert documented - exercised == set()


def test_unknown_route_and_method_keep_the_error_shape(served: tuple[str, dict[str, str]]) -> None:
    r = httpx.get(f"{served[0]}/api/v1/nope")
    assert r.status_code == 404 and r.json()["error"]["code"] == "NOT_FOUND"
    r = httpx.delete(f"{served[0]}/api/v1/projects")
    assert r.status_code == 405 and r.json()["error"]["code"] == "INVALID_ARGUMENT"
