"""Every error on every HTTP route: one status table, one JSON body, one middleware.

The table below is the only place an `ErrorCode` becomes an HTTP status (datasette's
lesson: one error shape everywhere, so clients parse one thing). Whatever escapes a
handler -- a `DearDiaryError`, a msgspec decode error, aiohttp's own 404/405/413, or a
bug -- leaves as ``{"error": {"code", "message", "details"}}``. Bugs answer `INTERNAL`
with an incident id that is also in the server log, never the exception text.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from deardiary.schemas.errors import DearDiaryError, ErrorCode, InvalidArgument
from deardiary.schemas.ids import new_id

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

STATUS: dict[ErrorCode, int] = {
    ErrorCode.INVALID_ARGUMENT: 400,
    ErrorCode.UNAUTHENTICATED: 401,
    ErrorCode.PERMISSION_DENIED: 403,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.CONFLICT: 409,
    ErrorCode.RESOURCE_EXHAUSTED: 413,
    ErrorCode.INTERNAL: 500,
    ErrorCode.UNAVAILABLE: 503,
}
"""Code -> HTTP status. `UNKNOWN` is absent on purpose: only clients produce it."""

RATE_LIMITED_STATUS = 429
"""`RESOURCE_EXHAUSTED` with ``details["retry_after_s"]`` is a rate limit, not a size limit."""

DESCRIPTIONS: dict[ErrorCode, str] = {
    ErrorCode.INVALID_ARGUMENT: "The request is malformed or breaks a rule; retrying it "
    "unchanged cannot succeed. `details` may name the offending item (`index`, `path`).",
    ErrorCode.UNAUTHENTICATED: "No valid credentials were presented.",
    ErrorCode.PERMISSION_DENIED: "The caller may not do this.",
    ErrorCode.NOT_FOUND: "The route or the entity does not exist.",
    ErrorCode.CONFLICT: "The request contradicts the current state.",
    ErrorCode.RESOURCE_EXHAUSTED: "A body, batch or quota is too large (413), or a rate limit "
    "was hit (429, with a Retry-After header).",
    ErrorCode.INTERNAL: "A bug on the server; `details.incident` finds it in the server log.",
    ErrorCode.UNAVAILABLE: "Retryable: a dependency (the log, the projections) cannot serve "
    "the request right now; nothing was written.",
}
"""What each code means to a client; served in the OpenAPI document."""

_log = logging.getLogger("deardiary.http")
_json = msgspec.json.Encoder()
_MSGSPEC_PATH = re.compile(r" - at `(\$[^`]*)`$")


def status_for(error: DearDiaryError) -> int:
    """The HTTP status of an error (500 for a code the table lacks, such as UNKNOWN)."""
    if error.code is ErrorCode.RESOURCE_EXHAUSTED and "retry_after_s" in error.details:
        return RATE_LIMITED_STATUS
    return STATUS.get(error.code, 500)


def error_body(code: ErrorCode, message: str, details: dict[str, Any] | None = None) -> bytes:
    return _json.encode(
        {"error": {"code": str(code), "message": message, "details": details or {}}}
    )


def error_response(
    error: DearDiaryError, status: int | None = None, headers: dict[str, str] | None = None
) -> web.Response:
    """The one error response: the table's status (unless given) and the one body shape."""
    headers = dict(headers or {})
    retry_after = error.details.get("retry_after_s")
    if isinstance(retry_after, int | float):
        headers.setdefault("Retry-After", str(max(0, math.ceil(retry_after))))
    return web.Response(
        status=status if status is not None else status_for(error),
        body=error_body(error.code, error.message, error.details),
        content_type="application/json",
        headers=headers,
    )


def msgspec_path(message: str) -> str | None:
    """The ``$.path`` msgspec put at the end of an error message, if any."""
    found = _MSGSPEC_PATH.search(message)
    return found.group(1) if found else None


def invalid_argument_from_msgspec(exc: msgspec.DecodeError, what: str = "body") -> InvalidArgument:
    """A msgspec error as INVALID_ARGUMENT, keeping msgspec's ``$.path`` (also in details)."""
    text = str(exc)
    path = msgspec_path(text)
    details = {"path": path} if path else {}
    kind = "invalid" if isinstance(exc, msgspec.ValidationError) else "malformed"
    return InvalidArgument(f"{kind} {what}: {text}", details)


_CODE_OF_STATUS = {status: code for code, status in STATUS.items()} | {
    RATE_LIMITED_STATUS: ErrorCode.RESOURCE_EXHAUSTED
}


def _from_http_exception(request: web.Request, exc: web.HTTPException) -> web.Response:
    """aiohttp's own errors (no route, wrong method, body over client_max_size) in our shape."""
    status = exc.status
    code = _CODE_OF_STATUS.get(status)
    if code is None:
        code = ErrorCode.INTERNAL if status >= 500 else ErrorCode.INVALID_ARGUMENT
    details: dict[str, Any] = {}
    if status == 404:
        message = f"no such route: {request.method} {request.path}"
    elif isinstance(exc, web.HTTPMethodNotAllowed):
        message = f"{request.method} is not allowed on {request.path}"
        details = {"allowed_methods": sorted(exc.allowed_methods)}
    else:
        message = exc.text or exc.reason
    headers = {k: v for k, v in exc.headers.items() if k.lower() in ("allow", "retry-after")}
    return web.Response(
        status=status,
        body=error_body(code, message.strip(), details),
        content_type="application/json",
        headers=headers,
    )


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Outermost middleware: turns whatever a handler raises into the one error shape."""
    try:
        return await handler(request)
    except DearDiaryError as exc:
        return error_response(exc)
    except msgspec.DecodeError as exc:
        return error_response(invalid_argument_from_msgspec(exc))
    except json.JSONDecodeError as exc:  # aiohttp's request.json()
        return error_response(InvalidArgument(f"malformed JSON body: {exc}"))
    except web.HTTPException as exc:
        if exc.status < 400:  # redirects and friends pass through
            raise
        return _from_http_exception(request, exc)
    except HttpProcessingError as exc:  # a body that breaks HTTP framing (bad chunking, ...)
        return error_response(InvalidArgument(f"malformed HTTP message: {exc.message}"))
    except ConnectionError:  # the client went away: nobody to answer, nothing to report
        raise
    except Exception:
        incident = new_id()
        _log.exception("internal error %s on %s %s", incident, request.method, request.path)
        return error_response(
            DearDiaryError("internal error; the server log has the details", {"incident": incident})
        )
