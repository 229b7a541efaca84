"""The OpenAPI 3.1 document, assembled from the route parts that are actually mounted.

Each endpoint carries its own Operation Object, so the served document cannot drift
from the routes. This module fills in what every operation shares -- path parameters,
query parameters generated from the endpoint's query Struct (the one the request is
parsed with, see `query_params`), an operationId, and the one error response -- and
documents every error code with its HTTP status straight from the status table.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import msgspec

from deardiary.schemas.errors import ErrorCode
from deardiary.services.http.errors import DESCRIPTIONS, RATE_LIMITED_STATUS, STATUS

if TYPE_CHECKING:
    from deardiary.services.http.app import RoutePart

OPENAPI_VERSION = "3.1.0"
ERROR_RESPONSE = {"$ref": "#/components/responses/Error"}
_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(?::[^{}]*(?:\{[^{}]*\}[^{}]*)*)?\}")
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


def openapi_path(path: str) -> str:
    """An aiohttp route path as an OpenAPI path: ``{name:regex}`` becomes ``{name}``."""
    return _PARAM.sub(lambda m: "{" + m.group(1) + "}", path)


def path_parameters(path: str) -> list[str]:
    return _PARAM.findall(path)


def _without_null(schema: dict[str, Any]) -> dict[str, Any]:
    """``X | None`` is "may be left out" in a query string: document X alone."""
    alternatives = schema.get("anyOf")
    if not isinstance(alternatives, list):
        return schema
    kept = [a for a in alternatives if a != {"type": "null"}]
    rest = {k: v for k, v in schema.items() if k != "anyOf"}
    if rest.get("default", "") is None:
        del rest["default"]
    return {**kept[0], **rest} if len(kept) == 1 else {**rest, "anyOf": kept}


def query_parameters(cls: type[msgspec.Struct]) -> list[dict[str, Any]]:
    """OpenAPI Parameter Objects for a route's query Struct (see `query_params`): names,
    types, defaults, constraints and descriptions all come from the Struct's fields."""
    schema = msgspec.json.schema(cls)
    body = schema["$defs"][cls.__name__]
    required = set(body.get("required", ()))
    params = []
    for name, prop in body.get("properties", {}).items():
        prop = _without_null(dict(prop))
        description = prop.pop("description", "")
        param: dict[str, Any] = {
            "name": name,
            "in": "query",
            "required": name in required,
            "description": description,
            "schema": prop,
        }
        if prop.get("type") == "array":
            param["style"], param["explode"] = "form", True
            param["description"] = (
                f"{description} (repeat the parameter or separate values with commas)".strip()
            )
        params.append(param)
    return params


def json_content(schema: Mapping[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": dict(schema)}}


def operation(
    summary: str,
    *,
    tag: str,
    description: str = "",
    request_body: Mapping[str, Any] | None = None,
    responses: Mapping[str, Any] | None = None,
    operation_id: str | None = None,
) -> dict[str, Any]:
    """An Operation Object; `request_body` is a Request Body Object, `responses` maps
    status -> Response Object (200 "OK" when omitted; the error response is added later).
    Query parameters are not given here: the `Endpoint`'s query Struct declares them."""
    op: dict[str, Any] = {"summary": summary, "tags": [tag]}
    if description:
        op["description"] = description
    if operation_id:
        op["operationId"] = operation_id
    if request_body is not None:
        op["requestBody"] = dict(request_body)
    op["responses"] = dict(responses) if responses else {"200": {"description": "OK"}}
    return op


def _operation_id(method: str, path: str) -> str:
    words = re.sub(r"[^A-Za-z0-9]+", "_", openapi_path(path)).strip("_")
    return f"{method.lower()}_{words}"


def _complete(
    method: str, path: str, op: Mapping[str, Any], query: type[msgspec.Struct]
) -> dict[str, Any]:
    """The operation with its path and query parameters declared, an operationId and the
    error response."""
    done = dict(op)
    done.setdefault("operationId", _operation_id(method, path))
    declared = {(p["name"], p["in"]) for p in done.get("parameters", ())}
    missing = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in path_parameters(path)
        if (name, "path") not in declared
    ]
    by_hand = sorted(p["name"] for p in done.get("parameters", ()) if p["in"] == "query")
    if by_hand:
        raise ValueError(f"{method} {path}: query parameters {by_hand} belong in its Struct")
    parameters = [*missing, *done.get("parameters", ()), *query_parameters(query)]
    if parameters:
        done["parameters"] = parameters
    responses = dict(done.get("responses") or {"200": {"description": "OK"}})
    responses.setdefault("default", ERROR_RESPONSE)
    done["responses"] = responses
    return done


def _error_components() -> dict[str, Any]:
    codes = [
        {
            "const": str(code),
            "description": f"HTTP {status}. {DESCRIPTIONS[code]}",
            "x-http-status": status,
        }
        for code, status in STATUS.items()
    ]
    return {
        "ErrorCode": {"type": "string", "oneOf": codes},
        "Error": {
            "type": "object",
            "required": ["error"],
            "properties": {
                "error": {
                    "type": "object",
                    "required": ["code", "message", "details"],
                    "properties": {
                        "code": {"$ref": "#/components/schemas/ErrorCode"},
                        "message": {"type": "string"},
                        "details": {"type": "object"},
                    },
                }
            },
        },
    }


def _error_table() -> str:
    lines = ["| code | HTTP status | meaning |", "| --- | --- | --- |"]
    for code, status in STATUS.items():
        shown = (
            f"{status} or {RATE_LIMITED_STATUS}" if code is ErrorCode.RESOURCE_EXHAUSTED else status
        )
        lines.append(f"| `{code}` | {shown} | {DESCRIPTIONS[code]} |")
    return "\n".join(lines)


def build_document(
    parts: Sequence[RoutePart], title: str, version: str, description: str = ""
) -> dict[str, Any]:
    """The whole document. Two parts declaring the same operation or schema name is a bug
    in the wiring and raises ValueError."""
    paths: dict[str, dict[str, Any]] = {}
    schemas: dict[str, Any] = _error_components()
    tags: dict[str, None] = {}
    for part in parts:
        for name, schema in part.schemas.items():
            if name in schemas and schemas[name] != schema:
                raise ValueError(f"route part {part.name!r} redefines schema {name!r}")
            schemas[name] = schema
        for ep in part.endpoints:
            path, method = openapi_path(ep.path), ep.method.lower()
            if method not in METHODS:
                raise ValueError(f"route part {part.name!r}: {ep.method} is not an HTTP method")
            item = paths.setdefault(path, {})
            if method in item:
                raise ValueError(f"route part {part.name!r}: {ep.method} {path} is declared twice")
            item[method] = _complete(method, ep.path, ep.operation, ep.query)
            for tag in item[method].get("tags", ()):
                tags.setdefault(tag)
    intro = description or "DearDiary's HTTP API."
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": title,
            "version": version,
            "description": f"{intro}\n\nEvery error has the body "
            '`{"error": {"code", "message", "details"}}`:\n\n' + _error_table(),
        },
        "tags": [{"name": t} for t in tags],
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": schemas,
            "responses": {
                "Error": {
                    "description": "An error (see the code table in the API description)",
                    "content": json_content({"$ref": "#/components/schemas/Error"}),
                }
            },
        },
    }


