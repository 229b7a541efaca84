"""The HTTP foundation every service mounts on: app composition, errors, OpenAPI, serving.

Usage::

    app = build_app([gateway_part(log), part_from_routes("query", query_routes(ctx))])
    serve(app, "127.0.0.1", 8080)                 # blocking (CLI)
    with start_in_thread(app) as server: ...      # tests: server.url, server.stop()
"""

from __future__ import annotations

from deardiary.services.http.app import (
    Endpoint,
    RouteLike,
    RoutePart,
    build_app,
    part_from_routes,
)
from deardiary.services.http.errors import STATUS, error_middleware, error_response, status_for
from deardiary.services.http.openapi import operation
from deardiary.services.http.runner import RunningServer, serve, start_in_thread

__all__ = [
    "STATUS",
    "Endpoint",
    "RouteLike",
    "RoutePart",
    "RunningServer",
    "build_app",
    "error_middleware",
    "error_response",
    "operation",
    "part_from_routes",
    "serve",
    "start_in_thread",
    "status_for",
]
