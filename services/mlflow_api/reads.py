"""The SQL behind the MLflow reads, over the (caller-scoped) projection tables.

Each function takes a cursor and returns plain rows (dicts); render.py turns them into
MLflow's JSON. Under --auth the cursor's tables are already narrowed to the projects
the caller may read, so "not found" and "not yours" look the same here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import duckdb
import msgspec

from deardiary.services.mlflow_api.fields import (
    END_MS,
    IS_LOGGED_MODEL,
    START_MS,
    USER_ID,
    mlflow_key,
    series,
)

Row = dict[str, Any]

EXPERIMENT_SELECT = """
SELECT e.experiment_id, e.name, p.name AS project, e.project_id, e.description, e.tags,
       e.deleted, epoch_ms(e.created_at) AS created, epoch_ms(e.updated_at) AS updated
FROM experiments e JOIN projects p USING (project_id)
"""

RUN_SELECT = f"""
SELECT i.iteration_id, i.experiment_id, i.project_id, i.name, i.status, i.error_message,
       i.parent_iteration_id, i.notes, i.tags, i.metadata, i.deleted,
       {START_MS} AS start_ms, {END_MS} AS end_ms, {USER_ID} AS user_id,
       epoch_ms(i.created_at) AS created, epoch_ms(i.updated_at) AS updated
FROM iterations i
"""

_json = msgspec.json.Decoder()


def rows(conn: duckdb.DuckDBPyConnection, sql: str, params: Sequence[object] = ()) -> list[Row]:
    """The result as dicts; JSON columns (tags, metadata) decoded."""
    result = conn.execute(sql, list(params))
    names = [d[0] for d in result.description or ()]
    out = []
    for values in result.fetchall():
        row = dict(zip(names, values, strict=True))
        for column in ("tags", "metadata"):
            if isinstance(row.get(column), str):
                row[column] = _json.decode(row[column])
        out.append(row)
    return out


def experiment(conn: duckdb.DuckDBPyConnection, experiment_id: str) -> Row | None:
    found = rows(conn, EXPERIMENT_SELECT + " WHERE e.experiment_id = ?", [experiment_id])
    return found[0] if found else None


def experiment_named(conn: duckdb.DuckDBPyConnection, project: str, name: str) -> Row | None:
    """Experiment `name` of project `project` (deleted ones too), the oldest if several."""
    found = rows(
        conn,
        EXPERIMENT_SELECT + " WHERE p.name = ? AND e.name = ? ORDER BY e.created_at LIMIT 1",
        [project, name],
    )
    return found[0] if found else None


def project_exists(conn: duckdb.DuckDBPyConnection, name: str) -> bool:
    return bool(conn.execute("SELECT 1 FROM projects WHERE name = ?", [name]).fetchall())


def page(
    conn: duckdb.DuckDBPyConnection,
    select: str,
    where: str,
    params: Sequence[object],
    order: str,
    limit: int,
    offset: int,
) -> list[Row]:
    """One page of `select` (EXPERIMENT_SELECT, RUN_SELECT, RUN_IDS_SELECT) rows."""
    sql = f"{select} WHERE {where} ORDER BY {order} LIMIT ? OFFSET ?"
    return rows(conn, sql, [*params, limit, offset])


RUN_IDS_SELECT = "SELECT i.iteration_id FROM iterations i"
"""The ids of RUN_SELECT's runs (fetching no other column)."""


def run(conn: duckdb.DuckDBPyConnection, run_id: str) -> Row | None:
    found = rows(conn, RUN_SELECT + " WHERE i.iteration_id = ?", [run_id])
    return found[0] if found else None


def run_state(conn: duckdb.DuckDBPyConnection, run_id: str) -> tuple[bool, bool] | None:
    """(deleted, is a logged model) of a run, or None when it is not there (yet)."""
    found = conn.execute(
        f"SELECT i.deleted, {IS_LOGGED_MODEL} FROM iterations i WHERE i.iteration_id = ?",
        [run_id],
    ).fetchall()
    return (bool(found[0][0]), bool(found[0][1])) if found else None


def runs(conn: duckdb.DuckDBPyConnection, run_ids: Sequence[str]) -> list[Row]:
    """These runs' rows, in no particular order."""
    return rows(conn, RUN_SELECT + " WHERE i.iteration_id IN (SELECT unnest(?))", [list(run_ids)])


