"""What a training script sends to a run: metrics, params, tags, inputs and outputs.

Each request becomes one checked batch of ordinary events (MetricsLogged, ParamsLogged,
TagsSet, ...), all or nothing: a param that would change refuses the whole batch with
INVALID_PARAMETER_VALUE, as MLflow does. Metrics linked to a logged model (``model_id``)
go to that model's own iteration, so the run's history keeps one point per point
logged. A run that keeps logging keeps its heartbeat: MLflow clients send none, and
without one our views would call a long-running MLflow run lost.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec
from aiohttp import web

from deardiary.schemas.events import (
    EntityKind,
    EntityRenamed,
    Event,
    IterationHeartbeat,
    MetadataSet,
    MetricsLogged,
    NotesSet,
    ParamsLogged,
    TagsDeleted,
    TagsSet,
)
from deardiary.schemas.ids import now_us
from deardiary.services.mlflow_api import ids, reads, wire
from deardiary.services.mlflow_api.common import (
    active,
    as_text,
    check_key,
    check_param,
    check_tag,
    ms_to_us,
    required,
    run_of,
)
from deardiary.services.mlflow_api.context import MlflowContext, principal, read
from deardiary.services.mlflow_api.endpoint import MlflowEndpoint, read_json
from deardiary.services.mlflow_api.errors import MlflowError, not_found
from deardiary.services.mlflow_api.fields import (
    DATASET_PREFIX,
    LOGGED_MODEL_PREFIX,
    MODEL_INPUT_PREFIX,
    MODEL_OUTPUT_PREFIX,
    NOTE_TAG,
    RUN_NAME_TAG,
)
from deardiary.services.query.context import caller_of

Json = dict[str, Any]

MAX_METRICS_PER_BATCH = 1000
MAX_PARAMS_TAGS_PER_BATCH = 100
MAX_ENTITIES_PER_BATCH = 1000
MAX_STEP = 2**62


def tag_events(run_id: str, tags: dict[str, str]) -> list[Event]:
    """A run's tags as events: its name and notes are columns of ours, the rest tags."""
    events: list[Event] = []
    if RUN_NAME_TAG in tags:
        name = tags.pop(RUN_NAME_TAG)
        if name.strip():
            events.append(EntityRenamed(entity=EntityKind.ITERATION, entity_id=run_id, name=name))
    if NOTE_TAG in tags:
        notes = tags.pop(NOTE_TAG)
        events.append(NotesSet(entity=EntityKind.ITERATION, entity_id=run_id, notes=notes))
    if tags:
        events.append(TagsSet(entity=EntityKind.ITERATION, entity_id=run_id, tags=tags))
    return events


Point = tuple[str, int, int, float]
"""(key, step, timestamp in ms, value) of a metric point, to tell copies apart."""


def _point(m: wire.MetricIn) -> Point:
    return (m.key, m.step, -1 if m.timestamp is None else m.timestamp, m.value)


def metric_events(
    run_id: str, metrics: Sequence[wire.MetricIn], on_run: frozenset[Point] = frozenset()
) -> list[Event]:
    """The points as MetricsLogged events: every point on the run, and a point linked to a
    logged model (``model_id``) on that model's iteration too -- except that a linked point
    the run already holds (`on_run`: MLflow copies a run's points to the model it just
    logged) is not logged on the run twice. All are ungrouped series, as MLflow has one
    series per key (a point's dataset_name and dataset_digest are not kept)."""
    now = now_us()
    batches: dict[str, list[wire.MetricIn]] = {}
    for key in {m.key for m in metrics}:
        check_key(required(key, "key"), "metric")
    for m in metrics:
        if m.step < 0 or m.step > MAX_STEP:
            raise MlflowError(f"Invalid step {m.step} for metric '{m.key}': 0..2**62")
        if not (m.model_id and _point(m) in on_run):
            batches.setdefault(run_id, []).append(m)
        if m.model_id:
            inner = ids.logged_model_from_mlflow(m.model_id)
            if inner is None:
                raise MlflowError(f"Invalid model_id {m.model_id[:100]!r}")
            batches.setdefault(inner, []).append(m)
    return [
        MetricsLogged.from_points(
            target,
            [m.key for m in points],
            [m.value for m in points],
            [m.step for m in points],
            [now if m.timestamp is None else ms_to_us(m.timestamp, "timestamp") for m in points],
        )
        for target, points in batches.items()
    ]


