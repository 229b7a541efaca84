"""Reading the model registry as MLflow shows it: registered models and model versions.

Every function takes a cursor already scoped to what the caller may read (`read` in
context.py), so a model of a project the caller cannot read does not exist for it. A
deleted model, version or project is gone for MLflow too.

A registered model's MLflow name is its name. Names are unique among the models one
caller can see (creating a second is RESOURCE_ALREADY_EXISTS); should an administrator
see two of one name (made in different projects by users who cannot see each other's),
a name means the one in the default project, else the first created.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import duckdb
import msgspec

from deardiary.schemas.events import ModelStage
from deardiary.services.mlflow_api import ids as mlflow_ids
from deardiary.services.mlflow_api.registry_search import Compiled

STAGES = tuple(s.value for s in ModelStage)

MODEL_COLUMNS = (
    "m.model_id, m.project_id, m.name, m.description, m.tags, m.created_by,"
    " epoch_ms(m.created_at) AS created_ms, epoch_ms(m.updated_at) AS updated_ms"
)
MODELS_FROM = (
    "FROM models m JOIN projects p ON p.project_id = m.project_id"
    " WHERE NOT m.deleted AND NOT p.deleted"
)
VERSION_COLUMNS = (
    "v.model_version_id, v.model_id, v.version, v.iteration_id, v.stage, v.description,"
    " v.tags, v.metadata, v.aliases, v.created_by, epoch_ms(v.created_at) AS created_ms,"
    " epoch_ms(v.updated_at) AS updated_ms, m.name AS model_name,"
    " a.name AS artifact_name, a.iteration_id AS artifact_iteration,"
    " a.experiment_id AS artifact_experiment"
)
VERSIONS_FROM = (
    "FROM model_versions v JOIN models m ON m.model_id = v.model_id"
    " JOIN projects p ON p.project_id = m.project_id"
    " LEFT JOIN artifacts a ON a.artifact_id = v.artifact_id AND NOT a.deleted"
    " WHERE NOT v.deleted AND NOT m.deleted AND NOT p.deleted"
)

Row = dict[str, Any]


def _rows(conn: duckdb.DuckDBPyConnection, sql: str, params: Iterable[object] = ()) -> list[Row]:
    cursor = conn.execute(sql, list(params))
    names = [d[0] for d in cursor.description or ()]
    return [dict(zip(names, values, strict=True)) for values in cursor.fetchall()]


def _json(text: object) -> Any:
    return msgspec.json.decode(text) if isinstance(text, str) else (text or {})


def find_model(conn: duckdb.DuckDBPyConnection, name: str, default_project_id: str) -> Row | None:
    """The live registered model called `name` that the caller can see, or None."""
    found = _rows(
        conn,
        f"SELECT {MODEL_COLUMNS} {MODELS_FROM} AND m.name = ?"
        " ORDER BY m.project_id = ? DESC, m.created_at, m.model_id LIMIT 1",
        [name, default_project_id],
    )
    return found[0] if found else None


def find_version(conn: duckdb.DuckDBPyConnection, model_id: str, version: int) -> Row | None:
    found = _rows(
        conn,
        f"SELECT {VERSION_COLUMNS} {VERSIONS_FROM} AND v.model_id = ? AND v.version = ?",
        [model_id, version],
    )
    return found[0] if found else None


def version_by_id(conn: duckdb.DuckDBPyConnection, model_version_id: str) -> Row | None:
    found = _rows(
        conn,
        f"SELECT {VERSION_COLUMNS} {VERSIONS_FROM} AND v.model_version_id = ?",
        [model_version_id],
    )
    return found[0] if found else None


def version_by_alias(conn: duckdb.DuckDBPyConnection, model_id: str, alias: str) -> Row | None:
    found = _rows(
        conn,
        f"SELECT {VERSION_COLUMNS} {VERSIONS_FROM} AND v.model_id = ?"
        " AND list_contains(CAST(v.aliases AS VARCHAR[]), ?) ORDER BY v.version DESC LIMIT 1",
        [model_id, alias],
    )
    return found[0] if found else None


def versions_of(conn: duckdb.DuckDBPyConnection, model_ids: list[str]) -> list[Row]:
    if not model_ids:
        return []
    marks = ", ".join("?" for _ in model_ids)
    return _rows(
        conn,
        f"SELECT {VERSION_COLUMNS} {VERSIONS_FROM} AND v.model_id IN ({marks})"
        " ORDER BY v.model_id, v.version",
        model_ids,
    )


def latest_versions(versions: list[Row], stages: Iterable[str] = STAGES) -> list[Row]:
    """The highest version in each of `stages` (in that order), as MLflow answers it."""
    latest: dict[str, Row] = {}
    for row in versions:
        best = latest.get(row["stage"])
        if best is None or row["version"] > best["version"]:
            latest[row["stage"]] = row
    return [latest[s] for s in stages if s in latest]


def mlflow_of(row: Row) -> dict[str, Any]:
    """What the MLflow API recorded with a version (its ``mlflow.*`` metadata), by the
    key after ``mlflow.``."""
    metadata = _json(row["metadata"])
    return {k.removeprefix("mlflow."): v for k, v in metadata.items() if k.startswith("mlflow.")}


def version_source(row: Row, default_project: str) -> tuple[str, str]:
    """(source, download URI) of a version. One registered through our SDK from an
    artifact has the artifact's place in the ``mlflow-artifacts`` proxy as both."""
    recorded = mlflow_of(row)
    source = str(recorded.get("source") or "")
    if source:
        return source, str(recorded.get("storage_location") or source)
    if row["artifact_name"] is None:
        return "", ""
    experiment = mlflow_ids.experiment_to_mlflow(str(row["artifact_experiment"]), default_project)
    if row["artifact_iteration"]:
        base = mlflow_ids.run_artifact_uri(experiment, str(row["artifact_iteration"]))
    else:
        base = mlflow_ids.experiment_artifact_location(experiment)
    uri = f"{base}/{row['artifact_name']}"
    return uri, uri


