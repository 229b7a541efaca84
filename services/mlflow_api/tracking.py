"""The MLflow tracking surface: experiments, runs, metrics, params, tags, inputs and
outputs, and MLflow 3's logged models -- every route the ``mlflow`` 3.x client's REST
store calls for tracking (``mlflow/store/tracking/rest_store.py``)."""

from __future__ import annotations

from deardiary.services.mlflow_api import experiments, logged_models, run_writes, runs
from deardiary.services.mlflow_api.context import MlflowContext
from deardiary.services.mlflow_api.endpoint import MlflowEndpoint


def endpoints(ctx: MlflowContext) -> list[MlflowEndpoint]:
    return [
        *experiments.endpoints(ctx),
        *runs.endpoints(ctx),
        *run_writes.endpoints(ctx),
        *logged_models.endpoints(ctx),
    ]
