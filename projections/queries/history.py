"""Any entity's event history: who changed what, and when (client and log clocks)."""

from __future__ import annotations

import duckdb
import pyarrow as pa


def entity_history(
    conn: duckdb.DuckDBPyConnection, entity_id: str, limit: int = 1000, offset: int = 0
) -> pa.Table:
    return conn.sql(
        """
        SELECT "partition", "offset", event_id, type, actor, client_time, log_time,
               entity_kind, entity_id, summary
        FROM events WHERE entity_id = $id
        ORDER BY log_time, "partition", "offset"
        LIMIT $limit OFFSET $skip
        """,
        params={"id": entity_id, "limit": limit, "skip": offset},
    ).to_arrow_table()
