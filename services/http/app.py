"""One aiohttp application composed of route parts (gateway, query service, ...).

A `RoutePart` is a group of endpoints, each carrying its own OpenAPI operation, plus
any startup/cleanup work the group needs. `build_app` mounts the parts behind the one
error middleware, adds GET /healthz and GET /openapi.json, and refuses two parts that
claim the same method and path. Adding a service is adding a part; nothing here changes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from typing import Any, Protocol

import msgspec
from aiohttp import web
from aiohttp.typedefs import Middleware

from deardiary.services.http.errors import error_middleware
from deardiary.services.http.openapi import (
    build_document,
    document_problems,
    json_content,
    operation,
)
from deardiary.services.http.query_params import QUERY_TYPES, NoQuery, query_middleware

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
CleanupContext = Callable[[web.Application], AsyncIterator[None]]
"""aiohttp's cleanup context: code before its ``yield`` runs at startup, after it at cleanup."""

OPENAPI_DOCUMENT = web.AppKey("deardiary_openapi_document", bytes)


@dataclass(frozen=True)
class Endpoint:
    """One route: method, aiohttp path (``{name}`` or ``{name:regex}``), handler, its
    OpenAPI Operation Object (see `openapi.operation`) and the Struct of its query string
    (`query_params`: the request is parsed with it, the document generated from it)."""

    method: str
    path: str
    handler: Handler
    operation: Mapping[str, Any]
    query: type[msgspec.Struct] = NoQuery


@dataclass(frozen=True)
class RoutePart:
    """A group of endpoints mounted together; `schemas` go to components/schemas and
    `contexts` run at application startup/cleanup (e.g. to own a thread pool)."""

    name: str
    endpoints: Sequence[Endpoint]
    schemas: Mapping[str, Any] = field(default_factory=dict)
    contexts: Sequence[CleanupContext] = ()


class RouteLike(Protocol):
    """A route described by summary, query parameters and JSON body (the query service's
    `Route`); `part_from_routes` turns a list of them into a part."""

    @property
    def method(self) -> str: ...
    @property
    def path(self) -> str: ...
    @property
    def handler(self) -> Handler: ...
    @property
    def summary(self) -> str: ...
    @property
    def query(self) -> type[msgspec.Struct]: ...
    @property
    def tag(self) -> str: ...
    @property
    def body(self) -> Mapping[str, Any] | None: ...


def part_from_routes(
    name: str, routes: Iterable[RouteLike], contexts: Sequence[CleanupContext] = ()
) -> RoutePart:
    """A part from summary-style routes: JSON request body when `body` is a schema."""
    endpoints = []
    for r in routes:
        request_body = (
            {"required": True, "content": json_content(r.body)} if r.body is not None else None
        )
        op = operation(r.summary, tag=r.tag, request_body=request_body)
        endpoints.append(Endpoint(r.method, r.path, r.handler, op, r.query))
    return RoutePart(name, endpoints, contexts=contexts)


async def _healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def _openapi(request: web.Request) -> web.Response:
    return web.Response(body=request.app[OPENAPI_DOCUMENT], content_type="application/json")


def _meta_part() -> RoutePart:
    ok = {"type": "object", "properties": {"status": {"const": "ok"}}}
    return RoutePart(
        "meta",
        [
            Endpoint(
                "GET",
                "/healthz",
                _healthz,
                operation(
                    "Liveness: the server answers",
                    tag="meta",
                    responses={"200": {"description": "alive", "content": json_content(ok)}},
                ),
            ),
            Endpoint(
                "GET",
                "/openapi.json",
                _openapi,
                operation(
                    "This OpenAPI document",
                    tag="meta",
                    responses={
                        "200": {
                            "description": "OpenAPI 3.1",
                            "content": json_content({"type": "object"}),
                        }
                    },
                ),
            ),
        ],
    )


def _version() -> str:
    try:
        return package_version("deardiary")
    except PackageNotFoundError:  # pragma: no cover - running from an uninstalled tree
        return "0.0.0"


def build_app(
    parts: Sequence[RoutePart],
    *,
    middlewares: Sequence[Middleware] = (),
    client_max_size: int = 1 << 20,
    title: str = "DearDiary",
    version: str | None = None,
) -> web.Application:
    """The application serving `parts` plus /healthz and /openapi.json.

    `middlewares` (auth, ...) run inside the error middleware, so what they raise gets
    the one error shape; each route's query string is checked against its declared Struct
    after them, before the handler. `client_max_size` bounds bodies read whole by aiohttp
    (``request.read()/json()``); routes that stream their body (ingest, artifact upload)
    enforce their own limits. Raises ValueError when two parts claim one method+path.
    """
    all_parts = [*parts, _meta_part()]
    document = build_document(all_parts, title, version or _version())
    problems = document_problems(document)
    if problems:
        raise ValueError("the OpenAPI document is not sound: " + "; ".join(problems))
    app = web.Application(
        middlewares=[error_middleware, *middlewares, query_middleware],
        client_max_size=client_max_size,
    )
    app[OPENAPI_DOCUMENT] = msgspec.json.encode(document)
    query_types: dict[object, type[msgspec.Struct]] = {}
    for part in all_parts:
        for ep in part.endpoints:
            route = app.router.add_route(ep.method.upper(), ep.path, ep.handler)
            query_types[route] = ep.query
        app.cleanup_ctx.extend(part.contexts)
    app[QUERY_TYPES] = query_types
    return app