def version_json(row: Row, default_project: str) -> dict[str, Any]:
    recorded = mlflow_of(row)
    source, _ = version_source(row, default_project)
    out: dict[str, Any] = {
        "name": row["model_name"],
        "version": str(row["version"]),
        "creation_timestamp": row["created_ms"],
        "last_updated_timestamp": row["updated_ms"],
        "user_id": row["created_by"],
        "current_stage": row["stage"],
        "description": row["description"],
        "source": source,
        "run_id": row["iteration_id"] or "",
        "status": "READY",
        "status_message": "",
        "tags": [{"key": k, "value": v} for k, v in sorted(_json(row["tags"]).items())],
        "run_link": str(recorded.get("run_link") or ""),
        "aliases": sorted(_json(row["aliases"])),
    }
    if recorded.get("model_id"):
        out["model_id"] = str(recorded["model_id"])
    return out


def model_json(row: Row, versions: list[Row], default_project: str) -> dict[str, Any]:
    """A registered model with its latest version per stage and its aliases (`versions`:
    the model's live versions, any order)."""
    mine = [v for v in versions if v["model_id"] == row["model_id"]]
    aliases = sorted((alias, str(v["version"])) for v in mine for alias in _json(v["aliases"]))
    latest = sorted(latest_versions(mine), key=lambda v: int(v["version"]))
    return {
        "name": row["name"],
        "creation_timestamp": row["created_ms"],
        "last_updated_timestamp": row["updated_ms"],
        "user_id": row["created_by"],
        "description": row["description"],
        "latest_versions": [version_json(v, default_project) for v in latest],
        "tags": [{"key": k, "value": v} for k, v in sorted(_json(row["tags"]).items())],
        "aliases": [{"alias": a, "version": v} for a, v in aliases],
    }


def search_models(
    conn: duckdb.DuckDBPyConnection, query: Compiled, limit: int, offset: int
) -> tuple[list[Row], list[Row]]:
    """One page of models (up to `limit` + 1, so the caller knows whether more follow)
    and the live versions of those models."""
    where = "".join(f" AND {w}" for w in query.where)
    models = _rows(
        conn,
        f"SELECT {MODEL_COLUMNS} {MODELS_FROM}{where} ORDER BY {query.order_by} LIMIT ? OFFSET ?",
        [*query.params, limit + 1, offset],
    )
    return models, versions_of(conn, [m["model_id"] for m in models[:limit]])


def search_versions(
    conn: duckdb.DuckDBPyConnection, query: Compiled, limit: int, offset: int
) -> list[Row]:
    where = "".join(f" AND {w}" for w in query.where)
    return _rows(
        conn,
        f"SELECT {VERSION_COLUMNS} {VERSIONS_FROM}{where} ORDER BY {query.order_by}"
        " LIMIT ? OFFSET ?",
        [*query.params, limit + 1, offset],
    )


def iteration(conn: duckdb.DuckDBPyConnection, iteration_id: str) -> Row | None:
    """A live iteration (run or logged model) the caller can see: its experiment, its
    parent (a logged model's source run) and its metadata."""
    found = _rows(
        conn,
        "SELECT i.iteration_id, i.experiment_id, i.project_id, i.parent_iteration_id,"
        " i.metadata FROM iterations i JOIN experiments e ON e.experiment_id = i.experiment_id"
        " WHERE i.iteration_id = ? AND NOT i.deleted AND NOT e.deleted",
        [iteration_id],
    )
    if not found:
        return None
    found[0]["metadata"] = _json(found[0]["metadata"])
    return found[0]
