"""Which kind of entity an id names, and its project -- for the routes that take any id."""

from __future__ import annotations

import duckdb

from deardiary.schemas.events import EntityKind

_KIND_OF = " UNION ALL ".join(
    f"(SELECT '{kind.value}' AS kind, {project} AS project_id FROM {source} WHERE {column} = $id"
    " LIMIT 1)"
    for kind, source, column, project in (
        (EntityKind.PROJECT, "projects", "project_id", "project_id"),
        (EntityKind.EXPERIMENT, "experiments", "experiment_id", "project_id"),
        (EntityKind.ITERATION, "iterations", "iteration_id", "project_id"),
        (EntityKind.MODEL, "models", "model_id", "project_id"),
        (
            EntityKind.MODEL_VERSION,
            "model_versions v JOIN models m USING (model_id)",
            "v.model_version_id",
            "m.project_id",
        ),
        (
            EntityKind.ARTIFACT,
            "artifacts a JOIN experiments e USING (experiment_id)",
            "a.artifact_id",
            "e.project_id",
        ),
    )
)


def kind_of(conn: duckdb.DuckDBPyConnection, entity_id: str) -> tuple[EntityKind, str] | None:
    """(kind, project id) of the entity with this id -- deleted ones included, so they can
    be restored -- or None when the cursor shows none (unknown, or not the caller's)."""
    rows = conn.execute(f"SELECT kind, project_id FROM ({_KIND_OF}) LIMIT 1", {"id": entity_id})
    found = rows.fetchall()
    if not found:
        return None
    return EntityKind(found[0][0]), str(found[0][1])
