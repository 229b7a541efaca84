"""The real ``mlflow`` client against a real ``deardiary serve`` on a free port.

`mlflow_server` starts one server per test module and points the client at it
(``MLFLOW_TRACKING_URI``, restored afterwards). The client's telemetry is off, and no
test leaves a run active for the next.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import mlflow
import pytest
from mlflow.tracking import fluent

from tests.e2e.serve_process import serve
from tests.ports import free_port

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")  # never call home from a test
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # a 5xx fails the test at once


def _forget_active_experiment() -> None:
    """`mlflow.set_experiment` keeps the experiment for the process (a global and
    MLFLOW_EXPERIMENT_ID): another module's server does not have it."""
    fluent._active_experiment_id = None
    os.environ.pop("MLFLOW_EXPERIMENT_ID", None)


@contextmanager
def tracking_uri(url: str) -> Iterator[str]:
    """The MLflow client pointed at `url` for the duration."""
    before = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = url
    mlflow.set_tracking_uri(url)
    _forget_active_experiment()
    try:
        yield url
    finally:
        _forget_active_experiment()
        if before is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = before
        mlflow.set_tracking_uri(before or "")


@contextmanager
def mlflow_serve(data: Path, *extra: str) -> Iterator[str]:
    """`deardiary serve` over `data` with the MLflow client pointed at it."""
    with serve(data, free_port(), *extra) as url, tracking_uri(url):
        yield url


@pytest.fixture(scope="module")
def mlflow_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The data folder of the module's server."""
    return tmp_path_factory.mktemp("mlflow") / "data"


@pytest.fixture(scope="module")
def mlflow_server(mlflow_data: Path) -> Iterator[str]:
    """The module's server; its URL."""
    with mlflow_serve(mlflow_data) as url:
        yield url


@pytest.fixture(autouse=True)
def _no_active_run() -> Iterator[None]:
    yield
    while mlflow.active_run() is not None:
        mlflow.end_run()
