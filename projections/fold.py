"""The fold: a batch of decoded log records in, one `Writes` value out.

`lookups_for` says which stored rows the batch needs; the store loads them into a
`PriorState`; `fold` applies the batch in log order. Records at or before the
stored offset, and event ids already applied, are skipped, so redelivery is a no-op.

Every event is applied whole, recorded as a conflict (`problem()` of its type, or a
rule of its fold), or parked with the error its fold raised — never half applied and
never able to stop the projector. What the fold does per type is declared once, in
the `SPECS` table of each folds/ module.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from deardiary.projections.draft import Draft, ts
from deardiary.projections.folds import (
    access,
    artifacts,
    entities,
    iterations,
    logs,
    media,
    metrics,
    registry,
)
from deardiary.projections.folds.spec import FoldSpec, Specs
from deardiary.projections.writes import Lookups, PriorState, Writes
from deardiary.schemas.codec import ParkedRecord, encode
from deardiary.schemas.envelope import Envelope, LogPosition
from deardiary.schemas.events import event_tag

Record = tuple[LogPosition, Envelope | ParkedRecord]

SPECS: Specs = {
    **entities.SPECS,
    **iterations.SPECS,
    **metrics.SPECS,
    **logs.SPECS,
    **artifacts.SPECS,
    **registry.SPECS,
    **access.SPECS,
    **media.SPECS,
}


def spec_of(event: object) -> FoldSpec[Any]:
    return SPECS[type(event)]  # type: ignore[index]


def lookups_for(batch: Sequence[Record]) -> Lookups:
    """The stored rows the fold of this batch may read."""
    want = Lookups()
    for _, env in batch:
        if isinstance(env, ParkedRecord):
            continue
        want.event_ids.add(env.event_id)
        spec_of(env.body).lookups(want, env.body)
    return want


def _park(draft: Draft, pos: LogPosition, parked: ParkedRecord) -> None:
    draft.insert(
        "parked_events",
        {
            "partition": pos.partition,
            "offset": pos.offset,
            "event_id": parked.event_id,
            "event_type": parked.event_type,
            "error": parked.error,
            "payload": parked.payload,
        },
    )


def _apply_event(draft: Draft, pos: LogPosition, env: Envelope) -> None:
    """Fold one event and record it in the history; raises only on a bug in a fold."""
    body = env.body
    spec = spec_of(body)
    problem = body.problem()
    kind, entity_id = body.subject()
    if problem is None:
        spec.fold(draft, body)
    else:
        draft.conflict("invalid_event", entity_id, problem)
    draft.insert(
        "events",
        {
            "partition": pos.partition,
            "offset": pos.offset,
            "event_id": env.event_id,
            "type": event_tag(body),
            "actor": env.actor,
            "client_time": ts(env.client_time),
            "log_time": ts(pos.log_time),
            "entity_kind": kind,
            "entity_id": entity_id,
            "summary": spec.summary(body),
        },
    )


def fold(prior: PriorState, batch: Sequence[Record]) -> Writes:
    """Apply a batch in log order; pure: same prior and batch, same writes."""
    draft = Draft(prior)
    next_offsets = dict(prior.next_offsets)
    seen = set(prior.seen_event_ids)
    applied: list[str] = []
    for pos, env in batch:
        if pos.offset < next_offsets.get(pos.partition, 0):
            continue  # redelivered: already applied in the transaction that stored the offset
        next_offsets[pos.partition] = pos.offset + 1
        draft.position = pos
        if isinstance(env, ParkedRecord):
            _park(draft, pos, env)
            continue
        if env.event_id in seen:
            continue  # the same event appended twice (a client resend)
        seen.add(env.event_id)
        applied.append(env.event_id)
        draft.envelope = env
        draft.begin()
        try:
            _apply_event(draft, pos, env)
        except Exception as exc:  # a fold's bug must not stop the projector: park the event
            draft.rollback()
            error = f"{type(exc).__name__} in the fold: {exc}"[:2000]
            parked = ParkedRecord(
                event_id=env.event_id,
                event_type=event_tag(env.body),
                error=error,
                payload=encode(env),
            )
            _park(draft, pos, parked)
        else:
            draft.commit()
    return draft.writes(next_offsets, applied)