class RunWrites:
    def __init__(self, ctx: MlflowContext) -> None:
        self.ctx = ctx

    async def _writable(self, request: web.Request, run_id: str) -> None:
        """Refuse writes to a deleted run (or to a logged model's id). A run the projections
        do not show yet passes: the append path checks it exists. The remembered state is
        anyone's, so under --auth a refusal is said only to a caller who may read the run
        (read once this server's own writes are folded): to others it does not exist."""
        required(run_id, "run_id")
        found = self.ctx.run_states.get(run_id)
        if found is None:
            found = await self.ctx.query.run(
                lambda conn: reads.run_state(conn, run_id), caller_of(request)
            )
            if found is None:
                return
            self.ctx.run_states.put(run_id, *found)
        elif any(found) and principal(request) is not None:
            found = await read(self.ctx, request, lambda conn: reads.run_state(conn, run_id))
            if found is None:
                return
        deleted, is_model = found
        if is_model:
            raise not_found(f"Run with id={run_id} not found")
        if deleted:
            raise MlflowError(
                f"The run {run_id} must be in the 'active' state. Current state is deleted."
            )

    async def _metrics(
        self, request: web.Request, run_id: str, metrics: Sequence[wire.MetricIn]
    ) -> list[Event]:
        linked = [m for m in metrics if m.model_id]
        if not linked:
            return metric_events(run_id, metrics)
        keys = sorted({m.key for m in linked})
        steps = sorted({m.step for m in linked})
        held = await read(
            self.ctx, request, lambda conn: reads.points_held(conn, run_id, keys, steps)
        )
        return metric_events(run_id, metrics, frozenset(held))

    async def _emit(self, request: web.Request, run_id: str, events: list[Event]) -> Json:
        if self.ctx.beats.due(run_id):
            events.append(IterationHeartbeat(iteration_id=run_id))
        await self.ctx.emit(request, events)
        return {}

    async def log_metric(self, request: web.Request) -> Json:
        body = await read_json(request, wire.LogMetric)
        run_id = body.run_id or body.run_uuid
        await self._writable(request, run_id)
        return await self._emit(request, run_id, await self._metrics(request, run_id, [body]))

    async def log_param(self, request: web.Request) -> Json:
        body = await read_json(request, wire.LogParam)
        run_id = body.run_id or body.run_uuid
        check_param(required(body.key, "key"), body.value)
        await self._writable(request, run_id)
        event = ParamsLogged(iteration_id=run_id, params={body.key: as_text(body.value)})
        return await self._emit(request, run_id, [event])

    async def set_tag(self, request: web.Request) -> Json:
        body = await read_json(request, wire.SetTag)
        run_id = body.run_id or body.run_uuid
        check_tag(required(body.key, "key"), body.value)
        await self._writable(request, run_id)
        return await self._emit(request, run_id, tag_events(run_id, {body.key: body.value}))

    async def delete_tag(self, request: web.Request) -> Json:
        body = await read_json(request, wire.DeleteTag)
        key = required(body.key, "key")
        row = await run_of(self.ctx, request, body.run_id)
        active(row)
        run_id = row["iteration_id"]
        event: Event
        if key == NOTE_TAG and row["notes"]:
            event = NotesSet(entity=EntityKind.ITERATION, entity_id=run_id, notes="")
        elif key in row["tags"]:
            event = TagsDeleted(entity=EntityKind.ITERATION, entity_id=run_id, keys=[key])
        else:
            raise not_found(f"No tag with name: {key} in run with id {run_id}")
        await self.ctx.emit(request, [event])
        return {}

    async def log_batch(self, request: web.Request) -> Json:
        body = await read_json(request, wire.LogBatch)
        run_id = required(body.run_id, "run_id")
        _batch_limits(body)
        params: dict[str, str] = {}
        for p in body.params:
            check_param(required(p.key, "key"), p.value)
            if params.get(p.key, p.value) != p.value:
                raise MlflowError(
                    f"Duplicate parameter keys have been submitted: [{p.key!r}]. Please ensure"
                    " the request contains only one param value per param key."
                )
            params[p.key] = as_text(p.value)
        tags: dict[str, str] = {}
        for t in body.tags:
            check_tag(required(t.key, "key"), t.value)
            tags[t.key] = t.value
        events: list[Event] = []
        if params:
            events.append(ParamsLogged(iteration_id=run_id, params=params))
        events += await self._metrics(request, run_id, body.metrics)
        events += tag_events(run_id, tags)
        await self._writable(request, run_id)
        if not events:
            return {}
        return await self._emit(request, run_id, events)

    async def log_model(self, request: web.Request) -> Json:
        """MLflow's LogModel: the MLmodel description, kept in the run's metadata (and
        shown as its ``mlflow.log-model.history`` tag)."""
        body = await read_json(request, wire.LogModel)
        model_json = required(body.model_json, "model_json")
        try:
            model = msgspec.json.decode(model_json)
        except msgspec.DecodeError as exc:
            raise MlflowError(f"Malformed model info: {exc}") from exc
        if not isinstance(model, dict) or not model.get("artifact_path"):
            raise MlflowError("Model json is missing mandatory fields: artifact_path")
        await self._writable(request, body.run_id)
        key = f"{LOGGED_MODEL_PREFIX}{str(model['artifact_path'])[:150]}"
        event = MetadataSet(
            entity=EntityKind.ITERATION, entity_id=body.run_id, metadata={key: model}
        )
        return await self._emit(request, body.run_id, [event])

    async def log_inputs(self, request: web.Request) -> Json:
        body = await read_json(request, wire.LogInputs)
        await self._writable(request, body.run_id)
        metadata: dict[str, Any] = {}
        for item in body.datasets:
            dataset = item.dataset or wire.Dataset()
            required(dataset.name, "dataset.name")
            required(dataset.digest, "dataset.digest")
            context = next((t.value for t in item.tags if t.key == "mlflow.data.context"), "")
            key = f"{DATASET_PREFIX}{dataset.name[:100]}:{dataset.digest[:36]}:{context[:50]}"
            metadata[key] = {**msgspec.structs.asdict(dataset), "context": context}
        for model in body.models:
            if ids.logged_model_from_mlflow(model.model_id) is None:
                raise MlflowError(f"Invalid model_id {model.model_id[:100]!r}")
            metadata[f"{MODEL_INPUT_PREFIX}{model.model_id}"] = True
        if not metadata:
            return {}
        event = MetadataSet(entity=EntityKind.ITERATION, entity_id=body.run_id, metadata=metadata)
        return await self._emit(request, body.run_id, [event])

    async def log_outputs(self, request: web.Request) -> Json:
        body = await read_json(request, wire.LogOutputs)
        await self._writable(request, body.run_id)
        metadata: dict[str, Any] = {}
        for model in body.models:
            if ids.logged_model_from_mlflow(model.model_id) is None:
                raise MlflowError(f"Invalid model_id {model.model_id[:100]!r}")
            metadata[f"{MODEL_OUTPUT_PREFIX}{model.model_id}"] = {"step": model.step}
        if not metadata:
            return {}
        event = MetadataSet(entity=EntityKind.ITERATION, entity_id=body.run_id, metadata=metadata)
        return await self._emit(request, body.run_id, [event])


