"""The model registry with the real MLflow client against ``deardiary serve``.

A tiny scikit-learn model is logged, registered from its run, given an alias and
loaded back by ``models:/<name>@<alias>`` and ``models:/<name>/<version>`` to predict;
the registry's CRUD, stages and transitions, aliases, search with MLflow's grammar and
paging, and its errors answer as MLflow's own server does. Everything is ordinary
DearDiary data afterwards (the SDK's SQL sees the versions).
"""

from __future__ import annotations

import importlib
from pathlib import Path

import httpx
import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

import deardiary as dd
from deardiary.services.embedded import DataPaths
from deardiary.services.log import open_log
from deardiary.services.replay import replay

API = "/api/2.0/mlflow"
# scikit-learn has no type information: imported as a plain module
LogisticRegression = importlib.import_module("sklearn.linear_model").LogisticRegression
# MLflow's own noise while logging a model: type-hint inference of a plain sklearn model
pytestmark = pytest.mark.filterwarnings("ignore:.*Any type hint is inferred:UserWarning")
X = np.array([[0.0], [1.0], [2.0], [3.0]])
Y = np.array([0, 0, 1, 1])


@pytest.fixture(scope="module")
def url(mlflow_server: str) -> str:
    """The module's `deardiary serve` (tests/mlflow/conftest.py), the client pointed at it."""
    return mlflow_server


@pytest.fixture(scope="module")
def data(mlflow_data: Path) -> Path:
    return mlflow_data


@pytest.fixture(scope="module")
def client(url: str) -> MlflowClient:
    return MlflowClient(url)


def _code(excinfo: pytest.ExceptionInfo[MlflowException]) -> str:
    return str(excinfo.value.error_code)


def _run_with_file(name: str = "model/MLmodel") -> str:
    """A run with one artifact (enough for a ``runs:/`` source)."""
    with mlflow.start_run() as run:
        mlflow.log_text("artifact_path: model\n", name)
    return str(run.info.run_id)


def test_register_alias_and_load_a_sklearn_model(
    url: str, client: MlflowClient, tmp_path: Path
) -> None:
    with mlflow.start_run() as run:
        info = mlflow.sklearn.log_model(
            LogisticRegression().fit(X, Y),
            name="model",
            serialization_format="cloudpickle",
            pip_requirements=["scikit-learn"],
        )
    version = mlflow.register_model(f"runs:/{run.info.run_id}/model", "iris-clf")
    assert version.version == "1" and version.status == "READY"
    assert version.run_id == run.info.run_id
    client.set_registered_model_alias("iris-clf", "champion", version.version)

    by_alias = mlflow.pyfunc.load_model("models:/iris-clf@champion")
    assert list(by_alias.predict(X)) == [0, 0, 1, 1]
    by_number = mlflow.pyfunc.load_model("models:/iris-clf/1")
    assert list(by_number.predict(X)) == [0, 0, 1, 1]

    got = client.get_model_version("iris-clf", "1")
    assert got.aliases == ["champion"] and got.source == f"models:/{info.model_id}"
    raw = httpx.get(f"{url}{API}/model-versions/get", params={"name": "iris-clf", "version": 1})
    assert raw.json()["model_version"]["model_id"] == info.model_id  # the client drops it
    where = client.get_model_version_download_uri("iris-clf", "1")
    assert where == info.artifact_path or where.endswith(f"/models/{info.model_id}/artifacts")
    assert client.get_model_version_by_alias("iris-clf", "champion").version == "1"
    model = client.get_registered_model("iris-clf")
    assert model.aliases == {"champion": "1"}
    assert [v.version for v in model.latest_versions] == ["1"]

    # a second version straight from a logged model, and the version is ordinary data
    second = mlflow.register_model(info.model_uri, "iris-clf")
    assert second.version == "2" and second.run_id == run.info.run_id
    c = dd.connect(url, spool_dir=tmp_path / "spool")
    try:
        rows = c.sql(
            "SELECT v.version, v.iteration_id FROM model_versions v JOIN models m"
            " USING (model_id) WHERE m.name = 'iris-clf' ORDER BY v.version"
        )
    finally:
        c.close()
    assert rows["version"].to_pylist() == [1, 2]
    assert rows["iteration_id"].to_pylist() == [run.info.run_id] * 2


