"""Where a new model version's files are, and which run made them.

A version's ``source`` as MLflow sends it, checked and resolved to the place the files
are served from (its download URI):

* ``runs:/<run>/<path>`` -- the run's ``mlflow-artifacts`` location plus the path;
* ``models:/<logged model id>`` -- the logged model's ``mlflow-artifacts`` location
  (its source run becomes the version's run);
* ``models:/<name>/<version|stage|latest>`` or ``models:/<name>@<alias>`` -- where that
  registered version's files are (kept as ``models:/<name>/<version>``);
* an ``mlflow-artifacts`` URI -- only inside the artifacts of the run (``run_id``) or
  logged model (``model_id``) given with it, as MLflow's server requires;
* another remote URI (``s3://``...) -- as given. A local path is refused: this server
  has no files of its own to point at.

Runs and models named must be ones the caller can read; a source with ``..`` segments
(also percent-encoded) or NUL is refused.
"""

from __future__ import annotations

import urllib.parse
from typing import Any

import duckdb

from deardiary.services.mlflow_api import ids as mlflow_ids
from deardiary.services.mlflow_api.errors import MlflowError
from deardiary.services.mlflow_api.registry_checks import missing
from deardiary.services.mlflow_api.registry_reads import (
    STAGES,
    find_model,
    find_version,
    iteration,
    latest_versions,
    mlflow_of,
    version_by_alias,
    version_source,
    versions_of,
)
from deardiary.services.mlflow_api.registry_wire import CreateModelVersion

META_KIND = "mlflow.kind"
KIND_LOGGED_MODEL = "logged_model"
_ARTIFACT_ROUTE = ("api", "2.0", "mlflow-artifacts", "artifacts")


def _invalid(source: str, what: str = "") -> MlflowError:
    return MlflowError(f"Invalid model version source: '{source[:500]}'. {what}".strip())


def _unquoted(value: str) -> str:
    for _ in range(5):
        once = urllib.parse.unquote(value)
        if once == value:
            break
        value = once
    return value


def _parts(uri: str) -> tuple[str, str, list[str]]:
    parsed = urllib.parse.urlsplit(uri)
    segments = [_unquoted(s) for s in parsed.path.split("/") if s]
    return parsed.scheme.lower(), parsed.netloc.lower(), segments


def _artifact_parts(uri: str) -> list[str] | None:
    """The path inside the ``mlflow-artifacts`` proxy a URI names, or None."""
    scheme, _, segments = _parts(uri)
    if scheme == "mlflow-artifacts":
        return segments
    if scheme in ("http", "https"):
        n = len(_ARTIFACT_ROUTE)
        for i in range(len(segments) - n + 1):
            if tuple(segments[i : i + n]) == _ARTIFACT_ROUTE:
                return segments[i + n :]
    return None


def _within(source: str, root: str) -> bool:
    inner, base = _artifact_parts(source), _artifact_parts(root)
    return inner is not None and bool(base) and inner[: len(base or [])] == base


def _run(conn: duckdb.DuckDBPyConnection, run_id: str, source: str) -> dict[str, Any]:
    found = iteration(conn, run_id)
    if found is None:
        raise _invalid(source, f"Run '{run_id[:100]}' does not exist or is not yours to read.")
    return found


def _logged_model(conn: duckdb.DuckDBPyConnection, model_id: str, source: str) -> dict[str, Any]:
    inner = mlflow_ids.logged_model_from_mlflow(model_id)
    found = None if inner is None else iteration(conn, inner)
    if found is None or found["metadata"].get(META_KIND) != KIND_LOGGED_MODEL:
        raise _invalid(source, f"Logged model '{model_id[:100]}' does not exist.")
    return found


