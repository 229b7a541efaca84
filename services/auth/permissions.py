"""Per-project create/read/update/delete grants, and reads scoped to what a caller may see.

Scoping is done in the database, not in each handler: a non-admin caller's cursor
gets TEMP views that shadow every published relation with only the rows of projects
it may read. Every read path — routes, SQL, exports — then sees the same, filtered
world, and a new route is covered without code of its own.
"""

from __future__ import annotations

from enum import StrEnum

import duckdb

from deardiary.schemas.errors import NotFound, PermissionDenied
from deardiary.services.auth.identity import Principal


class Action(StrEnum):
    CREATE = "create"
    READ = "read"
    UPDATE = "update"
    DELETE = "delete"


# How each entity finds its project (in the unscoped main tables).
_PROJECT_OF: dict[str, str] = {
    "project_id": "SELECT project_id FROM {db}.main.projects WHERE project_id = ?",
    "experiment_id": "SELECT project_id FROM {db}.main.experiments WHERE experiment_id = ?",
    "iteration_id": "SELECT project_id FROM {db}.main.iterations WHERE iteration_id = ?",
    "model_id": "SELECT project_id FROM {db}.main.models WHERE model_id = ?",
    "model_version_id": "SELECT m.project_id FROM {db}.main.model_versions v"
    " JOIN {db}.main.models m USING (model_id) WHERE v.model_version_id = ?",
    "artifact_id": "SELECT e.project_id FROM {db}.main.artifacts a"
    " JOIN {db}.main.experiments e USING (experiment_id) WHERE a.artifact_id = ?",
}
ID_PARAMETERS = frozenset(_PROJECT_OF)

# Each published relation, restricted to readable projects (`allowed` is a temp table).
_SCOPED: dict[str, str] = {
    "projects": "SELECT * FROM {db}.main.projects WHERE project_id IN (SELECT p FROM allowed)",
    "experiments": "SELECT * FROM {db}.main.experiments"
    " WHERE project_id IN (SELECT p FROM allowed)",
    "iterations": "SELECT * FROM {db}.main.iterations WHERE project_id IN (SELECT p FROM allowed)",
    "models": "SELECT * FROM {db}.main.models WHERE project_id IN (SELECT p FROM allowed)",
    "params": "SELECT * FROM {db}.main.params WHERE iteration_id IN (SELECT iteration_id FROM"
    " {db}.main.iterations WHERE project_id IN (SELECT p FROM allowed))",
    "last_metrics": "SELECT * FROM {db}.main.last_metrics WHERE iteration_id IN (SELECT"
    " iteration_id FROM {db}.main.iterations WHERE project_id IN (SELECT p FROM allowed))",
    "logs": "SELECT * FROM {db}.main.logs WHERE iteration_id IN (SELECT iteration_id FROM"
    " {db}.main.iterations WHERE project_id IN (SELECT p FROM allowed))",
    "metrics": "SELECT * FROM {db}.main.metrics WHERE iteration_id IN (SELECT iteration_id FROM"
    " {db}.main.iterations WHERE project_id IN (SELECT p FROM allowed))",
    "artifacts": "SELECT * FROM {db}.main.artifacts WHERE experiment_id IN (SELECT experiment_id"
    " FROM {db}.main.experiments WHERE project_id IN (SELECT p FROM allowed))",
    "model_versions": "SELECT * FROM {db}.main.model_versions WHERE model_id IN (SELECT model_id"
    " FROM {db}.main.models WHERE project_id IN (SELECT p FROM allowed))",
    **{
        name: f"SELECT * FROM {{db}}.main.{name} WHERE iteration_id IN (SELECT iteration_id"
        " FROM {db}.main.iterations WHERE project_id IN (SELECT p FROM allowed))"
        for name in ("media", "histograms", "checkpoints", "model_uses")
    },
    "events": "SELECT * FROM {db}.main.events WHERE FALSE",
    "conflicts": "SELECT * FROM {db}.main.conflicts WHERE FALSE",
    "parked_events": "SELECT * FROM {db}.main.parked_events WHERE FALSE",
}


def _db(conn: duckdb.DuckDBPyConnection) -> str:
    return str(conn.execute("SELECT current_database()").fetchall()[0][0])


def project_of(conn: duckdb.DuckDBPyConnection, parameter: str, value: str) -> str | None:
    sql = _PROJECT_OF[parameter].format(db=_db(conn))
    rows = conn.execute(sql, [value]).fetchall()
    return str(rows[0][0]) if rows else None


def granted_projects(
    conn: duckdb.DuckDBPyConnection, principal: Principal, action: Action
) -> list[str]:
    rows = conn.execute(
        f"SELECT project_id FROM {_db(conn)}.main.permissions"
        f" WHERE user_id = ? AND can_{action.value}",
        [principal.user_id],
    ).fetchall()
    return [str(r[0]) for r in rows]


def check(
    conn: duckdb.DuckDBPyConnection, principal: Principal, project_id: str, action: Action
) -> None:
    if principal.is_admin or project_id in granted_projects(conn, principal, action):
        return
    # name the project only to a caller who may read it: a denial must not tell which
    # project a child id (an iteration, an artifact) belongs to
    readable = granted_projects(conn, principal, Action.READ)
    shown = action is not Action.READ and project_id in readable
    raise PermissionDenied(
        f"{principal.username} may not {action.value} in "
        + (f"project {project_id}" if shown else "the project this names"),
        {"project_id": project_id, "action": action.value} if shown else {"action": action.value},
    )


def check_entity(
    conn: duckdb.DuckDBPyConnection,
    principal: Principal,
    parameter: str,
    value: str,
    action: Action,
) -> None:
    """403 for an entity in a project the caller may not touch; 404 when it does not exist."""
    project = project_of(conn, parameter, value)
    if project is None:
        if principal.is_admin:
            return  # let the handler answer its own NOT_FOUND
        raise NotFound(f"{parameter.removesuffix('_id')} {value!r} not found")
    check(conn, principal, project, action)


def scope(
    conn: duckdb.DuckDBPyConnection,
    principal: Principal,
    grants_from: duckdb.DuckDBPyConnection | None = None,
) -> None:
    """Shadow the published relations on this cursor with the caller's readable rows.

    events/conflicts/parked_events are admin-only (they span projects). `grants_from` is
    the cursor whose permissions count (default `conn`): a past state rebuilt for time
    travel is scoped by today's grants, so access taken away stays away in the past."""
    if principal.is_admin:
        return
    db = _db(conn)
    projects = granted_projects(grants_from or conn, principal, Action.READ)
    conn.execute("CREATE OR REPLACE TEMP TABLE allowed (p VARCHAR)")
    if projects:
        conn.executemany("INSERT INTO allowed VALUES (?)", [[p] for p in projects])
    for name, sql in _SCOPED.items():
        conn.execute(f"CREATE OR REPLACE TEMP VIEW {name} AS {sql.format(db=db)}")
