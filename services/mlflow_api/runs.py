"""MLflow's run routes: create, get, update, delete, restore, search, and metric history
(paged, and sampled across runs) -- over our iterations."""

from __future__ import annotations

import bisect
import math
from typing import Any

import duckdb
import msgspec
from aiohttp import web

from deardiary.schemas import ids as dd_ids
from deardiary.schemas.events import (
    EntityDeleted,
    EntityKind,
    EntityRenamed,
    EntityRestored,
    Event,
    IterationEnded,
    IterationStarted,
    IterationStatus,
    MetadataSet,
)
from deardiary.schemas.ids import now_us
from deardiary.services.http.query_params import query
from deardiary.services.mlflow_api import ids, reads, wire
from deardiary.services.mlflow_api.common import (
    active,
    check_tag,
    experiment_to_write,
    find_run,
    max_results,
    next_token,
    page_offset,
    random_run_name,
    renderer,
    required,
    run_of,
    view_type,
)
from deardiary.services.mlflow_api.context import MlflowContext, read
from deardiary.services.mlflow_api.endpoint import MlflowEndpoint, read_json
from deardiary.services.mlflow_api.errors import MlflowError
from deardiary.services.mlflow_api.fields import (
    IS_LOGGED_MODEL,
    META_END,
    META_START,
    META_USER,
    NOTE_TAG,
    PARENT_RUN_TAG,
    RUN_NAME_TAG,
    START_MS,
    RunResolve,
)
from deardiary.services.mlflow_api.reads import Row
from deardiary.services.mlflow_api.render import number
from deardiary.services.mlflow_api.run_cache import RenderedRuns, state_version
from deardiary.services.mlflow_api.search import compile_filter, compile_order_by

Json = dict[str, Any]

ENDED = {
    "FINISHED": IterationStatus.SUCCEEDED,
    "FAILED": IterationStatus.FAILED,
    "KILLED": IterationStatus.KILLED,
}
STATUS_NAMES = {1: "RUNNING", 2: "SCHEDULED", 3: "FINISHED", 4: "FAILED", 5: "KILLED"}
_json = msgspec.json.Encoder()
MAX_RUNS_BULK = 100
MAX_RESULTS_PER_RUN = 2500


