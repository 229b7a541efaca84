"""Rows of our tables as MLflow's JSON entities (``mlflow/protos/service.proto``).

int64 fields are JSON numbers and doubles that JSON cannot carry are the strings
"NaN", "Infinity" and "-Infinity" (protobuf's JSON mapping; the client's parser reads
both). Synthesised tags: a run's ``mlflow.runName`` (its name), ``mlflow.note.content``
(its notes; an experiment's description) and ``mlflow.parentRunId`` (its parent).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec

from deardiary.services.mlflow_api import ids
from deardiary.services.mlflow_api.fields import (
    DATASET_PREFIX,
    KIND_LOGGED_MODEL,
    LOGGED_MODEL_PREFIX,
    LOGGED_MODELS_TAG,
    META_KIND,
    META_MODEL_TYPE,
    MODEL_INPUT_PREFIX,
    MODEL_OUTPUT_PREFIX,
    NOTE_TAG,
    PARENT_RUN_TAG,
    RUN_NAME_TAG,
)
from deardiary.services.mlflow_api.reads import Row

RUN_STATUS = {"SUCCEEDED": "FINISHED"}
MODEL_STATUS = {
    "SUCCEEDED": "LOGGED_MODEL_READY",
    "RUNNING": "LOGGED_MODEL_PENDING",
    "FAILED": "LOGGED_MODEL_UPLOAD_FAILED",
    "KILLED": "LOGGED_MODEL_UPLOAD_FAILED",
}


def number(value: float) -> float | str:
    """A double as protobuf's JSON mapping writes it."""
    if math.isfinite(value):
        return value
    if math.isnan(value):
        return "NaN"
    return "Infinity" if value > 0 else "-Infinity"


def tag_list(tags: Mapping[str, Any]) -> list[dict[str, str]]:
    return [{"key": k, "value": str(v)} for k, v in sorted(tags.items())]


