"""Query parameters declared once, as a msgspec Struct per route.

An `Endpoint` names the Struct of its query string (`NoQuery` when it takes none). The
same Struct is (1) the parser: `query_middleware` turns ``request.query`` into it on
every call -- unknown parameters, wrong types, values out of range and parameters given
twice answer 400 INVALID_ARGUMENT naming the parameter -- and (2) the documentation:
the OpenAPI ``parameters`` of the operation are generated from its fields (see
`openapi.query_parameters`). The document and the parser cannot drift.

Field conventions: constraints and help text go in ``Annotated[..., Meta(...)]``; a
``list[...]`` field takes the parameter repeated or comma-separated; an empty value
(``?name=``) is the same as leaving the parameter out.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from functools import cache
from typing import Any, TypeVar

import msgspec
from aiohttp import web
from multidict import MultiMapping

from deardiary.schemas.errors import InvalidArgument

S = TypeVar("S", bound=msgspec.Struct)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class NoQuery(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The query string of a route that takes no parameters."""


QUERY_TYPES = web.AppKey("deardiary_query_types", dict[object, type[msgspec.Struct]])
"""aiohttp route -> the Struct of its query string (filled by `build_app`)."""
_PARSED = web.RequestKey("deardiary_query", msgspec.Struct)
_FIELD_IN_MESSAGE = re.compile(r"`\$\.([A-Za-z_][A-Za-z0-9_]*)|field `([A-Za-z_][A-Za-z0-9_]*)`")


def _is_list(info: msgspec.inspect.Type) -> bool:
    while isinstance(info, msgspec.inspect.Metadata):
        info = info.type
    if isinstance(info, msgspec.inspect.UnionType):
        return any(_is_list(t) for t in info.types)
    return isinstance(info, msgspec.inspect.ListType | msgspec.inspect.SetType)


@cache
def _fields(cls: type[msgspec.Struct]) -> dict[str, bool]:
    """Parameter name -> whether it is a list, for one Struct."""
    info = msgspec.inspect.type_info(cls)
    assert isinstance(info, msgspec.inspect.StructType)
    return {f.encode_name: _is_list(f.type) for f in info.fields}


def parse_query(query: MultiMapping[str], cls: type[S]) -> S:
    """The query string as `cls`, or InvalidArgument naming the parameter."""
    fields = _fields(cls)
    unknown = sorted(set(query) - set(fields))
    if unknown:
        known = ", ".join(sorted(fields)) or "none"
        raise InvalidArgument(
            f"unknown query parameter {unknown[0]!r}; this route takes: {known}",
            {"parameter": unknown[0], "known": sorted(fields)},
        )
    raw: dict[str, Any] = {}
    for name, is_list in fields.items():
        values = [v for v in query.getall(name, []) if v != ""]
        if is_list:
            items = [item for v in values for item in v.split(",") if item != ""]
            if items:
                raw[name] = items
        elif len(values) > 1:
            raise InvalidArgument(
                f"query parameter {name!r} is given {len(values)} times; once at most",
                {"parameter": name},
            )
        elif values:
            raw[name] = values[0]
    try:
        return msgspec.convert(raw, cls, strict=False)
    except msgspec.ValidationError as exc:
        text = str(exc)
        found = _FIELD_IN_MESSAGE.search(text)
        name = (found.group(1) or found.group(2)) if found else ""
        if text.startswith("Object missing required field"):
            raise InvalidArgument(
                f"query parameter {name!r} is required", {"parameter": name}
            ) from exc
        detail = text.split(" - at `", 1)[0]
        given = raw.get(name)
        shown = f" = {given!r}" if isinstance(given, str) else ""
        raise InvalidArgument(
            f"query parameter {name!r}{shown}: {detail}", {"parameter": name}
        ) from exc


def query_of(request: web.Request) -> msgspec.Struct:
    """The request's query string as its route declared it (parsed once per request)."""
    parsed = request.get(_PARSED)
    if parsed is None:
        declared = request.app.get(QUERY_TYPES, {}).get(request.match_info.route, NoQuery)
        parsed = parse_query(request.query, declared)
        request[_PARSED] = parsed
    return parsed


def query(request: web.Request, cls: type[S]) -> S:
    """The parsed query string, typed; the route must declare exactly `cls`."""
    parsed = query_of(request)
    if type(parsed) is not cls or not isinstance(parsed, cls):
        raise TypeError(
            f"{request.method} {request.path} declares {type(parsed).__name__}, "
            f"its handler reads {cls.__name__}"
        )
    return parsed


@web.middleware
async def query_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Innermost middleware: every declared route's query string is checked before its
    handler runs (routes aiohttp did not match -- 404, 405 -- are left alone)."""
    if request.match_info.route in request.app.get(QUERY_TYPES, {}):
        query_of(request)
    return await handler(request)
