"""Log lines of an iteration with substring, regex and level filters, paged by cursor."""

from __future__ import annotations

import duckdb
import pyarrow as pa

from deardiary.schemas.errors import InvalidArgument

LOG_COLUMNS = 'time, level, message, source, recorded_at, "partition", "offset", seq'


def log_lines(
    conn: duckdb.DuckDBPyConnection,
    iteration_id: str,
    contains: str | None = None,
    regex: str | None = None,
    level: str | None = None,
    after: tuple[int, int, int] | None = None,
    limit: int = 1000,
) -> pa.Table:
    """Lines in log order. `after` = (partition, offset, seq) of the last line already seen,
    which is how a follower (server-sent events) asks for what is new."""
    p, o, s = after if after is not None else (-1, -1, -1)
    try:
        return conn.sql(
            f"""
            SELECT {LOG_COLUMNS} FROM logs
            WHERE iteration_id = $it
              AND ($contains IS NULL OR contains(message, $contains))
              AND ($regex IS NULL OR regexp_matches(message, $regex))
              AND ($level IS NULL OR upper(level) = upper($level))
              AND ("partition", "offset", seq) > ($p, $o, $s)
            ORDER BY "partition", "offset", seq
            LIMIT $limit
            """,
            params={
                "it": iteration_id,
                "contains": contains,
                "regex": regex,
                "level": level,
                "p": p,
                "o": o,
                "s": s,
                "limit": limit,
            },
        ).to_arrow_table()
    except duckdb.InvalidInputException as exc:
        raise InvalidArgument(f"bad log filter: {exc}") from exc
