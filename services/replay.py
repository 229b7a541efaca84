"""Rebuild projections from a log: from offset 0, or as the state stood at an offset or time.

Replay uses the very same projector and folds as live projection, so a rebuilt
folder answers every query identically to the live one at the same position; a record
whose fold fails is parked there as it is live, never failing the replay. The result
appears under its name only once complete (built in a ``.partial-<pid>`` folder).
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from deardiary.projections.store import DuckDBProjectionStore
from deardiary.schemas.envelope import LogPosition
from deardiary.schemas.errors import Conflict, InvalidArgument
from deardiary.services.discovery import process_alive
from deardiary.services.log import EventLog
from deardiary.services.projector import Projector, StopCondition
from deardiary.services.rebuild import Progress, fsync_dir

PARTIAL = ".partial-"
_log = logging.getLogger("deardiary.replay")


@dataclass(frozen=True)
class AsOf:
    """Stop before the first record past an offset (inclusive bound) or a log time."""

    offset: int | None = None
    time_us: int | None = None

    @classmethod
    def parse(cls, text: str | None) -> AsOf:
        """`123` is an offset (state including record 123); anything else ISO-8601 time."""
        if text is None or text == "":
            return cls()
        if text.isdigit():
            return cls(offset=int(text))
        try:
            moment = datetime.fromisoformat(text)
        except ValueError as exc:
            raise InvalidArgument(
                f"--as-of wants an offset or an ISO-8601 time, got {text!r}"
            ) from exc
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return cls(time_us=int(moment.timestamp() * 1_000_000))

    def stop_condition(self) -> StopCondition | None:
        if self.offset is None and self.time_us is None:
            return None

        def past(pos: LogPosition) -> bool:
            if self.offset is not None and pos.offset > self.offset:
                return True
            return self.time_us is not None and pos.log_time > self.time_us

        return past


def _pid_of(partial: Path) -> int:
    try:
        return int(partial.name.rsplit(PARTIAL, 1)[1])
    except (IndexError, ValueError):
        return 0


def clear_partials(final: Path) -> None:
    """Remove what killed replays into `final` left behind; refuse while one still runs."""
    for partial in sorted(final.parent.glob(f"{final.name}{PARTIAL}*")):
        pid = _pid_of(partial)
        if pid != os.getpid() and process_alive(pid):
            raise Conflict(f"another replay (pid {pid}) is building {final} in {partial}")
        _log.warning("removing %s, left by a replay that did not finish", partial)
        shutil.rmtree(partial)


def replay(log: EventLog, into: Path, as_of: AsOf | None = None) -> dict[int, int]:
    """Build fresh projections in `into`/projections; returns the offsets reached.

    They are built beside their destination (``<into>.partial-<pid>``, or
    ``<into>/projections.partial-<pid>`` when `into` exists already) and renamed into
    place only when complete: a replay killed midway leaves no folder that looks like
    projections, and the next replay removes its leftovers."""
    into = Path(into)
    final = into / "projections"
    if (final / "state.duckdb").exists():
        raise Conflict(f"{final} already holds projections; replay into a new folder")
    # A new folder is built whole; into an existing one, only its projections are.
    final = final if into.exists() else into
    clear_partials(final)
    partial = final.with_name(f"{final.name}{PARTIAL}{os.getpid()}")
    target = partial / "projections" if final == into else partial
    # Replay's batches (2000 records) carry millions of points: each goes straight into a
    # segment, not through the hot table (see DuckDBProjectionStore.segment_big_batches).
    store = DuckDBProjectionStore(target, segment_big_batches=True)
    try:
        stop = (as_of or AsOf()).stop_condition()
        projector = Projector(log, store, max_records=2000, stop_before=stop)
        projector.add_listener(Progress(target=log.end_offsets(), what=f"replaying into {into}"))
        projector.catch_up()
        store.compact()
        offsets = store.next_offsets()
    except BaseException:
        store.close()
        shutil.rmtree(partial, ignore_errors=True)
        raise
    store.close()
    os.rename(partial, final)
    fsync_dir(final.parent)
    return offsets
