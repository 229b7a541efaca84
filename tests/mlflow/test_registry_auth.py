"""The registry and the ``mlflow-artifacts`` proxy under --auth, with the real MLflow
client signed in as a restricted user (MLFLOW_TRACKING_USERNAME/PASSWORD).

rita may read project A, owns C and has nothing on B (tests/faults/auth_world.py). She
never sees B's models, versions or artifact bytes (404, as for what does not exist),
may look at A's but not change them or upload into A's runs (403), and nothing she is
refused reaches the log. In her own project everything works, and olive, in turn,
cannot see what rita registered there.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import mlflow
import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from tests.faults.auth_world import OLIVE_PW, RITA_PW, AuthWorld, Tenant, auth_world

ARTIFACTS = "/api/2.0/mlflow-artifacts/artifacts"
# stages (get_latest_versions) are deprecated by MLflow, not by us
PLANTED = hashlib.sha256(b"planted").hexdigest()
pytestmark = pytest.mark.filterwarnings("ignore:.*deprecated since 2.9.0:FutureWarning")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthWorld]:
    with auth_world(tmp_path_factory.mktemp("mlflow-auth")) as built:
        yield built


def _as(monkeypatch: pytest.MonkeyPatch, world: AuthWorld, user: str, pw: str) -> MlflowClient:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", world.url)
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", user)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", pw)
    mlflow.set_tracking_uri(world.url)
    return MlflowClient(world.url)


def _model(t: Tenant) -> str:
    return t.project.removesuffix("-project") + "-model"


def _artifact_path(t: Tenant, name: str | None = None) -> str:
    name = name or t.project.removesuffix("-project") + "-weights.txt"
    return f"/{t.ids['experiment_id']}/{t.ids['iteration_id']}/artifacts/{name}"


def _refused(call: object, code: str) -> None:
    with pytest.raises(MlflowException) as refused:
        call()  # type: ignore[operator]
    assert refused.value.error_code == code, refused.value


def test_another_projects_models_and_bytes_do_not_exist_for_her(
    world: AuthWorld, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    rita = _as(monkeypatch, world, "rita", RITA_PW)
    before = world.end_offsets()
    b_model = _model(world.b)
    _refused(lambda: rita.get_registered_model(b_model), "RESOURCE_DOES_NOT_EXIST")
    _refused(lambda: rita.get_model_version(b_model, "1"), "RESOURCE_DOES_NOT_EXIST")
    _refused(lambda: rita.get_latest_versions(b_model), "RESOURCE_DOES_NOT_EXIST")
    _refused(lambda: rita.set_registered_model_tag(b_model, "x", "y"), "RESOURCE_DOES_NOT_EXIST")
    _refused(lambda: rita.delete_registered_model(b_model), "RESOURCE_DOES_NOT_EXIST")
    _refused(lambda: rita.rename_registered_model(b_model, "mine"), "RESOURCE_DOES_NOT_EXIST")
    names = {m.name for m in rita.search_registered_models()}
    assert _model(world.a) in names and b_model not in names
    versions = rita.search_model_versions(f"name = '{b_model}'")
    assert list(versions) == []

    headers = {"Authorization": httpx.BasicAuth("rita", RITA_PW)._auth_header}
    got = httpx.get(f"{world.url}{ARTIFACTS}{_artifact_path(world.b)}", headers=headers)
    assert got.status_code == 404 and world.b.content.decode() not in got.text
    listing = httpx.get(
        f"{world.url}{ARTIFACTS}",
        params={"path": _artifact_path(world.b).rsplit("/", 1)[0].lstrip("/")},
        headers=headers,
    )
    assert listing.status_code == 404
    put = httpx.put(
        f"{world.url}{ARTIFACTS}{_artifact_path(world.b, 'planted.txt')}",
        content=b"planted",
        headers=headers,
    )
    assert put.status_code == 404
    gone = httpx.delete(f"{world.url}{ARTIFACTS}{_artifact_path(world.b)}", headers=headers)
    assert gone.status_code == 404
    # her own tag naming B's project cannot put a model there
    _refused(
        lambda: rita.create_registered_model("in-b", tags={"deardiary.project": world.b.project}),
        "PERMISSION_DENIED",
    )
    assert world.end_offsets() == before, "a refused call appended to the log"
    assert not world.server.artifacts.exists(PLANTED), "refused bytes were stored"


def test_she_may_read_a_but_not_change_it(
    world: AuthWorld, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    rita = _as(monkeypatch, world, "rita", RITA_PW)
    before = world.end_offsets()
    a_model = _model(world.a)
    assert rita.get_registered_model(a_model).name == a_model
    assert rita.get_model_version(a_model, "1").run_id == world.a.ids["iteration_id"]
    a_run = world.a.ids["iteration_id"]
    for call in (
        lambda: rita.set_registered_model_tag(a_model, "x", "y"),
        lambda: rita.update_registered_model(a_model, description="mine now"),
        lambda: rita.set_registered_model_alias(a_model, "prod", "1"),
        lambda: rita.create_model_version(a_model, f"runs:/{a_run}/model", a_run),
        lambda: rita.delete_model_version(a_model, "1"),
        lambda: rita.delete_registered_model(a_model),
    ):
        _refused(call, "PERMISSION_DENIED")
    a_artifact = _artifact_path(world.a)
    downloaded = MlflowClient(world.url).download_artifacts(
        a_run, a_artifact.rsplit("/", 1)[1], str(tmp_path)
    )
    assert Path(downloaded).read_bytes() == world.a.content
    headers = {"Authorization": httpx.BasicAuth("rita", RITA_PW)._auth_header}
    put = httpx.put(
        f"{world.url}{ARTIFACTS}{_artifact_path(world.a, 'planted.txt')}",
        content=b"planted",
        headers=headers,
    )
    assert put.status_code == 403 and put.json()["error_code"] == "PERMISSION_DENIED"
    assert world.end_offsets() == before, "a refused call appended to the log"
    assert not world.server.artifacts.exists(PLANTED), "refused bytes were stored"


def test_her_own_project_works_and_stays_hers(
    world: AuthWorld, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    rita = _as(monkeypatch, world, "rita", RITA_PW)
    c_run = world.c.ids["iteration_id"]
    weights = tmp_path / "weights.bin"
    weights.write_bytes(b"rita's weights")
    rita.log_artifact(c_run, str(weights), "model")
    rita.create_registered_model("rita-model", tags={"deardiary.project": world.c.project})
    version = rita.create_model_version("rita-model", f"runs:/{c_run}/model", c_run)
    rita.set_registered_model_alias("rita-model", "prod", version.version)
    got = mlflow.artifacts.download_artifacts("models:/rita-model@prod", dst_path=str(tmp_path))
    assert (Path(got) / "weights.bin").read_bytes() == b"rita's weights"

    olive = _as(monkeypatch, world, "olive", OLIVE_PW)
    _refused(lambda: olive.get_registered_model("rita-model"), "RESOURCE_DOES_NOT_EXIST")
    assert "rita-model" not in {m.name for m in olive.search_registered_models()}

    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME")
    monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD")
    _refused(lambda: MlflowClient(world.url).get_registered_model("rita-model"), "UNAUTHENTICATED")