class Runs:
    def __init__(self, ctx: MlflowContext) -> None:
        self.ctx = ctx
        self.render = renderer(ctx)
        self.rendered = RenderedRuns(changes=ctx.query.changes)

    async def create(self, request: web.Request) -> Json:
        body = await read_json(request, wire.CreateRun)
        mlflow_experiment = required(body.experiment_id, "experiment_id")
        tags = {}
        for tag in body.tags:
            check_tag(tag.key, tag.value)
            tags[tag.key] = tag.value
        name = body.run_name or tags.get(RUN_NAME_TAG, "")
        if body.run_name and tags.get(RUN_NAME_TAG, body.run_name) != body.run_name:
            raise MlflowError(
                "Both 'run_name' argument and 'mlflow.runName' tag are specified, but with"
                f" different values (run_name='{body.run_name}',"
                f" mlflow.runName='{tags[RUN_NAME_TAG]}')."
            )
        name = name or random_run_name()
        tags.pop(RUN_NAME_TAG, None)
        notes = tags.pop(NOTE_TAG, "")
        project_id, experiment_id, events = await experiment_to_write(
            self.ctx, request, mlflow_experiment
        )
        start_ms = body.start_time if body.start_time is not None else now_us() // 1000
        metadata: dict[str, Any] = {META_START: start_ms}
        if body.user_id:
            metadata[META_USER] = body.user_id
        parent = tags.get(PARENT_RUN_TAG, "")
        run_id = dd_ids.new_id()
        events.append(
            IterationStarted(
                iteration_id=run_id,
                experiment_id=experiment_id,
                project_id=project_id,
                name=name,
                parent_iteration_id=parent if ids.is_entity_id(parent) else None,
                notes=notes,
                tags=tags,
                metadata=metadata,
            )
        )
        await self.ctx.emit(request, events)
        # written: the next writes need neither a projection read to find the run writable
        # nor a heartbeat (IterationStarted is one)
        self.ctx.run_states.put(run_id, deleted=False, is_model=False)
        self.ctx.beats.beat(run_id)
        actor = self.ctx.actor(request)
        created = {
            "iteration_id": run_id,
            "experiment_id": experiment_id,
            "name": name,
            "status": "RUNNING",
            "error_message": "",
            "parent_iteration_id": parent or None,
            "notes": notes,
            "tags": tags,
            "metadata": metadata,
            "deleted": False,
            "start_ms": start_ms,
            "end_ms": None,
            "user_id": actor or body.user_id,
        }
        return {"run": self.render.run(created, [], [])}

    async def get(self, request: web.Request) -> Json:
        q = query(request, wire.GetRunQuery)
        run_id = required(q.run_id or q.run_uuid, "run_id")

        def fetch(conn: duckdb.DuckDBPyConnection) -> Json:
            row = find_run(conn, run_id)
            params, metrics = reads.run_data(conn, [run_id])
            return self.render.run(row, params[run_id], metrics[run_id])

        return {"run": await read(self.ctx, request, fetch)}

    async def update(self, request: web.Request) -> Json:
        body = await read_json(request, wire.UpdateRun)
        row = await run_of(self.ctx, request, body.run_id or body.run_uuid)
        active(row)
        run_id = row["iteration_id"]
        events: list[Event] = []
        if body.run_name and body.run_name != row["name"]:
            events.append(
                EntityRenamed(entity=EntityKind.ITERATION, entity_id=run_id, name=body.run_name)
            )
            row["name"] = body.run_name
        status = body.status
        if isinstance(status, int):
            status = STATUS_NAMES.get(status, str(status))
        if status is not None and status not in (*ENDED, "RUNNING", "SCHEDULED"):
            raise MlflowError(f"Invalid run status {status!r}")
        if status in ENDED:
            events.append(IterationEnded(iteration_id=run_id, status=ENDED[status]))
            row["status"] = ENDED[status].value
        elif status == "RUNNING" and row["status"] != "RUNNING":  # resumed
            events.append(
                IterationStarted(
                    iteration_id=run_id,
                    experiment_id=row["experiment_id"],
                    project_id=row["project_id"],
                )
            )
            row["status"], row["end_ms"] = "RUNNING", None
        if body.end_time is not None:
            events.append(
                MetadataSet(
                    entity=EntityKind.ITERATION,
                    entity_id=run_id,
                    metadata={META_END: body.end_time},
                )
            )
            row["end_ms"] = body.end_time
        elif status in ENDED:
            row["end_ms"] = now_us() // 1000
        if events:
            await self.ctx.emit(request, events)
            if any(isinstance(e, IterationStarted) for e in events):
                self.ctx.beats.beat(run_id)  # resumed: IterationStarted beats
        return {"run_info": self.render.run_info(row)}

    async def delete(self, request: web.Request) -> Json:
        body = await read_json(request, wire.RunRef)
        row = await run_of(self.ctx, request, body.run_id)
        await self.ctx.emit(
            request, [EntityDeleted(entity=EntityKind.ITERATION, entity_id=row["iteration_id"])]
        )
        # known deleted at once: a write right after must not read projections that may
        # not show the delete yet (the writable check reads without waiting)
        self.ctx.run_states.put(row["iteration_id"], deleted=True, is_model=False)
        return {}

    async def restore(self, request: web.Request) -> Json:
        body = await read_json(request, wire.RunRef)
        row = await run_of(self.ctx, request, body.run_id)
        if not row["deleted"]:
            raise MlflowError(f"The run {body.run_id} must be in the 'deleted' state.")
        await self.ctx.emit(
            request, [EntityRestored(entity=EntityKind.ITERATION, entity_id=row["iteration_id"])]
        )
        self.ctx.run_states.put(row["iteration_id"], deleted=False, is_model=False)
        return {}

    async def search(self, request: web.Request) -> Json:
        body = await read_json(request, wire.SearchRuns)
        limit = max_results(body.max_results, 1000)
        offset = page_offset(body.page_token)
        default = self.ctx.default_project
        experiments = [ids.experiment_from_mlflow(e, default) for e in body.experiment_ids]
        resolve = RunResolve(self.render.default_experiment)
        where = compile_filter(body.filter, resolve)
        order = compile_order_by(body.order_by, resolve)
        order_sql = ", ".join(s for s in (order.sql, f"{START_MS} DESC", "i.iteration_id") if s)
        condition = (
            f"list_contains(?, i.experiment_id) AND NOT {IS_LOGGED_MODEL}"
            f" AND {view_type(body.run_view_type).format(t='i')} AND ({where.sql})"
        )
        params = [experiments, *where.params, *order.params]

        def fetch(conn: duckdb.DuckDBPyConnection) -> list[msgspec.Raw]:
            version = state_version(conn)
            held: dict[str, bytes] = {}
            if version is not None and self.rendered.held(version):
                # the page's ids alone; the runs not rendered at this state yet read
                ids = reads.page(
                    conn, reads.RUN_IDS_SELECT, condition, params, order_sql, limit, offset
                )
                run_ids = [str(r["iteration_id"]) for r in ids]
                held = self.rendered.get(version, run_ids)
                missing = [r for r in run_ids if r not in held]
                found = reads.runs(conn, missing) if missing else []
            else:
                found = reads.page(
                    conn, reads.RUN_SELECT, condition, params, order_sql, limit, offset
                )
                run_ids = [r["iteration_id"] for r in found]
            fresh = self._rendered(conn, found)
            if version is not None:
                self.rendered.put(version, fresh)
            return [msgspec.Raw(held.get(r) or fresh[r]) for r in run_ids]

        runs = await read(self.ctx, request, fetch) if experiments else []
        out: Json = {"runs": runs}
        token = next_token(offset, len(runs), limit)
        if token:
            out["next_page_token"] = token
        return out

    def _rendered(self, conn: duckdb.DuckDBPyConnection, found: list[Row]) -> dict[str, bytes]:
        """These runs as search_runs answers them (JSON), by id."""
        run_ids = [r["iteration_id"] for r in found]
        run_params, run_metrics = reads.run_data(conn, run_ids)
        encode = _json.encode
        return {
            i: encode(self.render.run(r, run_params[i], run_metrics[i]))
            for r, i in zip(found, run_ids, strict=True)
        }

    async def metric_history(self, request: web.Request) -> Json:
        q = query(request, wire.GetMetricHistoryQuery)
        run_id = required(q.run_id or q.run_uuid, "run_id")
        key = required(q.metric_key, "metric_key")
        if q.max_results is not None and q.max_results <= 0:
            raise MlflowError(
                f"Invalid value {q.max_results} for parameter 'max_results' supplied. It must"
                " be a positive integer."
            )
        offset = page_offset(q.page_token)
        limit = q.max_results

        def fetch(conn: duckdb.DuckDBPyConnection) -> tuple[list[int], list[float], list[int]]:
            find_run(conn, run_id)
            return reads.metric_history(
                conn, run_id, key, None if limit is None else limit + 1, offset
            )

        steps, values, times = await read(self.ctx, request, fetch)
        more = limit is not None and len(steps) > limit
        if more:
            steps, values, times = steps[:-1], values[:-1], times[:-1]
        out: Json = {"metrics": history_points(key, steps, values, times)}
        if more and limit is not None:
            out["next_page_token"] = next_token(offset, limit, limit)
        return out

    async def metric_history_bulk_interval(self, request: web.Request) -> Json:
        q = query(request, wire.MetricHistoryBulkIntervalQuery)
        run_ids = list(dict.fromkeys(q.run_ids))
        if not run_ids:
            raise MlflowError("Missing value for required parameter 'run_ids'.")
        if len(run_ids) > MAX_RUNS_BULK:
            raise MlflowError(
                f"GetMetricHistoryBulkInterval request must specify at most {MAX_RUNS_BULK}"
                f" run_ids. Received {len(run_ids)} run_ids."
            )
        key = required(q.metric_key, "metric_key")
        wanted = MAX_RESULTS_PER_RUN if q.max_results is None else q.max_results
        if not 1 <= wanted <= MAX_RESULTS_PER_RUN:
            raise MlflowError(f"max_results must be between 1 and {MAX_RESULTS_PER_RUN}.")
        if (q.start_step is None) != (q.end_step is None):
            raise MlflowError(
                "If either start step or end step are specified, both must be specified."
            )
        if q.start_step is not None and q.end_step is not None and q.start_step > q.end_step:
            raise MlflowError(
                "end_step must be greater than start_step. Found"
                f" start_step={q.start_step} and end_step={q.end_step}."
            )

        def fetch(conn: duckdb.DuckDBPyConnection) -> list[Row]:
            for run_id in run_ids:
                find_run(conn, run_id)
            per_run = reads.metric_steps(conn, run_ids, key)
            steps = sampled_steps(list(per_run.values()), wanted, q.start_step, q.end_step)
            points = reads.points_at(conn, run_ids, key, steps)
            return _evenly(points, max(wanted, len(steps)))

        points = await read(self.ctx, request, fetch)
        return {
            "metrics": [
                {
                    "key": key,
                    "value": number(p["value"]),
                    "timestamp": p["timestamp"],
                    "step": p["step"],
                    "run_id": p["iteration_id"],
                }
                for p in points
            ]
        }


