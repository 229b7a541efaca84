"""The query strings of the read routes, declared once as msgspec Structs.

Each route names one of these in its `Route` (services/query/table.py); the request is
parsed with it before the handler runs and the OpenAPI parameters are generated from it
(services/http/query_params.py). Shared parts are composed by inheritance, one chain:
`Fresh` (min_offset) <- `Past` (+ as_of) <- `Read` (+ format) <- `Paged` (+ limit,
offset) <- `Listing` (+ include_archived). Constraints and help text live on the fields.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from aiohttp import web
from msgspec import Meta

from deardiary.schemas.errors import InvalidArgument
from deardiary.services.http.query_params import query_of

MAX_PAGE = 10_000
MAX_SERIES_POINTS = 50_000_000
MAX_LOG_LINES = 100_000
MAX_FOLLOW_S = 24 * 3600.0

Id = Annotated[str, Meta(min_length=1, max_length=200)]
Key = Annotated[str, Meta(min_length=1, max_length=1000, description="metric key")]
Step = Annotated[int, Meta(ge=-(2**63), le=2**63 - 1, description="the step")]
Goal = Annotated[Literal["min", "max"], Meta(description="min or max is best")]
Group = Annotated[
    str,
    Meta(
        max_length=500,
        description='metric group, e.g. "val" or "system" (default: metrics logged without one)',
    ),
]
Aggregate = Annotated[
    Literal["last", "min", "max", "mean", "first"] | None,
    Meta(description="which number of each series ranks it (default: the goal)"),
]
LogOffset = Annotated[str, Meta(pattern=r"^([0-9]{1,9}:)?[0-9]{1,19}$")]
Points = Annotated[int, Meta(ge=2, le=MAX_SERIES_POINTS)]
Text = Annotated[str, Meta(max_length=4096)]  # URLs are read up to 8 KiB
Contains = Annotated[Text | None, Meta(description="substring")]
Regex = Annotated[Text | None, Meta(description="RE2 regular expression")]
Level = Annotated[Annotated[str, Meta(max_length=100)] | None, Meta(description="level")]


class Struct(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Base of every query-string Struct."""


class Fresh(Struct, frozen=True, kw_only=True):
    min_offset: Annotated[
        list[LogOffset],
        Meta(
            description="read-your-writes: wait until the projections applied this log "
            "offset (N for partition 0, or PARTITION:N); beyond the log's end is a 400"
        ),
    ] = []


AS_OF_PATTERN = (
    r"^([0-9]{1,19}|[0-9]{4}-[0-9]{2}-[0-9]{2}([T ][0-9]{2}:[0-9]{2}(:[0-9]{2}([.][0-9]{1,6})?)?)?"
    r"(Z|[+-][0-9]{2}:?[0-9]{2})?)$"
)


class Past(Fresh, frozen=True, kw_only=True):
    as_of: Annotated[
        Annotated[str, Meta(pattern=AS_OF_PATTERN, max_length=40)] | None,
        Meta(
            description="time travel: answer from the state as it stood at this log offset "
            "(that record included) or ISO-8601 time (UTC unless it says otherwise)",
        ),
    ] = None


class Read(Past, frozen=True, kw_only=True):
    format: Annotated[
        Literal["json", "arrow", "msgpack"] | None,
        Meta(description="json, arrow (Arrow IPC stream) or msgpack (default: the Accept header)"),
    ] = None


class Paged(Read, frozen=True, kw_only=True):
    limit: Annotated[int, Meta(ge=0, le=MAX_PAGE, description="page size (0: only the total)")] = (
        100
    )
    offset: Annotated[int, Meta(ge=0, le=2**62, description="rows to skip")] = 0


class Listing(Paged, frozen=True, kw_only=True):
    include_archived: Annotated[bool, Meta(description="include archived entities")] = True


class Projects(Listing, frozen=True, kw_only=True):
    name: Annotated[str | None, Meta(description="exact name")] = None


class Experiments(Listing, frozen=True, kw_only=True):
    project_id: Annotated[Id | None, Meta(description="project")] = None
    name: Annotated[str | None, Meta(description="exact name")] = None
    status: Annotated[str | None, Meta(description="status")] = None


class Models(Listing, frozen=True, kw_only=True):
    project_id: Annotated[Id | None, Meta(description="project")] = None
    name: Annotated[str | None, Meta(description="exact name")] = None


class ModelVersions(Listing, frozen=True, kw_only=True):
    model_id: Annotated[Id | None, Meta(description="model")] = None
    stage: Annotated[str | None, Meta(description="stage")] = None
    iteration_id: Annotated[Id | None, Meta(description="source iteration")] = None
    version: Annotated[
        Annotated[int, Meta(ge=1, le=2**62)] | None,
        Meta(description="version number (with model_id: that one version)"),
    ] = None


class Artifacts(Paged, frozen=True, kw_only=True):
    experiment_id: Annotated[Id | None, Meta(description="experiment")] = None
    iteration_id: Annotated[Id | None, Meta(description="iteration")] = None
    name: Annotated[str | None, Meta(description="exact name")] = None


