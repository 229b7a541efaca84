"""What MLflow's field names mean in our tables: the SQL behind each identifier a search
may name (search.py compiles the grammar around them) and behind each value a run,
experiment or logged model shows.

Runs are rows of ``iterations i``; experiments rows of ``experiments e JOIN projects p``;
logged models rows of ``iterations i`` marked as models. Where MLflow keeps something
as a tag and we as a column, the tag is the column: ``mlflow.runName`` is the
iteration's name, ``mlflow.note.content`` its notes (an experiment's description).
MLflow-only values live in the entity's metadata under keys starting ``mlflow.``.
"""

from __future__ import annotations

import re

from deardiary.services.mlflow_api.errors import MlflowError
from deardiary.services.mlflow_api.search import Field

RUN_NAME_TAG = "mlflow.runName"
PARENT_RUN_TAG = "mlflow.parentRunId"
NOTE_TAG = "mlflow.note.content"
LOGGED_MODELS_TAG = "mlflow.log-model.history"

META_START = "mlflow.start_time"
META_END = "mlflow.end_time"
META_USER = "mlflow.user_id"
META_KIND = "mlflow.kind"
META_MODEL_TYPE = "mlflow.model_type"
KIND_LOGGED_MODEL = "logged_model"
DATASET_PREFIX = "mlflow.dataset."
MODEL_INPUT_PREFIX = "mlflow.model_input."
MODEL_OUTPUT_PREFIX = "mlflow.model_output."
LOGGED_MODEL_PREFIX = "mlflow.logged_model."


def meta(alias: str, key: str) -> str:
    """SQL reading one metadata value of row `alias` as text (keys hold no quotes)."""
    return f"json_extract_string({alias}.metadata, '$.\"{key}\"')"


START_MS = f"coalesce(TRY_CAST({meta('i', META_START)} AS BIGINT), epoch_ms(i.created_at))"
END_MS = f"coalesce(TRY_CAST({meta('i', META_END)} AS BIGINT), epoch_ms(i.end_date))"
RUN_STATUS = "CASE i.status WHEN 'SUCCEEDED' THEN 'FINISHED' ELSE i.status END"
MODEL_STATUS = (
    "CASE i.status WHEN 'SUCCEEDED' THEN 'READY' WHEN 'RUNNING' THEN 'PENDING' ELSE i.status END"
)
USER_ID = f"coalesce(nullif(i.created_by, ''), {meta('i', META_USER)}, '')"
LIFECYCLE = "CASE WHEN i.deleted THEN 'deleted' ELSE 'active' END"
IS_LOGGED_MODEL = f"coalesce({meta('i', META_KIND)} = '{KIND_LOGGED_MODEL}', FALSE)"

_IDS = ("=", "!=", "IN", "NOT IN", "LIKE", "ILIKE")
_NUMBERS = ("=", "!=", "<", "<=", ">", ">=")


_PATH_KEY = re.compile(r'[^"\\\x00-\x1f]+')
"""Tag keys a quoted JSON path names exactly (no quote, backslash or control character)."""


def _tag(alias: str, key: str) -> Field:
    """One tag's value as text. A JSON path (the key passed as a parameter) when the key
    allows: a json_each subquery costs the planner ~2 ms per clause and the scan more."""
    if _PATH_KEY.fullmatch(key):
        return Field(f"json_extract_string({alias}.tags, ?)", (f'$."{key}"',))
    return Field(f"(SELECT t.value ->> '$' FROM json_each({alias}.tags) t WHERE t.key = ?)", (key,))


def series(mlflow_key: str) -> tuple[str, str]:
    """(key, group) of an MLflow metric key: ``loss`` is the ungrouped series, ``loss@val``
    the series ``loss`` of group ``val``; likewise (key, section) of a param key: ``lr@opt``
    is the param ``lr`` of the SDK's section ``opt`` (MLflow's keys never hold an ``@``)."""
    key, at, group = mlflow_key.rpartition("@")
    return (key, group) if at else (mlflow_key, "")


def mlflow_key(key: str, group: str) -> str:
    """The MLflow key of a series of a group, or of a param of a section (`series`)."""
    return f"{key}@{group}" if group else key


_LATEST = (
    'FROM last_metrics m WHERE m.iteration_id = i.iteration_id AND m.key = ? AND m."group" = ?'
)


def _latest_metric(key: str) -> Field:
    return Field(
        f'SELECT m."last" {_LATEST}',
        series(key),
        numeric=True,
        compare=f"SELECT nullif(m.\"last\", 'NaN'::DOUBLE) {_LATEST}",
    )


def _param(key: str) -> Field:
    return Field(
        "SELECT p.value FROM params p"
        " WHERE p.iteration_id = i.iteration_id AND p.key = ? AND p.section = ?",
        series(key),
    )


def _unknown(kind: str, key: str, what: str, known: list[str]) -> MlflowError:
    shown = f"{kind}.{key}" if kind else key
    return MlflowError(
        f"Invalid identifier {shown!r} for {what}; valid ones are "
        + ", ".join(known)
        + " (and metrics.<key>, params.<key>, tags.<key> where they apply)"
    )


