"""Listing and fetching entities (projects, experiments, models, versions, artifacts).

Every list is paginated and answers its total. Equality filters only; column names
come from a fixed allowlist per table, values are always bound parameters.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import duckdb
import pyarrow as pa

from deardiary.projections.queries.visibility import visible
from deardiary.schemas.errors import InvalidArgument, NotFound


@dataclass(frozen=True)
class Listing:
    table: str
    id_column: str
    filters: frozenset[str]
    order: str
    hides_deleted: bool = True


LISTINGS: dict[str, Listing] = {
    "projects": Listing("projects", "project_id", frozenset({"name", "archived"}), "name"),
    "experiments": Listing(
        "experiments",
        "experiment_id",
        frozenset({"project_id", "name", "status", "archived"}),
        "created_at, experiment_id",
    ),
    "models": Listing(
        "models", "model_id", frozenset({"project_id", "name", "archived"}), "name, model_id"
    ),
    "model_versions": Listing(
        "model_versions",
        "model_version_id",
        frozenset({"model_id", "stage", "iteration_id", "archived", "version"}),
        "model_id, version",
    ),
    "artifacts": Listing(
        "artifacts",
        "artifact_id",
        frozenset({"experiment_id", "iteration_id", "name", "content_hash"}),
        "created_at, name, artifact_id",
    ),
}


@dataclass(frozen=True)
class Page:
    items: pa.Table
    total: int
    limit: int
    offset: int


def check_page(limit: int, offset: int, max_limit: int = 10_000) -> None:
    if not 0 <= limit <= max_limit:  # 0: no items, only the total
        raise InvalidArgument(f"limit must be between 0 and {max_limit}")
    if offset < 0:
        raise InvalidArgument("offset must be >= 0")


def list_entities(
    conn: duckdb.DuckDBPyConnection,
    kind: str,
    filters: Mapping[str, object],
    limit: int = 100,
    offset: int = 0,
    include_archived: bool = True,
) -> Page:
    listing = LISTINGS[kind]
    check_page(limit, offset)
    unknown = set(filters) - listing.filters
    if unknown:
        raise InvalidArgument(
            f"cannot filter {kind} by {sorted(unknown)}; filters: {sorted(listing.filters)}"
        )
    clauses = [visible(listing.table)] if listing.hides_deleted else ["TRUE"]
    if not include_archived:
        clauses.append("NOT archived")
    params: list[object] = []
    for column in sorted(filters):
        clauses.append(f'"{column}" = ?')
        params.append(filters[column])
    where = " AND ".join(clauses)
    total = conn.execute(f"SELECT count(*) FROM {listing.table} WHERE {where}", params).fetchall()
    items = conn.sql(
        f"SELECT * FROM {listing.table} WHERE {where} ORDER BY {listing.order}"
        f" LIMIT {int(limit)} OFFSET {int(offset)}",
        params=params,
    ).to_arrow_table()
    return Page(items, int(total[0][0]), limit, offset)


def get_entity(conn: duckdb.DuckDBPyConnection, kind: str, entity_id: str) -> pa.Table:
    """One row, or NotFound (deleted entities, and those in a deleted one, are not found)."""
    listing = LISTINGS[kind]
    row = conn.sql(
        f"SELECT * FROM {listing.table} WHERE {listing.id_column} = ? AND {visible(listing.table)}",
        params=[entity_id],
    ).to_arrow_table()
    if row.num_rows == 0:
        raise NotFound(f"{kind.rstrip('s').replace('_', ' ')} {entity_id!r} not found")
    return row
