"""User SQL: what may be asked (one SELECT) and of which relations.

This module only reads statements; it guards nothing by itself. Where user SQL runs
is `services/query/sandbox.py`: a separate DuckDB instance with no files, no internal
tables and locked settings, given only the relations below, already filtered to the
caller. Knowing which relations a statement names is an optimisation (provide only
those); a name that is not provided simply does not exist there.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import duckdb

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
        "media",
        "histograms",
        "checkpoints",
        "model_uses",
        "events",
        "conflicts",
        "parked_events",
    }
)
# Relations that span projects: only unscoped callers (administrators) see their rows.
ADMIN_ONLY: frozenset[str] = frozenset({"events", "conflicts", "parked_events"})
MAX_SQL_CHARS = 100_000


def check_statement(conn: duckdb.DuckDBPyConnection, query: str) -> None:
    """Raise unless `query` is exactly one SELECT (parsed by DuckDB itself, so comments,
    quoting and case cannot fool it)."""
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


def tree_nodes(node: Any) -> Iterator[dict[str, Any]]:
    """Every object of a JSON syntax tree (json_serialize_sql), depth first."""
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from tree_nodes(value)
    elif isinstance(node, list):
        for value in node:
            yield from tree_nodes(value)


def mentioned_relations(conn: duckdb.DuckDBPyConnection, query: str) -> set[str]:
    """The published relations a (checked) SELECT names anywhere, in any scope or
    qualification: the ones worth providing to it."""
    rows = conn.execute("SELECT json_serialize_sql(?::VARCHAR)", [query]).fetchall()
    tree = json.loads(rows[0][0])
    if tree.get("error"):
        raise InvalidArgument(f"SQL is not a plain SELECT: {tree.get('error_message', '')}")
    names = {
        str(node.get("table_name", "")).lower()
        for node in tree_nodes(tree)
        if node.get("type") == "BASE_TABLE"
    }
    return names & RELATIONS
