"""The query service's route table: path, handler, query Struct and summary, in one place."""

from __future__ import annotations

from deardiary.services.http import RoutePart, part_from_routes
from deardiary.services.query import params as q
from deardiary.services.query.context import QueryContext
from deardiary.services.query.follow import follow_logs
from deardiary.services.query.routes import QueryRoutes, Route
from deardiary.services.query.web_routes import WebRoutes, web_routes


def query_part(ctx: QueryContext) -> RoutePart:
    """The query service's routes, with the read pool they run on."""
    routes = [*query_routes(ctx), *web_routes(WebRoutes(ctx))]
    return part_from_routes("query", routes, contexts=[ctx.lifetime])


def query_routes(ctx: QueryContext) -> list[Route]:
    r = QueryRoutes(ctx)
    return [
        Route(
            "GET",
            "/api/v1/projects",
            r.listing("projects", q.Projects),
            "List projects",
            q.Projects,
        ),
        Route(
            "GET",
            "/api/v1/projects/{project_id}",
            r.getter("projects", "project_id"),
            "Get a project",
            q.Past,
        ),
        Route(
            "GET",
            "/api/v1/projects/{project_id}/stats",
            r.project_stats,
            "Project statistics: iteration status counts and total runtime",
            q.Past,
        ),
        Route(
            "GET",
            "/api/v1/experiments",
            r.listing("experiments", q.Experiments),
            "List experiments",
            q.Experiments,
        ),
        Route(
            "GET",
            "/api/v1/experiments/{experiment_id}",
            r.getter("experiments", "experiment_id"),
            "Get an experiment",
            q.Past,
        ),
        Route(
            "GET",
            "/api/v1/experiments/{experiment_id}/metric-names",
            r.metric_names,
            "Metric keys logged in an experiment",
            q.Read,
        ),
        Route(
            "GET",
            "/api/v1/experiments/{experiment_id}/snapshot",
            r.snapshot,
            "A metric's value across all iterations at one step",
            q.Snapshot,
        ),
        Route(
            "GET",
            "/api/v1/experiments/{experiment_id}/leaderboard",
            r.leaderboard,
            "Iterations ranked by a metric (summary table)",
            q.Leaderboard,
        ),
        Route(
            "GET",
            "/api/v1/experiments/{experiment_id}/best",
            r.best,
            "The best iteration by a metric",
            q.Best,
        ),
        Route(
            "GET",
            "/api/v1/experiments/{experiment_id}/running-best",
            r.running_best,
            "How the best value improved over time",
            q.Ranking,
        ),
        Route(
            "GET",
            "/api/v1/iterations",
            r.search,
            "Search iterations with the filter language",
            q.Iterations,
        ),
        Route("GET", "/api/v1/iterations/{iteration_id}", r.iteration, "Get an iteration", q.Past),
        Route(
            "GET",
            "/api/v1/iterations/{iteration_id}/params",
            r.params,
            "An iteration's params",
            q.Read,
        ),
        Route(
            "GET",
            "/api/v1/iterations/{iteration_id}/metrics",
            r.summaries,
            "Last-metric summaries (first, last, min, max, mean, count)",
            q.Read,
        ),
        Route(
            "GET",
            "/api/v1/iterations/{iteration_id}/metric-history",
            r.history,
            "A metric series, raw or downsampled keeping each bucket's min and max",
            q.Series,
        ),
        Route(
            "GET",
            "/api/v1/compare",
            r.compare,
            "Many iterations' series side by side",
            q.Compare,
        ),
        Route("GET", "/api/v1/iterations/{iteration_id}/logs", r.logs, "Log lines", q.Logs),
        Route(
            "GET",
            "/api/v1/iterations/{iteration_id}/logs/follow",
            follow_logs(ctx),
            "Follow log lines live (server-sent events)",
            q.Follow,
        ),
        Route("GET", "/api/v1/models", r.listing("models", q.Models), "List models", q.Models),
        Route(
            "GET",
            "/api/v1/models/{model_id}",
            r.getter("models", "model_id"),
            "Get a model",
            q.Past,
        ),
        Route(
            "GET",
            "/api/v1/model-versions",
            r.listing("model_versions", q.ModelVersions),
            "List model versions",
            q.ModelVersions,
        ),
        Route(
            "GET",
            "/api/v1/model-versions/{model_version_id}",
            r.getter("model_versions", "model_version_id"),
            "Get a model version",
            q.Past,
        ),
        Route(
            "GET",
            "/api/v1/model-versions/{model_version_id}/lineage",
            r.lineage,
            "A model version's lineage: its iteration, params, metrics and artifact",
            q.Past,
        ),
        Route(
            "GET",
            "/api/v1/artifacts",
            r.listing("artifacts", q.Artifacts),
            "List artifacts (never reads the bytes)",
            q.Artifacts,
        ),
        Route(
            "GET",
            "/api/v1/artifacts/{artifact_id}",
            r.getter("artifacts", "artifact_id"),
            "Get an artifact's description",
            q.Past,
        ),
        Route(
            "GET",
            "/api/v1/history/{entity_id}",
            r.entity_history,
            "Every event about an entity: who changed what, when",
            q.History,
        ),
        Route("GET", "/api/v1/sql", r.sql, "Read-only SQL (one SELECT)", q.SqlGet),
        Route(
            "POST",
            "/api/v1/sql",
            r.sql,
            "Read-only SQL (one SELECT) in a JSON body",
            q.Sql,
            body={
                "type": "object",
                "required": ["query"],
                "properties": {"query": {"type": "string"}},
            },
        ),
    ]