class HistoryPoint(msgspec.Struct):
    """A point of GetMetricHistory's answer as MLflow's server writes it: no run_id (the
    caller named the run; the client's Metric.run_id stays None, as against MLflow). A
    Struct encodes about twice as fast as a dict."""

    key: str
    value: float | str
    timestamp: int
    step: int


def history_points(
    key: str, steps: list[int], values: list[float], times: list[int]
) -> list[HistoryPoint]:
    """The points in order; a non-finite value as protobuf's JSON writes it ("NaN")."""
    if math.isfinite(sum(values)):  # (a sum overflowing to inf only takes the slower path)
        return [HistoryPoint(key, v, t, s) for s, v, t in zip(steps, values, times, strict=True)]
    return [
        HistoryPoint(key, number(v), t, s) for s, v, t in zip(steps, values, times, strict=True)
    ]


def sampled_steps(
    runs: list[list[int]], wanted: int, start: int | None, end: int | None
) -> list[int]:
    """MLflow's sampling: about `wanted` steps evenly through the union of the runs' steps
    in [start, end], plus every run's first and last step there (so each curve keeps its
    ends). Deterministic."""
    every = sorted({s for steps in runs for s in steps})
    if not every:
        return []
    lo = 0 if start is None else start
    hi = every[-1] if end is None else end
    ends = {s for steps in runs if steps for s in (steps[0], steps[-1]) if lo <= s <= hi}
    first, last = bisect.bisect_left(every, lo), bisect.bisect_right(every, hi)
    if last - first <= wanted:
        chosen = set(every[first:last])
    else:
        interval = (last - first) / wanted
        chosen = {every[first + int(i * interval)] for i in range(wanted)}
        chosen.add(every[last - 1])
    return sorted(chosen | ends)


