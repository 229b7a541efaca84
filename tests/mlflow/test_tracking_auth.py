"""MLflow's own credentials against ``deardiary serve --auth``: HTTP Basic
(``MLFLOW_TRACKING_USERNAME`` / ``MLFLOW_TRACKING_PASSWORD``) and bearer tokens
(``MLFLOW_TRACKING_TOKEN``: our access tokens and session tokens) are our users, under
the same per-project permissions; Basic sign-ins are throttled like any sign-in.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from tests.mlflow.conftest import mlflow_serve

ADMIN_PW, ANN_PW, BOB_PW = "root-secret-1", "ann-secret-1", "bob-secret-1"
API = "/api/2.0/mlflow"


@dataclass
class World:
    url: str
    admin: dict[str, str]
    ann_token: str
    experiment_id: str
    run_id: str


def _login(url: str, user: str, password: str) -> str:
    r = httpx.post(f"{url}/api/v1/auth/login", json={"username": user, "password": password})
    assert r.status_code == 200, r.text
    return str(r.json()["token"])


def _as(monkeypatch: pytest.MonkeyPatch, user: str | None, password: str | None = None) -> None:
    for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    if user is not None and password is not None:
        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", user)
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", password)
    elif user is not None:
        monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", user)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    data = tmp_path_factory.mktemp("mlflow-auth") / "data"
    cli = [sys.executable, "-m", "deardiary.services.cli"]
    subprocess.run(
        [*cli, "users", "create", "--data", str(data), "root", "--admin"],
        input=ADMIN_PW,
        text=True,
        check=True,
        capture_output=True,
    )
    with mlflow_serve(data, "--auth") as url:
        admin = {"Authorization": f"Bearer {_login(url, 'root', ADMIN_PW)}"}
        for user, password in (("ann", ANN_PW), ("bob", BOB_PW)):
            made = httpx.post(
                f"{url}/api/v1/users", json={"username": user, "password": password}, headers=admin
            )
            assert made.status_code == 200, made.text
        ann = {"Authorization": f"Bearer {_login(url, 'ann', ANN_PW)}"}
        token = httpx.post(f"{url}/api/v1/tokens", headers=ann, json={"description": "mlflow"})
        assert token.status_code == 200, token.text
        with pytest.MonkeyPatch.context() as mp:
            _as(mp, "ann", ANN_PW)
            client = MlflowClient()
            exp = client.create_experiment("ann-exp", tags={"deardiary.project": "ann"})
            run = client.create_run(exp, run_name="ann-run")
            client.log_param(run.info.run_id, "secret", "ann-param-value")
            client.log_metric(run.info.run_id, "loss", 0.125)
        yield World(url, admin, str(token.json()["token"]), exp, run.info.run_id)


def test_basic_credentials_are_a_user_and_own_what_they_create(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    _as(monkeypatch, "ann", ANN_PW)
    client = MlflowClient()
    exp = client.get_experiment(world.experiment_id)
    assert exp.name == "ann/ann-exp"  # experiment ann-exp of project ann
    got = client.get_run(world.run_id)
    assert got.data.params == {"secret": "ann-param-value"} and got.info.user_id == "ann"
    mine = httpx.get(
        f"{world.url}/api/v1/permissions",
        params={"username": "ann"},
        headers=world.admin,
    ).json()
    assert any(p["project"] == "ann" and p["can_create"] for p in mine["items"]), mine


def test_access_and_session_tokens(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    for token in (world.ann_token, _login(world.url, "ann", ANN_PW)):
        _as(monkeypatch, token)
        found = MlflowClient().search_runs([world.experiment_id])
        assert [r.info.run_id for r in found] == [world.run_id]
        MlflowClient().log_metric(world.run_id, "loss", 0.1, step=1)


def test_an_ungranted_user_sees_and_changes_nothing(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    _as(monkeypatch, "bob", BOB_PW)
    client = MlflowClient()
    attempts: dict[str, Callable[[], object]] = {
        "get_run": lambda: client.get_run(world.run_id),
        "get_experiment": lambda: client.get_experiment(world.experiment_id),
        "create_run": lambda: client.create_run(world.experiment_id),
        "history": lambda: client.get_metric_history(world.run_id, "loss"),
        "log_metric": lambda: client.log_metric(world.run_id, "loss", 9.0),
        "log_param": lambda: client.log_param(world.run_id, "secret", "bob-was-here"),
        "set_tag": lambda: client.set_tag(world.run_id, "owner", "bob"),
        "rename": lambda: client.rename_experiment(world.experiment_id, "bobs"),
        "delete_run": lambda: client.delete_run(world.run_id),
        "project tag": lambda: client.create_experiment("x", tags={"deardiary.project": "ann"}),
    }
    for what, attempt in attempts.items():
        with pytest.raises(MlflowException) as excinfo:
            attempt()
        code = excinfo.value.error_code
        assert code in ("RESOURCE_DOES_NOT_EXIST", "PERMISSION_DENIED"), (what, code)
        assert "ann-param-value" not in str(excinfo.value)
    # the administrator's search renders ann's run and keeps it for this state: still
    # nothing of it reaches bob's search, which finds runs on his own scoped tables
    seen = httpx.post(
        f"{world.url}{API}/runs/search",
        headers=world.admin,
        json={"experiment_ids": [world.experiment_id], "filter": "params.secret != ''"},
    )
    assert seen.status_code == 200 and len(seen.json()["runs"]) == 1, seen.text
    assert client.search_runs([world.experiment_id]) == []
    assert client.search_runs([world.experiment_id], "params.secret != ''") == []
    assert client.get_experiment_by_name("ann/ann-exp") is None
    names = {e.name for e in client.search_experiments()}
    assert "ann/ann-exp" not in names

    granted = httpx.post(
        f"{world.url}/api/v1/permissions",
        headers=world.admin,
        json={"username": "bob", "project": "ann", "read": True},
    )
    assert granted.status_code == 200, granted.text
    assert client.get_run(world.run_id).data.params == {"secret": "ann-param-value"}
    with pytest.raises(MlflowException) as excinfo:
        client.log_metric(world.run_id, "loss", 9.0)
    error: Any = excinfo.value  # get_http_status_code is untyped
    assert error.error_code == "PERMISSION_DENIED" and error.get_http_status_code() == 403
    assert 9.0 not in {m.value for m in client.get_metric_history(world.run_id, "loss")}


def test_wrong_or_missing_credentials_and_the_throttle(world: World) -> None:
    url = f"{world.url}{API}/experiments/search"
    nobody = httpx.post(url, json={})
    assert nobody.status_code == 401 and nobody.json()["error_code"] == "UNAUTHENTICATED"
    wrong = httpx.post(url, json={}, auth=("ann", "not-her-password"))
    assert wrong.status_code == 401 and wrong.json()["error_code"] == "UNAUTHENTICATED"
    # root has never signed in with Basic credentials here (none are remembered for it)
    statuses = [httpx.post(url, json={}, auth=("root", f"guess-{i}")).status_code for i in range(6)]
    assert statuses[:5] == [401] * 5 and statuses[5] == 429, statuses
    throttled = httpx.post(url, json={}, auth=("root", ADMIN_PW))
    assert throttled.status_code == 429 and throttled.json()["error_code"] == "RESOURCE_EXHAUSTED"
    assert "Retry-After" in throttled.headers
    elsewhere = httpx.post(url, json={}, auth=("ann", ANN_PW))  # another user is not locked out
    assert elsewhere.status_code == 200, elsewhere.text


def test_malformed_basic_credentials(world: World) -> None:
    for header in ("Basic !!!", "Basic Ym9i", "Basic ===="):  # not base64, no colon, nothing
        r = httpx.post(
            f"{world.url}{API}/experiments/search", json={}, headers={"Authorization": header}
        )
        assert r.status_code == 401 and r.json()["error_code"] == "UNAUTHENTICATED", header


def test_an_ungranted_user_learns_nothing_of_a_deleted_run(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Writes to a deleted run are refused as MLflow does ("must be in the 'active'
    state") -- but only to callers who may see the run: to anyone else the run does not
    exist, whatever the server remembers of it from its owner's requests."""
    _as(monkeypatch, "ann", ANN_PW)
    gone = MlflowClient().create_run(world.experiment_id, run_name="gone").info.run_id
    MlflowClient().delete_run(gone)
    with pytest.raises(MlflowException) as excinfo:
        MlflowClient().log_metric(gone, "loss", 1.0)  # the owner is told it is deleted
    assert excinfo.value.error_code == "INVALID_PARAMETER_VALUE"
    assert "deleted" in str(excinfo.value)
    made = httpx.post(
        f"{world.url}/api/v1/users",
        json={"username": "carl", "password": "carl-secret-1"},
        headers=world.admin,
    )
    assert made.status_code == 200, made.text
    _as(monkeypatch, "carl", "carl-secret-1")  # never granted anything (bob may be, by now)
    for attempt in (
        lambda: MlflowClient().log_metric(gone, "loss", 9.0),
        lambda: MlflowClient().log_param(gone, "p", "bob"),
        lambda: MlflowClient().set_tag(gone, "t", "bob"),
    ):
        with pytest.raises(MlflowException) as excinfo:
            attempt()
        code = excinfo.value.error_code
        assert code in ("RESOURCE_DOES_NOT_EXIST", "PERMISSION_DENIED"), code
        assert "deleted" not in str(excinfo.value)
