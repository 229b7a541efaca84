"""Damaged projections are moved aside and rebuilt from the log -- loudly, with progress.

Outdated ones (written in another projection format, `PROJECTION_FORMAT`) too: a new
release that changes what the tables hold rebuilds them instead of migrating them, into
``projections.outdated-<time>``.

The projections are a cache of the log. When they cannot be trusted (see
projections/integrity.py), the folder is renamed to ``projections.damaged-<time>`` (kept
for inspection, never deleted by us) and a fresh, empty store takes its place; the usual
projector then folds the log into it from offset 0 -- the very code `deardiary replay`
runs. A folder without a log (a replay output) cannot be rebuilt, and says so.
"""

from __future__ import annotations

import fcntl
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from deardiary.projections.integrity import ProjectionDamaged
from deardiary.projections.store import DuckDBProjectionStore

_log = logging.getLogger("deardiary.rebuild")


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def move_aside(projections: Path, kind: str = "damaged") -> Path:
    """Rename `projections` to a sibling ``<name>.<kind>-<UTC time>`` (kind: damaged, or
    outdated for projections of another format); returns the new path."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    target = projections.with_name(f"{projections.name}.{kind}-{stamp}")
    n = 1
    while target.exists():
        n += 1
        target = projections.with_name(f"{projections.name}.{kind}-{stamp}-{n}")
    os.rename(projections, target)
    fsync_dir(projections.parent)
    return target


def _records(offsets: dict[int, int]) -> int:
    return sum(offsets.values())


@dataclass
class Progress:
    """A projector listener that logs how far a catch-up from scratch has come: records
    applied, the share of the log's end at the start, and the rate (every `every_s`)."""

    target: dict[int, int]
    what: str = "rebuilding projections"
    every_s: float = 2.0
    started: float = field(default_factory=time.monotonic)
    applied: dict[int, int] = field(default_factory=dict)
    finished: float | None = None
    _logged: float = 0.0

    def __post_init__(self) -> None:
        if self.reached():  # an empty log: nothing to wait for
            self.finished = self.started

    @property
    def total(self) -> int:
        return _records(self.target)

    @property
    def done(self) -> int:
        return min(self.total, _records(self.applied))

    @property
    def fraction(self) -> float:
        return 1.0 if self.total == 0 else self.done / self.total

    def rate(self) -> float:
        elapsed = (self.finished or time.monotonic()) - self.started
        return self.done / elapsed if elapsed > 0 else 0.0

    def reached(self) -> bool:
        return all(self.applied.get(p, 0) >= o for p, o in self.target.items())

    def __call__(self, applied: dict[int, int]) -> None:
        self.applied = applied
        now = time.monotonic()
        if self.finished is None and self.reached():
            self.finished = now
            _log.info(
                "%s: done, %d records in %.1f s (%.0f records/s)",
                self.what,
                self.done,
                now - self.started,
                self.rate(),
            )
        elif self.finished is None and now - self._logged >= self.every_s:
            self._logged = now
            _log.info(
                "%s: %d of %d records (%.0f%% of the log's end), %.0f records/s",
                self.what,
                self.done,
                self.total,
                100 * self.fraction,
                self.rate(),
            )

    def report(self) -> dict[str, float | int]:
        return {
            "applied_records": self.done,
            "target_records": self.total,
            "fraction": round(self.fraction, 4),
            "records_per_s": round(self.rate(), 1),
            "elapsed_s": round((self.finished or time.monotonic()) - self.started, 3),
        }


@dataclass
class Rebuild:
    """Why and where a data folder's projections were moved aside, and the catch-up's progress."""

    cause: str
    moved_to: Path
    progress: Progress

    @property
    def running(self) -> bool:
        return self.progress.finished is None

    def report(self) -> dict[str, object]:
        return {"cause": self.cause, "moved_to": str(self.moved_to), **self.progress.report()}


def open_or_rebuild(
    projections: Path,
    log_end: dict[int, int] | None,
    open_store: Callable[[Path], DuckDBProjectionStore] = DuckDBProjectionStore,
) -> tuple[DuckDBProjectionStore, Rebuild | None]:
    """Open `projections`; if they are damaged (or ahead of the log whose end is
    `log_end`), move them aside and open a fresh store to rebuild into. Without a log
    (`log_end` None) damage is raised: there is nothing to rebuild from.

    Processes opening one folder at once take turns here (a file lock beside it), so
    only one of them moves damaged projections aside."""
    projections.parent.mkdir(parents=True, exist_ok=True)
    with open(projections.parent / f".{projections.name}.lock", "a") as guard:
        fcntl.flock(guard, fcntl.LOCK_EX)
        try:
            return _open_or_rebuild(projections, log_end, open_store)
        finally:
            fcntl.flock(guard, fcntl.LOCK_UN)


def _open_or_rebuild(
    projections: Path,
    log_end: dict[int, int] | None,
    open_store: Callable[[Path], DuckDBProjectionStore],
) -> tuple[DuckDBProjectionStore, Rebuild | None]:
    try:
        store = open_store(projections)
        ahead = {p: o for p, o in store.next_offsets().items() if o > (log_end or {}).get(p, 0)}
        if log_end is not None and ahead:
            store.close()
            raise ProjectionDamaged(
                projections,
                f"they have applied {ahead} but the log ends at {log_end}"
                " (a different or an older log?)",
            )
        return store, None
    except ProjectionDamaged as exc:
        if log_end is None:
            raise ProjectionDamaged(
                projections,
                f"{exc.cause}; this folder has no log to rebuild them from"
                " (a replay output: replay the log again into a new folder)",
            ) from exc
        moved = move_aside(projections, exc.kind)
        _log.warning(
            "the projections in %s are %s (%s); moved them aside to %s (kept for"
            " inspection) and rebuilding them from the log (%d records)",
            projections,
            exc.kind,
            exc.cause,
            moved,
            _records(log_end),
        )
        store = open_store(projections)
        return store, Rebuild(exc.cause, moved, Progress(target=dict(log_end)))
