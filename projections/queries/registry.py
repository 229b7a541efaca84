"""From a model to the iterations that produced its versions."""

from __future__ import annotations

import duckdb
import pyarrow as pa

from deardiary.projections.queries.visibility import visible


def model_iterations(conn: duckdb.DuckDBPyConnection, model_id: str) -> pa.Table:
    """Each iteration a version of the model was made from (role "produced") or that used
    one (role "used"): the iteration's id, name, status and experiment, with those version
    numbers and ids, oldest first."""
    return conn.sql(
        f"""
        WITH links AS (
            SELECT 'produced' AS role, v.iteration_id, v.version, v.model_version_id,
                   v.created_at AS at
            FROM model_versions v
            WHERE v.model_id = $m AND v.iteration_id IS NOT NULL
              AND {visible("model_versions", "v")}
            UNION ALL
            SELECT 'used', u.iteration_id, v.version, v.model_version_id, u.used_at
            FROM model_uses u JOIN model_versions v USING (model_version_id)
            WHERE v.model_id = $m AND {visible("model_versions", "v")}
        )
        SELECT l.role, i.iteration_id, i.name, i.status, i.experiment_id, i.project_id,
               list(l.version ORDER BY l.version) AS versions,
               list(l.model_version_id ORDER BY l.version) AS model_version_ids,
               min(l.at) AS first_at
        FROM links l JOIN iterations i USING (iteration_id)
        WHERE {visible("iterations", "i")}
        GROUP BY ALL
        ORDER BY first_at, l.role, i.iteration_id
        """,
        params={"m": model_id},
    ).to_arrow_table()
