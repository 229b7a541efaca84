"""MLflow's error vocabulary on the MLflow routes, and the handler decorator that uses it.

The MLflow client reads ``{"error_code": ..., "message": ...}`` and raises
``RestException`` with that code; its HTTP statuses are MLflow's own
(``mlflow.exceptions.ERROR_CODE_TO_HTTP_STATUS``). Every MLflow-route error carries,
beside those two keys, our one error object ``{"error": {"code", "message",
"details"}}``, so DearDiary tooling (and the route-walking tests) read the same body
as on every other route. Our codes map to MLflow's in `DEARDIARY_TO_MLFLOW`.
"""

from __future__ import annotations

import functools
import json
import logging
import math
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import msgspec
from aiohttp import web

from deardiary.schemas.errors import DearDiaryError, ErrorCode
from deardiary.schemas.ids import new_id
from deardiary.services.http.errors import status_for

RESOURCE_DOES_NOT_EXIST = "RESOURCE_DOES_NOT_EXIST"
INVALID_PARAMETER_VALUE = "INVALID_PARAMETER_VALUE"
RESOURCE_ALREADY_EXISTS = "RESOURCE_ALREADY_EXISTS"
INVALID_STATE = "INVALID_STATE"
PERMISSION_DENIED = "PERMISSION_DENIED"
UNAUTHENTICATED = "UNAUTHENTICATED"
RESOURCE_EXHAUSTED = "RESOURCE_EXHAUSTED"
TEMPORARILY_UNAVAILABLE = "TEMPORARILY_UNAVAILABLE"
INTERNAL_ERROR = "INTERNAL_ERROR"
ENDPOINT_NOT_FOUND = "ENDPOINT_NOT_FOUND"
BAD_REQUEST = "BAD_REQUEST"
NOT_IMPLEMENTED = "NOT_IMPLEMENTED"

STATUS: dict[str, int] = {
    RESOURCE_DOES_NOT_EXIST: 404,
    INVALID_PARAMETER_VALUE: 400,
    RESOURCE_ALREADY_EXISTS: 400,
    INVALID_STATE: 500,  # MLflow's own table says 500 (not 400) for INVALID_STATE
    PERMISSION_DENIED: 403,
    UNAUTHENTICATED: 401,
    RESOURCE_EXHAUSTED: 429,
    TEMPORARILY_UNAVAILABLE: 503,
    INTERNAL_ERROR: 500,
    ENDPOINT_NOT_FOUND: 404,
    BAD_REQUEST: 400,
    NOT_IMPLEMENTED: 501,
}
"""MLflow error code -> HTTP status, as MLflow's server answers them."""

DEARDIARY_TO_MLFLOW: dict[ErrorCode, str] = {
    ErrorCode.NOT_FOUND: RESOURCE_DOES_NOT_EXIST,
    ErrorCode.INVALID_ARGUMENT: INVALID_PARAMETER_VALUE,
    ErrorCode.CONFLICT: INVALID_PARAMETER_VALUE,  # e.g. a param changed: MLflow's own answer
    ErrorCode.PERMISSION_DENIED: PERMISSION_DENIED,
    ErrorCode.UNAUTHENTICATED: UNAUTHENTICATED,
    ErrorCode.RESOURCE_EXHAUSTED: RESOURCE_EXHAUSTED,
    ErrorCode.UNAVAILABLE: TEMPORARILY_UNAVAILABLE,
}
"""Our error codes as MLflow's; any other (INTERNAL, UNKNOWN) is INTERNAL_ERROR."""

