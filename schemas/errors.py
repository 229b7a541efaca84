"""One exception hierarchy with stable, machine-readable codes.

Codes are a contract with clients: they never change meaning. HTTP statuses are
mapped from them in exactly one place (services/http/errors.py).
"""

from __future__ import annotations

from enum import StrEnum

TYPE_CHECKING = False
if TYPE_CHECKING:  # `typing` costs a trial process milliseconds to import
    from typing import Any


class ErrorCode(StrEnum):
    NOT_FOUND = "NOT_FOUND"
    CONFLICT = "CONFLICT"
    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    PERMISSION_DENIED = "PERMISSION_DENIED"
    RESOURCE_EXHAUSTED = "RESOURCE_EXHAUSTED"
    UNAVAILABLE = "UNAVAILABLE"
    INTERNAL = "INTERNAL"
    UNKNOWN = "UNKNOWN"


class DearDiaryError(Exception):
    """Base of every error DearDiary raises on purpose."""

    code: ErrorCode = ErrorCode.INTERNAL
    status: int | None = None  # the HTTP status, when the error came over HTTP

    def __init__(self, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, Any] = details or {}

    def to_body(self) -> dict[str, Any]:
        """The one error body shape used on every wire."""
        return {"error": {"code": str(self.code), "message": self.message, "details": self.details}}


class NotFound(DearDiaryError):
    code = ErrorCode.NOT_FOUND


class Conflict(DearDiaryError):
    code = ErrorCode.CONFLICT


class InvalidArgument(DearDiaryError):
    code = ErrorCode.INVALID_ARGUMENT


class Unauthenticated(DearDiaryError):
    code = ErrorCode.UNAUTHENTICATED


class PermissionDenied(DearDiaryError):
    code = ErrorCode.PERMISSION_DENIED


class ResourceExhausted(DearDiaryError):
    code = ErrorCode.RESOURCE_EXHAUSTED


class Unavailable(DearDiaryError):
    code = ErrorCode.UNAVAILABLE


class Internal(DearDiaryError):
    code = ErrorCode.INTERNAL


ERROR_CLASSES: dict[ErrorCode, type[DearDiaryError]] = {
    cls.code: cls
    for cls in (
        NotFound,
        Conflict,
        InvalidArgument,
        Unauthenticated,
        PermissionDenied,
        ResourceExhausted,
        Unavailable,
        Internal,
    )
}


def error_for(code: str, message: str, details: dict[str, Any] | None = None) -> DearDiaryError:
    """Rebuild a typed error from a code read off the wire."""
    try:
        cls = ERROR_CLASSES[ErrorCode(code)]
    except (ValueError, KeyError):
        err = DearDiaryError(message, details)
        err.code = ErrorCode.UNKNOWN
        return err
    return cls(message, details)
