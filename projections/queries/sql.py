"""Read-only SQL for users: one SELECT over the published relations, nothing else.

The statement is parsed by DuckDB itself (`json_serialize_sql`) and its syntax tree
is checked: only SELECT, only unqualified names of the relations below (or the
query's own CTEs), and no table functions that could reach files or other
databases. Checking the tree, not the text, is what keeps it from being fooled by
comments, quoting or case.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import duckdb
import pyarrow as pa

from deardiary.schemas.errors import InvalidArgument, PermissionDenied

RELATIONS: frozenset[str] = frozenset(
    {
        "projects",
        "experiments",
        "iterations",
        "params",
        "metrics",
        "last_metrics",
        "logs",
        "artifacts",
        "models",
        "model_versions",
        "events",
        "conflicts",
        "parked_events",
    }
)
_SAFE_TABLE_FUNCTIONS = frozenset({"range", "generate_series", "unnest"})
MAX_SQL_CHARS = 100_000


def _walk(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def _cte_names(tree: Any) -> set[str]:
    names: set[str] = set()
    for node in _walk(tree):
        cte_map = node.get("cte_map")
        if isinstance(cte_map, dict):
            names.update(str(e.get("key", "")).lower() for e in cte_map.get("map", []))
    return names


def check_read_only(conn: duckdb.DuckDBPyConnection, query: str) -> None:
    """Raise unless `query` is a single SELECT over the published relations."""
    if len(query) > MAX_SQL_CHARS:
        raise InvalidArgument(f"SQL longer than {MAX_SQL_CHARS} characters")
    try:
        statements = conn.extract_statements(query)
    except duckdb.Error as exc:
        raise InvalidArgument(f"SQL does not parse: {exc}") from exc
    if len(statements) != 1:
        raise InvalidArgument("exactly one SQL statement is accepted")
    if statements[0].type != duckdb.StatementType.SELECT:
        raise PermissionDenied(
            f"SQL is read-only here: {statements[0].type.name} statements are refused"
        )
    rows = conn.execute("SELECT json_serialize_sql(?::VARCHAR)", [query]).fetchall()
    tree = json.loads(rows[0][0])
    if tree.get("error"):
        raise InvalidArgument(f"SQL is not a plain SELECT: {tree.get('error_message', '')}")
    allowed = RELATIONS | _cte_names(tree)
    for node in _walk(tree):
        kind = node.get("type")
        if kind == "BASE_TABLE":
            name = str(node.get("table_name", "")).lower()
            if node.get("schema_name") or node.get("catalog_name") or name not in allowed:
                qualified = ".".join(
                    str(p) for p in (node.get("catalog_name"), node.get("schema_name")) if p
                )
                shown = f"{qualified}.{name}" if qualified else name
                raise InvalidArgument(
                    f"unknown relation {shown!r}; queryable: {', '.join(sorted(RELATIONS))}"
                )
        elif kind == "TABLE_FUNCTION":
            function = node.get("function") or {}
            fname = str(function.get("function_name", "")).lower()
            if fname not in _SAFE_TABLE_FUNCTIONS:
                raise PermissionDenied(f"table function {fname!r} is not allowed in SQL")


def run_read_only(conn: duckdb.DuckDBPyConnection, query: str) -> pa.Table:
    """Check, then run on the given (reader) connection; DuckDB errors become INVALID_ARGUMENT."""
    check_read_only(conn, query)
    try:
        return conn.sql(query).to_arrow_table()
    except duckdb.Error as exc:
        raise InvalidArgument(f"SQL failed: {exc}") from exc