def resolve_source(
    conn: duckdb.DuckDBPyConnection,
    body: CreateModelVersion,
    default_project: str,
    default_project_id: str,
) -> dict[str, Any]:
    """{"source", "storage_location", "run_id", "model_id", "run_link"} for a new version
    (empty values where there is none)."""
    source, run_id, model_id = body.source, body.run_id, body.model_id
    if not source:
        raise missing("source")
    if "\x00" in _unquoted(source) or ".." in _unquoted(source).split("/"):
        raise _invalid(source, "A source may not contain '..' segments.")

    def artifacts_of(row: dict[str, Any]) -> str:
        experiment = mlflow_ids.experiment_to_mlflow(str(row["experiment_id"]), default_project)
        if row["metadata"].get(META_KIND) == KIND_LOGGED_MODEL:
            model = mlflow_ids.logged_model_to_mlflow(str(row["iteration_id"]))
            return mlflow_ids.logged_model_artifact_uri(experiment, model)
        return mlflow_ids.run_artifact_uri(experiment, str(row["iteration_id"]))

    scheme, netloc, segments = _parts(source)
    storage = source
    if scheme == "runs":
        if netloc or not segments:
            raise _invalid(source, "Expected runs:/<run_id>/<path>.")
        if run_id and run_id != segments[0]:
            raise _invalid(source, "The run_id request parameter must name the source's run.")
        run_id = segments[0]
        storage = "/".join([artifacts_of(_run(conn, run_id, source)), *segments[1:]])
    elif scheme == "models":
        if netloc or not segments:
            raise _invalid(source, "Registered model sources must use this registry.")
        if len(segments) == 1 and "@" not in segments[0]:
            if model_id and model_id != segments[0]:
                raise _invalid(source, "The model_id request parameter must name it.")
            model_id = segments[0]
            logged = _logged_model(conn, model_id, source)
            storage = artifacts_of(logged)
            run_id = run_id or str(logged["parent_iteration_id"] or "")
        else:
            version = _registered(conn, segments, source, default_project_id)
            recorded = mlflow_of(version)
            source = f"models:/{version['model_name']}/{version['version']}"
            _, storage = version_source(version, default_project)
            run_id = run_id or str(version["iteration_id"] or "")
            model_id = model_id or str(recorded.get("model_id") or "")
    elif _artifact_parts(source) is not None:
        if model_id:
            root = artifacts_of(_logged_model(conn, model_id, source))
        elif run_id:
            root = artifacts_of(_run(conn, run_id, source))
        else:
            raise _invalid(source, "The run_id request parameter must name the source's run.")
        if not _within(source, root):
            raise _invalid(source, "It is not inside the artifacts of the run or model named.")
    elif scheme in ("", "file") or len(scheme) == 1:  # a path (a Windows drive letter too)
        raise _invalid(source, "A local path cannot be a model version source on this server.")
    if run_id:
        run = _run(conn, run_id, source)
        if run["metadata"].get(META_KIND) == KIND_LOGGED_MODEL:
            raise _invalid(source, f"'{run_id}' is a logged model, not a run.")
    if model_id and scheme != "models":
        _logged_model(conn, model_id, source)
    return {
        "source": source,
        "storage_location": storage if storage != source else "",
        "run_id": run_id,
        "model_id": model_id,
        "run_link": body.run_link,
    }


def _registered(
    conn: duckdb.DuckDBPyConnection, segments: list[str], source: str, default_project_id: str
) -> dict[str, Any]:
    """The registered version ``models:/<name>/<suffix>`` or ``models:/<name>@<alias>``
    names."""
    if len(segments) == 1:
        name, _, alias = segments[0].rpartition("@")
    elif len(segments) == 2:
        name, alias = segments[0], ""
    else:
        raise _invalid(source, "Expected models:/<name>/<version> or models:/<name>@<alias>.")
    model = find_model(conn, name, default_project_id)
    if model is None:
        raise _invalid(source, f"Registered model '{name[:100]}' does not exist.")
    model_id = str(model["model_id"])
    found = None
    if alias:
        found = version_by_alias(conn, model_id, alias)
    elif segments[1].isdigit():
        found = find_version(conn, model_id, int(segments[1]))
    else:
        suffix = segments[1].lower()
        stages = [s for s in STAGES if s.lower() == suffix]
        if suffix != "latest" and not stages:
            raise _invalid(source, f"Unknown version, stage or alias '{segments[1][:100]}'.")
        latest = latest_versions(versions_of(conn, [model_id]), stages or STAGES)
        found = max(latest, key=lambda v: int(v["version"])) if latest else None
    if found is None:
        raise _invalid(source, "That model version does not exist.")
    return found