RUN_DATA_SQL = """
SELECT iteration_id, FALSE AS metric, key, section AS "group", value AS text, NULL::DOUBLE AS value,
       NULL::BIGINT AS step, NULL::BIGINT AS timestamp
FROM params WHERE iteration_id IN (SELECT unnest($1))
UNION ALL
SELECT iteration_id, TRUE, key, "group", NULL, "last", last_step, epoch_ms(last_recorded_at)
FROM last_metrics WHERE iteration_id IN (SELECT unnest($1))
ORDER BY iteration_id, metric, "group", key
"""
"""Params and latest metrics of some runs in one statement (DuckDB plans each statement
anew, ~3 ms apiece; `IN (SELECT unnest(...))` beats `list_contains` on long lists)."""
RUN_DATA_ONE_SQL = RUN_DATA_SQL.replace("IN (SELECT unnest($1))", "= $1")
"""The same for one run (get_run, a logged run's page): an equality on the id costs ~1.5 ms
less than the list's subquery."""


def run_data(
    conn: duckdb.DuckDBPyConnection, run_ids: Sequence[str]
) -> tuple[dict[str, list[Row]], dict[str, list[Row]]]:
    """(params, latest metrics) of each run, by run id."""
    ids = list(run_ids)
    params: dict[str, list[Row]] = {r: [] for r in ids}
    metrics: dict[str, list[Row]] = {r: [] for r in ids}
    if not ids:
        return params, metrics
    found = (
        conn.execute(RUN_DATA_ONE_SQL, ids) if len(ids) == 1 else conn.execute(RUN_DATA_SQL, [ids])
    )
    for run_id, metric, key, group, text, value, step, timestamp in found.fetchall():
        if metric:
            metrics[run_id].append(
                {
                    "iteration_id": run_id,
                    "key": mlflow_key(key, group),
                    "value": value,
                    "step": step,
                    "timestamp": timestamp,
                }
            )
        else:
            params[run_id].append(
                {"iteration_id": run_id, "key": mlflow_key(key, group), "value": text}
            )
    return params, metrics


HISTORY_SQL = """
SELECT step, value, epoch_ms(client_time) AS timestamp
FROM metrics WHERE iteration_id = ? AND key = ? AND "group" = ?
ORDER BY step, "partition", "offset", seq
"""


def metric_history(
    conn: duckdb.DuckDBPyConnection, run_id: str, key: str, limit: int | None, offset: int
) -> tuple[list[int], list[float], list[int]]:
    """(steps, values, timestamps in ms) of one metric (an MLflow key: fields.series), in
    step order (ties: logged order)."""
    sql, params = HISTORY_SQL, [run_id, *series(key)]
    if limit is not None:
        sql += f" LIMIT {int(limit)} OFFSET {int(offset)}"
    table = conn.sql(sql, params=params).to_arrow_table()
    return (
        table["step"].to_pylist(),
        table["value"].to_pylist(),
        table["timestamp"].to_pylist(),
    )


def metric_steps(
    conn: duckdb.DuckDBPyConnection, run_ids: Sequence[str], key: str
) -> dict[str, list[int]]:
    """The distinct steps of one metric of each run, sorted."""
    out: dict[str, list[int]] = {r: [] for r in run_ids}
    found = conn.execute(
        "SELECT iteration_id, list(DISTINCT step ORDER BY step) FROM metrics"
        ' WHERE list_contains(?, iteration_id) AND key = ? AND "group" = ? GROUP BY iteration_id',
        [list(run_ids), *series(key)],
    ).fetchall()
    for run_id, steps in found:
        out[str(run_id)] = [int(s) for s in steps]
    return out


def points_at(
    conn: duckdb.DuckDBPyConnection, run_ids: Sequence[str], key: str, steps: Sequence[int]
) -> list[Row]:
    """Every point of one metric of these runs at these steps (run, step, logged order)."""
    return rows(
        conn,
        "SELECT iteration_id, step, value, epoch_ms(client_time) AS timestamp FROM metrics"
        ' WHERE list_contains(?, iteration_id) AND key = ? AND "group" = ?'
        ' AND list_contains(?, step) ORDER BY iteration_id, step, "partition", "offset", seq',
        [list(run_ids), *series(key), list(steps)],
    )


def points_held(
    conn: duckdb.DuckDBPyConnection, run_id: str, keys: Sequence[str], steps: Sequence[int]
) -> list[tuple[str, int, int, float]]:
    """(key, step, timestamp in ms, value) of a run's ungrouped points of these keys at
    these steps."""
    found = conn.execute(
        "SELECT key, step, epoch_ms(client_time), value FROM metrics WHERE iteration_id = ?"
        " AND \"group\" = '' AND list_contains(?, key) AND list_contains(?, step)",
        [run_id, list(keys), list(steps)],
    ).fetchall()
    return [(str(k), int(s), int(t), float(v)) for k, s, t, v in found]