class RunResolve:
    """(kind, key) -> SQL over ``iterations i`` for searching and ordering runs."""

    def __init__(self, default_experiment: str) -> None:
        self.default_experiment = default_experiment

    def attributes(self) -> dict[str, Field]:
        experiment = "CASE WHEN i.experiment_id = ? THEN '0' ELSE i.experiment_id END"
        uri = f"'mlflow-artifacts:/' || ({experiment}) || '/' || i.iteration_id || '/artifacts'"
        run_id = Field("i.iteration_id", comparators=_IDS)
        run_name = Field("i.name")
        start = Field(START_MS, numeric=True, comparators=_NUMBERS)
        return {
            "run_id": run_id,
            "run_uuid": run_id,
            "run_name": run_name,
            "run name": run_name,
            "Run name": run_name,
            "Run Name": run_name,
            "status": Field(RUN_STATUS),
            "user_id": Field(USER_ID),
            "start_time": start,
            "created": start,
            "Created": start,
            "end_time": Field(END_MS, numeric=True, comparators=_NUMBERS),
            "artifact_uri": Field(uri, (self.default_experiment,)),
            "lifecycle_stage": Field(LIFECYCLE),
            "experiment_id": Field(experiment, (self.default_experiment,)),
        }

    def __call__(self, kind: str, key: str) -> Field:
        if kind == "metrics":
            return _latest_metric(key)
        if kind == "params":
            return _param(key)
        if kind == "tags":
            if key == RUN_NAME_TAG:
                return Field("i.name")
            if key == NOTE_TAG:
                return Field("nullif(i.notes, '')")
            if key == PARENT_RUN_TAG:
                tag = _tag("i", key)
                return Field(f"coalesce({tag.sql}, i.parent_iteration_id)", tag.params)
            return _tag("i", key)
        if kind == "datasets" and key in ("name", "digest", "context"):
            values = (
                f"(SELECT list(d.value ->> '$.{key}') FROM json_each(i.metadata) d"
                f" WHERE d.key LIKE '{DATASET_PREFIX}%')"
            )
            return Field(values, many=True, comparators=_IDS)
        attributes = self.attributes()
        if kind in ("attributes", "") and key in attributes:
            return attributes[key]
        raise _unknown(kind, key, "runs", sorted(attributes))


class ExperimentResolve:
    """(kind, key) -> SQL over ``experiments e JOIN projects p``."""

    def __init__(self, default_project: str, default_experiment: str) -> None:
        self.default_project = default_project
        self.default_experiment = default_experiment

    def __call__(self, kind: str, key: str) -> Field:
        if kind == "tags":
            if key == NOTE_TAG:
                return Field("nullif(e.description, '')")
            return _tag("e", key)
        numbers = ("=", "!=", "<", "<=", ">", ">=")
        attributes = {
            "name": Field(
                "CASE WHEN p.name = ? THEN e.name ELSE p.name || '/' || e.name END",
                (self.default_project,),
            ),
            "experiment_id": Field(
                "CASE WHEN e.experiment_id = ? THEN '0' ELSE e.experiment_id END",
                (self.default_experiment,),
                comparators=_IDS,
            ),
            "creation_time": Field("epoch_ms(e.created_at)", numeric=True, comparators=numbers),
            "last_update_time": Field("epoch_ms(e.updated_at)", numeric=True, comparators=numbers),
            "lifecycle_stage": Field("CASE WHEN e.deleted THEN 'deleted' ELSE 'active' END"),
        }
        if kind in ("attributes", "") and key in attributes:
            return attributes[key]
        raise _unknown(kind, key, "experiments", sorted(attributes))


class LoggedModelResolve:
    """(kind, key) -> SQL over ``iterations i`` that are logged models."""

    def __init__(self, default_experiment: str) -> None:
        self.default_experiment = default_experiment

    def __call__(self, kind: str, key: str) -> Field:
        if kind == "metrics":
            return _latest_metric(key)
        if kind == "params":
            return _param(key)
        if kind == "tags":
            return _tag("i", key)
        created = Field("epoch_ms(i.created_at)", numeric=True, comparators=_NUMBERS)
        updated = Field("epoch_ms(i.updated_at)", numeric=True, comparators=_NUMBERS)
        attributes = {
            "name": Field("i.name"),
            "model_id": Field("'m-' || i.iteration_id", comparators=_IDS),
            "source_run_id": Field("i.parent_iteration_id", comparators=_IDS),
            "status": Field(MODEL_STATUS),
            "model_type": Field(meta("i", META_MODEL_TYPE)),
            "creation_timestamp": created,
            "creation_time": created,
            "last_updated_timestamp": updated,
            "experiment_id": Field(
                "CASE WHEN i.experiment_id = ? THEN '0' ELSE i.experiment_id END",
                (self.default_experiment,),
                comparators=_IDS,
            ),
        }
        if kind in ("attributes", "") and key in attributes:
            return attributes[key]
        raise _unknown(kind, key, "logged models", sorted(attributes))
