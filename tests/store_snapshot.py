"""A canonical dump of a projection store, for 'same state' and 'identical answers' checks."""

from __future__ import annotations

from typing import Any

import duckdb

from deardiary.projections.queries.sql import RELATIONS

# Columns that name where a record sat in the log rather than what it said.
_ORDER = {
    "metrics": 'iteration_id, key, step, "partition", "offset", seq',
    "logs": 'iteration_id, "partition", "offset", seq',
    "events": '"partition", "offset"',
    "conflicts": '"partition", "offset", kind',
    "parked_events": '"partition", "offset"',
}


def snapshot(conn: duckdb.DuckDBPyConnection) -> dict[str, list[tuple[Any, ...]]]:
    """Every published relation, fully ordered, as Python rows (NaN compared as text)."""
    out: dict[str, list[tuple[Any, ...]]] = {}
    for name in sorted(RELATIONS):
        order = _ORDER.get(name, "ALL")
        rows = conn.execute(f"SELECT * FROM {name} ORDER BY {order}").fetchall()
        out[name] = [tuple(repr(v) if isinstance(v, float) else v for v in r) for r in rows]
    return out
