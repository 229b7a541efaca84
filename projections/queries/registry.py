"""From a model to the iterations that produced its versions."""

from __future__ import annotations

import duckdb
import pyarrow as pa

from deardiary.projections.queries.visibility import visible


def model_iterations(conn: duckdb.DuckDBPyConnection, model_id: str) -> pa.Table:
    """Each iteration a version of the model was made from: the iteration's id, name,
    status and experiment, with the versions (numbers) it produced, oldest first."""
    return conn.sql(
        f"""
        SELECT i.iteration_id, i.name, i.status, i.experiment_id, i.project_id,
               list(v.version ORDER BY v.version) AS versions,
               list(v.model_version_id ORDER BY v.version) AS model_version_ids,
               min(v.created_at) AS first_version_at
        FROM model_versions v JOIN iterations i USING (iteration_id)
        WHERE v.model_id = $m AND {visible("model_versions", "v")}
          AND {visible("iterations", "i")}
        GROUP BY ALL
        ORDER BY first_version_at, i.iteration_id
        """,
        params={"m": model_id},
    ).to_arrow_table()
