"""The working state of one fold: prior rows, copied on write, plus what the batch adds.

Per-aggregate folds read and change rows through a `Draft`; `Draft.writes()` turns
the result into a `Writes` value. Nothing here touches a clock, a file or a database.
"""

from __future__ import annotations

import copy
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

import msgspec
import pyarrow as pa

from deardiary.projections.writes import JSON_COLUMNS, Key, PriorState, Row, Writes, row_key
from deardiary.schemas.envelope import Envelope, LogPosition

_EPOCH = datetime(1970, 1, 1)
_MISSING: Any = object()
_IMMUTABLE = frozenset(
    {str, int, float, bool, type(None), bytes, datetime, date, time, timedelta, Decimal, UUID}
)
"""Types of column values a row copy shares instead of copying (none can change)."""


def copy_row(row: Row) -> Row:
    """A copy of a row that a fold may change without touching `row`: what copy.deepcopy
    gives, but a value that cannot change (a string, a number, a time: nearly every column)
    is shared rather than walked; lists and dicts (JSON columns) are deep-copied, aliases
    among them kept. A batch of points reads and copies each of its series' summaries
    twice, an iteration's row (its environment snapshot) is copied by every event on it:
    ~0.6 ms of a sweep trial's fold went to deepcopy walking scalars."""
    memo: dict[int, Any] = {}
    return {k: v if type(v) in _IMMUTABLE else copy.deepcopy(v, memo) for k, v in row.items()}


def ts(micros: int) -> datetime:
    """A naive UTC datetime from microseconds since the epoch (the tables' time type)."""
    return _EPOCH + timedelta(microseconds=micros)


