"""Reading typed query-string parameters, with INVALID_ARGUMENT for bad ones."""

from __future__ import annotations

from aiohttp import web

from deardiary.schemas.errors import InvalidArgument


def text(request: web.Request, name: str, default: str | None = None) -> str | None:
    return request.query.get(name, default)


def required(request: web.Request, name: str) -> str:
    value = request.query.get(name)
    if value is None or value == "":
        raise InvalidArgument(f"query parameter {name!r} is required")
    return value


def integer(request: web.Request, name: str, default: int | None = None) -> int | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise InvalidArgument(f"query parameter {name!r} must be an integer") from exc


def boolean(request: web.Request, name: str, default: bool) -> bool:
    raw = request.query.get(name)
    if raw is None:
        return default
    if raw.lower() in ("1", "true", "yes"):
        return True
    if raw.lower() in ("0", "false", "no"):
        return False
    raise InvalidArgument(f"query parameter {name!r} must be true or false")


def listing(request: web.Request, name: str) -> list[str]:
    """Comma-separated values, or the parameter repeated."""
    values: list[str] = []
    for raw in request.query.getall(name, []):
        values += [v for v in raw.split(",") if v]
    return values


def page(request: web.Request, default_limit: int = 100) -> tuple[int, int]:
    return integer(request, "limit", default_limit) or default_limit, integer(
        request, "offset", 0
    ) or 0


def min_offsets(request: web.Request) -> dict[int, int]:
    """?min_offset=N (partition 0) or ?min_offset=P:N,P:N — wait until these are applied."""
    wanted: dict[int, int] = {}
    for item in listing(request, "min_offset"):
        partition, _, offset = item.rpartition(":")
        try:
            wanted[int(partition or 0)] = int(offset) + 1
        except ValueError as exc:
            raise InvalidArgument("min_offset must be N or PARTITION:N") from exc
    return wanted
