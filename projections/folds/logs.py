"""Log lines: appended in log order; the client's time and the log's time both kept."""

from __future__ import annotations

from deardiary.projections.draft import Draft, ts
from deardiary.projections.folds.spec import FoldSpec, Specs
from deardiary.projections.writes import Lookups
from deardiary.schemas.events import LogLinesLogged


def fold_log_lines(draft: Draft, event: LogLinesLogged) -> None:
    if not draft.parent("iterations", event.iteration_id, "iteration"):
        return
    n = len(event.messages)  # the columns' lengths agree (LogLinesLogged.problem)
    pos = draft.position
    for seq in range(n):
        draft.insert(
            "logs",
            {
                "iteration_id": event.iteration_id,
                "time": ts(event.times[seq]),
                "level": event.levels[seq],
                "message": event.messages[seq],
                "source": event.source,
                "recorded_at": draft.log_time,
                "partition": pos.partition,
                "offset": pos.offset,
                "seq": seq,
            },
        )


def _lookups(want: Lookups, event: LogLinesLogged) -> None:
    want.want_exists("iterations", event.iteration_id)


def _history_summary(event: LogLinesLogged) -> object:
    return {"iteration_id": event.iteration_id, "lines": len(event.messages)}


SPECS: Specs = {LogLinesLogged: FoldSpec(fold_log_lines, _lookups, _history_summary)}