class Iterations(Listing, frozen=True, kw_only=True):
    experiment_id: Annotated[list[Id], Meta(description="experiments")] = []
    project_id: Annotated[Id | None, Meta(description="project")] = None
    parent_iteration_id: Annotated[Id | None, Meta(description="children of this iteration")] = None
    filter: Annotated[
        str,
        Meta(
            max_length=4096,
            description="e.g. params.lr = '0.01' and (metrics.loss < 0.5 or status = 'FAILED')",
        ),
    ] = ""
    order_by: Annotated[
        str, Meta(max_length=1000, description="e.g. metrics.loss ASC, created_at DESC")
    ] = ""


class History(Read, frozen=True, kw_only=True):
    limit: Annotated[int, Meta(ge=0, le=MAX_PAGE, description="events (0: none)")] = 1000
    offset: Annotated[int, Meta(ge=0, le=2**62, description="events to skip")] = 0


class Snapshot(Read, frozen=True, kw_only=True):
    key: Key
    step: Step
    group: Group = ""


class Ranking(Read, frozen=True, kw_only=True):
    key: Key
    goal: Goal = "min"
    group: Group = ""


class Best(Ranking, frozen=True, kw_only=True):
    aggregate: Aggregate = None


class Leaderboard(Best, frozen=True, kw_only=True):
    limit: Annotated[
        Annotated[int, Meta(ge=0, le=MAX_PAGE)] | None,
        Meta(description="rows (default: every iteration)"),
    ] = None


class StepWindow(Read, frozen=True, kw_only=True):
    min_step: Annotated[
        Step | None, Meta(description="only points with step >= this (a zoomed chart)")
    ] = None
    max_step: Annotated[Step | None, Meta(description="only points with step <= this")] = None


class Series(StepWindow, frozen=True, kw_only=True):
    key: Key
    group: Group = ""
    max_points: Annotated[
        Points | None,
        Meta(description="downsample to at most this many points, keeping bucket min and max"),
    ] = None


class Compare(StepWindow, frozen=True, kw_only=True):
    iteration_id: Annotated[list[Id], Meta(min_length=1, description="iterations")]
    key: Annotated[list[Key], Meta(min_length=1, description="metric keys")]
    group: Group = ""
    max_points: Annotated[Points, Meta(description="points per series")] = 1000


class RunsTable(Read, frozen=True, kw_only=True):
    columns: Annotated[
        list[Annotated[str, Meta(min_length=1, max_length=1100)]],
        Meta(
            max_length=500,
            description="params.<key>, tags.<key>, metrics.<key>.<last|min|max|mean|count"
            "|last_step> (repeated or comma-separated)",
        ),
    ] = []
    filter: Annotated[
        str, Meta(max_length=4096, description="the filter language of /api/v1/iterations")
    ] = ""
    base: Annotated[
        bool, Meta(description="include name, status, created_at, duration_s, tags, ...")
    ] = True


class Logs(Read, frozen=True, kw_only=True):
    contains: Contains = None
    regex: Regex = None
    level: Level = None
    limit: Annotated[int, Meta(ge=0, le=MAX_LOG_LINES, description="lines (0: none)")] = 1000


class Follow(Struct, frozen=True, kw_only=True):
    contains: Contains = None
    regex: Regex = None
    level: Level = None
    max_seconds: Annotated[
        float, Meta(gt=0, le=MAX_FOLLOW_S, description="stop following after this long")
    ] = 3600.0


class Sql(Fresh, frozen=True, kw_only=True):
    """User SQL reads the live state only (a past one: `deardiary replay --as-of`)."""

    format: Annotated[
        Literal["json", "arrow", "msgpack"] | None,
        Meta(description="json, arrow (Arrow IPC stream) or msgpack (default: the Accept header)"),
    ] = None


class SqlGet(Sql, frozen=True, kw_only=True):
    q: Annotated[str, Meta(min_length=1, description="the SELECT statement")]


class ArtifactUpload(Struct, frozen=True, kw_only=True):
    experiment_id: Annotated[Id, Meta(description="experiment")]
    iteration_id: Annotated[Id | None, Meta(description="iteration (optional)")] = None
    name: Annotated[str, Meta(min_length=1, description="relative name, e.g. checkpoints/model.pt")]
    description: Annotated[str, Meta(max_length=4096, description="free text")] = ""


def offsets_of(min_offset: list[str]) -> dict[int, int]:
    """?min_offset=N (partition 0) or P:N, repeated or comma-separated -> the next offset
    each partition must reach."""
    wanted: dict[int, int] = {}
    for item in min_offset:
        partition, _, offset = item.rpartition(":")
        p, o = int(partition or 0), int(offset) + 1
        wanted[p] = max(wanted.get(p, 0), o)
    return wanted


def min_offsets(request: web.Request) -> dict[int, int]:
    """The read-your-writes target of a request whose route declares `min_offset`."""
    parsed = query_of(request)
    if not isinstance(parsed, Fresh):
        return {}
    return offsets_of(parsed.min_offset)


# -- kept for handlers that still read single values by name --------------------------
def text(request: web.Request, name: str, default: str | None = None) -> str | None:
    return request.query.get(name, default)


def required(request: web.Request, name: str) -> str:
    value = request.query.get(name)
    if value is None or value == "":
        raise InvalidArgument(f"query parameter {name!r} is required", {"parameter": name})
    return value
