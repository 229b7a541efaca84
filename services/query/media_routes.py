"""Media, histograms and checkpoints of an iteration over HTTP.

Bytes (images, figures, tables, checkpoint files) are uploaded first, into the
content-addressed store (POST .../blobs: identical bytes are stored once, and the
uploader is remembered), then named by the events the SDK sends (MediaLogged,
CheckpointSaved), which the server holds to naming only content their writer uploaded
or may read. Bytes are served back only through an iteration the caller may read that
names them (.../content?hash=): images inline (so a page can show them), everything else
as an attachment, never as something a browser would run in the server's origin.

Retention (.../checkpoints/retain) keeps the best N checkpoints by a metric (or the
latest N), discards the others as events, and deletes from the store the files nothing
else names (an artifact, a media item, a checkpoint still kept).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from typing import Annotated, Any, BinaryIO, Literal, cast

import duckdb
import msgspec
from aiohttp import web
from msgspec import Meta

from deardiary.projections.queries import media as media_queries
from deardiary.projections.queries.catalog import Page
from deardiary.schemas.errors import InvalidArgument, NotFound
from deardiary.schemas.events import CheckpointDiscarded
from deardiary.schemas.limits import MAX_KEY_CHARS
from deardiary.services.artifacts import StoredBlob
from deardiary.services.artifacts.routes import MAX_ARTIFACT_BYTES, BodyReader
from deardiary.services.auth.identity import PRINCIPAL
from deardiary.services.http import Endpoint, operation
from deardiary.services.http import query_params as qp
from deardiary.services.query import params as q
from deardiary.services.query.context import caller_of
from deardiary.services.query.encoding import json_response, table_response
from deardiary.services.query.manage_routes import _body
from deardiary.services.query.routes import Route, page_response, require
from deardiary.services.query.writes import WriteContext

BLOB_IDLE_TIMEOUT_S = 60.0
IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})
ITERATION = "/api/v1/iterations/{iteration_id}"
RETAIN = f"{ITERATION}/checkpoints/retain"
ROUTE_ACTIONS: dict[tuple[str, str], str] = {("POST", RETAIN): "delete"}
"""Retention discards checkpoints and frees bytes: delete permission (the auth
middleware reads this; uploading bytes is create, as for any other write)."""

MediaKey = Annotated[str, Meta(min_length=1, max_length=MAX_KEY_CHARS, description="media key")]
WindowStep = Annotated[int, Meta(ge=0, le=2**62)]


MaxSteps = Annotated[
    int,
    Meta(
        ge=2,
        le=q.MAX_PAGE,
        description="at most this many steps of each key, spread evenly from its first to its"
        " last (both kept); each row's key_steps says how many the key has",
    ),
]


class MediaQuery(q.Paged, frozen=True, kw_only=True):
    key: Annotated[MediaKey | None, Meta(description="only this key")] = None
    kind: Annotated[
        Literal["image", "figure", "text", "table"] | None, Meta(description="only this kind")
    ] = None
    min_step: Annotated[WindowStep | None, Meta(description="steps from")] = None
    max_step: Annotated[WindowStep | None, Meta(description="steps up to")] = None
    max_steps: MaxSteps | None = None


class HistogramQuery(q.Read, frozen=True, kw_only=True):
    key: Annotated[MediaKey | None, Meta(description="only this key")] = None
    min_step: Annotated[WindowStep | None, Meta(description="steps from")] = None
    max_step: Annotated[WindowStep | None, Meta(description="steps up to")] = None
    limit: Annotated[int, Meta(ge=0, le=q.MAX_PAGE, description="histograms")] = 1000
    max_steps: MaxSteps | None = None


class CheckpointQuery(q.Read, frozen=True, kw_only=True):
    order_by: Annotated[
        MediaKey | None, Meta(description="best first by this metric recorded with them")
    ] = None
    goal: q.Goal = "min"
    include_discarded: Annotated[bool, Meta(description="list discarded ones too")] = False


class ContentQuery(q.Fresh, frozen=True, kw_only=True):
    hash: Annotated[
        str, Meta(pattern=r"^[0-9a-f]{64}$", description="sha256 of the content to read")
    ]


class RetainBody(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    keep: Annotated[int, Meta(ge=0, le=1_000_000)]
    order_by: Annotated[str, Meta(min_length=1, max_length=MAX_KEY_CHARS)] | None = None
    goal: str = "min"


_RETAIN_SCHEMA = {
    "type": "object",
    "required": ["keep"],
    "additionalProperties": False,
    "properties": {
        "keep": {"type": "integer", "minimum": 0},
        "order_by": {"type": "string"},
        "goal": {"enum": ["min", "max"]},
    },
}


def _content_headers(media_type: str, size: int, content_hash: str) -> dict[str, str]:
    inline = media_type in IMAGE_TYPES
    shown = media_type if inline or media_type == "application/json" else "application/octet-stream"
    return {
        "Content-Type": shown,
        "Content-Length": str(size),
        "ETag": f'"{content_hash}"',
        "Content-Disposition": "inline" if inline else f'attachment; filename="{content_hash}"',
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "sandbox; default-src 'none'",
        "Cache-Control": "private, max-age=31536000, immutable",  # content-addressed
    }


class MediaRoutes:
    def __init__(self, writes: WriteContext) -> None:
        self.w = writes
        self._pool = concurrent.futures.ThreadPoolExecutor(4, thread_name_prefix="blobs")

    async def _read(self, request: web.Request, fn: Any) -> Any:
        """`fn` on a cursor after the caller's writes -- or of the past ``?as_of=`` names
        (the media, histogram and checkpoint lists declare it)."""
        ctx = self.w.query
        parsed = qp.query_of(request)
        if isinstance(parsed, q.Past) and parsed.as_of is not None:
            bound = await ctx.bound(parsed.as_of, caller_of(request))
            return await ctx.run_as_of(bound, fn, caller_of(request))
        await ctx.wait(q.min_offsets(request))
        return await ctx.run(fn, caller_of(request))

    async def upload(self, request: web.Request) -> web.Response:
        it = request.match_info["iteration_id"]
        await self._read(request, lambda c: require(c, "iteration", it))
        if request.content_length is not None and request.content_length > MAX_ARTIFACT_BYTES:
            raise InvalidArgument(f"content larger than {MAX_ARTIFACT_BYTES} bytes")
        loop = asyncio.get_running_loop()
        store = self.w.artifacts
        body = BodyReader(request.content, loop, MAX_ARTIFACT_BYTES, BLOB_IDLE_TIMEOUT_S)
        try:
            blob: StoredBlob = await loop.run_in_executor(
                self._pool, store.put, cast(BinaryIO, body)
            )
        finally:
            body.abort()
        principal = request.get(PRINCIPAL)
        if principal is not None:
            await loop.run_in_executor(
                self._pool, store.mark_uploaded, blob.content_hash, principal.user_id
            )
        return json_response(
            {"content_hash": blob.content_hash, "size_bytes": blob.size_bytes, "uri": blob.uri}
        )

    async def media(self, request: web.Request) -> web.Response:
        it, p = request.match_info["iteration_id"], qp.query(request, MediaQuery)

        def read(c: duckdb.DuckDBPyConnection) -> web.Response:
            require(c, "iteration", it)
            page: Page = media_queries.media(
                c,
                it,
                key=p.key,
                kind=p.kind,
                min_step=p.min_step,
                max_step=p.max_step,
                limit=p.limit,
                offset=p.offset,
                max_steps=p.max_steps,
            )
            return page_response(request, page)

        response: web.Response = await self._read(request, read)
        return response

    async def histograms(self, request: web.Request) -> web.Response:
        it, p = request.match_info["iteration_id"], qp.query(request, HistogramQuery)

        def read(c: duckdb.DuckDBPyConnection) -> web.Response:
            require(c, "iteration", it)
            table = media_queries.histograms(
                c,
                it,
                key=p.key,
                min_step=p.min_step,
                max_step=p.max_step,
                limit=p.limit,
                max_steps=p.max_steps,
            )
            return table_response(request, table)

        response: web.Response = await self._read(request, read)
        return response

    async def checkpoints(self, request: web.Request) -> web.Response:
        it, p = request.match_info["iteration_id"], qp.query(request, CheckpointQuery)

        def read(c: duckdb.DuckDBPyConnection) -> web.Response:
            require(c, "iteration", it)
            table = media_queries.checkpoints(
                c, it, order_by=p.order_by, goal=p.goal, include_discarded=p.include_discarded
            )
            return table_response(request, table)

        response: web.Response = await self._read(request, read)
        return response

    async def content(self, request: web.Request) -> web.StreamResponse:
        it, p = request.match_info["iteration_id"], qp.query(request, ContentQuery)

        def read(c: duckdb.DuckDBPyConnection) -> tuple[str, int] | None:
            require(c, "iteration", it)
            return media_queries.iteration_content(c, it, p.hash)

        found = await self._read(request, read)
        if found is None:
            raise NotFound(f"iteration {it!r} names no content {p.hash}", {"hash": p.hash})
        media_type, _ = found
        loop = asyncio.get_running_loop()
        store = self.w.artifacts
        stored = await loop.run_in_executor(self._pool, store.size, p.hash)
        if stored is None:
            raise NotFound(f"content {p.hash} is no longer in the store (freed by retention?)")
        chunks = await loop.run_in_executor(self._pool, store.open, p.hash)
        response = web.StreamResponse(headers=_content_headers(media_type, stored, p.hash))
        try:
            await response.prepare(request)
            while chunk := await loop.run_in_executor(self._pool, next, chunks, b""):
                await response.write(chunk)
            await response.write_eof()
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                await loop.run_in_executor(self._pool, close)
        return response

    async def retain(self, request: web.Request) -> web.Response:
        it = request.match_info["iteration_id"]
        body = await _body(request, RetainBody)
        if body.goal not in ("min", "max"):
            raise InvalidArgument("goal must be min or max", {"path": "$.goal"})

        def ranked(c: duckdb.DuckDBPyConnection) -> list[str]:
            require(c, "iteration", it)
            table = media_queries.checkpoints(c, it, order_by=body.order_by, goal=body.goal)
            ids = [str(i) for i in table["checkpoint_id"].to_pylist()]
            if body.order_by is None:
                ids.reverse()  # the latest first
            return ids

        ids: list[str] = await self._read(request, ranked)
        kept_by_versions = await self._read(request, lambda c: _in_versions(c, ids))
        discard = [i for i in ids[body.keep :] if i not in kept_by_versions]
        reason = f"keep {body.keep}" + (f" best by {body.order_by}" if body.order_by else "")
        freed: list[str] = []
        if discard:
            events = [
                CheckpointDiscarded(iteration_id=it, checkpoint_id=i, reason=reason)
                for i in discard
            ]
            await self.w.emit(request, events)
            loop = asyncio.get_running_loop()
            freed = await loop.run_in_executor(self._pool, self._free, discard)
        return json_response(
            {
                "kept": [i for i in ids if i not in discard],
                "discarded": discard,
                "freed_content": freed,
            }
        )

    def _free(self, discarded: list[str]) -> list[str]:
        """Delete the files of discarded checkpoints that nothing else names (asked on an
        unscoped cursor: a name in any project keeps the bytes)."""
        conn = self.w.query.reader()
        try:
            hashes = sorted(
                {
                    str(f["content_hash"])
                    for i in discarded
                    for f in media_queries.checkpoint_files(conn, i)
                }
            )
            still = media_queries.referenced(conn, hashes)
        finally:
            conn.close()
        return [h for h in hashes if h not in still and self.w.artifacts.delete(h)]


def _in_versions(conn: duckdb.DuckDBPyConnection, ids: list[str]) -> set[str]:
    """Checkpoints a model version was made from: retention keeps them."""
    if not ids:
        return set()
    rows = conn.execute(
        "SELECT checkpoint_id FROM model_versions WHERE list_contains(?, checkpoint_id)"
        " AND NOT deleted",
        [ids],
    ).fetchall()
    return {str(r[0]) for r in rows}


def upload_endpoint(r: MediaRoutes) -> Endpoint:
    return Endpoint(
        "POST",
        f"{ITERATION}/blobs",
        r.upload,
        operation(
            "Upload content (raw body) for the iteration's media or checkpoints; identical"
            " bytes are stored once. Name it in a MediaLogged or CheckpointSaved event.",
            tag="media",
            request_body={
                "content": {
                    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
                }
            },
        ),
        q.Fresh,
    )


def media_routes(r: MediaRoutes) -> list[Route]:
    return [
        Route(
            "GET",
            f"{ITERATION}/media",
            r.media,
            "An iteration's media (images, figures, text, tables) by key and step",
            MediaQuery,
            "media",
        ),
        Route(
            "GET",
            f"{ITERATION}/content",
            r.content,
            "Bytes the iteration's media or checkpoints name (images inline, others as"
            " attachments)",
            ContentQuery,
            "media",
        ),
        Route(
            "GET",
            f"{ITERATION}/histograms",
            r.histograms,
            "An iteration's histograms (distributions) by key and step",
            HistogramQuery,
            "media",
        ),
        Route(
            "GET",
            f"{ITERATION}/checkpoints",
            r.checkpoints,
            "An iteration's checkpoints, by step or best first by a metric",
            CheckpointQuery,
            "checkpoints",
        ),
        Route(
            "POST",
            RETAIN,
            r.retain,
            "Keep the best N checkpoints by a metric (or the latest N); discard the rest and"
            " free content nothing else names",
            q.Fresh,
            "checkpoints",
            _RETAIN_SCHEMA,
        ),
    ]