def _batch_limits(body: wire.LogBatch) -> None:
    """MLflow's limits on one log-batch request, with its messages."""
    if len(body.metrics) > MAX_METRICS_PER_BATCH:
        raise MlflowError(
            f"A batch logging request can contain at most {MAX_METRICS_PER_BATCH} metrics."
            f" Got {len(body.metrics)} metrics. Please split up metrics across multiple"
            " requests and try again."
        )
    for what, items in (("params", body.params), ("tags", body.tags)):
        if len(items) > MAX_PARAMS_TAGS_PER_BATCH:
            raise MlflowError(
                f"A batch logging request can contain at most {MAX_PARAMS_TAGS_PER_BATCH}"
                f" {what}. Got {len(items)} {what}. Please split up {what} across multiple"
                " requests and try again."
            )
    total = len(body.metrics) + len(body.params) + len(body.tags)
    if total > MAX_ENTITIES_PER_BATCH:
        raise MlflowError(
            f"A batch logging request can contain at most {MAX_ENTITIES_PER_BATCH} metrics,"
            f" params, and tags in total. Got {total} in total. Please split up across"
            " multiple requests and try again."
        )


def endpoints(ctx: MlflowContext) -> list[MlflowEndpoint]:
    w = RunWrites(ctx)
    return [
        MlflowEndpoint(
            "POST", "/runs/log-metric", w.log_metric, "Log a metric point", body=wire.LogMetric
        ),
        MlflowEndpoint(
            "POST",
            "/runs/log-parameter",
            w.log_param,
            "Log a param (write-once: a different value is INVALID_PARAMETER_VALUE)",
            body=wire.LogParam,
        ),
        MlflowEndpoint("POST", "/runs/set-tag", w.set_tag, "Set a run tag", body=wire.SetTag),
        MlflowEndpoint(
            "POST", "/runs/delete-tag", w.delete_tag, "Delete a run tag", body=wire.DeleteTag
        ),
        MlflowEndpoint(
            "POST",
            "/runs/log-batch",
            w.log_batch,
            "Log metrics, params and tags at once (at most 1,000 metrics, 100 params, 100 tags)",
            body=wire.LogBatch,
        ),
        MlflowEndpoint(
            "POST", "/runs/log-model", w.log_model, "Record a logged model", body=wire.LogModel
        ),
        MlflowEndpoint(
            "POST",
            "/runs/log-inputs",
            w.log_inputs,
            "Log a run's inputs (datasets, models)",
            body=wire.LogInputs,
        ),
        MlflowEndpoint(
            "POST",
            "/runs/outputs",
            w.log_outputs,
            "Log a run's outputs (models)",
            body=wire.LogOutputs,
        ),
    ]