class Draft:
    """Rows as the batch has changed them so far, and the rows it inserts."""

    def __init__(self, prior: PriorState) -> None:
        self._prior = prior
        self._rows: dict[str, dict[Key, Row]] = {}
        self._dirty: dict[str, dict[Key, Row]] = {}
        self.inserts: dict[str, list[Row]] = {}
        self.point_tables: list[pa.Table] = []
        # set by the dispatcher for the event being folded
        self.position = LogPosition(0, 0, 0)
        self.envelope: Envelope | None = None
        # what the current event changed, to undo it if its fold raises
        self._journal: dict[tuple[str, Key], tuple[Any, bool]] | None = None
        self._marks: tuple[dict[str, int], int] = ({}, 0)

    # -- one event at a time: all of it or none of it -----------------------
    def begin(self) -> None:
        """Start folding one event; `rollback()` undoes everything it did."""
        self._journal = {}
        self._marks = ({t: len(rows) for t, rows in self.inserts.items()}, len(self.point_tables))

    def commit(self) -> None:
        self._journal = None

    def rollback(self) -> None:
        journal, self._journal = self._journal or {}, None
        for (table, key), (before, was_dirty) in journal.items():
            rows, dirty = self._rows.setdefault(table, {}), self._dirty.setdefault(table, {})
            if before is _MISSING:
                rows.pop(key, None)
            else:
                rows[key] = before
            if was_dirty:
                dirty[key] = rows[key]
            else:
                dirty.pop(key, None)
        counts, points = self._marks
        for table in list(self.inserts):
            del self.inserts[table][counts.get(table, 0) :]
        del self.point_tables[points:]

    def _touch(self, table: str, key: Key) -> None:
        """Remember a row as it was before the current event first touched it."""
        if self._journal is None or (table, key) in self._journal:
            return
        row = self._rows.get(table, {}).get(key, _MISSING)
        was_dirty = key in self._dirty.get(table, {})
        self._journal[(table, key)] = (row if row is _MISSING else copy_row(row), was_dirty)

    # -- rows --------------------------------------------------------------
    def has(self, table: str, key: Key) -> bool:
        """Whether the row exists (loaded whole, or asked for with `Lookups.exists`)."""
        if key in self._rows.get(table, {}):
            return True
        return key in self._prior.rows.get(table, {}) or key in self._prior.existing.get(
            table, set()
        )

    def get(self, table: str, key: Key) -> Row | None:
        """The current row (a private copy: change it, then `put` it)."""
        self._touch(table, key)
        rows = self._rows.setdefault(table, {})
        if key not in rows:
            prior = self._prior.rows.get(table, {}).get(key)
            if prior is None:
                return None
            rows[key] = copy_row(prior)
        return rows[key]

    def existing(self, table: str, key: Key, what: str) -> Row | None:
        """The current row, or None after recording a not_found conflict for this event."""
        row = self.get(table, key)
        if row is None:
            self.conflict("not_found", str(key), what)
        return row

    def parent(self, table: str, key: Key, what: str) -> bool:
        """Whether the parent a new child needs exists; records a missing_parent conflict if not."""
        if self.has(table, key):
            return True
        self.conflict("missing_parent", str(key), what)
        return False

    def put(self, table: str, row: Row) -> None:
        key = row_key(table, row)
        self._touch(table, key)
        self._rows.setdefault(table, {})[key] = row
        self._dirty.setdefault(table, {})[key] = row

    def rows_where(self, table: str, column: str, value: Any) -> list[Row]:
        """Current rows of a table whose column equals value (prior rows and new ones)."""
        keys = set(self._prior.rows.get(table, {})) | set(self._rows.get(table, {}))
        found = []
        for key in sorted(keys, key=str):
            row = self.get(table, key)
            if row is not None and row.get(column) == value:
                found.append(row)
        return found

    def insert(self, table: str, row: Row) -> None:
        self.inserts.setdefault(table, []).append(row)

    # -- event context ----------------------------------------------------
    @property
    def log_time(self) -> datetime:
        return ts(self.position.log_time)

    @property
    def actor(self) -> str:
        return self.envelope.actor if self.envelope is not None else ""

    @property
    def event_id(self) -> str:
        return self.envelope.event_id if self.envelope is not None else ""

    def conflict(self, kind: str, entity_id: str, detail: str) -> None:
        """Record an event that could not be applied; it is never silently dropped."""
        self.insert(
            "conflicts",
            {
                "partition": self.position.partition,
                "offset": self.position.offset,
                "event_id": self.event_id,
                "kind": kind,
                "entity_id": entity_id,
                "detail": detail,
            },
        )

    def writes(self, next_offsets: dict[int, int], applied: list[str]) -> Writes:
        upserts = {
            table: [rows[k] for k in sorted(rows, key=str)]
            for table, rows in sorted(self._dirty.items())
            if rows
        }
        points = pa.concat_tables(self.point_tables) if self.point_tables else None
        return Writes(
            next_offsets=next_offsets,
            applied_event_ids=applied,
            upserts=upserts,
            inserts=self.inserts,
            metric_points=points,
            stored={table: self._stored(table, rows) for table, rows in upserts.items()},
            changed={table: self._changed(table, rows) for table, rows in upserts.items()},
        )

    def _changed(self, table: str, rows: list[Row]) -> dict[Key, tuple[str, ...]]:
        """For each row the fold read from the store, the columns it changed (Writes.changed):
        JSON columns by their stored text, others by type and value (1 is not True)."""
        held = self._prior.rows.get(table, {})
        json_cols = JSON_COLUMNS.get(table, ())
        out: dict[Key, tuple[str, ...]] = {}
        for row in rows:
            key = row_key(table, row)
            before = held.get(key)
            if before is None:
                continue
            out[key] = tuple(
                c
                for c in before.keys() | row.keys()
                if not _same(before.get(c, _MISSING), row.get(c, _MISSING), c in json_cols)
            )
        return out

    def _stored(self, table: str, rows: list[Row]) -> dict[Key, bool]:
        """Whether the store holds each row's key, where the prior load said (Writes.stored)."""
        held = self._prior.rows.get(table, {})
        exists = self._prior.existing.get(table, set())
        absent = self._prior.absent.get(table, set())
        found: dict[Key, bool] = {}
        for row in rows:
            key = row_key(table, row)
            if key in held or key in exists:
                found[key] = True
            elif key in absent:
                found[key] = False
        return found


def _same(before: Any, after: Any, as_json: bool) -> bool:
    """Whether a column's value is unchanged as the store keeps it."""
    if before is _MISSING or after is _MISSING:
        return before is after
    if as_json:
        if before is None or after is None:
            return before is after
        return bool(_json(before) == _json(after))
    return type(before) is type(after) and before == after


def _json(value: Any) -> bytes:
    return msgspec.json.encode(value, order="sorted")


def json_value(obj: Any) -> Any:
    """A JSON-compatible copy of a Struct or value (for summaries and JSON columns)."""
    return msgspec.to_builtins(obj)