MLFLOW_TO_DEARDIARY: dict[str, ErrorCode] = {
    RESOURCE_DOES_NOT_EXIST: ErrorCode.NOT_FOUND,
    ENDPOINT_NOT_FOUND: ErrorCode.NOT_FOUND,
    INVALID_PARAMETER_VALUE: ErrorCode.INVALID_ARGUMENT,
    BAD_REQUEST: ErrorCode.INVALID_ARGUMENT,
    RESOURCE_ALREADY_EXISTS: ErrorCode.CONFLICT,
    INVALID_STATE: ErrorCode.CONFLICT,
    PERMISSION_DENIED: ErrorCode.PERMISSION_DENIED,
    UNAUTHENTICATED: ErrorCode.UNAUTHENTICATED,
    RESOURCE_EXHAUSTED: ErrorCode.RESOURCE_EXHAUSTED,
    TEMPORARILY_UNAVAILABLE: ErrorCode.UNAVAILABLE,
}
"""The code of our own error object in the same body (INTERNAL for the rest)."""

_log = logging.getLogger("deardiary.mlflow")
_json = msgspec.json.Encoder()

MlflowHandler = Callable[[web.Request], Awaitable[Mapping[str, Any] | web.StreamResponse]]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class MlflowError(Exception):
    """An error answered in MLflow's shape: `error_code` is one of MLflow's codes and
    `status` overrides the status MLflow gives that code."""

    def __init__(
        self,
        message: str,
        error_code: str = INVALID_PARAMETER_VALUE,
        status: int | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.error_code = error_code
        self.status = status if status is not None else STATUS.get(error_code, 500)
        self.details: dict[str, Any] = dict(details or {})


def not_found(message: str) -> MlflowError:
    return MlflowError(message, RESOURCE_DOES_NOT_EXIST)


def from_deardiary(error: DearDiaryError) -> MlflowError:
    """One of our errors as MLflow's: its code mapped, our own status kept where MLflow
    has none of its own (413 for a body over the limit, 429 with Retry-After)."""
    code = DEARDIARY_TO_MLFLOW.get(error.code, INTERNAL_ERROR)
    status = status_for(error) if error.code is ErrorCode.RESOURCE_EXHAUSTED else None
    return MlflowError(error.message, code, status, error.details)


def error_response(error: MlflowError) -> web.Response:
    """MLflow's body plus our own error object (see the module docstring)."""
    ours = MLFLOW_TO_DEARDIARY.get(error.error_code, ErrorCode.INTERNAL)
    body = {
        "error_code": error.error_code,
        "message": error.message,
        "error": {"code": str(ours), "message": error.message, "details": error.details},
    }
    headers = {}
    retry_after = error.details.get("retry_after_s")
    if isinstance(retry_after, int | float):
        headers["Retry-After"] = str(max(0, math.ceil(retry_after)))
    return web.Response(
        status=error.status,
        body=_json.encode(body),
        content_type="application/json",
        headers=headers,
    )


def json_response(payload: Mapping[str, Any]) -> web.Response:
    return web.Response(body=_json.encode(payload), content_type="application/json")


def mlflow_json(handler: MlflowHandler) -> Handler:
    """An aiohttp handler from ``async (request) -> dict | StreamResponse``: a dict is
    answered as JSON; `MlflowError`, our `DearDiaryError`, a malformed body and any bug
    are answered in MLflow's error shape (a bug as INTERNAL_ERROR with an incident id
    that is also in the server log, never the exception text). Wrapping twice is a no-op."""
    if getattr(handler, "_mlflow_json", False):
        return handler  # type: ignore[return-value]

    @functools.wraps(handler)
    async def answer(request: web.Request) -> web.StreamResponse:
        try:
            result = await handler(request)
        except MlflowError as exc:
            return error_response(exc)
        except DearDiaryError as exc:
            return error_response(from_deardiary(exc))
        except (msgspec.DecodeError, json.JSONDecodeError, UnicodeDecodeError) as exc:
            return error_response(MlflowError(f"malformed request body: {exc}"))
        except (web.HTTPException, ConnectionError):
            raise
        except Exception:
            incident = new_id()
            _log.exception("internal error %s on %s %s", incident, request.method, request.path)
            return error_response(
                MlflowError(
                    "internal error; the server log has the details",
                    INTERNAL_ERROR,
                    details={"incident": incident},
                )
            )
        if isinstance(result, web.StreamResponse):
            return result
        return json_response(result)

    answer._mlflow_json = True  # type: ignore[attr-defined]
    return answer
