"""Project statistics: iteration counts by status and total runtime."""

from __future__ import annotations

from datetime import datetime

import duckdb
import pyarrow as pa

from deardiary.projections.queries.visibility import visible


def project_stats(
    conn: duckdb.DuckDBPyConnection, project_id: str, now: datetime, lost_after_s: float
) -> pa.Table:
    """Status counts (RUNNING iterations without a recent heartbeat count as LOST) and
    runtime in seconds (running ones count up to `now`)."""
    return conn.sql(
        f"""
        WITH its AS (
            SELECT CASE WHEN status = 'RUNNING'
                        AND last_heartbeat < $now - to_microseconds($lost::BIGINT)
                        THEN 'LOST' ELSE status END AS status,
                   epoch(coalesce(end_date, $now) - created_at) AS runtime_s
            FROM iterations WHERE project_id = $p AND {visible("iterations")}
        )
        SELECT
            (SELECT count(*) FROM experiments WHERE project_id = $p
             AND {visible("experiments")}) AS experiments,
            count(*) AS iterations,
            count(*) FILTER (WHERE status = 'RUNNING') AS running,
            count(*) FILTER (WHERE status = 'SUCCEEDED') AS succeeded,
            count(*) FILTER (WHERE status = 'FAILED') AS failed,
            count(*) FILTER (WHERE status = 'KILLED') AS killed,
            count(*) FILTER (WHERE status = 'LOST') AS lost,
            coalesce(sum(runtime_s), 0)::DOUBLE AS total_runtime_s
        FROM its
        """,
        params={"p": project_id, "now": now, "lost": int(lost_after_s * 1_000_000)},
    ).to_arrow_table()
