"""Which iterations the last committed batches wrote rows of, table by table.

For caches of what is derived from a few rows (services/mlflow_api/run_cache.py keeps
each run as search_runs renders it): a cache made at one state of the projections
learns, when the state moves on, which of its entries the batches in between touched,
and keeps the rest. A state is named by the applied offsets committed with its rows
(`projection_offsets`), which a reader finds in its own snapshot; the store calls
`record` after each batch commits (`DuckDBProjectionStore.on_commit`) with the offsets
before and after it.

Exact or nothing: `changed` answers None -- start afresh -- whenever the ring cannot
vouch for every batch in between (not recorded, forgotten, a row of a table asked about
without an iteration id, too many ids to keep). Metric points are not recorded: what
a cache of runs shows of them is their series' summary in `last_metrics`, written by the
same batch.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Collection, Mapping

from deardiary.projections.writes import Writes

Version = tuple[tuple[int, int], ...]
"""(partition, next offset) of every partition a state applied, by partition."""

CAPACITY = 4096
"""Batches remembered (a busy server commits a few dozen a second)."""
MAX_IDS = 10_000
"""Iteration ids kept per table of one batch; a batch touching more records the table as
unknown (a replay-sized batch: caches start afresh)."""
MAX_HELD_IDS = 200_000
"""Iteration ids kept in all (~100 bytes each): past it the oldest batches are forgotten."""

Touched = dict[str, frozenset[str] | None]
"""Iteration ids whose rows a batch wrote, by table; None: some row without one, or too
many to keep."""


def version_of(offsets: Mapping[int, int]) -> Version:
    return tuple(sorted((int(p), int(o)) for p, o in offsets.items()))


def touched_by(writes: Writes) -> Touched:
    """The iteration ids each table's written rows belong to."""
    out: Touched = {}
    for group in (writes.upserts, writes.inserts):
        for table, rows in group.items():
            if not rows:
                continue
            ids = {row.get("iteration_id") for row in rows}
            known = out.get(table, frozenset())
            if known is None or None in ids or len(ids) + len(known) > MAX_IDS:
                out[table] = None
            else:
                out[table] = known | {str(i) for i in ids}
    return out


def _count(touched: Touched) -> int:
    return sum(len(ids) for ids in touched.values() if ids is not None)


class Changes:
    """A bounded ring of committed batches: (state before, state after, what it touched).
    Thread-safe: the projector's thread records, readers ask."""

    def __init__(self, capacity: int = CAPACITY, max_ids: int = MAX_HELD_IDS) -> None:
        self.capacity = capacity
        self.max_ids = max_ids
        self._lock = threading.Lock()
        self._from: dict[Version, tuple[Version, Touched]] = {}
        self._order: deque[Version] = deque()
        self._ids = 0  # held in all

    def record(self, before: Mapping[int, int], after: Mapping[int, int], writes: Writes) -> None:
        """One committed batch (DuckDBProjectionStore.on_commit)."""
        start, end = version_of(before), version_of(after)
        if start == end:
            return  # no state of its own to name; never met (a batch carries offsets)
        touched = touched_by(writes)
        with self._lock:
            replaced = self._from.get(start)
            if replaced is None:
                self._order.append(start)
            else:
                self._ids -= _count(replaced[1])
            self._from[start] = (end, touched)
            self._ids += _count(touched)
            while self._order and (len(self._order) > self.capacity or self._ids > self.max_ids):
                gone = self._from.pop(self._order.popleft(), None)
                if gone is not None:
                    self._ids -= _count(gone[1])

    def changed(self, since: Version, until: Version, tables: Collection[str]) -> set[str] | None:
        """The iteration ids whose rows of `tables` the batches from state `since` to state
        `until` wrote, or None when that is not known for every one of them."""
        out: set[str] = set()
        at = since
        with self._lock:
            for _ in range(len(self._from)):
                if at == until:
                    return out
                step = self._from.get(at)
                if step is None:
                    return None
                at, touched = step
                for table in tables:
                    ids = touched.get(table, frozenset())
                    if ids is None:
                        return None
                    out |= ids
            return out if at == until else None

    def __len__(self) -> int:
        with self._lock:
            return len(self._from)
