"""Every MLflow tracking route of the served OpenAPI document answers a real call, under
each prefix it is mounted at (``/api/...`` for the client, ``/ajax-api/...`` for MLflow's
web UI), with raw HTTP bodies as the client sends them.

`exercise_tracking(call)` makes those calls with any
``call(method, path, expect=200, **httpx_kwargs) -> httpx.Response``; the every-route
test of tests/e2e/test_openapi_routes.py reuses it with its recorder.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from deardiary.services.http import start_in_thread
from deardiary.services.server import embedded_server
from tests.mlflow.test_registry_routes import Call, Recorder

TAG = "mlflow"


def exercise_tracking(call: Call) -> None:
    """Call every tracking route once per prefix: an experiment, a run with everything a
    run can hold, a logged model, reads and searches, then deletes and restores."""

    def ok(method: str, path: str, **kwargs: Any) -> Any:
        r = call(method, path, **kwargs)
        assert r.status_code == 200, (method, path, r.status_code, r.text[:300])
        return r.json()

    for api in ("/api", "/ajax-api"):
        m = f"{api}/2.0/mlflow"
        name = f"tracking-routes{api[1:]}"
        exp = ok("POST", f"{m}/experiments/create", json={"name": name})["experiment_id"]
        assert ok("GET", f"{m}/experiments/get", params={"experiment_id": exp})["experiment"]
        got = ok("GET", f"{m}/experiments/get-by-name", params={"experiment_name": name})
        assert got["experiment"]["experiment_id"] == exp
        ok(
            "POST",
            f"{m}/experiments/set-experiment-tag",
            json={"experiment_id": exp, "key": "k", "value": "v"},
        )
        ok(
            "POST",
            f"{m}/experiments/delete-experiment-tag",
            json={"experiment_id": exp, "key": "k"},
        )
        ok("POST", f"{m}/experiments/update", json={"experiment_id": exp, "new_name": f"{name}-2"})
        found = ok("POST", f"{m}/experiments/search", json={"filter": f"name = '{name}-2'"})
        assert [e["experiment_id"] for e in found["experiments"]] == [exp]
        assert ok("GET", f"{m}/experiments/search", params={"max_results": 5})["experiments"]

        run = ok(
            "POST",
            f"{m}/runs/create",
            json={"experiment_id": exp, "run_name": "r", "start_time": 1000},
        )
        run_id = run["run"]["info"]["run_id"]
        ok(
            "POST",
            f"{m}/runs/log-metric",
            json={"run_id": run_id, "key": "loss", "value": 0.5, "timestamp": 1001, "step": 0},
        )
        ok("POST", f"{m}/runs/log-parameter", json={"run_id": run_id, "key": "lr", "value": "0.1"})
        ok("POST", f"{m}/runs/set-tag", json={"run_id": run_id, "key": "t", "value": "1"})
        ok("POST", f"{m}/runs/delete-tag", json={"run_id": run_id, "key": "t"})
        batch = {
            "run_id": run_id,
            "metrics": [{"key": "loss", "value": 0.25, "timestamp": 1002, "step": 1}],
            "params": [{"key": "bs", "value": "32"}],
            "tags": [{"key": "team", "value": "vision"}],
        }
        ok("POST", f"{m}/runs/log-batch", json=batch)
        model_info = {"artifact_path": "model", "flavors": {"python_function": {}}}
        ok(
            "POST",
            f"{m}/runs/log-model",
            json={"run_id": run_id, "model_json": json.dumps(model_info)},
        )
        dataset = {"name": "d", "digest": "abc", "source_type": "local", "source": "{}"}
        ok(
            "POST",
            f"{m}/runs/log-inputs",
            json={"run_id": run_id, "datasets": [{"dataset": dataset}]},
        )

        created = {"experiment_id": exp, "name": "lm", "source_run_id": run_id}
        model_id = ok("POST", f"{m}/logged-models", json=created)["model"]["info"]["model_id"]
        one = f"{m}/logged-models/{model_id}"
        assert ok("GET", one)["model"]["info"]["model_id"] == model_id
        ok("POST", f"{one}/params", json={"params": [{"key": "depth", "value": "3"}]})
        ok("PATCH", f"{one}/tags", json={"tags": [{"key": "k", "value": "v"}]})
        ok("DELETE", f"{one}/tags/k")
        ok("PATCH", one, json={"model_id": model_id, "status": "LOGGED_MODEL_READY"})
        found = ok("POST", f"{m}/logged-models/search", json={"experiment_ids": [exp]})
        assert [x["info"]["model_id"] for x in found["models"]] == [model_id]
        ok(
            "POST",
            f"{m}/runs/outputs",
            json={"run_id": run_id, "models": [{"model_id": model_id, "step": 1}]},
        )

        ok(
            "POST",
            f"{m}/runs/update",
            json={"run_id": run_id, "status": "FINISHED", "end_time": 2000},
        )
        got = ok("GET", f"{m}/runs/get", params={"run_id": run_id})["run"]
        assert got["info"]["status"] == "FINISHED"
        assert {p["key"] for p in got["data"]["params"]} == {"lr", "bs"}
        history = ok(
            "GET", f"{m}/metrics/get-history", params={"run_id": run_id, "metric_key": "loss"}
        )
        assert [p["value"] for p in history["metrics"]] == [0.5, 0.25]
        sampled = ok(
            "GET",
            f"{m}/metrics/get-history-bulk-interval",
            params={"run_ids": run_id, "metric_key": "loss", "max_results": 10},
        )
        assert len(sampled["metrics"]) == 2
        searched = ok(
            "POST",
            f"{m}/runs/search",
            json={"experiment_ids": [exp], "filter": "params.lr = '0.1'"},
        )
        assert [r["info"]["run_id"] for r in searched["runs"]] == [run_id]

        ok("DELETE", one)
        ok("POST", f"{m}/runs/delete", json={"run_id": run_id})
        ok("POST", f"{m}/runs/restore", json={"run_id": run_id})
        ok("POST", f"{m}/experiments/delete", json={"experiment_id": exp})
        ok("POST", f"{m}/experiments/restore", json={"experiment_id": exp})


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with embedded_server(tmp_path_factory.mktemp("tracking-routes") / "data") as server:
        running = start_in_thread(server.app())
        try:
            yield running.url
        finally:
            running.stop()


def test_every_tracking_route_answers(served: str) -> None:
    call = Recorder(served)
    exercise_tracking(call)
    call.http.close()
    doc = httpx.get(f"{served}/openapi.json").json()
    documented = {
        (m.upper(), p)
        for p, ops in doc["paths"].items()
        for m, op in ops.items()
        if TAG in op.get("tags", ())
    }
    assert len(documented) > 60  # both prefixes
    exercised = {
        (dm, dp)
        for method, path in call.calls
        for dm, dp in documented
        if dm == method and re.match("^" + re.sub(r"\{\w+\}", "[^/]+", dp) + "$", path)
    }
    assert documented - exercised == set()
