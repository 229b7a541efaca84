"""The values a fold consumes and produces: `PriorState` in, `Writes` out.

Both are plain data, so a fold is a pure function that tests can drive with
hand-built events and no database.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

Row = dict[str, Any]
Key = str | tuple[str, ...]

# Primary key columns of every table the fold upserts (rows are replaced whole).
PRIMARY_KEYS: dict[str, tuple[str, ...]] = {
    "projects": ("project_id",),
    "experiments": ("experiment_id",),
    "iterations": ("iteration_id",),
    "params": ("iteration_id", "section", "key"),
    "last_metrics": ("iteration_id", "key", "group"),
    "artifacts": ("artifact_id",),
    "models": ("model_id",),
    "model_versions": ("model_version_id",),
    "users": ("user_id",),
    "permissions": ("user_id", "project_id"),
    "access_tokens": ("token_id",),
    "media": ("media_id",),
    "histograms": ("histogram_id",),
    "checkpoints": ("checkpoint_id",),
    "model_uses": ("use_id",),
}

CHILD_OF: dict[str, str] = {"params": "iterations", "last_metrics": "iterations"}
"""Tables whose rows the folds write only under an existing row of the parent table (the
parent's key is the first column of theirs; their folds check it with `Draft.parent`):
where the parent is not stored, neither is any of its children (rows are never deleted),
so the store skips looking them up (a sweep trial's new iteration: ~4 ms a batch)."""

# Columns stored as JSON text; the fold sees them as Python values.
JSON_COLUMNS: dict[str, tuple[str, ...]] = {
    "projects": ("tags", "metadata"),
    "experiments": ("tags", "metadata"),
    "iterations": ("tags", "metadata", "environment", "config"),
    "artifacts": ("tags", "metadata"),
    "models": ("tags", "metadata"),
    "model_versions": ("tags", "metadata", "aliases"),
    "media": ("metadata",),
    "checkpoints": ("files", "metrics", "metadata"),
}


def row_key(table: str, row: Row) -> Key:
    cols = PRIMARY_KEYS[table]
    if len(cols) == 1:
        return str(row[cols[0]])
    return tuple(str(row[c]) for c in cols)


@dataclass
class Lookups:
    """What a fold needs loaded from the store for one batch, by table."""

    keys: dict[str, set[Key]] = field(default_factory=dict)
    model_versions_of: set[str] = field(default_factory=set)
    event_ids: set[str] = field(default_factory=set)
    exists: dict[str, set[Key]] = field(default_factory=dict)
    """Rows the fold only needs to know exist (their keys are loaded, not the rows)."""

    def want(self, table: str, key: Key) -> None:
        self.keys.setdefault(table, set()).add(key)

    def want_exists(self, table: str, key: Key) -> None:
        self.exists.setdefault(table, set()).add(key)


@dataclass
class PriorState:
    """What the store holds for the batch's keys before the batch is applied."""

    next_offsets: dict[int, int] = field(default_factory=dict)
    seen_event_ids: set[str] = field(default_factory=set)
    rows: dict[str, dict[Key, Row]] = field(default_factory=dict)
    existing: dict[str, set[Key]] = field(default_factory=dict)
    absent: dict[str, set[Key]] = field(default_factory=dict)
    """Keys the store was asked for (rows or existence) and does not hold: a row the
    batch writes under one of them is new (`Writes.stored`)."""


@dataclass
class Writes:
    """Everything one batch changes; the store applies it in one transaction."""

    next_offsets: dict[int, int] = field(default_factory=dict)
    applied_event_ids: list[str] = field(default_factory=list)
    upserts: dict[str, list[Row]] = field(default_factory=dict)
    inserts: dict[str, list[Row]] = field(default_factory=dict)
    metric_points: pa.Table | None = None
    stored: dict[str, dict[Key, bool]] = field(default_factory=dict)
    """Per upserted table, what the batch's prior load said of its rows' keys: True, the
    store holds a row under the key (it is replaced); False, it holds none (the row is
    inserted, with no delete first). Keys not here are replaced as if held."""
    changed: dict[str, dict[Key, tuple[str, ...]]] = field(default_factory=dict)
    """Per upserted table, for a held row the fold read (its prior row), the columns whose
    values differ from that row's (JSON columns compared by their stored text): the store
    may write just those. Keys not here may differ in any column."""

    @property
    def num_points(self) -> int:
        return 0 if self.metric_points is None else self.metric_points.num_rows
