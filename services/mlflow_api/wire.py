"""The tracking API's requests as msgspec Structs, field for field as MLflow's protos name
them (``mlflow/protos/service.proto``).

POST bodies are decoded leniently (endpoint.decode_json): unknown fields are ignored and
int64 fields may be numbers or strings, as proto3 JSON allows. GET routes take the same
fields from the query string (their `...Query` Structs document and parse them). Enums
(``view_type``, ``status``) arrive as names or numbers.
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from msgspec import Meta

Int64 = int
Enum = str | int


class Lenient(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A request body: every field optional (MLflow checks required ones itself)."""


class Tag(Lenient):
    key: str = ""
    value: str = ""


class Param(Lenient):
    key: str = ""
    value: str = ""


class MetricIn(Lenient):
    key: str = ""
    value: float = 0.0
    timestamp: Int64 | None = None
    step: Int64 = 0
    model_id: str = ""
    dataset_name: str = ""
    dataset_digest: str = ""
    run_id: str = ""


# -- experiments ---------------------------------------------------------------------------
class CreateExperiment(Lenient):
    name: str = ""
    artifact_location: str = ""
    tags: list[Tag] = []


class ExperimentRef(Lenient):
    """DeleteExperiment, RestoreExperiment."""

    experiment_id: str = ""


class UpdateExperiment(Lenient):
    experiment_id: str = ""
    new_name: str = ""


class SetExperimentTag(Lenient):
    experiment_id: str = ""
    key: str = ""
    value: str = ""


class DeleteExperimentTag(Lenient):
    experiment_id: str = ""
    key: str = ""


class SearchExperiments(Lenient):
    max_results: Int64 | None = None
    page_token: str = ""
    filter: str = ""
    order_by: list[str] = []
    view_type: Enum = "ACTIVE_ONLY"


# -- runs -------------------------------------------------------------------------------------
class CreateRun(Lenient):
    experiment_id: str = ""
    user_id: str = ""
    run_name: str = ""
    start_time: Int64 | None = None
    tags: list[Tag] = []


class UpdateRun(Lenient):
    run_id: str = ""
    run_uuid: str = ""
    status: Enum | None = None
    end_time: Int64 | None = None
    run_name: str | None = None


class RunRef(Lenient):
    """DeleteRun, RestoreRun."""

    run_id: str = ""


class LogMetric(MetricIn):
    run_uuid: str = ""


class LogParam(Lenient):
    run_id: str = ""
    run_uuid: str = ""
    key: str = ""
    value: str = ""


class SetTag(Lenient):
    run_id: str = ""
    run_uuid: str = ""
    key: str = ""
    value: str = ""


class DeleteTag(Lenient):
    run_id: str = ""
    key: str = ""


class LogBatch(Lenient):
    run_id: str = ""
    metrics: list[MetricIn] = []
    params: list[Param] = []
    tags: list[Tag] = []


class LogModel(Lenient):
    run_id: str = ""
    model_json: str = ""


class Dataset(Lenient):
    name: str = ""
    digest: str = ""
    source_type: str = ""
    source: str = ""
    schema: str = ""
    profile: str = ""


class DatasetInput(Lenient):
    tags: list[Tag] = []
    dataset: Dataset | None = None


class ModelRef(Lenient):
    model_id: str = ""


class ModelOutput(Lenient):
    model_id: str = ""
    step: Int64 = 0


class LogInputs(Lenient):
    run_id: str = ""
    datasets: list[DatasetInput] = []
    models: list[ModelRef] = []


class LogOutputs(Lenient):
    run_id: str = ""
    models: list[ModelOutput] = []


class SearchRuns(Lenient):
    experiment_ids: list[str] = []
    filter: str = ""
    run_view_type: Enum = "ACTIVE_ONLY"
    max_results: Int64 | None = None
    order_by: list[str] = []
    page_token: str = ""


# -- logged models ------------------------------------------------------------------------------
class CreateLoggedModel(Lenient):
    experiment_id: str = ""
    name: str = ""
    model_type: str = ""
    source_run_id: str = ""
    params: list[Param] = []
    tags: list[Tag] = []


class FinalizeLoggedModel(Lenient):
    model_id: str = ""
    status: Enum = ""


class SetLoggedModelTags(Lenient):
    tags: list[Tag] = []


class LogLoggedModelParams(Lenient):
    model_id: str = ""
    params: list[Param] = []


class LoggedModelOrder(Lenient):
    field_name: str = ""
    ascending: bool = True
    dataset_name: str = ""
    dataset_digest: str = ""


class SearchLoggedModels(Lenient):
    experiment_ids: list[str] = []
    filter: str = ""
    max_results: Int64 | None = None
    order_by: list[LoggedModelOrder] = []
    page_token: str = ""


# -- query strings of the GET routes --------------------------------------------------------------
Ident = Annotated[str, Meta(max_length=256, description="an id")]
Name = Annotated[str, Meta(max_length=500)]
Token = Annotated[str, Meta(max_length=1000, description="a page token from a previous answer")]
Filter = Annotated[str, Meta(max_length=4000)]  # a GET request line holds 8 KiB


class Query(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A GET route's query string: every field optional (MLflow answers a missing one as
    INVALID_PARAMETER_VALUE naming it)."""


class GetExperimentQuery(Query, frozen=True, kw_only=True, forbid_unknown_fields=True):
    experiment_id: Ident = ""


class GetExperimentByNameQuery(Query, frozen=True, kw_only=True, forbid_unknown_fields=True):
    experiment_name: Name = ""


class SearchExperimentsQuery(Query, frozen=True, kw_only=True, forbid_unknown_fields=True):
    max_results: Annotated[int, Meta(ge=0)] | None = None
    page_token: Token = ""
    filter: Filter = ""
    order_by: list[str] = []
    view_type: Name = "ACTIVE_ONLY"


class GetRunQuery(Query, frozen=True, kw_only=True, forbid_unknown_fields=True):
    run_id: Ident = ""
    run_uuid: Ident = ""


class GetMetricHistoryQuery(Query, frozen=True, kw_only=True, forbid_unknown_fields=True):
    run_id: Ident = ""
    run_uuid: Ident = ""
    metric_key: Name = ""
    page_token: Token = ""
    max_results: Annotated[int, Meta(ge=0)] | None = None


class MetricHistoryBulkIntervalQuery(Query, frozen=True, kw_only=True, forbid_unknown_fields=True):
    run_ids: list[str] = []
    metric_key: Name = ""
    start_step: int | None = None
    end_step: int | None = None
    max_results: Annotated[int, Meta(ge=0)] | None = None


class GetLoggedModelQuery(Query, frozen=True, kw_only=True, forbid_unknown_fields=True):
    allow_deleted: bool = False
