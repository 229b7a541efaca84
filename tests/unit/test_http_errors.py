"""The HTTP foundation: one status table, one error shape on every path, route parts,
and a sound OpenAPI document -- driven through a real server on a free loopback port."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import msgspec
import pytest
from aiohttp import web

from deardiary.schemas.errors import (
    ERROR_CLASSES,
    DearDiaryError,
    ErrorCode,
    ResourceExhausted,
    Unauthenticated,
)
from deardiary.services.http import (
    STATUS,
    Endpoint,
    RoutePart,
    build_app,
    operation,
    part_from_routes,
    start_in_thread,
    status_for,
)
from deardiary.services.http.app import OPENAPI_DOCUMENT, Handler
from deardiary.services.http.errors import DESCRIPTIONS
from deardiary.services.http.openapi import document_problems
from deardiary.services.http.query_params import NoQuery

WIRE_STATUS = {  # wire.md, verbatim
    "INVALID_ARGUMENT": 400,
    "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403,
    "NOT_FOUND": 404,
    "CONFLICT": 409,
    "RESOURCE_EXHAUSTED": 413,
    "UNAVAILABLE": 503,
    "INTERNAL": 500,
}
SECRET = "/srv/secret/path password=hunter2"


class Point(msgspec.Struct):
    step: int


async def raise_code(request: web.Request) -> web.Response:
    code = ErrorCode(request.match_info["code"])
    raise ERROR_CLASSES[code](f"raised {code}", {"why": "test"})


async def raise_bug(request: web.Request) -> web.Response:
    raise RuntimeError(SECRET)


async def decode_typed(request: web.Request) -> web.Response:
    msgspec.json.decode(await request.read(), type=Point)
    return web.json_response({})


async def read_json(request: web.Request) -> web.Response:
    return web.json_response(await request.json())


async def read_whole_body(request: web.Request) -> web.Response:
    return web.json_response({"size": len(await request.read())})


async def rate_limited(request: web.Request) -> web.Response:
    raise ResourceExhausted("slow down", {"retry_after_s": 7})


async def redirect(request: web.Request) -> web.Response:
    raise web.HTTPFound("/healthz")


def _ep(method: str, path: str, handler: Handler) -> Endpoint:
    return Endpoint(method, path, handler, operation(f"{method} {path}", tag="test"))


def probe_part() -> RoutePart:
    return RoutePart(
        "probe",
        [
            _ep("GET", "/raise/{code}", raise_code),
            _ep("GET", "/bug", raise_bug),
            _ep("POST", "/typed", decode_typed),
            _ep("POST", "/json", read_json),
            _ep("POST", "/whole", read_whole_body),
            _ep("GET", "/limited", rate_limited),
            _ep("GET", "/redirect", redirect),
        ],
    )


@web.middleware
async def require_header(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path == "/guarded" and "X-Key" not in request.headers:
        raise Unauthenticated("no key")
    return await handler(request)


@pytest.fixture
def base_url() -> Iterator[str]:
    app = build_app(
        [probe_part(), RoutePart("guarded", [_ep("GET", "/guarded", raise_bug)])],
        middlewares=[require_header],
        client_max_size=1024,
    )
    with start_in_thread(app) as server:
        yield server.url


def assert_error_shape(response: httpx.Response, code: str, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    error = body["error"]
    assert set(error) == {"code", "message", "details"}
    assert error["code"] == code
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["details"], dict)
    return dict(error)


def test_every_server_code_has_a_status_and_a_description() -> None:
    server_codes = set(ErrorCode) - {ErrorCode.UNKNOWN}
    assert set(STATUS) == server_codes
    assert set(DESCRIPTIONS) == server_codes
    assert {str(c): s for c, s in STATUS.items()} == WIRE_STATUS
    assert ErrorCode.UNKNOWN not in STATUS  # client-only


def test_status_for_rate_limits_and_unknown_codes() -> None:
    assert status_for(ResourceExhausted("big")) == 413
    assert status_for(ResourceExhausted("slow", {"retry_after_s": 1})) == 429
    unknown = DearDiaryError("?")
    unknown.code = ErrorCode.UNKNOWN
    assert status_for(unknown) == 500


@pytest.mark.parametrize("code", sorted(set(ErrorCode) - {ErrorCode.UNKNOWN}))
def test_every_raised_code_answers_its_status_and_the_shape(base_url: str, code: str) -> None:
    response = httpx.get(f"{base_url}/raise/{code}")
    error = assert_error_shape(response, code, WIRE_STATUS[code])
    assert error["message"] == f"raised {code}"
    assert error["details"] == {"why": "test"}


def test_a_bug_is_internal_and_leaks_nothing(
    base_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    response = httpx.get(f"{base_url}/bug")
    error = assert_error_shape(response, "INTERNAL", 500)
    assert "hunter2" not in response.text and "secret" not in response.text
    assert "RuntimeError" not in response.text
    incident = error["details"]["incident"]
    assert any(incident in r.getMessage() for r in caplog.records)


def test_msgspec_validation_error_keeps_the_path(base_url: str) -> None:
    response = httpx.post(f"{base_url}/typed", content=b'{"step": "three"}')
    error = assert_error_shape(response, "INVALID_ARGUMENT", 400)
    assert "$.step" in error["message"]
    assert error["details"]["path"] == "$.step"


def test_malformed_json_is_invalid_argument(base_url: str) -> None:
    response = httpx.post(f"{base_url}/typed", content=b'{"step": ')
    assert_error_shape(response, "INVALID_ARGUMENT", 400)
    response = httpx.post(
        f"{base_url}/json", content=b"{nope", headers={"Content-Type": "application/json"}
    )
    assert_error_shape(response, "INVALID_ARGUMENT", 400)


def test_unknown_route_and_wrong_method(base_url: str) -> None:
    error = assert_error_shape(httpx.get(f"{base_url}/no/such/route"), "NOT_FOUND", 404)
    assert "/no/such/route" in error["message"]
    response = httpx.delete(f"{base_url}/typed")
    error = assert_error_shape(response, "INVALID_ARGUMENT", 405)
    assert error["details"]["allowed_methods"] == ["POST"]
    assert response.headers["Allow"] == "POST"


def test_body_over_client_max_size_is_resource_exhausted(base_url: str) -> None:
    assert httpx.post(f"{base_url}/whole", content=b"x" * 1000).json() == {"size": 1000}
    response = httpx.post(f"{base_url}/whole", content=b"x" * 5000)
    assert_error_shape(response, "RESOURCE_EXHAUSTED", 413)


def test_rate_limit_is_429_with_retry_after(base_url: str) -> None:
    response = httpx.get(f"{base_url}/limited")
    assert_error_shape(response, "RESOURCE_EXHAUSTED", 429)
    assert response.headers["Retry-After"] == "7"


def test_errors_raised_by_middlewares_get_the_shape(base_url: str) -> None:
    assert_error_shape(httpx.get(f"{base_url}/guarded"), "UNAUTHENTICATED", 401)
    # past the middleware the handler's bug is still INTERNAL, not a crash
    assert_error_shape(httpx.get(f"{base_url}/guarded", headers={"X-Key": "1"}), "INTERNAL", 500)


def test_redirects_pass_through(base_url: str) -> None:
    response = httpx.get(f"{base_url}/redirect")
    assert response.status_code == 302
    assert response.headers["Location"] == "/healthz"


def test_healthz_and_openapi(base_url: str) -> None:
    assert httpx.get(f"{base_url}/healthz").json() == {"status": "ok"}
    doc = httpx.get(f"{base_url}/openapi.json").json()
    assert document_problems(doc) == []
    assert doc["openapi"].startswith("3.1")
    assert {"/healthz", "/openapi.json", "/raise/{code}", "/guarded"} <= set(doc["paths"])
    op = doc["paths"]["/raise/{code}"]["get"]
    assert op["parameters"][0] == {
        "name": "code",
        "in": "path",
        "required": True,
        "schema": {"type": "string"},
    }
    assert op["responses"]["default"] == {"$ref": "#/components/responses/Error"}
    documented = {
        c["const"]: c["x-http-status"] for c in doc["components"]["schemas"]["ErrorCode"]["oneOf"]
    }
    assert documented == WIRE_STATUS


@dataclass(frozen=True)
class SummaryRoute:
    """The shape of the query service's Route (summary, query parameters, JSON body)."""

    method: str
    path: str
    handler: Handler
    summary: str
    query: type[msgspec.Struct] = NoQuery
    tag: str = "query"
    body: dict[str, Any] | None = None