def _evenly(points: list[Row], per_run: int) -> list[Row]:
    """At most `per_run` points of each run, spread evenly through its points."""
    out: list[Row] = []
    by_run: dict[str, list[Row]] = {}
    for p in points:
        by_run.setdefault(p["iteration_id"], []).append(p)
    for run_points in by_run.values():
        n = len(run_points)
        if n <= per_run:
            out += run_points
        else:
            out += [run_points[int(i * n / per_run)] for i in range(per_run)]
    return out


def endpoints(ctx: MlflowContext) -> list[MlflowEndpoint]:
    r = Runs(ctx)
    return [
        MlflowEndpoint("POST", "/runs/create", r.create, "Create a run", body=wire.CreateRun),
        MlflowEndpoint("GET", "/runs/get", r.get, "Get a run", query=wire.GetRunQuery),
        MlflowEndpoint(
            "POST",
            "/runs/update",
            r.update,
            "Update a run's name, status or end time",
            body=wire.UpdateRun,
        ),
        MlflowEndpoint("POST", "/runs/delete", r.delete, "Delete a run", body=wire.RunRef),
        MlflowEndpoint(
            "POST", "/runs/restore", r.restore, "Restore a deleted run", body=wire.RunRef
        ),
        MlflowEndpoint(
            "POST",
            "/runs/search",
            r.search,
            "Search runs with MLflow's filter grammar (params., metrics., tags., attributes.)",
            body=wire.SearchRuns,
        ),
        MlflowEndpoint(
            "GET",
            "/metrics/get-history",
            r.metric_history,
            "A metric's history (paged)",
            query=wire.GetMetricHistoryQuery,
        ),
        MlflowEndpoint(
            "GET",
            "/metrics/get-history-bulk-interval",
            r.metric_history_bulk_interval,
            "A metric of several runs, sampled at about max_results steps",
            query=wire.MetricHistoryBulkIntervalQuery,
        ),
    ]
