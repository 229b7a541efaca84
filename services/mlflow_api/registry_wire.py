"""The model registry's requests, field for field as MLflow's protos name them
(``mlflow/protos/model_registry.proto``).

POST, PATCH and DELETE bodies are decoded leniently (endpoint.decode_json): unknown
fields are ignored, int64 fields may be numbers or strings. Every field is optional
here; the handlers say which are required, in MLflow's words. GET routes take their
fields from the query string (the ``...Query`` Structs, parsed and documented from one
declaration).
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from msgspec import Meta

Version = str | int
"""A version number; MLflow sends it as a string."""


class Body(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A registry request body."""


class RegistryTag(Body):
    key: str = ""
    value: str = ""


class CreateRegisteredModel(Body):
    name: str = ""
    tags: list[RegistryTag] = []
    description: str = ""
    deployment_job_id: str = ""


class RenameRegisteredModel(Body):
    name: str = ""
    new_name: str = ""


class UpdateRegisteredModel(Body):
    name: str = ""
    description: str | None = None
    deployment_job_id: str = ""


class RegisteredModelRef(Body):
    """DeleteRegisteredModel."""

    name: str = ""


class GetLatestVersions(Body):
    name: str = ""
    stages: list[str] = []


class SetRegisteredModelTag(Body):
    name: str = ""
    key: str = ""
    value: str = ""


class DeleteRegisteredModelTag(Body):
    name: str = ""
    key: str = ""


class SetRegisteredModelAlias(Body):
    name: str = ""
    alias: str = ""
    version: Version = ""


class DeleteRegisteredModelAlias(Body):
    name: str = ""
    alias: str = ""


class CreateModelVersion(Body):
    name: str = ""
    source: str = ""
    run_id: str = ""
    tags: list[RegistryTag] = []
    run_link: str = ""
    description: str = ""
    model_id: str = ""


class ModelVersionRef(Body):
    """DeleteModelVersion."""

    name: str = ""
    version: Version = ""


class UpdateModelVersion(Body):
    name: str = ""
    version: Version = ""
    description: str | None = None


class TransitionModelVersionStage(Body):
    name: str = ""
    version: Version = ""
    stage: str = ""
    archive_existing_versions: bool = False


class SetModelVersionTag(Body):
    name: str = ""
    version: Version = ""
    key: str = ""
    value: str = ""


class DeleteModelVersionTag(Body):
    name: str = ""
    version: Version = ""
    key: str = ""


# -- query strings of the GET routes -------------------------------------------------------
Text = Annotated[str, Meta(max_length=4096)]


class Query(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Base of the registry's query-string Structs (empty means absent)."""


class RegisteredModelQuery(Query, frozen=True, kw_only=True):
    name: Annotated[Text, Meta(description="the registered model's name")] = ""


class LatestVersionsQuery(Query, frozen=True, kw_only=True):
    name: Annotated[Text, Meta(description="the registered model's name")] = ""
    stages: Annotated[
        list[Text], Meta(description="None, Staging, Production, Archived (default: all)")
    ] = []


class ModelVersionQuery(Query, frozen=True, kw_only=True):
    """GetModelVersion, GetModelVersionDownloadUri."""

    name: Annotated[Text, Meta(description="the registered model's name")] = ""
    version: Annotated[Text, Meta(description="the version number")] = ""


class AliasQuery(Query, frozen=True, kw_only=True):
    name: Annotated[Text, Meta(description="the registered model's name")] = ""
    alias: Annotated[Text, Meta(description="the alias")] = ""


class SearchQuery(Query, frozen=True, kw_only=True):
    """SearchRegisteredModels, SearchModelVersions."""

    filter: Annotated[
        Text, Meta(description="comparisons joined by AND, e.g. name LIKE 'clf%'")
    ] = ""
    max_results: Annotated[
        Annotated[int, Meta(ge=1, le=200_000)] | None,
        Meta(description="page size (models: at most 1,000)"),
    ] = None
    order_by: Annotated[
        list[Text], Meta(description="e.g. 'name ASC', 'last_updated_timestamp DESC'")
    ] = []
    page_token: Annotated[Text, Meta(description="from the previous page")] = ""