def test_models_create_update_rename_tag_delete(client: MlflowClient) -> None:
    created = client.create_registered_model("crud", tags={"team": "vision"}, description="d1")
    assert created.name == "crud" and created.tags == {"team": "vision"}
    assert created.description == "d1"
    with pytest.raises(MlflowException) as dup:
        client.create_registered_model("crud")
    assert _code(dup) == "RESOURCE_ALREADY_EXISTS"

    client.update_registered_model("crud", description="d2")
    client.set_registered_model_tag("crud", "stage", "beta")
    client.delete_registered_model_tag("crud", "team")
    client.delete_registered_model_tag("crud", "never-set")  # no error, as in MLflow
    got = client.get_registered_model("crud")
    assert got.description == "d2" and got.tags == {"stage": "beta"}

    run_id = _run_with_file()
    client.create_model_version("crud", f"runs:/{run_id}/model", run_id)
    client.rename_registered_model("crud", "crud-renamed")
    renamed = client.get_registered_model("crud-renamed")
    assert renamed.tags == {"stage": "beta"} and renamed.description == "d2"
    assert renamed.creation_timestamp == created.creation_timestamp
    assert renamed.last_updated_timestamp >= created.last_updated_timestamp
    with pytest.raises(MlflowException) as gone:
        client.get_registered_model("crud")
    assert _code(gone) == "RESOURCE_DOES_NOT_EXIST"
    assert client.get_model_version("crud-renamed", "1").run_id == run_id

    client.create_registered_model("other")
    with pytest.raises(MlflowException) as taken:
        client.rename_registered_model("other", "crud-renamed")
    assert _code(taken) == "RESOURCE_ALREADY_EXISTS"

    client.delete_registered_model("crud-renamed")
    with pytest.raises(MlflowException) as deleted:
        client.get_model_version("crud-renamed", "1")
    assert _code(deleted) == "RESOURCE_DOES_NOT_EXIST"
    with pytest.raises(MlflowException) as rename_deleted:
        client.rename_registered_model("crud-renamed", "something-else")
    assert _code(rename_deleted) == "RESOURCE_DOES_NOT_EXIST"
    # the old names are free again, for a fresh model (its versions start at 1)
    again = client.create_registered_model("crud-renamed")
    assert again.latest_versions == []
    fresh = client.create_model_version("crud-renamed", f"runs:/{run_id}/model", run_id)
    assert fresh.version == "1"
    assert client.create_registered_model("crud").name == "crud"


@pytest.mark.filterwarnings("ignore:.*deprecated since 2.9.0:FutureWarning")  # stages: MLflow's
def test_stages_transitions_and_latest_versions(client: MlflowClient) -> None:
    run_id = _run_with_file()
    client.create_registered_model("staged")
    for _ in range(4):
        client.create_model_version("staged", f"runs:/{run_id}/model", run_id)
    moved = client.transition_model_version_stage("staged", "1", "production")
    assert moved.current_stage == "Production"  # any case in, MLflow's spelling out
    client.transition_model_version_stage("staged", "2", "Staging")
    client.transition_model_version_stage("staged", "3", "Staging")
    latest = client.get_latest_versions("staged")
    assert {(v.current_stage, v.version) for v in latest} == {
        ("None", "4"),
        ("Staging", "3"),
        ("Production", "1"),
    }
    assert [v.version for v in client.get_latest_versions("staged", ["Staging"])] == ["3"]

    client.transition_model_version_stage("staged", "4", "Production", True)
    stages = {v.version: v.current_stage for v in client.search_model_versions("name='staged'")}
    assert stages == {"1": "Archived", "2": "Staging", "3": "Staging", "4": "Production"}
    client.transition_model_version_stage("staged", "2", "Staging", archive_existing_versions=True)
    assert client.get_model_version("staged", "3").current_stage == "Archived"

    with pytest.raises(MlflowException) as bad_stage:
        client.transition_model_version_stage("staged", "1", "Prod")
    assert _code(bad_stage) == "INVALID_PARAMETER_VALUE"
    with pytest.raises(MlflowException) as not_active:
        client.transition_model_version_stage("staged", "1", "Archived", True)
    assert _code(not_active) == "INVALID_PARAMETER_VALUE"
    # models:/<name>/<stage> resolves through get-latest-versions
    got = Path(mlflow.artifacts.download_artifacts("models:/staged/Production"))
    assert (got / "MLmodel").read_text() == "artifact_path: model\n"


