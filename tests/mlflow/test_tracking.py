"""The MLflow tracking API with the real ``mlflow`` client against ``deardiary serve``.

The cases MLflow's own REST-store and tracking-server tests cover (experiments and their
lifecycle, runs and theirs, params, metrics, tags, batches and their limits, metric
history and paging, errors with MLflow's codes and statuses), written against our
server: the client cannot tell it is not talking to MLflow's. What it logs is ordinary
DearDiary data, and what our SDK logged it reads.
"""

from __future__ import annotations

import math
import time
from typing import Any

import httpx
import mlflow
import pytest
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag, ViewType
from mlflow.exceptions import MlflowException

import deardiary as dd

API = "/api/2.0/mlflow"


def _error(excinfo: pytest.ExceptionInfo[MlflowException]) -> tuple[str, int]:
    error: Any = excinfo.value  # get_http_status_code is untyped
    return str(error.error_code), int(error.get_http_status_code())


def test_fluent_runs_params_metrics_tags_and_nesting(mlflow_server: str) -> None:
    mlflow.set_experiment("fluent")
    with mlflow.start_run(run_name="parent") as parent:
        mlflow.log_param("lr", 0.01)
        mlflow.log_params({"layers": 3, "optimizer": "adam"})
        mlflow.log_metric("loss", 1.5)
        mlflow.log_metrics({"loss": 0.7, "acc": 0.8}, step=1)
        mlflow.set_tag("team", "vision")
        mlflow.set_tags({"stage": "dev", "mlflow.note.content": "a note"})
        with mlflow.start_run(run_name="child", nested=True) as child:
            mlflow.log_metric("loss", 0.5)
    client = MlflowClient()
    got = client.get_run(parent.info.run_id)
    assert got.info.status == "FINISHED" and got.info.run_name == "parent"
    assert got.info.end_time is not None and got.info.end_time >= got.info.start_time
    assert got.data.params == {"lr": "0.01", "layers": "3", "optimizer": "adam"}
    assert got.data.metrics == {"loss": 0.7, "acc": 0.8}
    assert got.data.tags["team"] == "vision" and got.data.tags["stage"] == "dev"
    assert got.data.tags["mlflow.runName"] == "parent"
    assert got.data.tags["mlflow.note.content"] == "a note"
    history = client.get_metric_history(parent.info.run_id, "loss")
    assert [(m.step, m.value) for m in history] == [(0, 1.5), (1, 0.7)]
    kid = client.get_run(child.info.run_id)
    assert kid.data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert kid.info.experiment_id == parent.info.experiment_id
    found = client.search_runs(
        [parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'"
    )
    assert [r.info.run_id for r in found] == [child.info.run_id]


def test_a_run_that_raises_is_failed(mlflow_server: str) -> None:
    mlflow.set_experiment("fluent")
    with pytest.raises(ZeroDivisionError), mlflow.start_run() as run:
        mlflow.log_metric("x", 1.0)
        1 / 0  # noqa: B018
    got = MlflowClient().get_run(run.info.run_id)
    assert got.info.status == "FAILED" and got.info.run_name  # a name was made up for it


def test_default_experiment_zero_exists_and_takes_runs(mlflow_server: str) -> None:
    client = MlflowClient()
    assert client.get_experiment("0").name == "Default"
    run = client.create_run("0")
    assert run.info.experiment_id == "0"
    default = client.get_experiment_by_name("Default")
    assert default is not None and default.experiment_id == "0"
    assert client.get_run(run.info.run_id).info.experiment_id == "0"
    with pytest.raises(MlflowException) as excinfo:
        client.delete_experiment("0")
    assert _error(excinfo) == ("INVALID_PARAMETER_VALUE", 400)


def test_experiment_lifecycle_tags_and_errors(mlflow_server: str) -> None:
    client = MlflowClient()
    exp_id = client.create_experiment("life", tags={"owner": "ann", "mlflow.note.content": "d"})
    exp = client.get_experiment(exp_id)
    assert (exp.name, exp.lifecycle_stage) == ("life", "active")
    assert exp.tags == {"owner": "ann", "mlflow.note.content": "d"}
    assert exp.artifact_location == f"mlflow-artifacts:/{exp_id}"
    with pytest.raises(MlflowException) as excinfo:
        client.create_experiment("life")
    assert _error(excinfo) == ("RESOURCE_ALREADY_EXISTS", 400)

    client.set_experiment_tag(exp_id, "owner", "bob")
    client.delete_experiment_tag(exp_id, "mlflow.note.content")
    client.rename_experiment(exp_id, "life-2")
    renamed = client.get_experiment_by_name("life-2")
    assert (
        renamed is not None and renamed.experiment_id == exp_id and renamed.tags == {"owner": "bob"}
    )
    assert client.get_experiment_by_name("life") is None
    with pytest.raises(MlflowException) as excinfo:
        client.delete_experiment_tag(exp_id, "no-such-tag")
    assert _error(excinfo) == ("RESOURCE_DOES_NOT_EXIST", 404)

    client.delete_experiment(exp_id)
    assert client.get_experiment(exp_id).lifecycle_stage == "deleted"
    active = {e.experiment_id for e in client.search_experiments()}
    deleted = {e.experiment_id for e in client.search_experiments(ViewType.DELETED_ONLY)}
    assert exp_id not in active and exp_id in deleted
    with pytest.raises(MlflowException) as excinfo:
        client.create_run(exp_id)
    assert _error(excinfo) == ("INVALID_PARAMETER_VALUE", 400)
    client.restore_experiment(exp_id)
    assert client.get_experiment(exp_id).lifecycle_stage == "active"

    for call in (
        lambda: client.get_experiment("f" * 32),
        lambda: client.get_run("f" * 32),
        lambda: client.rename_experiment("f" * 32, "x"),
    ):
        with pytest.raises(MlflowException) as excinfo:
            call()
        assert _error(excinfo) == ("RESOURCE_DOES_NOT_EXIST", 404)


def test_search_experiments_filter_order_and_pages(mlflow_server: str) -> None:
    client = MlflowClient()
    made = [client.create_experiment(f"page-{i}", tags={"kind": "page"}) for i in range(5)]
    pages, token = [], None
    while True:
        page = client.search_experiments(
            filter_string="tags.kind = 'page' AND name LIKE 'page-%'",
            order_by=["name DESC"],
            max_results=2,
            page_token=token,
        )
        pages.append([e.name for e in page])
        token = page.token
        if not token:
            break
    assert pages == [["page-4", "page-3"], ["page-2", "page-1"], ["page-0"]]
    newest = client.search_experiments(
        filter_string="name ILIKE 'PAGE-%'", order_by=["creation_time DESC"], max_results=1
    )
    assert [e.experiment_id for e in newest] == [made[-1]]
    with pytest.raises(MlflowException) as excinfo:
        client.search_experiments(filter_string="nonsense ~ 3")
    assert _error(excinfo) == ("INVALID_PARAMETER_VALUE", 400)


def test_run_lifecycle_times_names_and_restarts(mlflow_server: str) -> None:
    client = MlflowClient()
    exp_id = client.create_experiment("runs-life")
    run = client.create_run(exp_id, start_time=1_600_000_000_000, run_name="r", tags={"k": "v"})
    assert run.info.start_time == 1_600_000_000_000 and run.info.status == "RUNNING"
    assert run.info.artifact_uri == f"mlflow-artifacts:/{exp_id}/{run.info.run_id}/artifacts"
    run_id = run.info.run_id
    client.update_run(run_id, name="renamed")
    client.set_terminated(run_id, "KILLED", end_time=1_600_000_100_000)
    got = client.get_run(run_id)
    assert (got.info.run_name, got.info.status) == ("renamed", "KILLED")
    assert (got.info.start_time, got.info.end_time) == (1_600_000_000_000, 1_600_000_100_000)
    assert got.data.tags["mlflow.runName"] == "renamed"

    mlflow.set_experiment(experiment_id=exp_id)
    with mlflow.start_run(run_id=run_id):  # resuming a finished run makes it RUNNING again
        assert client.get_run(run_id).info.status == "RUNNING"
        mlflow.log_metric("resumed", 1.0)
    assert client.get_run(run_id).info.status == "FINISHED"

    client.set_tag(run_id, "gone", "soon")
    client.delete_tag(run_id, "gone")
    assert "gone" not in client.get_run(run_id).data.tags
    with pytest.raises(MlflowException) as excinfo:
        client.delete_tag(run_id, "never-there")
    assert _error(excinfo) == ("RESOURCE_DOES_NOT_EXIST", 404)

    client.delete_run(run_id)
    assert client.get_run(run_id).info.lifecycle_stage == "deleted"
    assert client.search_runs([exp_id]) == []
    deleted = client.search_runs([exp_id], run_view_type=ViewType.DELETED_ONLY)
    assert [r.info.run_id for r in deleted] == [run_id]
    with pytest.raises(MlflowException) as excinfo:
        client.log_metric(run_id, "late", 1.0)
    assert _error(excinfo) == ("INVALID_PARAMETER_VALUE", 400)
    client.restore_run(run_id)
    assert [r.info.run_id for r in client.search_runs([exp_id], run_view_type=ViewType.ALL)] == [
        run_id
    ]


def test_params_are_write_once_and_batches_keep_mlflow_limits(mlflow_server: str) -> None:
    client = MlflowClient()
    run_id = client.create_run(client.create_experiment("limits")).info.run_id
    client.log_param(run_id, "lr", "0.1")
    client.log_param(run_id, "lr", "0.1")  # the same value again is fine
    with pytest.raises(MlflowException) as excinfo:
        client.log_param(run_id, "lr", "0.2")
    assert _error(excinfo) == ("INVALID_PARAMETER_VALUE", 400)
    assert "0.1" in str(excinfo.value) and "0.2" in str(excinfo.value)
    with pytest.raises(MlflowException):  # all or nothing: the batch's metric is not kept
        client.log_batch(run_id, metrics=[Metric("m", 1.0, 0, 0)], params=[Param("lr", "9")])
    assert client.get_metric_history(run_id, "m") == []

    now = int(time.time() * 1000)
    client.log_batch(
        run_id,
        metrics=[Metric("loss", 1.0 / (i + 1), now, i) for i in range(1000)],
        tags=[RunTag(f"t{i}", str(i)) for i in range(100)],
    )
    got = client.get_run(run_id)
    assert got.data.metrics["loss"] == pytest.approx(1 / 1000) and len(got.data.tags) >= 100
    refused: list[dict[str, Any]] = [
        {"metrics": [{"key": "m", "value": 1, "timestamp": now, "step": 0}] * 1001},
        {"params": [{"key": f"q{i}", "value": "1"} for i in range(101)]},
        {"tags": [{"key": f"u{i}", "value": "1"} for i in range(101)]},
        {"params": [{"key": "bad key!", "value": "1"}]},
        {"params": [{"key": "long", "value": "x" * 6001}]},
        {"tags": [{"key": "long", "value": "x" * 8001}]},
        {"metrics": [{"key": "neg", "value": 1, "timestamp": now, "step": -1}]},
    ]
    for body in refused:
        r = httpx.post(f"{mlflow_server}{API}/runs/log-batch", json={"run_id": run_id, **body})
        assert r.status_code == 400, (body.keys(), r.text)
        answer = r.json()
        assert answer["error_code"] == "INVALID_PARAMETER_VALUE", r.text
        assert answer["error"]["code"] == "INVALID_ARGUMENT", r.text
    ok = httpx.post(
        f"{mlflow_server}{API}/runs/log-batch",
        json={"run_id": run_id, "params": [{"key": f"p{i}", "value": "1"} for i in range(100)]},
    )
    assert ok.status_code == 200 and len(client.get_run(run_id).data.params) == 101


def test_metric_history_pages_and_non_finite_values(mlflow_server: str) -> None:
    client = MlflowClient()
    run_id = client.create_run(client.create_experiment("history")).info.run_id
    values = [float(i) for i in range(57)] + [math.nan, math.inf, -math.inf]
    client.log_batch(run_id, metrics=[Metric("v", v, 1000 + i, i) for i, v in enumerate(values)])
    got = client.get_metric_history(run_id, "v")
    assert [m.step for m in got] == list(range(60))
    assert got[0].timestamp == 1000 and got[0].value == 0.0
    assert math.isnan(got[57].value) and got[58].value == math.inf and got[59].value == -math.inf

    seen, token, pages = [], None, 0
    while True:
        params = {"run_id": run_id, "metric_key": "v", "max_results": 25}
        if token:
            params["page_token"] = token
        r = httpx.get(f"{mlflow_server}{API}/metrics/get-history", params=params).json()
        seen += [m["step"] for m in r["metrics"]]
        pages += 1
        token = r.get("next_page_token")
        if not token:
            break
    assert seen == list(range(60)) and pages == 3
    # each point as MLflow's server writes it (no run_id); non-finite values as protobuf's
    # JSON spells them -- on a page of finite values and on a mixed one alike
    last = r["metrics"]
    assert [m["value"] for m in last[-4:]] == [56.0, "NaN", "Infinity", "-Infinity"]
    assert all(m.keys() == {"key", "value", "timestamp", "step"} for m in last)
    first = httpx.get(
        f"{mlflow_server}{API}/metrics/get-history",
        params={"run_id": run_id, "metric_key": "v", "max_results": 2},
    ).json()["metrics"]
    assert first == [
        {"key": "v", "value": 0.0, "timestamp": 1000, "step": 0},
        {"key": "v", "value": 1.0, "timestamp": 1001, "step": 1},
    ]
    unknown = httpx.get(
        f"{mlflow_server}{API}/metrics/get-history", params={"run_id": "f" * 32, "metric_key": "v"}
    )
    assert unknown.status_code == 404 and unknown.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"


def test_history_bulk_interval_samples_steps_of_several_runs(mlflow_server: str) -> None:
    client = MlflowClient()
    exp = client.create_experiment("bulk")
    a, b = (client.create_run(exp).info.run_id for _ in range(2))
    client.log_batch(a, metrics=[Metric("loss", float(s), 0, s) for s in range(100)])
    client.log_batch(b, metrics=[Metric("loss", float(s), 0, s) for s in range(0, 100, 3)])
    r = httpx.get(
        f"{mlflow_server}/ajax-api/2.0/mlflow/metrics/get-history-bulk-interval",
        params=[("run_ids", a), ("run_ids", b), ("metric_key", "loss"), ("max_results", "10")],
    )
    assert r.status_code == 200, r.text
    points = r.json()["metrics"]
    steps = {run: [p["step"] for p in points if p["run_id"] == run] for run in (a, b)}
    assert steps[a][0] == 0 and steps[a][-1] == 99 and 10 <= len(steps[a]) <= 12
    assert steps[b][0] == 0 and steps[b][-1] == 99 and all(s % 3 == 0 for s in steps[b])
    window = httpx.get(
        f"{mlflow_server}{API}/metrics/get-history-bulk-interval",
        params={"run_ids": a, "metric_key": "loss", "start_step": 10, "end_step": 20},
    ).json()["metrics"]
    assert [p["step"] for p in window] == list(range(10, 21))
    half = httpx.get(
        f"{mlflow_server}{API}/metrics/get-history-bulk-interval",
        params={"run_ids": a, "metric_key": "loss", "start_step": 10},
    )
    assert half.status_code == 400 and half.json()["error_code"] == "INVALID_PARAMETER_VALUE"


def test_malformed_requests_get_mlflow_errors(mlflow_server: str) -> None:
    cases = [
        ("POST", "/runs/log-metric", b"{not json", 400, "INVALID_PARAMETER_VALUE"),
        ("POST", "/runs/log-metric", b'{"run_id": "x", "key": "k", "value": "high"}', 400, None),
        ("POST", "/runs/create", b"{}", 400, "INVALID_PARAMETER_VALUE"),
        ("POST", "/experiments/create", b'{"name": ""}', 400, "INVALID_PARAMETER_VALUE"),
        ("GET", "/runs/get?run_id=" + "f" * 32, None, 404, "RESOURCE_DOES_NOT_EXIST"),
        ("GET", "/experiments/get-by-name?experiment_name=nope", None, 404, None),
        ("POST", "/runs/search", b'{"experiment_ids": ["0"], "filter": "metrics.x >"}', 400, None),
        ("POST", "/runs/search", b'{"experiment_ids": ["0"], "max_results": 0}', 400, None),
    ]
    for method, path, body, status, code in cases:
        r = httpx.request(
            method,
            f"{mlflow_server}{API}{path}",
            content=body,
            headers={"Content-Type": "application/json"},
        )
        assert r.status_code == status, (path, r.text)
        answer = r.json()
        assert answer["error_code"] == (code or answer["error_code"]) and answer["message"]
        assert set(answer["error"]) == {"code", "message", "details"}


def test_what_mlflow_logs_is_ours_and_what_the_sdk_logs_is_mlflows(
    mlflow_server: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    mlflow.set_experiment("shared")
    with mlflow.start_run(run_name="from-mlflow") as run:
        mlflow.log_param("lr", "0.5")
        mlflow.log_metric("loss", 0.25, step=3)
    sdk = dd.connect(mlflow_server, spool_dir=tmp_path_factory.mktemp("spool"))
    try:
        rows = sdk.sql(
            "SELECT i.name, p.value AS lr, m.last AS loss FROM iterations i"
            " JOIN params p USING (iteration_id) JOIN last_metrics m USING (iteration_id)"
            f" WHERE i.iteration_id = '{run.info.run_id}' AND p.key = 'lr' AND m.key = 'loss'"
        ).to_pylist()
        assert rows == [{"name": "from-mlflow", "lr": "0.5", "loss": 0.25}]
        with sdk.start_iteration(
            project="mnist", experiment="lr-sweep", name="from-sdk", params={"lr": 0.1}
        ) as it:
            it.log_metric("loss", 0.9, step=0)
            it.log_metric("loss", 0.4, step=1)
            it.log_metric("acc", 0.5, step=1, group="val")
        sdk.flush()
    finally:
        sdk.close()
    client = MlflowClient()
    exp = client.get_experiment_by_name("mnist/lr-sweep")
    assert exp is not None and exp.experiment_id == it.experiment_id
    got = client.get_run(it.id)
    assert got.info.run_name == "from-sdk" and got.info.status == "FINISHED"
    assert got.data.params == {"lr": "0.1"}
    assert got.data.metrics == {"loss": 0.4, "acc@val": 0.5}
    assert [m.value for m in client.get_metric_history(it.id, "acc@val")] == [0.5]
    found = mlflow.search_runs(
        experiment_names=["mnist/lr-sweep"], filter_string="metrics.loss < 1"
    )
    assert list(found["run_id"]) == [it.id]
