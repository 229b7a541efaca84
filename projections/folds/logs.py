"""Log lines: appended in log order; the client's time and the log's time both kept."""

from __future__ import annotations

from deardiary.projections.draft import Draft, ts
from deardiary.schemas.events import LogLinesLogged


def fold_log_lines(draft: Draft, event: LogLinesLogged) -> None:
    n = min(len(event.times), len(event.levels), len(event.messages))
    if n != len(event.messages) or n != len(event.times):
        draft.conflict("ragged_batch", event.iteration_id, "log line columns differ in length")
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