def test_versions_aliases_tags_and_deletion(client: MlflowClient) -> None:
    run_id = _run_with_file()
    client.create_registered_model("aliased")
    for _ in range(3):
        client.create_model_version("aliased", f"runs:/{run_id}/model", run_id, tags={"k": "v"})
    client.set_registered_model_alias("aliased", "prod", "1")
    client.set_registered_model_alias("aliased", "prod", "2")  # an alias moves
    client.set_registered_model_alias("aliased", "canary", "2")
    assert client.get_model_version("aliased", "1").aliases == []
    assert client.get_model_version("aliased", "2").aliases == ["canary", "prod"]
    for reserved in ("latest", "v3", "bad alias!"):
        with pytest.raises(MlflowException) as refused:
            client.set_registered_model_alias("aliased", reserved, "1")
        assert _code(refused) == "INVALID_PARAMETER_VALUE", reserved

    client.set_model_version_tag("aliased", "3", "quality", "good")
    client.delete_model_version_tag("aliased", "3", "k")
    client.update_model_version("aliased", "3", description="third")
    third = client.get_model_version("aliased", "3")
    assert third.tags == {"quality": "good"} and third.description == "third"

    client.delete_model_version("aliased", "2")  # its aliases go with it
    with pytest.raises(MlflowException) as no_alias:
        client.get_model_version_by_alias("aliased", "prod")
    assert _code(no_alias) == "RESOURCE_DOES_NOT_EXIST"
    client.delete_registered_model_alias("aliased", "never-set")
    assert client.get_registered_model("aliased").aliases == {}
    assert client.create_model_version("aliased", f"runs:/{run_id}/model", run_id).version == "4"
    assert [v.version for v in client.search_model_versions("name = 'aliased'")] == [
        "4",
        "3",
        "1",
    ]


def test_search_filters_order_and_pages(client: MlflowClient) -> None:
    for i in range(7):
        client.create_registered_model(f"search-{i}", tags={"parity": "even" if i % 2 else "odd"})
    found = client.search_registered_models("name LIKE 'search-%'", order_by=["name DESC"])
    assert [m.name for m in found] == [f"search-{i}" for i in reversed(range(7))]
    odd = client.search_registered_models("name ILIKE 'SEARCH-%' AND tags.parity = 'odd'")
    assert sorted(m.name for m in odd) == ["search-0", "search-2", "search-4", "search-6"]
    listed = client.search_registered_models("name IN ('search-1', 'search-3', 'nope')")
    assert sorted(m.name for m in listed) == ["search-1", "search-3"]

    pages, token = [], None
    while True:
        page = client.search_registered_models(
            "name LIKE 'search-%'", max_results=3, order_by=["name ASC"], page_token=token
        )
        pages.append([m.name for m in page])
        token = page.token
        if not token:
            break
    assert pages == [
        ["search-0", "search-1", "search-2"],
        ["search-3", "search-4", "search-5"],
        ["search-6"],
    ]

    run_id = _run_with_file()
    client.create_model_version("search-0", f"runs:/{run_id}/model", run_id)
    by_run = client.search_model_versions(f"run_id = '{run_id}' AND version_number >= 1")
    assert [(v.name, v.version) for v in by_run] == [("search-0", "1")]

    for bad_filter in ("name = ", "nope = 'x'", "name ~ 'x'", "tags.k > 'x'", "name = 'a' OR"):
        with pytest.raises(MlflowException) as refused:
            client.search_registered_models(bad_filter)
        assert _code(refused) == "INVALID_PARAMETER_VALUE", bad_filter
    with pytest.raises(MlflowException) as bad_order:
        client.search_registered_models(order_by=["size DESC"])
    assert _code(bad_order) == "INVALID_PARAMETER_VALUE"
    with pytest.raises(MlflowException) as bad_token:
        client.search_registered_models(page_token="not-a-token")
    assert _code(bad_token) == "INVALID_PARAMETER_VALUE"
    with pytest.raises(MlflowException) as too_many:
        client.search_registered_models(max_results=1001)
    assert _code(too_many) == "INVALID_PARAMETER_VALUE"


