"""Read models of what iterations log beyond metrics: media per step, histograms,
checkpoints (sorted by a metric), and which stored content an iteration names."""

from __future__ import annotations

import duckdb
import pyarrow as pa

from deardiary.projections.queries.catalog import Page, check_page
from deardiary.projections.queries.leaderboard import Goal
from deardiary.schemas.errors import InvalidArgument

FILES_TYPE = '[{"path": "VARCHAR", "content_hash": "VARCHAR", "size_bytes": "BIGINT"}]'


def _window(where: list[str], params: list[object], lo: int | None, hi: int | None) -> None:
    if lo is not None:
        where.append("step >= ?")
        params.append(lo)
    if hi is not None:
        where.append("step <= ?")
        params.append(hi)


def _spread(rows: str, max_steps: int | None) -> str:
    """The rows of `rows` (a query with `key` and `step` columns) with `key_steps`, how
    many steps their key has there; with `max_steps` (>= 2), only the rows at that many of
    each key's steps at most, spread evenly from its first step to its last (both kept):
    its steps but the last split into `max_steps - 1` runs of equal length (within one),
    the first step of each run, and the last step. Why: a page that lists a whole run
    would otherwise get the first steps of the first keys only, its page full before the
    rest."""
    if max_steps is not None and max_steps < 2:
        raise InvalidArgument("max_steps must be at least 2 (a key's first and last steps)")
    steps = (
        "SELECT key, step, count(*) OVER (PARTITION BY key) AS key_steps,"
        " row_number() OVER (PARTITION BY key ORDER BY step DESC) = 1 AS _last"
        " FROM (SELECT DISTINCT key, step FROM _rows)"
    )
    if max_steps is not None:
        runs = (
            f"SELECT *, ntile({int(max_steps) - 1}) OVER (PARTITION BY key, _last"
            f" ORDER BY step) AS _run FROM ({steps})"
        )
        steps = (
            f"SELECT * FROM ({runs})"
            " QUALIFY row_number() OVER (PARTITION BY key, _last, _run ORDER BY step) = 1"
        )
    return (
        f"WITH _rows AS ({rows}), _steps AS ({steps})"
        " SELECT _rows.*, _steps.key_steps FROM _rows JOIN _steps USING (key, step)"
    )


def media(
    conn: duckdb.DuckDBPyConnection,
    iteration_id: str,
    *,
    key: str | None = None,
    kind: str | None = None,
    min_step: int | None = None,
    max_step: int | None = None,
    limit: int = 1000,
    offset: int = 0,
    max_steps: int | None = None,
) -> Page:
    """An iteration's media items in (key, step, index) order, with the total; every item
    says how many steps its key has (`key_steps`). With `max_steps`, the items at that
    many of each key's steps at most (see `_spread`)."""
    check_page(limit, offset)
    where: list[str] = ["iteration_id = ?"]
    params: list[object] = [iteration_id]
    for column, value in (("key", key), ("kind", kind)):
        if value is not None:
            where.append(f"{column} = ?")
            params.append(value)
    _window(where, params, min_step, max_step)
    rows = _spread(f"SELECT * FROM media WHERE {' AND '.join(where)}", max_steps)
    total = conn.execute(f"SELECT count(*) FROM ({rows})", params).fetchall()
    items = conn.sql(
        f'SELECT * EXCLUDE (media_id) FROM ({rows}) ORDER BY key, step, "index"'
        f" LIMIT {int(limit)} OFFSET {int(offset)}",
        params=params,
    ).to_arrow_table()
    return Page(items, int(total[0][0]), limit, offset)


