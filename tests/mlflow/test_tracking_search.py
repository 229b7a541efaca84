"""Searching runs with MLflow's grammar, paging, pandas; logged models and autologging;
and MLflow-logged data replayed from the log like any other."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import httpx
import mlflow
import pandas as pd  # type: ignore[import-untyped]
import pytest
from mlflow import MlflowClient
from mlflow.data.pandas_dataset import from_pandas
from mlflow.entities import (
    Dataset,
    DatasetInput,
    InputTag,
    LoggedModelStatus,
    Metric,
    Param,
    RunTag,
)
from mlflow.exceptions import MlflowException

import deardiary as dd
from deardiary.services.mlflow_api.fields import RunResolve

API = "/api/2.0/mlflow"


@pytest.fixture(scope="module")
def sweep(mlflow_server: str) -> tuple[str, list[str]]:
    """An experiment of 12 runs: lr, loss = lr * 10 - step, tags, one KILLED."""
    client = MlflowClient()
    exp = client.create_experiment("sweep")
    run_ids = []
    for i in range(12):
        run = client.create_run(exp, run_name=f"trial-{i:02d}", start_time=1_000_000 + i)
        lr = 0.01 * (i + 1)
        client.log_batch(
            run.info.run_id,
            metrics=[Metric("loss", lr * 10 - s * 0.01, 0, s) for s in range(3)],
            params=[Param("lr", f"{lr:.2f}"), Param("opt", "adam" if i % 2 else "sgd")],
            tags=[RunTag("group", "even" if i % 2 == 0 else "odd")],
        )
        client.set_terminated(run.info.run_id, "KILLED" if i == 5 else "FINISHED")
        run_ids.append(run.info.run_id)
    return exp, run_ids


CASES = [
    ("metrics.loss < 0.5", {0, 1, 2, 3, 4}),
    ("metrics.loss > 1.1", {11}),
    ("params.lr = '0.03'", {2}),
    ("params.opt != 'adam' and metrics.loss > 0.9", {10}),
    ("params.lr LIKE '0.1%'", {9, 10, 11}),
    ("tags.group ILIKE 'EVEN'", {0, 2, 4, 6, 8, 10}),
    ("tags.`group` = 'odd' AND params.lr IN ('0.02', '0.04', '0.05')", {1, 3}),
    ("attributes.status = 'KILLED'", {5}),
    ("attributes.run_name LIKE 'trial-1%'", {10, 11}),
    ("run_name = 'trial-03'", {3}),
    ("tags.mlflow.runName = 'trial-04'", {4}),
    ("attributes.start_time > 1000009", {10, 11}),
    ("params.missing IS NULL AND metrics.loss < 0.1", {0}),
    ('metrics."loss" < 0.1 OR (params.lr = \'0.12\' AND tags.group = "odd")', {0, 11}),
]


@pytest.mark.parametrize(("expression", "expected"), CASES)
def test_search_runs_grammar(
    sweep: tuple[str, list[str]], expression: str, expected: set[int]
) -> None:
    exp, run_ids = sweep
    found = MlflowClient().search_runs([exp], expression, max_results=100)
    assert {run_ids.index(r.info.run_id) for r in found} == expected, expression


def test_search_runs_order_pages_and_run_ids(sweep: tuple[str, list[str]]) -> None:
    exp, run_ids = sweep
    client = MlflowClient()
    order, token = [], None
    while True:
        page = client.search_runs(
            [exp], order_by=["metrics.loss DESC"], max_results=5, page_token=token
        )
        order += [run_ids.index(r.info.run_id) for r in page]
        token = page.token
        if not token:
            break
    assert order == list(range(11, -1, -1))
    default = [run_ids.index(r.info.run_id) for r in client.search_runs([exp])]
    assert default == list(range(11, -1, -1))  # newest start_time first
    by_name = client.search_runs([exp], order_by=["attributes.run_name ASC"], max_results=3)
    assert [r.info.run_name for r in by_name] == ["trial-00", "trial-01", "trial-02"]
    picked = client.search_runs([exp], f"attributes.run_id IN ('{run_ids[1]}', '{run_ids[7]}')")
    assert {r.info.run_id for r in picked} == {run_ids[1], run_ids[7]}
    for bad in ("metrics.loss LIKE 'x'", "params.lr > 1", "foo.bar = 1", "metrics.loss < 'a'"):
        with pytest.raises(MlflowException) as excinfo:
            client.search_runs([exp], bad)
        assert excinfo.value.error_code == "INVALID_PARAMETER_VALUE", bad


def test_search_runs_into_pandas(sweep: tuple[str, list[str]]) -> None:
    exp, run_ids = sweep
    frame = mlflow.search_runs(
        experiment_ids=[exp], filter_string="params.opt = 'sgd'", order_by=["params.lr ASC"]
    )
    assert isinstance(frame, pd.DataFrame)
    assert list(frame["run_id"]) == [run_ids[i] for i in (0, 2, 4, 6, 8, 10)]
    assert list(frame["params.lr"]) == ["0.01", "0.03", "0.05", "0.07", "0.09", "0.11"]
    assert frame["metrics.loss"].iloc[0] == pytest.approx(0.08)
    assert set(frame["tags.group"]) == {"even"} and set(frame["status"]) == {"FINISHED"}


def test_search_answers_runs_as_mlflow_writes_them(
    mlflow_server: str, sweep: tuple[str, list[str]]
) -> None:
    """A run in MLflow's shape (protobuf's JSON, as its server writes it): its metrics
    without a run_id, no empty inputs or outputs lists (each costs the client's parser)."""
    exp, run_ids = sweep
    answer = httpx.post(
        f"{mlflow_server}{API}/runs/search", json={"experiment_ids": [exp], "max_results": 3}
    ).json()
    for run in answer["runs"]:
        assert run["inputs"] == {} and run["outputs"] == {}
        assert [m.keys() for m in run["data"]["metrics"]] == [{"key", "value", "timestamp", "step"}]
    got = httpx.get(f"{mlflow_server}{API}/runs/get", params={"run_id": run_ids[0]}).json()
    assert got["run"]["inputs"] == {} and got["run"]["data"]["metrics"][0]["step"] == 2


def test_searches_show_every_write_since_the_last(mlflow_server: str) -> None:
    """Runs rendered by one search are kept for the next ones only while nothing changed:
    each write below is seen by the very next search, filtered or not, and every run a
    search answers reads as get_run reads it."""
    client = MlflowClient()
    exp = client.create_experiment("search-after-writes")
    a, b = (client.create_run(exp, run_name=n).info.run_id for n in ("a", "b"))
    client.log_batch(a, metrics=[Metric("loss", 0.9, 0, 0)], params=[Param("lr", "0.1")])
    client.log_batch(b, metrics=[Metric("loss", 0.2, 0, 0)], params=[Param("lr", "0.2")])

    def search(text: str = "") -> list[dict[str, object]]:
        answer = httpx.post(
            f"{mlflow_server}{API}/runs/search",
            json={"experiment_ids": [exp], "filter": text, "order_by": ["metrics.loss"]},
        )
        assert answer.status_code == 200, answer.text
        runs: list[dict[str, object]] = answer.json()["runs"]
        for run in runs:
            info: dict[str, str] = run["info"]  # type: ignore[assignment]
            got = httpx.get(f"{mlflow_server}{API}/runs/get", params={"run_id": info["run_id"]})
            assert got.json()["run"] == run
        return runs

    def names(text: str = "") -> list[str]:
        return [r["info"]["run_name"] for r in search(text)]  # type: ignore[index]

    assert names() == names() == ["b", "a"]  # the second one from the kept runs
    client.log_metric(a, "loss", 0.1, step=1)
    assert names() == ["a", "b"] and names("metrics.loss < 0.5") == ["a", "b"]
    client.set_tag(b, "team", "vision")
    assert names("tags.team = 'vision'") == ["b"]
    assert {t["key"] for t in search()[1]["data"]["tags"]} >= {"team"}  # type: ignore[index]
    client.set_terminated(a, "FAILED")
    assert search("attributes.status = 'FAILED'")[0]["info"]["status"] == "FAILED"  # type: ignore[index]
    client.delete_run(b)
    assert names() == ["a"]
    client.restore_run(b)
    client.update_run(b, name="b2")
    assert names() == ["a", "b2"]


def _searched(url: str, exp: str, text: str = "") -> dict[str, Any]:
    """search_runs' answer (every run, deleted too), by run id in its order; each run as
    get_run reads it (a fresh read: search's kept runs are never older)."""
    answer = httpx.post(
        f"{url}{API}/runs/search",
        json={
            "experiment_ids": [exp],
            "filter": text,
            "order_by": ["metrics.loss"],
            "run_view_type": "ALL",
        },
    )
    assert answer.status_code == 200, answer.text
    runs = {r["info"]["run_id"]: r for r in answer.json()["runs"]}
    for run_id, run in runs.items():
        got = httpx.get(f"{url}{API}/runs/get", params={"run_id": run_id})
        assert got.json()["run"] == run
    return runs


def test_a_write_elsewhere_keeps_the_page_and_a_write_to_a_run_of_it_shows(
    mlflow_server: str,
) -> None:
    """Runs a search rendered are kept across writes to other runs -- another experiment's,
    then the page's other run -- and a run is dropped once any of its own rows change: each
    kind of write to a kept run is seen by the very next search (and equals get_run)."""
    client = MlflowClient()
    exp = client.create_experiment("kept-runs")
    elsewhere = client.create_experiment("kept-runs-elsewhere")
    a, b = (client.create_run(exp, run_name=n).info.run_id for n in ("a", "b"))
    c = client.create_run(elsewhere, run_name="c").info.run_id
    client.log_batch(a, metrics=[Metric("loss", 0.9, 0, 0)], params=[Param("lr", "0.1")])
    client.log_batch(b, metrics=[Metric("loss", 0.2, 0, 0)], params=[Param("lr", "0.2")])
    train = Dataset("train", "d-1", "local", "file:///train.csv")
    writes: dict[str, Callable[[], object]] = {
        "param": lambda: client.log_param(a, "extra", "1"),
        "new metric": lambda: client.log_metric(a, "acc", 0.5, step=3),
        "later point": lambda: client.log_metric(a, "loss", 0.05, step=1),  # reorders
        "tag": lambda: client.set_tag(a, "team", "nlp"),
        "dataset": lambda: client.log_inputs(
            a, datasets=[DatasetInput(train, [InputTag("mlflow.data.context", "training")])]
        ),
        "status": lambda: client.set_terminated(a, "FAILED"),
        "name": lambda: client.update_run(a, name="a2"),
        "delete": lambda: client.delete_run(a),
        "restore": lambda: client.restore_run(a),
    }
    for round_, (what, write) in enumerate(writes.items()):
        before = _searched(mlflow_server, exp)
        client.log_metric(c, "loss", 1.0 / (round_ + 1), step=round_)  # another experiment
        client.set_tag(c, "round", str(round_))
        assert _searched(mlflow_server, exp) == before, what
        client.set_tag(b, "round", str(round_))  # the page's other run
        seen = _searched(mlflow_server, exp)
        assert seen[a] == before[a] and seen[b] != before[b], what
        write()
        after = _searched(mlflow_server, exp)
        assert after[a] != seen[a] and after[b] == seen[b], what
        assert set(_searched(mlflow_server, exp, "params.lr = '0.1'")) == {a}, what
    assert _searched(mlflow_server, elsewhere)[c]["data"]["tags"] != []


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning")
def test_logged_models_and_inputs(mlflow_server: str) -> None:
    client = MlflowClient()
    exp = client.create_experiment("models")
    run = client.create_run(exp)
    model = client.create_logged_model(
        exp, name="clf", source_run_id=run.info.run_id, params={"depth": "3"}, tags={"a": "1"}
    )
    assert model.model_id.startswith("m-") and model.status == LoggedModelStatus.PENDING
    assert model.artifact_location == f"mlflow-artifacts:/{exp}/models/{model.model_id}/artifacts"
    client.set_logged_model_tags(model.model_id, {"b": "2"})
    client.log_model_params(model.model_id, {"width": "8"})
    client.log_metric(run.info.run_id, "auc", 0.9, step=0, model_id=model.model_id)
    done = client.finalize_logged_model(model.model_id, LoggedModelStatus.READY)
    assert done.status == LoggedModelStatus.READY
    got = client.get_logged_model(model.model_id)
    assert got.params == {"depth": "3", "width": "8"} and got.tags == {"a": "1", "b": "2"}
    assert [(m.key, m.value) for m in got.metrics or []] == [("auc", 0.9)]
    assert client.get_run(run.info.run_id).data.metrics == {"auc": 0.9}  # the run's too
    found = client.search_logged_models([exp], filter_string="name = 'clf'")
    assert [m.model_id for m in found] == [model.model_id]
    assert client.search_runs([exp]) and len(client.search_runs([exp])) == 1  # models aren't runs
    client.delete_logged_model_tag(model.model_id, "a")
    client.delete_logged_model(model.model_id)
    with pytest.raises(MlflowException) as excinfo:
        client.get_logged_model(model.model_id)
    assert excinfo.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    kept = httpx.get(
        f"{mlflow_server}{API}/logged-models/{model.model_id}", params={"allow_deleted": "true"}
    )
    assert kept.status_code == 200 and kept.json()["model"]["info"]["tags"] == [
        {"key": "b", "value": "2"}
    ]

    dataset = from_pandas(pd.DataFrame({"x": [1, 2]}), name="toy")
    with mlflow.start_run(experiment_id=exp) as r:
        mlflow.log_input(dataset, context="training")
    logged = client.get_run(r.info.run_id).inputs
    assert logged is not None
    inputs = logged.dataset_inputs
    assert [(d.dataset.name, d.dataset.digest) for d in inputs] == [("toy", dataset.digest)]
    assert [t.value for t in inputs[0].tags] == ["training"]
    raw = httpx.get(f"{mlflow_server}{API}/runs/get", params={"run_id": r.info.run_id}).json()
    assert raw["run"]["inputs"].keys() == {"dataset_inputs"}  # no empty model_inputs
    hit = client.search_runs([exp], "datasets.name = 'toy' AND datasets.context = 'training'")
    assert [x.info.run_id for x in hit] == [r.info.run_id]


@pytest.mark.filterwarnings("ignore")  # the client's own (pickle format, type hints, ...)
def test_sklearn_autolog(mlflow_server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import numpy as np
    from sklearn.linear_model import LinearRegression

    # the client infers the model's pip requirements in a subprocess (~10 s, nothing to do
    # with the server): give up at once and take its defaults
    monkeypatch.setenv("MLFLOW_REQUIREMENTS_INFERENCE_TIMEOUT", "1")
    mlflow.set_experiment("autolog")
    mlflow.sklearn.autolog()
    try:
        with mlflow.start_run() as run:
            x = np.arange(8, dtype=float).reshape(-1, 1)
            LinearRegression().fit(x, 2 * x[:, 0])
    finally:
        mlflow.sklearn.autolog(disable=True)
    client = MlflowClient()
    got = client.get_run(run.info.run_id)
    assert got.data.params["fit_intercept"] == "True"
    assert got.data.metrics["training_r2_score"] == pytest.approx(1.0)
    assert got.data.tags["estimator_name"] == "LinearRegression"
    models = client.search_logged_models([run.info.experiment_id])
    assert len(models) == 1 and models[0].source_run_id == run.info.run_id
    assert models[0].status == LoggedModelStatus.READY
    assert got.outputs is not None
    assert [o.model_id for o in got.outputs.model_outputs] == [models[0].model_id]


def test_mlflow_data_replays_like_any(
    mlflow_server: str, mlflow_data: Path, tmp_path: Path
) -> None:
    """Everything the module logged through MLflow is in the log: a replay from offset 0
    folds the same params and metrics the server shows."""
    mlflow.set_experiment("replayed")
    with mlflow.start_run() as run:
        mlflow.log_params({"a": "1", "b": "2"})
        mlflow.log_metrics({"m": 3.0})
    queries = [
        'SELECT count(*) AS series, sum(count)::BIGINT AS points, max("last") AS top'
        " FROM last_metrics",
        f"SELECT key, value FROM params WHERE iteration_id = '{run.info.run_id}' ORDER BY key",
        "SELECT count(*) AS runs FROM iterations WHERE status = 'SUCCEEDED'",
    ]
    sdk = dd.connect(mlflow_server, spool_dir=tmp_path / "spool")
    try:
        served = [sdk.sql(q).to_pylist() for q in queries]
    finally:
        sdk.close()
    rebuilt = tmp_path / "rebuilt"
    cli = [sys.executable, "-m", "deardiary.services.cli"]
    subprocess.run([*cli, "replay", "--data", str(mlflow_data), "--into", str(rebuilt)], check=True)
    for query, expected in zip(queries, served, strict=True):
        out = subprocess.run(
            [*cli, "sql", "--data", str(rebuilt), "--format", "json", query],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        assert [json.loads(line) for line in out.splitlines()] == expected, query
    assert served[1] == [{"key": "a", "value": "1"}, {"key": "b", "value": "2"}]


def test_a_nan_metric_matches_no_numeric_comparison_but_not_equal(mlflow_server: str) -> None:
    """As in Python (and MLflow's server): NaN is neither <, <=, =, >=, > a number, but it is
    != every number; infinities compare as numbers."""
    client = MlflowClient()
    exp = client.create_experiment("nan-search")
    runs = {}
    for name, value in (("nan", math.nan), ("inf", math.inf), ("-inf", -math.inf), ("one", 1.0)):
        run_id = client.create_run(exp, run_name=name).info.run_id
        client.log_metric(run_id, "x", value, step=0)
        runs[run_id] = name

    def found(text: str) -> set[str]:
        return {runs[r.info.run_id] for r in client.search_runs([exp], filter_string=text)}

    assert found("metrics.x > 0.5") == {"inf", "one"}
    assert found("metrics.x >= 1") == {"inf", "one"}
    assert found("metrics.x < 2") == {"-inf", "one"}
    assert found("metrics.x <= 1.0") == {"-inf", "one"}
    assert found("metrics.x = 1") == {"one"}
    assert found("metrics.x != 1") == {"nan", "inf", "-inf"}
    assert found("metrics.x > 0.5 OR metrics.x < 0.5") == {"inf", "-inf", "one"}
    assert found("attributes.start_time > 0") == {"nan", "inf", "-inf", "one"}


def test_tags_of_any_key_are_found_by_path_or_by_scan(mlflow_server: str) -> None:
    """A tag key a JSON path can name is read by path, one with a quote or backslash (our
    own API allows them; MLflow's does not) by scanning the tags: the same value either way."""
    client = MlflowClient()
    exp = client.create_experiment("tag-keys")
    keys = ["c.d", "x y", "a/b:c-d"]
    matching = client.create_run(exp, tags={k: f"v-{k}" for k in keys}).info.run_id
    client.create_run(exp, tags={k: "other" for k in keys})
    for key in keys:
        answer = httpx.post(
            f"{mlflow_server}{API}/runs/search",
            json={"experiment_ids": [exp], "filter": f"tags.`{key}` = 'v-{key}'"},
        )
        assert answer.status_code == 200, answer.text
        assert [r["info"]["run_id"] for r in answer.json()["runs"]] == [matching], key
    every = [*keys, 'q"uote', "back\\slash", "a[0]", "$x", "new\nline"]
    conn = duckdb.connect()
    conn.execute("CREATE TABLE i AS SELECT ?::VARCHAR AS tags", [json.dumps({k: k for k in every})])
    for key in [*every, "missing"]:
        tag = RunResolve("")("tags", key)
        got = conn.execute(f"SELECT {tag.sql} FROM i", list(tag.params)).fetchall()
        assert got == [(None if key == "missing" else key,)], key


def test_sdk_params_of_sections_are_keys_of_their_own(mlflow_server: str, tmp_path: Path) -> None:
    """The SDK keeps the same param key in two config sections as two params; MLflow has
    one flat namespace, so a section's param is ``key@section`` (as a group's series is
    ``key@group``): both are shown, searched and ordered by, and nothing collides."""
    sdk = dd.connect(mlflow_server, spool_dir=tmp_path / "spool")
    try:
        for lr, train_lr in ((0.1, 0.3), (0.2, 0.4)):
            with sdk.start_iteration(project="p", experiment="sections", capture_env=False) as it:
                it.log_params({"lr": lr})
                it.log_params({"lr": train_lr, "epochs": 3}, section="train")
        sdk.flush()
    finally:
        sdk.close()
    client = MlflowClient()
    exp = client.get_experiment_by_name("p/sections")
    assert exp is not None

    def found(text: str, order: list[str] | None = None) -> list[dict[str, str]]:
        runs = client.search_runs([exp.experiment_id], filter_string=text, order_by=order)
        return [r.data.params for r in runs]

    both = [
        {"lr": "0.1", "lr@train": "0.3", "epochs@train": "3"},
        {"lr": "0.2", "lr@train": "0.4", "epochs@train": "3"},
    ]
    assert found("params.lr = '0.1'") == both[:1]
    assert found("params.`lr@train` = '0.4'") == both[1:]
    assert found("params.`epochs@train` = '3'", ["params.`lr@train` DESC"]) == both[::-1]
    assert found("params.epochs = '3'") == []  # the key of the default section only
    run_id = client.search_runs([exp.experiment_id], filter_string="params.lr = '0.2'")[0]
    assert client.get_run(run_id.info.run_id).data.params == both[1]
