"""The runs table of an experiment, column by column (the web page's big table).

A table of 10,000 iterations x 1,000 params and metric summaries is too big to send
whole, so it is asked for in blocks of columns: every answer has the same rows in the
same order (the filter's rows, oldest first, ties by id) and the columns asked for, so
the page can put blocks side by side as the user scrolls. `columns` lists what exists.

Column names: ``params.<key>`` (text), ``metrics.<key>.<last|min|max|mean|count>``
(numbers; ``metrics@<group>.<key>.<...>`` for a series of a group), ``tags.<key>`` (text).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from deardiary.projections.queries.filter import compile_search
from deardiary.schemas.errors import InvalidArgument

SUMMARIES = ("last", "min", "max", "mean", "count", "last_step")
MAX_COLUMNS = 500

_BASE = """
SELECT i.iteration_id, i.name,
    CASE WHEN i.status = 'RUNNING' AND i.last_heartbeat < ? THEN 'LOST' ELSE i.status END
        AS status,
    i.created_at, epoch(coalesce(i.end_date, ?) - i.created_at) AS duration_s,
    i.parent_iteration_id, i.created_by, CAST(i.tags AS VARCHAR) AS tags
FROM iterations i
"""


@dataclass(frozen=True)
class Column:
    kind: str  # param, metric or tag
    key: str
    part: str  # the summary of a metric, "" otherwise
    group: str = ""  # the group of a metric

    @property
    def name(self) -> str:
        plural = {"param": "params", "metric": "metrics", "tag": "tags"}[self.kind]
        if self.group:
            plural += f"@{self.group}"
        return f"{plural}.{self.key}" + (f".{self.part}" if self.part else "")


def parse_column(name: str) -> Column:
    """``params.lr``, ``metrics.loss.min`` (a key may hold dots), ``tags.team``."""
    kind, _, rest = name.partition(".")
    if kind == "params" and rest:
        return Column("param", rest, "")
    if kind == "tags" and rest:
        return Column("tag", rest, "")
    if kind == "metrics" and rest:
        key, _, part = rest.rpartition(".")
        if key and part in SUMMARIES:
            return Column("metric", key, part)
    if kind.startswith("metrics@") and rest:  # metrics@<group>.<key>.<summary>
        key, _, part = rest.rpartition(".")
        if key and part in SUMMARIES and len(kind) > len("metrics@"):
            return Column("metric", key, part, kind.removeprefix("metrics@"))
    raise InvalidArgument(
        f"column {name!r} is not params.<key>, tags.<key> or metrics[@<group>].<key>.<"
        + "|".join(SUMMARIES)
        + ">",
        {"parameter": "columns", "column": name},
    )


def _rows_sql(
    experiment_id: str, filter_expression: str, lost_before: datetime | None = None
) -> tuple[str, list[object]]:
    """A SELECT of the filtered iterations' ids in table order (`ord` from 0)."""
    search = compile_search(filter_expression, "", lost_before)
    return (
        "SELECT i.iteration_id, (row_number() OVER (ORDER BY i.created_at, i.iteration_id))"
        f" - 1 AS ord FROM {search.source.sql}"
        f" WHERE i.experiment_id = ? AND NOT i.deleted AND ({search.where.sql})",
        [*search.source.params, experiment_id, *search.where.params],
    )


