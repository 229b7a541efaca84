"""The query service's route table: path, handler, OpenAPI description, in one place."""

from __future__ import annotations

from deardiary.services.query.context import QueryContext
from deardiary.services.query.follow import follow_logs
from deardiary.services.query.routes import QueryRoutes, Route

PAGE = (
    ("limit", "integer", "page size (default 100)"),
    ("offset", "integer", "rows to skip"),
)
READ = (
    ("min_offset", "string", "wait until the projections applied this log offset (N or P:N)"),
    ("format", "string", "json (default), arrow (Arrow IPC stream) or msgpack"),
)
SERIES = (("key", "string", "metric key"),)


def query_routes(ctx: QueryContext) -> list[Route]:
    r = QueryRoutes(ctx)
    archived = (("include_archived", "boolean", "include archived entities (default true)"),)
    return [
        Route(
            "GET",
            "/api/v1/projects",
            r.listing("projects", ("name", "archived")),
            "List projects",
            (*PAGE, ("name", "string", "exact name"), *archived, *READ),
        ),
        Route(
            "GET",
            "/api/v1/projects/{project_id}",
            r.getter("projects", "project_id"),
            "Get a project",
            READ,
        ),
        Route(
            "GET",
            "/api/v1/projects/{project_id}/stats",
            r.project_stats,
            "Project statistics: iteration status counts and total runtime",
            READ,
        ),
        Route(
            "GET",
            "/api/v1/experiments",
            r.listing("experiments", ("project_id", "name", "status")),
            "List experiments",
            (
                *PAGE,
                ("project_id", "string", "project"),
                ("name", "string", "exact name"),
                ("status", "string", "status"),
                *archived,
                *READ,
            ),
        ),
        Route(
            "GET",
            "/api/v1/experiments/{experiment_id}",
            r.getter("experiments", "experiment_id"),
            "Get an experiment",
            READ,
        ),
        Route(
            "GET",
            "/api/v1/experiments/{experiment_id}/metric-names",
            r.metric_names,
            "Metric keys logged in an experiment",
            READ,
        ),
        Route(
            "GET",
            "/api/v1/experiments/{experiment_id}/snapshot",
            r.snapshot,
            "A metric's value across all iterations at one step",
            (*SERIES, ("step", "integer", "the step"), *READ),
        ),
        Route(
            "GET",
            "/api/v1/experiments/{experiment_id}/leaderboard",
            r.leaderboard,
            "Iterations ranked by a metric (summary table)",
            (
                *SERIES,
                ("goal", "string", "min or max"),
                ("aggregate", "string", "last, min, max, mean or first (default: the goal)"),
                ("limit", "integer", "rows"),
                *READ,
            ),
        ),
        Route(
            "GET",
            "/api/v1/experiments/{experiment_id}/best",
            r.best,
            "The best iteration by a metric",
            (
                *SERIES,
                ("goal", "string", "min or max"),
                ("aggregate", "string", "see leaderboard"),
                *READ,
            ),
        ),
        Route(
            "GET",
            "/api/v1/experiments/{experiment_id}/running-best",
            r.running_best,
            "How the best value improved over time",
            (*SERIES, ("goal", "string", "min or max"), *READ),
        ),
        Route(
            "GET",
            "/api/v1/iterations",
            r.search,
            "Search iterations with the filter language",
            (
                *PAGE,
                ("experiment_id", "string", "experiments (comma-separated)"),
                ("project_id", "string", "project"),
                ("parent_iteration_id", "string", "children of this iteration"),
                (
                    "filter",
                    "string",
                    "e.g. params.lr = '0.01' and (metrics.loss < 0.5 or status = 'FAILED')",
                ),
                ("order_by", "string", "e.g. metrics.loss ASC, created_at DESC"),
                *archived,
                *READ,
            ),
        ),
        Route("GET", "/api/v1/iterations/{iteration_id}", r.iteration, "Get an iteration", READ),
        Route(
            "GET",
            "/api/v1/iterations/{iteration_id}/params",
            r.params,
            "An iteration's params",
            READ,
        ),
        Route(
            "GET",
            "/api/v1/iterations/{iteration_id}/metrics",
            r.summaries,
            "Last-metric summaries (first, last, min, max, mean, count)",
            READ,
        ),
        Route(
            "GET",
            "/api/v1/iterations/{iteration_id}/metric-history",
            r.history,
            "A metric series, raw or downsampled keeping each bucket's min and max",
            (*SERIES, ("max_points", "integer", "downsample to at most this many points"), *READ),
        ),
        Route(
            "GET",
            "/api/v1/compare",
            r.compare,
            "Many iterations' series side by side",
            (
                ("iteration_id", "string", "iterations (comma-separated)"),
                ("key", "string", "metric keys (comma-separated)"),
                ("max_points", "integer", "points per series (default 1000)"),
                *READ,
            ),
        ),
        Route(
            "GET",
            "/api/v1/iterations/{iteration_id}/logs",
            r.logs,
            "Log lines",
            (
                ("contains", "string", "substring"),
                ("regex", "string", "RE2 regular expression"),
                ("level", "string", "level"),
                ("limit", "integer", "lines"),
                *READ,
            ),
        ),
        Route(
            "GET",
            "/api/v1/iterations/{iteration_id}/logs/follow",
            follow_logs(ctx),
            "Follow log lines live (server-sent events)",
            (
                ("contains", "string", "substring"),
                ("regex", "string", "RE2 regular expression"),
                ("level", "string", "level"),
                ("max_seconds", "number", "stop following after this long (default 3600)"),
            ),
        ),
        Route(
            "GET",
            "/api/v1/models",
            r.listing("models", ("project_id", "name")),
            "List models",
            (
                *PAGE,
                ("project_id", "string", "project"),
                ("name", "string", "exact name"),
                *archived,
                *READ,
            ),
        ),
        Route(
            "GET", "/api/v1/models/{model_id}", r.getter("models", "model_id"), "Get a model", READ
        ),
        Route(
            "GET",
            "/api/v1/model-versions",
            r.listing("model_versions", ("model_id", "stage", "iteration_id")),
            "List model versions",
            (
                *PAGE,
                ("model_id", "string", "model"),
                ("stage", "string", "stage"),
                ("iteration_id", "string", "source iteration"),
                *archived,
                *READ,
            ),
        ),
        Route(
            "GET",
            "/api/v1/model-versions/{model_version_id}",
            r.getter("model_versions", "model_version_id"),
            "Get a model version",
            READ,
        ),
        Route(
            "GET",
            "/api/v1/model-versions/{model_version_id}/lineage",
            r.lineage,
            "A model version's lineage: its iteration, params, metrics and artifact",
            READ,
        ),
        Route(
            "GET",
            "/api/v1/artifacts",
            r.listing("artifacts", ("experiment_id", "iteration_id", "name")),
            "List artifacts (never reads the bytes)",
            (
                *PAGE,
                ("experiment_id", "string", "experiment"),
                ("iteration_id", "string", "iteration"),
                ("name", "string", "exact name"),
                *READ,
            ),
        ),
        Route(
            "GET",
            "/api/v1/artifacts/{artifact_id}",
            r.getter("artifacts", "artifact_id"),
            "Get an artifact's description",
            READ,
        ),
        Route(
            "GET",
            "/api/v1/history/{entity_id}",
            r.entity_history,
            "Every event about an entity: who changed what, when",
            (*PAGE, *READ),
        ),
        Route(
            "GET",
            "/api/v1/sql",
            r.sql,
            "Read-only SQL (one SELECT)",
            (("q", "string", "the SELECT statement"), *READ),
        ),
        Route(
            "POST",
            "/api/v1/sql",
            r.sql,
            "Read-only SQL (one SELECT) in a JSON body",
            READ,
            body={
                "type": "object",
                "required": ["query"],
                "properties": {"query": {"type": "string"}},
            },
        ),
    ]
