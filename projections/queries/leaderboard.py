"""Best iteration by a metric, the running-best history, and the per-iteration summary table."""

from __future__ import annotations

from enum import StrEnum

import duckdb
import pyarrow as pa

from deardiary.schemas.errors import InvalidArgument


class Goal(StrEnum):
    MIN = "min"
    MAX = "max"


class Aggregate(StrEnum):
    """Which number of an iteration's series ranks it: its last, best (min/max) or mean."""

    LAST = "last"
    MIN = "min"
    MAX = "max"
    MEAN = "mean"
    FIRST = "first"


def _parse(goal: str, aggregate: str) -> tuple[Goal, Aggregate]:
    try:
        return Goal(goal), Aggregate(aggregate)
    except ValueError as exc:
        raise InvalidArgument(
            f"goal must be min|max and aggregate one of {list(Aggregate)}"
        ) from exc


def summary(
    conn: duckdb.DuckDBPyConnection,
    experiment_id: str,
    key: str,
    goal: str = "min",
    aggregate: str | None = None,
    limit: int | None = None,
    group: str = "",
) -> pa.Table:
    """One row per iteration: its ranking value for the series (`key`, `group`), sorted
    best first (NaN last)."""
    g, a = _parse(goal, aggregate or goal)
    direction = "ASC" if g is Goal.MIN else "DESC"
    return conn.sql(
        f"""
        SELECT i.iteration_id, i.name, i.status, lm."{a.value}" AS value,
               lm.min, lm.max, lm.last, lm.count,
               CASE WHEN $a = 'min' THEN lm.min_step WHEN $a = 'max' THEN lm.max_step
                    ELSE lm.last_step END AS step
        FROM iterations i JOIN last_metrics lm USING (iteration_id)
        WHERE i.experiment_id = $exp AND lm.key = $key AND lm."group" = $g AND NOT i.deleted
        ORDER BY isnan(coalesce(value, 'NaN'::DOUBLE)), value {direction}, i.iteration_id
        LIMIT coalesce($limit, 9223372036854775807)
        """,
        params={"exp": experiment_id, "key": key, "g": group, "a": a.value, "limit": limit},
    ).to_arrow_table()


def best(
    conn: duckdb.DuckDBPyConnection,
    experiment_id: str,
    key: str,
    goal: str = "min",
    aggregate: str | None = None,
    group: str = "",
) -> pa.Table:
    """The best iteration (a one-row table, empty when nothing was logged)."""
    return summary(conn, experiment_id, key, goal, aggregate, limit=1, group=group)


def running_best(
    conn: duckdb.DuckDBPyConnection,
    experiment_id: str,
    key: str,
    goal: str = "min",
    group: str = "",
) -> pa.Table:
    """How the experiment's best value improved, point by point, in log order.

    One row each time a newly logged value beat every earlier value of any iteration
    (Determined's validation history): iteration_id, step, value, recorded_at.
    """
    g, _ = _parse(goal, goal)
    better = "<" if g is Goal.MIN else ">"
    window = "min" if g is Goal.MIN else "max"
    return conn.sql(
        f"""
        WITH pts AS (
            SELECT m.iteration_id, m.step, m.value, m.recorded_at,
                   m."partition", m."offset", m.seq
            FROM metrics m JOIN iterations i USING (iteration_id)
            WHERE i.experiment_id = $exp AND NOT i.deleted AND m.key = $key
              AND m."group" = $g AND NOT isnan(m.value)
        ),
        ordered AS (
            SELECT *, {window}(value) OVER (
                ORDER BY recorded_at, "partition", "offset", seq
                ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING
            ) AS before
            FROM pts
        )
        SELECT iteration_id, step, value, recorded_at FROM ordered
        WHERE before IS NULL OR value {better} before
        ORDER BY recorded_at, "partition", "offset", seq
        """,
        params={"exp": experiment_id, "key": key, "g": group},
    ).to_arrow_table()
