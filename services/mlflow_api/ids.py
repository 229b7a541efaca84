"""How MLflow's identifiers and names map onto DearDiary's entities.

* An MLflow experiment id is our experiment's id (32 hex digits), except the default
  experiment ``"0"``: the experiment "Default" of the default project (the setting
  ``mlflow_default_project``, "Default"), created on first use.
* An experiment lives in the default project, or in the project named by the tag
  ``deardiary.project`` given when it is created (the project is created if missing).
* Its MLflow name is its name in the default project and ``<project>/<name>`` in any
  other, so names stay unique as MLflow expects, and what an SDK user logged to project
  ``mnist``, experiment ``lr-sweep``, is the MLflow experiment ``mnist/lr-sweep``. A
  name ``p/e`` whose project ``p`` does not exist is a name in the default project.
* A run id is the iteration's id.
* A logged model id ``m-<id>`` is a child iteration ``<id>`` of its source run, marked
  ``metadata.mlflow.kind = "logged_model"`` (hidden from run searches).
* A run's artifacts are at ``mlflow-artifacts:/<experiment>/<run>/artifacts``, a logged
  model's at ``mlflow-artifacts:/<experiment>/models/<model id>/artifacts`` (served by
  the ``mlflow-artifacts`` proxy).
"""

from __future__ import annotations

import re

from deardiary.schemas import ids

DEFAULT_EXPERIMENT_ID = "0"
DEFAULT_EXPERIMENT_NAME = "Default"
PROJECT_TAG = "deardiary.project"
"""An experiment tag naming the project an experiment is created in (at creation only)."""
LOGGED_MODEL_PREFIX = "m-"
ARTIFACT_SCHEME = "mlflow-artifacts:"

_HEX_ID = re.compile(r"^[0-9a-f]{32}$")


def default_experiment(default_project: str) -> str:
    """Our id of MLflow's experiment "0"."""
    return ids.experiment_id(ids.project_id(default_project), DEFAULT_EXPERIMENT_NAME)


def experiment_from_mlflow(mlflow_id: str, default_project: str) -> str:
    """Our experiment id for an MLflow experiment id."""
    if mlflow_id == DEFAULT_EXPERIMENT_ID:
        return default_experiment(default_project)
    return mlflow_id


def experiment_to_mlflow(experiment_id: str, default_project: str) -> str:
    """The MLflow experiment id of one of our experiments."""
    if experiment_id == default_experiment(default_project):
        return DEFAULT_EXPERIMENT_ID
    return experiment_id


def mlflow_name(project: str, experiment: str, default_project: str) -> str:
    """The name MLflow shows for experiment `experiment` of project `project`."""
    return experiment if project == default_project else f"{project}/{experiment}"


def split_name(name: str) -> tuple[str, str] | None:
    """(project, experiment) when `name` may name an experiment of another project
    (``p/e`` with both parts non-empty); None otherwise. Whether project ``p`` exists
    decides (the caller looks it up): if not, the whole name is an experiment name."""
    project, slash, experiment = name.partition("/")
    if slash and project and experiment:
        return project, experiment
    return None


def is_entity_id(value: str) -> bool:
    """Whether `value` has the shape of our generated ids (32 hex digits)."""
    return bool(_HEX_ID.match(value))


def logged_model_to_mlflow(iteration_id: str) -> str:
    return LOGGED_MODEL_PREFIX + iteration_id


def logged_model_from_mlflow(model_id: str) -> str | None:
    """The iteration id behind an MLflow logged model id, or None if it is not one."""
    if not model_id.startswith(LOGGED_MODEL_PREFIX):
        return None
    inner = model_id[len(LOGGED_MODEL_PREFIX) :]
    return inner if is_entity_id(inner) else None


def experiment_artifact_location(mlflow_experiment_id: str) -> str:
    return f"{ARTIFACT_SCHEME}/{mlflow_experiment_id}"


def run_artifact_uri(mlflow_experiment_id: str, run_id: str) -> str:
    return f"{ARTIFACT_SCHEME}/{mlflow_experiment_id}/{run_id}/artifacts"


def logged_model_artifact_uri(mlflow_experiment_id: str, model_id: str) -> str:
    """`model_id` as MLflow shows it (``m-...``)."""
    return f"{ARTIFACT_SCHEME}/{mlflow_experiment_id}/models/{model_id}/artifacts"
