"""Artifact upload and download over HTTP.

Upload streams the body straight into the content-addressed store (hashing as it
goes; a worker thread pulls the body from the event loop chunk by chunk), remembers
who uploaded the bytes, then appends an ArtifactStored event; the artifact id is
derived from (experiment, iteration, name), so uploading the same name again updates
that artifact. Download looks the artifact up in the projections, checks the stored
bytes against the record and streams them as an attachment that a browser will not
render in the server's origin.

Blob I/O runs on a small pool of its own, and each user may run only a few transfers
at once, so big or slow transfers cannot take the threads sign-in and reads need.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, BinaryIO, cast
from urllib.parse import quote

from aiohttp import StreamReader, web

from deardiary.projections.queries.catalog import get_entity
from deardiary.schemas import ids
from deardiary.schemas.envelope import Envelope, LogPosition, wrap
from deardiary.schemas.errors import Conflict, InvalidArgument, NotFound, ResourceExhausted
from deardiary.schemas.events import ArtifactBackend, ArtifactStored
from deardiary.services.artifacts import (
    CHUNK,
    ArtifactStore,
    StoredBlob,
    media_type,
    served_media_type,
    validate_name,
)
from deardiary.services.auth.identity import PRINCIPAL
from deardiary.services.gateway import IngestChecker
from deardiary.services.query import params as q
from deardiary.services.query.context import QueryContext
from deardiary.services.query.encoding import json_response

Appender = Callable[[Sequence[Envelope]], list[LogPosition]]
MAX_ARTIFACT_BYTES = 64 << 30
BODY_IDLE_TIMEOUT_S = 60.0
"""An upload whose body sends nothing for this long is abandoned."""
TRANSFER_THREADS = 8
TRANSFERS_PER_USER = 4


def artifact_id(experiment_id: str, iteration_id: str | None, name: str) -> str:
    return ids.artifact_id(experiment_id, iteration_id, name)


class BodyReader:
    """The request body as a blocking file for a worker thread: each read asks the event
    loop for the next chunk. Refuses more than `limit` bytes; gives up when the body
    stalls for `idle_s`, or when the handler is gone (`abort()`)."""

    def __init__(
        self, content: StreamReader, loop: asyncio.AbstractEventLoop, limit: int, idle_s: float
    ) -> None:
        self.content, self.loop, self.limit, self.idle_s = content, loop, limit, idle_s
        self.received = 0
        self._aborted = threading.Event()

    def abort(self) -> None:
        self._aborted.set()

    def read(self, n: int = -1) -> bytes:
        future = asyncio.run_coroutine_threadsafe(
            self.content.read(n if n > 0 else CHUNK), self.loop
        )
        deadline = time.monotonic() + self.idle_s
        while True:
            if self._aborted.is_set():
                future.cancel()
                raise InvalidArgument("upload abandoned")
            try:
                chunk = future.result(timeout=0.25)
                break
            except concurrent.futures.TimeoutError:
                if time.monotonic() > deadline:
                    future.cancel()
                    raise InvalidArgument(f"upload body stalled for {self.idle_s:.0f} s") from None
        self.received += len(chunk)
        if self.received > self.limit:
            raise ResourceExhausted(f"artifact larger than {self.limit} bytes")
        return chunk


class ArtifactRoutes:
    def __init__(
        self,
        ctx: QueryContext,
        append: Appender,
        actor: Callable[[web.Request], str],
        max_bytes: int = MAX_ARTIFACT_BYTES,
        idle_timeout_s: float = BODY_IDLE_TIMEOUT_S,
        per_user: int = TRANSFERS_PER_USER,
        checker: IngestChecker | None = None,
    ):
        self.ctx = ctx
        self.checker = checker  # the gateway's checks: parents, permissions, the record
        self.append = append
        self.actor = actor
        self.max_bytes = max_bytes
        self.idle_timeout_s = idle_timeout_s
        self.per_user = per_user
        self._pool = concurrent.futures.ThreadPoolExecutor(
            TRANSFER_THREADS, thread_name_prefix="artifacts"
        )
        self._running: Counter[str] = Counter()

    @contextmanager
    def _transfer(self, request: web.Request) -> Iterator[None]:
        """At most `per_user` transfers at once per caller (per address without auth)."""
        principal = request.get(PRINCIPAL)
        who = principal.user_id if principal is not None else f"@{request.remote}"
        if self._running[who] >= self.per_user:
            raise ResourceExhausted(
                f"at most {self.per_user} artifact transfers at once", {"retry_after_s": 1}
            )
        self._running[who] += 1
        try:
            yield
        finally:
            self._running[who] -= 1
            if not self._running[who]:
                del self._running[who]

    async def upload(self, request: web.Request) -> web.Response:
        experiment_id = q.required(request, "experiment_id")
        iteration_id = q.text(request, "iteration_id")
        name = validate_name(q.required(request, "name"))
        declared = media_type(request.headers.get("Content-Type"))
        if request.content_length is not None and request.content_length > self.max_bytes:
            raise ResourceExhausted(f"artifact larger than {self.max_bytes} bytes")
        loop = asyncio.get_running_loop()
        principal = request.get(PRINCIPAL)
        with self._transfer(request):
            body = BodyReader(request.content, loop, self.max_bytes, self.idle_timeout_s)
            stored = loop.run_in_executor(self._pool, self.ctx.artifacts.put, cast(BinaryIO, body))
            try:
                blob: StoredBlob = await stored
            finally:
                body.abort()  # a cancelled handler must not leave the thread waiting
            if principal is not None:
                mark = self.ctx.artifacts.mark_uploaded
                await loop.run_in_executor(self._pool, mark, blob.content_hash, principal.user_id)
        event = ArtifactStored(
            artifact_id=artifact_id(experiment_id, iteration_id, name),
            experiment_id=experiment_id,
            iteration_id=iteration_id,
            name=name,
            description=q.text(request, "description", "") or "",
            backend=ArtifactBackend(self.ctx.artifacts.backend),
            uri=blob.uri,
            size_bytes=blob.size_bytes,
            content_hash=blob.content_hash,
            media_type=declared,
        )
        envelopes: Sequence[Envelope] = [wrap(event, actor=self.actor(request))]
        if self.checker is not None:
            envelopes = await self.checker.check(request, envelopes)
        (position,) = await loop.run_in_executor(None, self.append, envelopes)
        if self.checker is not None:
            self.checker.appended(envelopes)
        return json_response(
            {
                "artifact_id": event.artifact_id,
                "content_hash": blob.content_hash,
                "size_bytes": blob.size_bytes,
                "uri": blob.uri,
                "partition": position.partition,
                "offset": position.offset,
            }
        )

    async def download(self, request: web.Request) -> web.StreamResponse:
        wanted = request.match_info["artifact_id"]
        await self.ctx.wait(q.min_offsets(request))
        row = (await self.ctx.run(lambda c: get_entity(c, "artifacts", wanted))).to_pylist()[0]
        with self._transfer(request):
            return await send_blob(request, self.ctx.artifacts, self._pool, row, repr(wanted))


async def send_blob(
    request: web.Request,
    store: ArtifactStore,
    pool: concurrent.futures.Executor,
    row: dict[str, Any],
    label: str,
) -> web.StreamResponse:
    """Stream the bytes an artifact record names, in chunks read on `pool`; bytes missing
    or of another size than recorded are a clear error before anything is sent."""
    loop = asyncio.get_running_loop()
    content_hash, size = str(row["content_hash"]), int(row["size_bytes"])
    stored = await loop.run_in_executor(pool, store.size, content_hash)
    if stored is None:
        raise NotFound(f"the bytes of artifact {label} are missing from the store")
    if stored != size:
        raise Conflict(
            f"artifact {label} records {size} bytes but the store holds {stored};"
            " the record is damaged",
            {"recorded_size_bytes": size, "stored_size_bytes": stored},
        )
    chunks = await loop.run_in_executor(pool, store.open, content_hash)
    response = web.StreamResponse(headers=download_headers(row, size))
    try:
        await response.prepare(request)
        sent = 0
        while sent < size:
            chunk = await loop.run_in_executor(pool, next, chunks, b"")
            if not chunk:
                break
            chunk = chunk[: size - sent]
            await response.write(chunk)
            sent += len(chunk)
        await response.write_eof()
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            await loop.run_in_executor(pool, close)
    return response


def download_headers(row: dict[str, object], size: int) -> dict[str, str]:
    return {
        "Content-Type": served_media_type(str(row["media_type"])),
        "Content-Length": str(size),
        "ETag": f'"{row["content_hash"]}"',
        "Content-Disposition": f"attachment; filename*=UTF-8''{_filename(str(row['name']))}",
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "sandbox; default-src 'none'",
        "Cache-Control": "private, no-cache",
    }


def _filename(name: str) -> str:
    return quote(name.rsplit("/", 1)[-1], safe="")
