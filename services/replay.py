"""Rebuild projections from a log: from offset 0, or as the state stood at an offset or time.

Replay uses the very same projector and folds as live projection, so a rebuilt
folder answers every query identically to the live one at the same position.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from deardiary.projections.store import DuckDBProjectionStore
from deardiary.schemas.envelope import LogPosition
from deardiary.schemas.errors import Conflict, InvalidArgument
from deardiary.services.log import EventLog
from deardiary.services.projector import Projector, StopCondition


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


def replay(log: EventLog, into: Path, as_of: AsOf | None = None) -> dict[int, int]:
    """Build fresh projections in `into`/projections; returns the offsets reached."""
    target = Path(into) / "projections"
    if (target / "state.duckdb").exists():
        raise Conflict(f"{target} already holds projections; replay into a new folder")
    store = DuckDBProjectionStore(target)
    try:
        stop = (as_of or AsOf()).stop_condition()
        Projector(log, store, max_records=2000, stop_before=stop).catch_up()
        store.compact()
        return store.next_offsets()
    finally:
        store.close()
