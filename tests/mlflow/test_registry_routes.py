"""Every registry and ``mlflow-artifacts`` route of the served OpenAPI document answers a
real call, under each prefix it is mounted at (``/api/...`` for the client,
``/ajax-api/...`` for MLflow's web UI).

`exercise_registry_and_artifacts(call, experiment_id, run_id)` makes those calls with any
``call(method, path, expect=200, **httpx_kwargs) -> httpx.Response`` (the every-route
test of tests/e2e/test_openapi_routes.py reuses it with its recorder).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

import deardiary as dd
from deardiary.services.http import start_in_thread
from deardiary.services.server import embedded_server

Call = Callable[..., httpx.Response]
TAGS = {"mlflow registry", "mlflow artifacts"}


def exercise_registry_and_artifacts(call: Call, experiment_id: str, run_id: str) -> None:
    """Call every registry and artifact route once per prefix, each answered as it should."""

    def ok(method: str, path: str, **kwargs: Any) -> Any:
        r = call(method, path, **kwargs)
        assert r.status_code == 200, (method, path, r.status_code, r.text[:300])
        return r.json() if r.headers.get("Content-Type", "").startswith("application/json") else r

    for api in ("/api", "/ajax-api"):
        mlflow, artifacts = f"{api}/2.0/mlflow", f"{api}/2.0/mlflow-artifacts"
        root = f"{experiment_id}/{run_id}/artifacts"
        ok("PUT", f"{artifacts}/artifacts/{root}{api}/model/MLmodel", content=b"flavors: {}\n")
        assert ok("GET", f"{artifacts}/artifacts/{root}{api}/model/MLmodel").content
        assert ok("GET", f"{artifacts}/artifacts", params={"path": f"{root}{api}"})["files"]
        listed = ok("GET", f"{mlflow}/artifacts/list", params={"run_id": run_id})
        assert listed["root_uri"].endswith(root)
        for step in ("create", "complete", "abort"):  # the client falls back to one PUT
            r = call("POST", f"{artifacts}/mpu/{step}/{root}{api}/big.bin", expect=501, json={})
            assert r.status_code == 501 and "not supported" in r.json()["message"], r.text
        info = ok("GET", f"{api}/3.0/mlflow/server-info")
        assert info["multipart_uploads_enabled"] is False

        m, v, name = f"{mlflow}/registered-models", f"{mlflow}/model-versions", f"routes{api[1:]}"
        ok("POST", f"{m}/create", json={"name": name, "tags": [{"key": "k", "value": "v"}]})
        ok("GET", f"{m}/get", params={"name": name})
        ok("PATCH", f"{m}/update", json={"name": name, "description": "d"})
        ok("POST", f"{m}/set-tag", json={"name": name, "key": "k2", "value": "v2"})
        ok("DELETE", f"{m}/delete-tag", json={"name": name, "key": "k2"})
        source = f"runs:/{run_id}{api}/model"
        created = ok("POST", f"{v}/create", json={"name": name, "source": source, "run_id": run_id})
        version = created["model_version"]["version"]
        pick = {"name": name, "version": version}
        ok("GET", f"{v}/get", params=pick)
        ok("PATCH", f"{v}/update", json={**pick, "description": "d"})
        ok("POST", f"{v}/transition-stage", json={**pick, "stage": "Staging"})
        ok("POST", f"{v}/set-tag", json={**pick, "key": "k", "value": "v"})
        ok("DELETE", f"{v}/delete-tag", json={**pick, "key": "k"})
        assert ok("GET", f"{v}/get-download-uri", params=pick)["artifact_uri"].endswith("model")
        ok("POST", f"{m}/alias", json={**pick, "alias": "champion"})
        assert ok("GET", f"{m}/alias", params={"name": name, "alias": "champion"})
        ok("DELETE", f"{m}/alias", json={"name": name, "alias": "champion"})
        assert ok("POST", f"{m}/get-latest-versions", json={"name": name})["model_versions"]
        ok("GET", f"{m}/get-latest-versions", params={"name": name, "stages": "Staging"})
        assert ok("GET", f"{m}/search", params={"filter": f"name = '{name}'"})
        assert ok("GET", f"{v}/search", params={"filter": f"name = '{name}'"})
        ok("POST", f"{m}/rename", json={"name": name, "new_name": f"{name}-2"})
        ok("DELETE", f"{v}/delete", json={"name": f"{name}-2", "version": version})
        ok("DELETE", f"{m}/delete", json={"name": f"{name}-2"})
        ok("DELETE", f"{artifacts}/artifacts/{root}{api}")


class Recorder:
    def __init__(self, url: str) -> None:
        self.http = httpx.Client(base_url=url, timeout=60)
        self.calls: list[tuple[str, str]] = []

    def __call__(self, method: str, path: str, expect: int = 200, **kwargs: Any) -> httpx.Response:
        self.calls.append((method, path))
        response = self.http.request(method, path, **kwargs)
        assert response.status_code == expect, (method, path, response.text[:300])
        return response


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, str]]:
    root = tmp_path_factory.mktemp("registry-routes")
    with embedded_server(root / "data") as server:
        running = start_in_thread(server.app())
        c = dd.connect(running.url, spool_dir=root / "spool")
        with c.start_iteration(project="p", experiment="e", capture_env=False) as it:
            pass
        c.flush()
        c.close()
        try:
            yield running.url, it.experiment_id, it.id
        finally:
            running.stop()


def test_every_registry_and_artifact_route_answers(served: tuple[str, str, str]) -> None:
    url, experiment_id, run_id = served
    call = Recorder(url)
    exercise_registry_and_artifacts(call, experiment_id, run_id)
    call.http.close()
    doc = httpx.get(f"{url}/openapi.json").json()
    documented = {
        (m.upper(), p)
        for p, ops in doc["paths"].items()
        for m, op in ops.items()
        if TAGS & set(op.get("tags", ()))
    }
    assert len(documented) > 50  # both prefixes of both parts
    exercised = {
        (dm, dp)
        for method, path in call.calls
        for dm, dp in documented
        if dm == method and re.match("^" + re.sub(r"\{\w+\}", ".+", dp) + "$", path)
    }
    assert documented - exercised == set()
