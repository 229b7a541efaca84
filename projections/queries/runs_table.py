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

from deardiary.projections.queries.filter import compile_filter
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
    filter_expression: str, lost_before: datetime | None = None
) -> tuple[str, list[object]]:
    """A SELECT of the filtered iterations' ids in table order (`ord` from 0)."""
    compiled = compile_filter(filter_expression, lost_before)
    return (
        "SELECT i.iteration_id, (row_number() OVER (ORDER BY i.created_at, i.iteration_id))"
        " - 1 AS ord FROM iterations i"
        f" WHERE i.experiment_id = ? AND NOT i.deleted AND ({compiled.sql})",
        compiled.params,
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
    read in one query and spread into its columns here."""
    wanted = [parse_column(c) for c in dict.fromkeys(columns)]
    if len(wanted) > MAX_COLUMNS:
        raise InvalidArgument(f"at most {MAX_COLUMNS} columns at once", {"parameter": "columns"})
    rows_sql, rows_params = _rows_sql(filter_expression, lost_before)
    lead = [experiment_id, *rows_params]
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
        found = conn.sql(
            f"WITH r AS ({rows_sql}) SELECT r.ord, p.key, p.value FROM r JOIN params p"
            " USING (iteration_id) WHERE list_contains(?, p.key)",
            params=[*lead, [c.key for c in param_cols]],
        ).to_arrow_table()
        spread.update(_texts(found, param_cols, n))
    if metrics:
        keys = sorted({c.key for c in metrics})
        groups = sorted({c.group for c in metrics})
        found = conn.sql(
            f'WITH r AS ({rows_sql}) SELECT r.ord, m.key, m."group", m.last, m.min, m.max,'
            " m.mean, m.count::DOUBLE AS count, m.last_step::DOUBLE AS last_step FROM r"
            " JOIN last_metrics m USING (iteration_id) WHERE list_contains(?, m.key)"
            ' AND list_contains(?, m."group")',
            params=[*lead, keys, groups],
        ).to_arrow_table()
        spread.update(_numbers(found, metrics, n))
    if tags:
        found = conn.sql(
            f"WITH r AS ({rows_sql}) SELECT r.ord, t.key,"
            " json_extract_string(i.tags, '$.' || to_json(t.key)) AS value"
            " FROM r JOIN iterations i USING (iteration_id),"
            " unnest(json_keys(i.tags)) AS t(key) WHERE list_contains(?, t.key)",
            params=[*lead, [c.key for c in tags]],
        ).to_arrow_table()
        spread.update(_texts(found, tags, n))
    for column in wanted:
        out = out.append_column(column.name, spread[column.name])
    return out


def _codes(column: pa.ChunkedArray) -> tuple[np.ndarray, dict[str, int]]:
    """A text column as integer codes, and the code of each distinct text."""
    encoded = column.combine_chunks().dictionary_encode()
    assert isinstance(encoded, pa.DictionaryArray)
    codes = encoded.indices.to_numpy(zero_copy_only=False)
    return codes, {str(v): i for i, v in enumerate(encoded.dictionary.to_pylist())}


def _placed(values: pa.ChunkedArray, ords: np.ndarray, here: np.ndarray, n: int) -> pa.Array:
    """A column of n rows: the `values` rows where `here` at their row numbers, else null."""
    position = np.full(n, -1, dtype=np.int64)
    position[ords[here]] = np.flatnonzero(here)
    return pc.take(values, pa.array(position, mask=position < 0))


def _texts(found: pa.Table, wanted: list[Column], n: int) -> dict[str, pa.Array]:
    """(ord, key, value) rows -> one text column per wanted key."""
    ords = found["ord"].to_numpy()
    codes, code_of = _codes(found["key"])
    out: dict[str, pa.Array] = {}
    for column in wanted:
        here = codes == code_of.get(column.key, -1)
        out[column.name] = _placed(found["value"], ords, here, n).cast(pa.string())
    return out


def _numbers(found: pa.Table, wanted: list[Column], n: int) -> dict[str, pa.Array]:
    """(ord, key, group, last, min, ...) rows -> one float column per wanted (key, group,
    summary)."""
    ords = found["ord"].to_numpy()
    keys, key_code = _codes(found["key"])
    groups, group_code = _codes(found["group"])
    out: dict[str, pa.Array] = {}
    for column in wanted:
        here = (keys == key_code.get(column.key, -1)) & (groups == group_code.get(column.group, -1))
        out[column.name] = _placed(found[column.part], ords, here, n).cast(pa.float64())
    return out


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
