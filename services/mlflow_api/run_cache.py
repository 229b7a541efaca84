"""Runs as search_runs answers them, kept across states of the projections.

Rendering a page of runs costs more than finding it: the runs' rows, their params and
latest metrics (a statement each, ~5 ms apiece of DuckDB's planning and fetching), then
the JSON of each. A UI or a script pages, sorts and filters the same runs again, while
writes go on elsewhere (a sweep logging in another experiment); each rendered run is
kept here, as its JSON, together with the state it was read from -- the projections'
applied offsets, which the projector commits in the same transaction as the rows they
produced, so a read learns the exact state of its own snapshot.

When a read shows a newer state, the runs whose rows (RUN_TABLES: what reads.py and
render.py read of a run) the batches in between wrote are dropped and the rest kept
(projections/changes.py says which; it records every batch the store commits). Where
it cannot say for every batch in between -- a batch it never saw or forgot, Kafka mode
-- everything is dropped: nothing shown is ever older than what a fresh read shows.

A rendered run depends on the run's own rows only, never on who asks: under --auth the
filter runs on the caller's scoped cursor, which finds only the runs the caller may read,
and only those are taken from here.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping

import duckdb

from deardiary.projections.changes import Changes, Version

RUN_TABLES = ("iterations", "params", "last_metrics")
"""The tables a rendered run is read from (reads.RUN_SELECT, reads.RUN_DATA_SQL)."""

MAX_BYTES = 64 << 20
"""JSON kept at most (a run of a few params and metrics is ~0.7 KB, one of 1,000 params
~50 KB); past it new runs are not kept (they are rendered again when asked)."""

VERSION_SQL = 'SELECT "partition", next_offset FROM projection_offsets ORDER BY "partition"'


def state_version(conn: duckdb.DuckDBPyConnection) -> Version | None:
    """The applied offsets of the state `conn`'s snapshot reads, or None where the
    relation does not tell (Kafka mode's view keeps its offsets in memory and leaves the
    table empty; a store that applied nothing): then nothing is cached."""
    try:
        found = conn.execute(VERSION_SQL).fetchall()
    except duckdb.CatalogException:
        return None
    return tuple((int(p), int(o)) for p, o in found) or None


def _newer(a: Version, b: Version) -> bool:
    """Whether state `a` applied everything `b` did and more."""
    have = dict(a)
    return a != b and all(have.get(p, 0) >= o for p, o in b)


class RenderedRuns:
    """Each run's rendered JSON (bytes) at one state; thread-safe. A read of an older
    state than the one held (a snapshot begun before the newest batch) neither gets nor
    leaves anything."""

    def __init__(self, capacity: int = MAX_BYTES, changes: Changes | None = None) -> None:
        self.capacity = capacity
        self.changes = changes
        """What each batch wrote (None: any newer state drops everything)."""
        self._lock = threading.Lock()
        self._version: Version | None = None
        self._runs: dict[str, bytes] = {}
        self._bytes = 0

    def held(self, version: Version | None) -> int | None:
        """How many runs of this state are kept (a newer state replaces the one held,
        keeping the runs no batch in between wrote), or None when none can be (no version;
        an older state than the one held)."""
        if version is None:
            return None
        with self._lock:
            if version != self._version:
                if self._version is not None and not _newer(version, self._version):
                    return None
                self._advance(version)
            return len(self._runs)

    def _advance(self, version: Version) -> None:
        """Move on to a newer state (under the lock)."""
        changed = None
        if self._version is not None and self._runs and self.changes is not None:
            changed = self.changes.changed(self._version, version, RUN_TABLES)
        if changed is None:
            self._runs, self._bytes = {}, 0
        else:
            for run_id in changed:
                body = self._runs.pop(run_id, None)
                if body is not None:
                    self._bytes -= len(body)
        self._version = version

    def get(self, version: Version, run_ids: Iterable[str]) -> dict[str, bytes]:
        """The runs held of those asked (none unless `version` is the state held)."""
        with self._lock:
            if version != self._version:
                return {}
            runs = self._runs
            return {r: runs[r] for r in run_ids if r in runs}

    def put(self, version: Version, rendered: Mapping[str, bytes]) -> None:
        """Keep runs rendered from state `version` (dropped unless it is the one held)."""
        with self._lock:
            if version != self._version:
                return
            for run_id, body in rendered.items():
                if run_id not in self._runs and self._bytes + len(body) <= self.capacity:
                    self._runs[run_id] = body
                    self._bytes += len(body)

    def __len__(self) -> int:
        with self._lock:
            return len(self._runs)
