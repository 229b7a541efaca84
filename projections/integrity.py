"""Telling a projection that is busy from one that is damaged.

The projections are a cache of the log. When they cannot be opened, the reason decides
what happens next: another process holding DuckDB's file lock is a reason to wait or to
ask that process (UNAVAILABLE, naming its PID); anything else -- a truncated file, a
write-ahead log whose checksum fails, a registered segment or tile file gone or
unreadable -- means the files cannot be trusted (`ProjectionDamaged`), and a folder with
a log rebuilds them from it (services/rebuild.py).

`inspect` answers "how far are these projections, and are they sound?" without taking
the writer's lock, for `deardiary status` on a folder no server owns.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pyarrow.parquet as pq

from deardiary.schemas.errors import DearDiaryError, Internal, Unavailable

STATE_FILE = "state.duckdb"
_LOCK_MARKER = "Could not set lock on file"
_LOCK_PID = re.compile(r"\(PID (\d+)\)")
_HEADERS_BYTES = 3 * 4096  # DuckDB's file header and its two database headers


class ProjectionDamaged(Internal):
    """The projection files cannot be used as they are; only a rebuild from the log helps."""

    kind = "damaged"

    def __init__(self, directory: Path, cause: str) -> None:
        super().__init__(
            f"the projections in {directory} are {self.kind}: {cause}",
            {"directory": str(directory), "cause": cause},
        )
        self.directory = directory
        self.cause = cause


class ProjectionOutdated(ProjectionDamaged):
    """The projections are sound but were written in another projection format (an older
    or newer release folded them): rebuilt from the log like damaged ones, not migrated."""

    kind = "outdated"


def is_lock_error(exc: BaseException) -> bool:
    return isinstance(exc, duckdb.IOException) and _LOCK_MARKER in str(exc)


def open_error(directory: Path, exc: duckdb.Error) -> DearDiaryError:
    """What a failure to open `directory`'s database means: busy or damaged."""
    if is_lock_error(exc):
        found = _LOCK_PID.search(str(exc))
        details = {"pid": int(found.group(1))} if found else {}
        return Unavailable(
            f"the projection store {directory} is in use by another process: {exc}", details
        )
    return ProjectionDamaged(directory, f"{type(exc).__name__}: {exc}")


def check_size(conn: duckdb.DuckDBPyConnection, state: Path) -> None:
    """The database file can hold every block in use. DuckDB reads blocks only when a
    query needs them, so a truncated file opens fine and fails later, mid-read; this
    catches it at once, at the cost of one pragma. Blocks in use, not all the header
    counts: a checkpoint cuts free blocks off the file's end and still counts them
    (a store that ran millions of points: 83 blocks counted, 13 in use, 40 in the file),
    so the file's size is only bounded below by what is in use."""
    row = conn.execute(
        "SELECT block_size, used_blocks FROM pragma_database_size()"
        " WHERE database_name = current_database()"
    ).fetchone()
    if row is None or not row[1]:
        return
    needed = _HEADERS_BYTES + int(row[0]) * int(row[1])
    size = state.stat().st_size
    if size < needed:
        raise ProjectionDamaged(
            state.parent,
            f"{state} is truncated: {size} bytes, its {row[1]} blocks in use need {needed}",
        )


def check_files(registered: Iterable[tuple[str, int]], segments_dir: Path, tiles_dir: Path) -> None:
    """Every registered segment (name, rows) and its tile file are there and readable.

    Reads each file's Parquet footer only (a few KiB), so opening stays cheap."""
    for name, num_rows in registered:
        segment, tile = segments_dir / name, tiles_dir / name
        for path, what in ((segment, "metric segment"), (tile, "tile file")):
            if not path.is_file():
                raise ProjectionDamaged(segments_dir.parent, f"{what} {path} is missing")
            try:
                rows = pq.read_metadata(path).num_rows
            except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
                raise ProjectionDamaged(
                    segments_dir.parent, f"{what} {path} is unreadable: {exc}"
                ) from exc
            if path is segment and rows != num_rows:
                raise ProjectionDamaged(
                    segments_dir.parent,
                    f"{what} {path} holds {rows} rows, {num_rows} registered",
                )


def missing_files(
    registered: Iterable[tuple[str, int]], segments_dir: Path, tiles_dir: Path
) -> str:
    """The first registered segment or tile file that is gone, as a cause ("" if none):
    a stat per file, cheap enough to ask whenever a read fails."""
    for name, _ in registered:
        for path, what in (
            (segments_dir / name, "metric segment"),
            (tiles_dir / name, "tile file"),
        ):
            if not path.is_file():
                return f"{what} {path} is missing"
    return ""


@dataclass(frozen=True)
class Inspection:
    """The projections as found on disk: offsets reached, parked records, soundness."""

    offsets: dict[int, int] = field(default_factory=dict)
    parked: int = 0
    damage: str = ""  # empty when sound


def inspect(directory: Path) -> Inspection:
    """Look at `directory` read-only (DuckDB's shared lock; its WAL is read, not applied).

    Raises UNAVAILABLE when another process holds the writer's lock."""
    state = directory / STATE_FILE
    if not state.exists():
        return Inspection()
    try:
        conn = duckdb.connect(str(state), read_only=True)
    except duckdb.Error as exc:
        error = open_error(directory, exc)
        if isinstance(error, ProjectionDamaged):
            return Inspection(damage=error.cause)
        raise error from exc
    try:
        check_size(conn, state)
        offsets = dict(
            conn.execute('SELECT "partition", next_offset FROM projection_offsets').fetchall()
        )
        parked = int(conn.execute("SELECT count(*) FROM parked_events").fetchall()[0][0])
        registered = conn.execute("SELECT path, num_rows FROM metric_segments").fetchall()
        check_files(registered, directory / "segments", directory / "tiles")
    except ProjectionDamaged as exc:
        return Inspection(damage=exc.cause)
    except duckdb.Error as exc:
        return Inspection(damage=f"{type(exc).__name__}: {exc}")
    finally:
        conn.close()
    return Inspection({int(p): int(o) for p, o in offsets.items()}, parked)