def runs_table(
    conn: duckdb.DuckDBPyConnection,
    experiment_id: str,
    columns: Sequence[str],
    *,
    now: datetime,
    lost_before: datetime,
    filter_expression: str = "",
    base: bool = True,
) -> pa.Table:
    """One row per iteration of the experiment passing the filter, in creation order:
    the base columns (id, name, status, created_at, duration_s, parent, creator, tags)
    when `base`, then each column asked for (iteration_id always). Each kind of column is
    read in one query (each row naming its column by number, not by text) and spread into
    its columns here."""
    wanted = [parse_column(c) for c in dict.fromkeys(columns)]
    if len(wanted) > MAX_COLUMNS:
        raise InvalidArgument(f"at most {MAX_COLUMNS} columns at once", {"parameter": "columns"})
    rows_sql, lead = _rows_sql(experiment_id, filter_expression, lost_before)
    if base:
        out = conn.sql(
            f"WITH r AS ({rows_sql}) {_BASE} JOIN r USING (iteration_id) ORDER BY r.ord",
            params=[*lead, lost_before, now],  # the CTE's parameters come first in the text
        ).to_arrow_table()
    else:
        out = conn.sql(
            f"WITH r AS ({rows_sql}) SELECT iteration_id FROM r ORDER BY ord", params=lead
        ).to_arrow_table()
    n = out.num_rows
    param_cols = [c for c in wanted if c.kind == "param"]
    metrics = [c for c in wanted if c.kind == "metric"]
    tags = [c for c in wanted if c.kind == "tag"]
    spread: dict[str, pa.Array] = {}
    if param_cols:
        keys = sorted({c.key for c in param_cols})
        found = conn.sql(
            f"WITH r AS ({rows_sql}) SELECT r.ord, list_position(?, p.key)::INTEGER - 1 AS at,"
            " p.value FROM r JOIN params p USING (iteration_id) WHERE list_contains(?, p.key)",
            params=[*lead, keys, keys],
        ).to_arrow_table()
        rows = _positions(found, len(keys), n)
        for c in param_cols:
            spread[c.name] = _placed(found["value"], rows[keys.index(c.key)]).cast(pa.string())
    if metrics:
        keys = sorted({c.key for c in metrics})
        groups = sorted({c.group for c in metrics})
        parts = sorted({c.part for c in metrics})
        found = conn.sql(
            f"WITH r AS ({rows_sql}) SELECT r.ord, (list_position(?, m.key)::INTEGER - 1)"
            f' * {len(groups)} + list_position(?, m."group")::INTEGER - 1 AS at, '
            + ", ".join(f"m.{_PART_SQL[part]} AS {part}" for part in parts)
            + " FROM r JOIN last_metrics m USING (iteration_id) WHERE list_contains(?, m.key)"
            ' AND list_contains(?, m."group")',
            params=[*lead, keys, groups, keys, groups],
        ).to_arrow_table()
        rows = _positions(found, len(keys) * len(groups), n)
        for c in metrics:
            at = keys.index(c.key) * len(groups) + groups.index(c.group)
            spread[c.name] = _placed(found[c.part], rows[at]).cast(pa.float64())
    if tags:
        keys = sorted({c.key for c in tags})
        found = conn.sql(
            f"WITH r AS ({rows_sql}) SELECT r.ord, list_position(?, t.key)::INTEGER - 1 AS at,"
            " json_extract_string(i.tags, '$.' || to_json(t.key)) AS value"
            " FROM r JOIN iterations i USING (iteration_id),"
            " unnest(json_keys(i.tags)) AS t(key) WHERE list_contains(?, t.key)",
            params=[*lead, keys, keys],
        ).to_arrow_table()
        rows = _positions(found, len(keys), n)
        for c in tags:
            spread[c.name] = _placed(found["value"], rows[keys.index(c.key)]).cast(pa.string())
    for column in wanted:
        out = out.append_column(column.name, spread[column.name])
    return out


_PART_SQL = {
    "last": "last",
    "min": "min",
    "max": "max",
    "mean": "mean",
    "count": "count::DOUBLE",
    "last_step": "last_step::DOUBLE",
}


def _positions(found: pa.Table, slots: int, n: int) -> np.ndarray:
    """(ord, at, ...) rows -> for each slot `at` (a key, or a key and group) and each of the
    n table rows, the row of `found` holding its value (-1: none). One scatter for every
    column asked, instead of a scan of every found row per column."""
    rows = np.full((max(1, slots), n), -1, dtype=np.int64)
    if found.num_rows:
        rows[found["at"].to_numpy(), found["ord"].to_numpy()] = np.arange(found.num_rows)
    return rows


def _placed(values: pa.ChunkedArray, rows: np.ndarray) -> pa.Array:
    """A column of the table's rows: values[rows[i]], null where rows[i] < 0."""
    return pc.take(values, pa.array(rows, mask=rows < 0))


def columns(conn: duckdb.DuckDBPyConnection, experiment_id: str) -> pa.Table:
    """Every param, metric and tag key of the experiment's iterations: kind, key, group (of
    a metric; "" otherwise), and how many iterations have it (params and metrics in key
    order, then tags)."""
    return conn.sql(
        """
        WITH its AS (
            SELECT iteration_id, tags FROM iterations
            WHERE experiment_id = $exp AND NOT deleted
        )
        SELECT * FROM (
            SELECT 'param' AS kind, p.key, '' AS "group", count(DISTINCT p.iteration_id)
                AS iterations
            FROM params p JOIN its USING (iteration_id) GROUP BY p.key
            UNION ALL
            SELECT 'metric', m.key, m."group", count(*) FROM last_metrics m
            JOIN its USING (iteration_id) GROUP BY m.key, m."group"
            UNION ALL
            SELECT 'tag', t.key, '', count(*) FROM its, unnest(json_keys(its.tags)) AS t(key)
            GROUP BY t.key
        ) ORDER BY kind = 'tag', kind, "group", key
        """,
        params={"exp": experiment_id},
    ).to_arrow_table()