class XQuery(NoQuery, frozen=True, kw_only=True):
    x: int = 0


class KQuery(NoQuery, frozen=True, kw_only=True):
    k: str = ""


async def echo_id(request: web.Request) -> web.Response:
    return web.json_response({"id": request.match_info["item_id"], "method": request.method})


def test_parts_share_a_path_with_different_methods() -> None:
    reads = part_from_routes(
        "reads",
        [SummaryRoute("GET", "/items/{item_id:[a-z0-9]+}", echo_id, "Get", XQuery)],
    )
    writes = part_from_routes(
        "writes",
        [SummaryRoute("POST", "/items/{item_id}", echo_id, "Put", body={"type": "object"})],
    )
    with start_in_thread(build_app([reads, writes])) as server:
        assert httpx.get(f"{server.url}/items/a1").json() == {"id": "a1", "method": "GET"}
        assert httpx.post(f"{server.url}/items/a1").json() == {"id": "a1", "method": "POST"}
        doc = httpx.get(f"{server.url}/openapi.json").json()
    item = doc["paths"]["/items/{item_id}"]
    assert set(item) == {"get", "post"}
    assert item["get"]["parameters"][1]["name"] == "x"
    assert "application/json" in item["post"]["requestBody"]["content"]
    assert document_problems(doc) == []