def test_errors_answer_in_mlflows_shape(url: str, client: MlflowClient) -> None:
    with pytest.raises(MlflowException) as missing:
        client.get_registered_model("no-such-model")
    assert _code(missing) == "RESOURCE_DOES_NOT_EXIST"
    r = httpx.get(f"{url}{API}/registered-models/get", params={"name": "no-such-model"})
    assert r.status_code == 404
    assert r.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"

    run_id = _run_with_file()
    client.create_registered_model("strict")
    refused_sources = [
        ("runs:/nope/model", None),  # no such run
        (f"runs:/{run_id}/model", "0123456789abcdef0123456789abcdef"),  # another run id
        ("/tmp/somewhere/model", run_id),  # a local path
        (f"mlflow-artifacts:/0/{run_id}/artifacts/../../x", run_id),  # traversal
        ("mlflow-artifacts:/0/elsewhere/artifacts/model", run_id),  # outside the run
        ("models:/no-such-model/1", None),
    ]
    for source, source_run in refused_sources:
        with pytest.raises(MlflowException) as refused:
            client.create_model_version("strict", source, source_run)
        assert _code(refused) == "INVALID_PARAMETER_VALUE", source
    for bad_name in ("a/b", "a:b", ""):
        with pytest.raises(MlflowException) as bad:
            client.create_registered_model(bad_name)
        assert _code(bad) == "INVALID_PARAMETER_VALUE", bad_name
    r = httpx.get(f"{url}{API}/model-versions/get", params={"name": "strict", "version": "one"})
    assert r.status_code == 400 and r.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    r = httpx.post(f"{url}{API}/registered-models/create", content=b"{not json")
    assert r.status_code == 400 and r.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    with pytest.raises(MlflowException) as no_version:
        client.get_model_version("strict", "7")
    assert _code(no_version) == "RESOURCE_DOES_NOT_EXIST"
    # a version from another registered version keeps its lineage
    client.create_model_version("strict", f"runs:/{run_id}/model", run_id)
    copied = client.create_model_version("strict", "models:/strict/1")
    assert copied.source == "models:/strict/1" and copied.run_id == run_id
    where = client.get_model_version_download_uri("strict", "2")
    assert where.endswith(f"/{run_id}/artifacts/model")


@pytest.mark.filterwarnings("ignore:.*deprecated since 2.9.0:FutureWarning")  # stages: MLflow's
def test_the_registry_is_ordinary_data_and_replays(
    url: str, data: Path, client: MlflowClient, tmp_path: Path
) -> None:
    """What MLflow registered is folded again, equal, from the log alone."""
    run_id = _run_with_file()
    client.create_registered_model("replayed", tags={"k": "v"}, description="d")
    for _ in range(3):
        client.create_model_version("replayed", f"runs:/{run_id}/model", run_id, tags={"t": "1"})
    client.transition_model_version_stage("replayed", "2", "Production")
    client.set_registered_model_alias("replayed", "prod", "2")
    client.update_model_version("replayed", "3", description="third")
    client.delete_model_version("replayed", "1")
    client.rename_registered_model("replayed", "replayed-2")
    query = (
        "SELECT m.name, v.version, v.stage, v.iteration_id, v.aliases, v.tags, v.metadata,"
        " v.description FROM model_versions v JOIN models m USING (model_id)"
        " WHERE NOT v.deleted AND NOT m.deleted ORDER BY m.name, v.version"
    )
    live = dd.connect(url, spool_dir=tmp_path / "spool")
    try:
        served = live.sql(query).to_pylist()
    finally:
        live.close()
    assert [(r["name"], r["version"]) for r in served if r["name"] == "replayed-2"] == [
        ("replayed-2", 2),
        ("replayed-2", 3),
    ]
    into = tmp_path / "replayed"
    log = open_log(DataPaths(data).log_url)  # the log the server appends to, read alongside
    try:
        replay(log, into)
    finally:
        log.close()
    replayed = dd.connect(str(into), spool_dir=tmp_path / "spool-2")
    try:
        assert replayed.sql(query).to_pylist() == served
    finally:
        replayed.close()
