"""One MLflow route as the parts declare it, and how a JSON request body is read.

An `MlflowEndpoint` names its path *after* the service prefix (``/experiments/create``);
`mlflow_part` mounts it under each prefix the MLflow client and UI use. GET routes take
their arguments from the query string (a Struct, as every route of ours: parsed and
documented from one declaration); POST/PATCH/DELETE routes from a JSON body (`body`),
read with `read_json`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import msgspec
from aiohttp import web

from deardiary.services.gateway.routes import read_body
from deardiary.services.http.query_params import NoQuery
from deardiary.services.mlflow_api.errors import MlflowError

S = TypeVar("S", bound=msgspec.Struct)

MlflowHandler = Callable[[web.Request], Awaitable[Mapping[str, Any] | web.StreamResponse]]

MAX_BODY_BYTES = 16 << 20
"""A JSON body over this is refused (413). MLflow's largest legitimate request, a
log-batch of 1,000 metrics, 100 params of 6,000 characters and 100 tags of 8,000, is
under 2 MB; logged-model and registry bodies are smaller."""

TRACKING = "mlflow"
ARTIFACTS = "mlflow-artifacts"
TRACKING_V3 = "mlflow-v3"
PREFIXES: dict[str, tuple[str, ...]] = {
    TRACKING: ("/api/2.0/mlflow", "/ajax-api/2.0/mlflow"),
    ARTIFACTS: ("/api/2.0/mlflow-artifacts", "/ajax-api/2.0/mlflow-artifacts"),
    TRACKING_V3: ("/api/3.0/mlflow", "/ajax-api/3.0/mlflow"),  # server-info
}
"""Service -> the path prefixes its routes are mounted under (the client uses /api/...,
MLflow's web UI /ajax-api/...)."""
MLFLOW_PREFIXES = tuple(p for prefixes in PREFIXES.values() for p in prefixes)


def is_mlflow_path(path: str) -> bool:
    """Whether a request path is one of the MLflow routes (their handlers answer in
    MLflow's error shape and check permissions on what the body names)."""
    return any(path == p or path.startswith(p + "/") for p in MLFLOW_PREFIXES)


@dataclass(frozen=True)
class MlflowEndpoint:
    """`handler` answers a dict (sent as JSON) or a response of its own, and raises
    `MlflowError` or our `DearDiaryError` (both answered in MLflow's error shape)."""

    method: str
    path: str
    handler: MlflowHandler
    summary: str
    query: type[msgspec.Struct] = NoQuery
    body: type[msgspec.Struct] | None = None
    service: str = TRACKING
    tag: str = "mlflow"
    description: str = ""


_decoders: dict[type[Any], msgspec.json.Decoder[Any]] = {}


def decode_json(raw: bytes, cls: type[S]) -> S:
    """A JSON body as `cls`: unknown fields are ignored (newer clients send more), int64
    fields may be numbers or strings (proto3 JSON allows both); an empty body is ``{}``.
    A wrong type is INVALID_PARAMETER_VALUE naming the field."""
    decoder = _decoders.get(cls)
    if decoder is None:
        decoder = _decoders[cls] = msgspec.json.Decoder(cls, strict=False)
    try:
        result: S = decoder.decode(raw or b"{}")
    except msgspec.ValidationError as exc:
        raise MlflowError(f"Invalid value in request body: {exc}") from exc
    except msgspec.DecodeError as exc:
        raise MlflowError(f"Malformed JSON request body: {exc}") from exc
    return result


async def read_json(request: web.Request, cls: type[S]) -> S:
    """The request's JSON body as `cls` (see `decode_json`); over MAX_BODY_BYTES is 413."""
    return decode_json(await read_body(request, MAX_BODY_BYTES), cls)
