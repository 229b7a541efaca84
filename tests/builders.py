"""Hand-built events and log positions for fold and store tests (no clock, no randomness)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from deardiary.projections.fold import Record
from deardiary.schemas import codec, ids
from deardiary.schemas.envelope import Envelope, LogPosition, wrap
from deardiary.schemas.events import (
    Event,
    ExperimentCreated,
    IterationStarted,
    MetricsLogged,
    ProjectCreated,
    partition_key,
)

T0 = 1_800_000_000_000_000  # a fixed log clock, microseconds


def append_to_folder(data: Path, events: Sequence[Event]) -> None:
    """Append events to a data folder's log (made if missing), as a client would."""
    from deardiary.services.log import LogRecord
    from deardiary.services.log.sqlite import SqliteEventLog

    data.mkdir(parents=True, exist_ok=True)
    log = SqliteEventLog(str(data / "log.db"))
    envs = [wrap(e) for e in events]
    log.append([LogRecord(e.event_id, e.key, codec.encode(e)) for e in envs])
    log.close()


def envelope(body: Event, n: int, actor: str = "tester") -> Envelope:
    return Envelope(
        event_id=f"ev-{n:06d}",
        body=body,
        key=partition_key(body),
        client_time=T0 - 1000 + n,
        actor=actor,
    )


def records(events: Sequence[Event], start: int = 0, partition: int = 0) -> list[Record]:
    """Events at consecutive offsets, event ids ev-<offset>, log time T0 + offset seconds."""
    return [
        (LogPosition(partition, start + i, T0 + (start + i) * 1_000_000), envelope(e, start + i))
        for i, e in enumerate(events)
    ]


def metrics(
    iteration_id: str, points: Sequence[tuple[str, float, int]], group: str = ""
) -> MetricsLogged:
    """A batch from (key, value, step) triples; step -1 asks for the default step."""
    return MetricsLogged.from_points(
        iteration_id,
        [p[0] for p in points],
        [p[1] for p in points],
        [p[2] for p in points],
        [T0 + i for i in range(len(points))],
        group=group,
    )


def sweep_start(
    project: str = "proj", experiment: str = "exp", iteration: str = "it-1"
) -> list[Any]:
    pid = ids.project_id(project)
    eid = ids.experiment_id(pid, experiment)
    return [
        ProjectCreated(project_id=pid, name=project),
        ExperimentCreated(experiment_id=eid, project_id=pid, name=experiment),
        IterationStarted(iteration_id=iteration, experiment_id=eid, project_id=pid, name=iteration),
    ]