_STATUS_KEY = re.compile(r"^(?:[1-5](?:\d\d|XX)|default)$")
_PATH_ITEM_KEYS = frozenset((*METHODS, "parameters", "summary", "description", "servers", "$ref"))
_PARAM_IN = frozenset({"query", "header", "path", "cookie"})


def _refs(node: Any) -> Iterable[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def _resolves(doc: Mapping[str, Any], ref: str) -> bool:
    node: Any = doc
    for token in ref.removeprefix("#/").split("/"):
        token = token.replace("~1", "/").replace("~0", "~")
        if not isinstance(node, dict) or token not in node:
            return False
        node = node[token]
    return True


def _operation_problems(where: str, path: str, op: Any) -> list[str]:
    if not isinstance(op, dict):
        return [f"{where}: not an object"]
    problems = []
    responses = op.get("responses")
    if not isinstance(responses, dict) or not responses:
        problems.append(f"{where}: no responses")
    else:
        for status, response in responses.items():
            if not _STATUS_KEY.match(str(status)):
                problems.append(f"{where}: response key {status!r} is not a status")
            if not isinstance(response, dict) or not (
                "$ref" in response or isinstance(response.get("description"), str)
            ):
                problems.append(f"{where}: response {status} has no description")
    params = op.get("parameters", [])
    declared_path = []
    for param in params if isinstance(params, list) else [None]:
        if not isinstance(param, dict) or not isinstance(param.get("name"), str):
            problems.append(f"{where}: a parameter without a name")
            continue
        if param.get("in") not in _PARAM_IN:
            problems.append(f"{where}: parameter {param['name']} has in={param.get('in')!r}")
        if param.get("in") == "path":
            declared_path.append(param["name"])
            if param.get("required") is not True:
                problems.append(f"{where}: path parameter {param['name']} is not required")
    if sorted(declared_path) != sorted(set(path_parameters(path))):
        problems.append(f"{where}: path parameters {declared_path} do not match the path")
    body = op.get("requestBody")
    if body is not None and not (isinstance(body, dict) and isinstance(body.get("content"), dict)):
        problems.append(f"{where}: requestBody without content")
    return problems


def document_problems(doc: Any) -> list[str]:
    """Structural problems of an OpenAPI 3.x document (empty when sound): required fields,
    operations with responses, path parameters matching their paths, unique operationIds,
    and every local $ref resolving."""
    if not isinstance(doc, dict):
        return ["the document is not an object"]
    problems = []
    if not str(doc.get("openapi", "")).startswith("3."):
        problems.append(f"openapi version is {doc.get('openapi')!r}, not 3.x")
    info = doc.get("info")
    if not isinstance(info, dict) or not all(
        isinstance(info.get(k), str) for k in ("title", "version")
    ):
        problems.append("info needs a title and a version")
    paths = doc.get("paths")
    if not isinstance(paths, dict):
        return [*problems, "paths is not an object"]
    seen_ids: set[str] = set()
    for path, item in paths.items():
        if not str(path).startswith("/") or not isinstance(item, dict):
            problems.append(f"path {path!r} must start with '/' and be an object")
            continue
        for key, op in item.items():
            if key not in _PATH_ITEM_KEYS:
                problems.append(f"{path}: unknown key {key!r}")
            elif key in METHODS:
                where = f"{key.upper()} {path}"
                problems += _operation_problems(where, path, op)
                op_id = op.get("operationId") if isinstance(op, dict) else None
                if op_id in seen_ids:
                    problems.append(f"{where}: operationId {op_id!r} is not unique")
                elif isinstance(op_id, str):
                    seen_ids.add(op_id)
    for ref in _refs(doc):
        if ref.startswith("#/") and not _resolves(doc, ref):
            problems.append(f"$ref {ref} does not resolve")
    return problems
