"""What an iteration logs beyond metrics: media, histograms, checkpoints, models used.

Rows are keyed by ids derived from what names them (media: iteration, key, step, index;
histograms: iteration, key, step), so logging the same again replaces the row, and the
store's keys are plain strings in every mode.
"""

from __future__ import annotations

from deardiary.projections.draft import Draft, json_value, ts
from deardiary.projections.folds.spec import FoldSpec, Specs
from deardiary.projections.writes import Lookups
from deardiary.schemas.events import (
    CheckpointDiscarded,
    CheckpointSaved,
    HistogramLogged,
    MediaLogged,
    ModelVersionUsed,
)
from deardiary.schemas.ids import derived_id


def media_id(iteration_id: str, key: str, step: int, index: int) -> str:
    return derived_id("media", iteration_id, key, str(step), str(index))


def histogram_id(iteration_id: str, key: str, step: int) -> str:
    return derived_id("histogram", iteration_id, key, str(step))


def _client_time(draft: Draft) -> object:
    return ts(draft.envelope.client_time) if draft.envelope is not None else draft.log_time


def fold_media(draft: Draft, event: MediaLogged) -> None:
    if not draft.parent("iterations", event.iteration_id, "iteration"):
        return
    draft.put(
        "media",
        {
            "media_id": media_id(event.iteration_id, event.key, event.step, event.index),
            "iteration_id": event.iteration_id,
            "key": event.key,
            "step": event.step,
            "index": event.index,
            "kind": event.kind.value,
            "content_hash": event.content_hash,
            "size_bytes": event.size_bytes,
            "media_type": event.media_type,
            "caption": event.caption,
            "text": event.text,
            "width": event.width,
            "height": event.height,
            "metadata": json_value(event.metadata),
            "client_time": _client_time(draft),
            "logged_at": draft.log_time,
        },
    )


def fold_histogram(draft: Draft, event: HistogramLogged) -> None:
    if not draft.parent("iterations", event.iteration_id, "iteration"):
        return
    draft.put(
        "histograms",
        {
            "histogram_id": histogram_id(event.iteration_id, event.key, event.step),
            "iteration_id": event.iteration_id,
            "key": event.key,
            "step": event.step,
            "edges": list(event.edges),
            "counts": list(event.counts),
            "count": float(sum(event.counts)),
            "min": float(event.edges[0]),
            "max": float(event.edges[-1]),
            "client_time": _client_time(draft),
            "logged_at": draft.log_time,
        },
    )


def fold_checkpoint_saved(draft: Draft, event: CheckpointSaved) -> None:
    if not draft.parent("iterations", event.iteration_id, "iteration"):
        return
    row = draft.get("checkpoints", event.checkpoint_id)
    if row is not None and row["iteration_id"] != event.iteration_id:
        draft.conflict(
            "checkpoint_elsewhere",
            event.iteration_id,
            f"checkpoint {event.checkpoint_id!r} belongs to another iteration",
        )
        return
    created = (row["created_by"], row["created_at"]) if row else (draft.actor, draft.log_time)
    draft.put(
        "checkpoints",
        {
            "checkpoint_id": event.checkpoint_id,
            "iteration_id": event.iteration_id,
            "step": event.step,
            "name": event.name,
            "files": json_value(event.files),
            "size_bytes": sum(f.size_bytes for f in event.files),
            "metrics": dict(event.metrics),
            "metadata": json_value(event.metadata),
            "discarded": False,
            "discarded_reason": "",
            "created_by": created[0],
            "created_at": created[1],
            "updated_at": draft.log_time,
        },
    )


def fold_checkpoint_discarded(draft: Draft, event: CheckpointDiscarded) -> None:
    row = draft.existing("checkpoints", event.checkpoint_id, "checkpoint")
    if row is None:
        return
    if row["iteration_id"] != event.iteration_id:
        draft.conflict(
            "checkpoint_elsewhere",
            event.iteration_id,
            f"checkpoint {event.checkpoint_id!r} belongs to another iteration",
        )
        return
    row.update(discarded=True, discarded_reason=event.reason, updated_at=draft.log_time)
    draft.put("checkpoints", row)


def fold_model_used(draft: Draft, event: ModelVersionUsed) -> None:
    """The first use is kept (when and by whom); the same again changes nothing."""
    if not draft.parent("iterations", event.iteration_id, "iteration"):
        return
    use_id = derived_id("model_use", event.iteration_id, event.model_version_id)
    if draft.get("model_uses", use_id) is not None:
        return
    draft.put(
        "model_uses",
        {
            "use_id": use_id,
            "iteration_id": event.iteration_id,
            "model_version_id": event.model_version_id,
            "purpose": event.purpose,
            "used_by": draft.actor,
            "used_at": draft.log_time,
        },
    )


def _used_lookups(want: Lookups, event: ModelVersionUsed) -> None:
    want.want_exists("iterations", event.iteration_id)
    want.want("model_uses", derived_id("model_use", event.iteration_id, event.model_version_id))


def _parent_lookups(want: Lookups, event: MediaLogged | HistogramLogged) -> None:
    want.want_exists("iterations", event.iteration_id)


def _checkpoint_lookups(want: Lookups, event: CheckpointSaved | CheckpointDiscarded) -> None:
    want.want_exists("iterations", event.iteration_id)
    want.want("checkpoints", event.checkpoint_id)


def _media_summary(event: MediaLogged) -> object:
    """The history shows what was logged, not a whole inline text sample."""
    body = json_value(event)
    if len(event.text) > 200:
        body["text"] = event.text[:200] + "…"
    return body


def _histogram_summary(event: HistogramLogged) -> object:
    return {
        "iteration_id": event.iteration_id,
        "key": event.key,
        "step": event.step,
        "bins": len(event.counts),
    }


SPECS: Specs = {
    MediaLogged: FoldSpec(fold_media, _parent_lookups, _media_summary),
    HistogramLogged: FoldSpec(fold_histogram, _parent_lookups, _histogram_summary),
    CheckpointSaved: FoldSpec(fold_checkpoint_saved, _checkpoint_lookups),
    CheckpointDiscarded: FoldSpec(fold_checkpoint_discarded, _checkpoint_lookups),
    ModelVersionUsed: FoldSpec(fold_model_used, _used_lookups),
}
