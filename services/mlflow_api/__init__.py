"""The MLflow-compatible REST API: an unmodified ``mlflow`` client logs to and reads from
DearDiary (``MLFLOW_TRACKING_URI=http://127.0.0.1:9000``).

`mlflow_part(ctx)` collects ``endpoints(ctx)`` from tracking.py (experiments, runs,
metrics, logged models), registry.py (registered models and versions) and artifacts.py
(the ``mlflow-artifacts`` proxy), and mounts each under every prefix of its service
(endpoint.PREFIXES), each with its OpenAPI operation and, for GET, its query Struct.
Everything written through them is ordinary DearDiary events; ids.py says how MLflow's
ids and names map onto ours, errors.py how errors are answered.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable, Sequence

import msgspec

from deardiary.services.http.app import Endpoint, RoutePart
from deardiary.services.http.openapi import json_content, operation
from deardiary.services.mlflow_api.context import MlflowContext, principal, read
from deardiary.services.mlflow_api.endpoint import (
    MLFLOW_PREFIXES,
    PREFIXES,
    MlflowEndpoint,
    is_mlflow_path,
    read_json,
)
from deardiary.services.mlflow_api.errors import MlflowError, mlflow_json

EndpointsOf = Callable[[MlflowContext], Sequence[MlflowEndpoint]]

_MODULES = ("tracking", "registry", "artifacts")
"""The modules that may provide ``endpoints(ctx)``; one not written yet is skipped."""


def _providers() -> list[EndpointsOf]:
    found = []
    for name in _MODULES:
        module_name = f"{__name__}.{name}"
        if importlib.util.find_spec(module_name) is None:
            continue
        provider = getattr(importlib.import_module(module_name), "endpoints", None)
        if provider is not None:
            found.append(provider)
    return found


def mount(endpoints: Sequence[MlflowEndpoint]) -> tuple[list[Endpoint], dict[str, object]]:
    """The aiohttp endpoints (one per prefix of each endpoint's service) and the
    component schemas of their request bodies."""
    bodies = sorted({e.body for e in endpoints if e.body is not None}, key=lambda t: t.__name__)
    refs, schemas = msgspec.json.schema_components(
        bodies, ref_template="#/components/schemas/{name}"
    )
    ref_of = dict(zip(bodies, refs, strict=True))
    mounted = []
    for ep in endpoints:
        request_body = None
        if ep.body is not None:
            request_body = {"required": True, "content": json_content(ref_of[ep.body])}
        op = operation(
            ep.summary,
            tag=ep.tag,
            description=ep.description
            or "MLflow-compatible: errors answer MLflow's `{error_code, message}` beside "
            "our `error` object.",
            request_body=request_body,
        )
        handler = mlflow_json(ep.handler)
        for prefix in PREFIXES[ep.service]:
            mounted.append(Endpoint(ep.method, prefix + ep.path, handler, op, ep.query))
    return mounted, schemas


def mlflow_part(ctx: MlflowContext) -> RoutePart:
    """Every MLflow route over `ctx`."""
    endpoints = [ep for provider in _providers() for ep in provider(ctx)]
    mounted, schemas = mount(endpoints)
    return RoutePart("mlflow", mounted, schemas=schemas)


__all__ = [
    "MLFLOW_PREFIXES",
    "MlflowContext",
    "MlflowEndpoint",
    "MlflowError",
    "is_mlflow_path",
    "mlflow_json",
    "mlflow_part",
    "principal",
    "read",
    "read_json",
]