def histograms(
    conn: duckdb.DuckDBPyConnection,
    iteration_id: str,
    *,
    key: str | None = None,
    min_step: int | None = None,
    max_step: int | None = None,
    limit: int = 1000,
    max_steps: int | None = None,
) -> pa.Table:
    """An iteration's histograms in (key, step) order: edges, counts, count, min, max, and
    `key_steps`, how many steps that key has in the window. With `max_steps`, at most that
    many steps of each key (see `_spread`)."""
    check_page(limit, 0)
    where: list[str] = ["iteration_id = ?"]
    params: list[object] = [iteration_id]
    if key is not None:
        where.append("key = ?")
        params.append(key)
    _window(where, params, min_step, max_step)
    rows = _spread(f"SELECT * FROM histograms WHERE {' AND '.join(where)}", max_steps)
    return conn.sql(
        f"SELECT * EXCLUDE (histogram_id) FROM ({rows}) ORDER BY key, step LIMIT {int(limit)}",
        params=params,
    ).to_arrow_table()


def checkpoints(
    conn: duckdb.DuckDBPyConnection,
    iteration_id: str,
    *,
    order_by: str | None = None,
    goal: str = "min",
    include_discarded: bool = False,
) -> pa.Table:
    """An iteration's checkpoints: by step, or best first by a metric recorded with them
    (`order_by`, `goal`; checkpoints without that metric, or NaN, last)."""
    where = "iteration_id = $it" + ("" if include_discarded else " AND NOT discarded")
    value = "TRY_CAST(json_extract(metrics, '$.' || to_json($metric)) AS DOUBLE)"
    if order_by is None:
        order = "step, created_at, checkpoint_id"
    else:
        try:
            direction = "ASC" if Goal(goal) is Goal.MIN else "DESC"
        except ValueError:
            raise InvalidArgument("goal must be min or max") from None
        order = f"{value} IS NULL OR isnan({value}), {value} {direction}, step, checkpoint_id"
    return conn.sql(
        f"SELECT * FROM checkpoints WHERE {where} ORDER BY {order}",
        params={"it": iteration_id, **({"metric": order_by} if order_by is not None else {})},
    ).to_arrow_table()


def checkpoint_files(
    conn: duckdb.DuckDBPyConnection, checkpoint_id: str
) -> list[dict[str, object]]:
    """The files of one checkpoint (path, content_hash, size_bytes); [] when unknown."""
    rows = conn.execute(
        f"SELECT unnest(from_json(files, '{FILES_TYPE}'), recursive := true)"
        " FROM checkpoints WHERE checkpoint_id = ?",
        [checkpoint_id],
    ).fetchall()
    return [{"path": p, "content_hash": h, "size_bytes": int(n)} for p, h, n in rows]


def iteration_content(
    conn: duckdb.DuckDBPyConnection, iteration_id: str, content_hash: str
) -> tuple[str, int] | None:
    """(media type, size) of content the iteration's media or checkpoints name, else None:
    bytes are served only through an entity the caller may read that names them."""
    found = conn.execute(
        f"""
        SELECT media_type, size_bytes FROM media
        WHERE iteration_id = $it AND content_hash = $h
        UNION ALL
        SELECT 'application/octet-stream', f.size_bytes FROM (
            SELECT unnest(from_json(files, '{FILES_TYPE}'), recursive := true)
            FROM checkpoints WHERE iteration_id = $it
        ) f WHERE f.content_hash = $h
        LIMIT 1
        """,
        {"it": iteration_id, "h": content_hash},
    ).fetchall()
    return (str(found[0][0]), int(found[0][1])) if found else None


def referenced(conn: duckdb.DuckDBPyConnection, hashes: list[str]) -> set[str]:
    """Which of `hashes` something still names: any artifact (deleted ones too: they can
    be restored), any media item, any checkpoint not discarded. `conn` is unscoped."""
    if not hashes:
        return set()
    rows = conn.execute(
        f"""
        WITH wanted AS (SELECT unnest($hashes::VARCHAR[]) AS h)
        SELECT h FROM wanted WHERE
            h IN (SELECT content_hash FROM artifacts)
            OR h IN (SELECT content_hash FROM media)
            OR h IN (
                SELECT f.content_hash FROM (
                    SELECT unnest(from_json(files, '{FILES_TYPE}'), recursive := true)
                    FROM checkpoints WHERE NOT discarded
                ) f
            )
        """,
        {"hashes": hashes},
    ).fetchall()
    return {str(r[0]) for r in rows}