def test_two_parts_claiming_one_route_are_refused() -> None:
    a = RoutePart("a", [_ep("GET", "/same", echo_id)])
    b = RoutePart("b", [_ep("GET", "/same", echo_id)])
    with pytest.raises(ValueError, match="declared twice"):
        build_app([a, b])


def _sound_document() -> dict[str, Any]:
    doc = msgspec.json.decode(build_app([probe_part()])[OPENAPI_DOCUMENT])
    assert isinstance(doc, dict)
    return doc


def _broken(mutate: str) -> Mapping[str, Any]:
    doc = _sound_document()
    op = doc["paths"]["/raise/{code}"]["get"]
    if mutate == "version":
        doc["openapi"] = "2.0"
    elif mutate == "no_responses":
        op["responses"] = {}
    elif mutate == "bad_status":
        op["responses"]["2OO"] = {"description": "typo"}
    elif mutate == "undeclared_path_param":
        op["parameters"] = []
    elif mutate == "dangling_ref":
        op["responses"]["default"] = {"$ref": "#/components/responses/Nope"}
    elif mutate == "duplicate_operation_id":
        doc["paths"]["/bug"]["get"]["operationId"] = op["operationId"]
    return doc


@pytest.mark.parametrize(
    "mutate",
    [
        "version",
        "no_responses",
        "bad_status",
        "undeclared_path_param",
        "dangling_ref",
        "duplicate_operation_id",
    ],
)
def test_the_document_check_finds_problems(mutate: str) -> None:
    assert document_problems(_sound_document()) == []
    assert document_problems(_broken(mutate)) != []


def test_a_failed_start_is_raised_by_start_in_thread() -> None:
    with start_in_thread(build_app([])) as first, pytest.raises(OSError):
        start_in_thread(build_app([]), port=first.port)


def test_the_query_services_route_type_mounts_unchanged() -> None:
    from deardiary.services.query.routes import Route

    part = part_from_routes("query", [Route("GET", "/q/{item_id}", echo_id, "Q", KQuery)])
    doc = msgspec.json.decode(build_app([part])[OPENAPI_DOCUMENT])
    assert [p["name"] for p in doc["paths"]["/q/{item_id}"]["get"]["parameters"]] == [
        "item_id",
        "k",
    ]


SERVE_SCRIPT = """
import sys
from aiohttp import web
from deardiary.services.http import RoutePart, build_app, serve

async def cleanup(app):
    yield
    print("cleaned up", flush=True)

app = build_app([RoutePart("probe", [], contexts=[cleanup])])
serve(app, "127.0.0.1", 0, ready=lambda url: print(url, flush=True), access_log=False)
print("stopped", flush=True)
"""


def test_serve_blocks_until_sigterm_then_cleans_up() -> None:
    process = subprocess.Popen(
        [sys.executable, "-c", SERVE_SCRIPT], stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        assert httpx.get(f"{url}/healthz").json() == {"status": "ok"}
        process.send_signal(signal.SIGTERM)
        rest, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert rest.splitlines() == ["cleaned up", "stopped"]
    assert process.returncode == 0