class Renderer:
    """Renders with the server's default project (MLflow's experiment "0")."""

    def __init__(self, default_project: str) -> None:
        self.default_project = default_project
        self.default_experiment = ids.default_experiment(default_project)

    def experiment_id(self, experiment_id: str) -> str:
        """MLflow's id of one of our experiments (``0`` for the default one: compared with
        the id derived once, not derived again for every run rendered)."""
        return (
            ids.DEFAULT_EXPERIMENT_ID if experiment_id == self.default_experiment else experiment_id
        )

    def experiment(self, row: Row) -> dict[str, Any]:
        mlflow_id = self.experiment_id(row["experiment_id"])
        tags = dict(row["tags"])
        if row["description"]:
            tags[NOTE_TAG] = row["description"]
        return {
            "experiment_id": mlflow_id,
            "name": ids.mlflow_name(row["project"], row["name"], self.default_project),
            "artifact_location": ids.experiment_artifact_location(mlflow_id),
            "lifecycle_stage": "deleted" if row["deleted"] else "active",
            "last_update_time": row["updated"],
            "creation_time": row["created"],
            "tags": tag_list(tags),
        }

    def default_experiment_view(self) -> dict[str, Any]:
        """Experiment "0" before anything was logged to it (MLflow always has one)."""
        return {
            "experiment_id": ids.DEFAULT_EXPERIMENT_ID,
            "name": ids.DEFAULT_EXPERIMENT_NAME,
            "artifact_location": ids.experiment_artifact_location(ids.DEFAULT_EXPERIMENT_ID),
            "lifecycle_stage": "active",
            "tags": [],
        }

    def run_info(self, row: Row) -> dict[str, Any]:
        experiment = self.experiment_id(row["experiment_id"])
        run_id = row["iteration_id"]
        info: dict[str, Any] = {
            "run_id": run_id,
            "run_uuid": run_id,
            "run_name": row["name"],
            "experiment_id": experiment,
            "user_id": row["user_id"],
            "status": RUN_STATUS.get(row["status"], row["status"]),
            "start_time": row["start_ms"],
            "artifact_uri": ids.run_artifact_uri(experiment, run_id),
            "lifecycle_stage": "deleted" if row["deleted"] else "active",
        }
        if row["end_ms"] is not None and row["status"] != "RUNNING":
            info["end_time"] = row["end_ms"]
        return info

    def run_tags(self, row: Row) -> dict[str, str]:
        tags = {k: str(v) for k, v in row["tags"].items()}
        tags[RUN_NAME_TAG] = row["name"]
        if row["notes"]:
            tags[NOTE_TAG] = row["notes"]
        if row["parent_iteration_id"] and PARENT_RUN_TAG not in tags:
            tags[PARENT_RUN_TAG] = row["parent_iteration_id"]
        history = [
            v for k, v in sorted(row["metadata"].items()) if k.startswith(LOGGED_MODEL_PREFIX)
        ]
        if history:
            tags[LOGGED_MODELS_TAG] = msgspec.json.encode(history).decode()
        return tags

    def run(self, row: Row, params: Sequence[Row], metrics: Sequence[Row]) -> dict[str, Any]:
        metadata: Mapping[str, Any] = row["metadata"]
        datasets = []
        model_inputs, model_outputs = [], []
        for key, value in sorted(metadata.items()):
            if key.startswith(DATASET_PREFIX) and isinstance(value, dict):
                dataset = {k: str(v) for k, v in value.items() if k != "context"}
                tags = [{"key": "mlflow.data.context", "value": value["context"]}]
                datasets.append({"tags": tags if value.get("context") else [], "dataset": dataset})
            elif key.startswith(MODEL_INPUT_PREFIX):
                model_inputs.append({"model_id": key[len(MODEL_INPUT_PREFIX) :]})
            elif key.startswith(MODEL_OUTPUT_PREFIX) and isinstance(value, dict):
                model_id = key[len(MODEL_OUTPUT_PREFIX) :]
                model_outputs.append({"model_id": model_id, "step": int(value.get("step", 0))})
        # As MLflow's server writes a run (protobuf's JSON): a run's metrics without their
        # run_id, empty lists left out -- with them, a page of 1,000 runs cost the MLflow
        # client ~1.5x the CPU to parse.
        inputs: dict[str, Any] = {}
        if datasets:
            inputs["dataset_inputs"] = datasets
        if model_inputs:
            inputs["model_inputs"] = model_inputs
        return {
            "info": self.run_info(row),
            "data": {
                "metrics": [self.metric(m) for m in metrics],
                "params": [{"key": p["key"], "value": p["value"]} for p in params],
                "tags": tag_list(self.run_tags(row)),
            },
            "inputs": inputs,
            "outputs": {"model_outputs": model_outputs} if model_outputs else {},
        }

    @staticmethod
    def metric(row: Row, run_id: str | None = None) -> dict[str, Any]:
        out = {
            "key": row["key"],
            "value": number(row["value"]),
            "timestamp": row["timestamp"],
            "step": row["step"],
        }
        if run_id is not None:
            out["run_id"] = run_id
        return out

    def logged_model(
        self, row: Row, params: Sequence[Row], metrics: Sequence[Row]
    ) -> dict[str, Any]:
        experiment = self.experiment_id(row["experiment_id"])
        model_id = ids.logged_model_to_mlflow(row["iteration_id"])
        metadata: Mapping[str, Any] = row["metadata"]
        info: dict[str, Any] = {
            "model_id": model_id,
            "experiment_id": experiment,
            "name": row["name"],
            "artifact_uri": ids.logged_model_artifact_uri(experiment, model_id),
            "creation_timestamp_ms": row["created"],
            "last_updated_timestamp_ms": row["updated"],
            "status": MODEL_STATUS.get(row["status"], "LOGGED_MODEL_STATUS_UNSPECIFIED"),
            "tags": tag_list(row["tags"]),
            "source_run_id": row["parent_iteration_id"] or "",
        }
        if row["error_message"]:
            info["status_message"] = row["error_message"]
        if metadata.get(META_MODEL_TYPE):
            info["model_type"] = str(metadata[META_MODEL_TYPE])
        source = row["parent_iteration_id"]
        return {
            "info": info,
            "data": {
                "params": [{"key": p["key"], "value": p["value"]} for p in params],
                "metrics": [{**self.metric(m, source), "model_id": model_id} for m in metrics],
            },
        }


def is_logged_model(row: Row) -> bool:
    return bool(row["metadata"].get(META_KIND) == KIND_LOGGED_MODEL)
