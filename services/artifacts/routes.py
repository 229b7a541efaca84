"""Artifact upload and download over HTTP.

Upload streams the body into the content-addressed store (hashing as it goes), then
appends an ArtifactStored event; the artifact id is derived from (experiment,
iteration, name), so uploading the same name again updates that artifact.
Download looks the artifact up in the projections and streams its bytes.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Callable, Sequence
from typing import BinaryIO, cast
from urllib.parse import quote

from aiohttp import web

from deardiary.projections.queries.catalog import get_entity
from deardiary.schemas.envelope import Envelope, LogPosition, wrap
from deardiary.schemas.errors import ResourceExhausted
from deardiary.schemas.events import ArtifactBackend, ArtifactStored
from deardiary.schemas.ids import derived_id
from deardiary.services.artifacts import CHUNK, StoredBlob, validate_name
from deardiary.services.query import params as q
from deardiary.services.query.context import QueryContext
from deardiary.services.query.encoding import json_response

Appender = Callable[[Sequence[Envelope]], list[LogPosition]]
MAX_ARTIFACT_BYTES = 64 << 30


def artifact_id(experiment_id: str, iteration_id: str | None, name: str) -> str:
    return derived_id("artifact", experiment_id, iteration_id or "", name)


class ArtifactRoutes:
    def __init__(self, ctx: QueryContext, append: Appender, actor: Callable[[web.Request], str]):
        self.ctx = ctx
        self.append = append
        self.actor = actor

    async def upload(self, request: web.Request) -> web.Response:
        experiment_id = q.required(request, "experiment_id")
        iteration_id = q.text(request, "iteration_id")
        name = validate_name(q.required(request, "name"))
        loop = asyncio.get_running_loop()
        with tempfile.SpooledTemporaryFile(max_size=8 << 20) as body:
            size = 0
            async for chunk in request.content.iter_chunked(CHUNK):
                size += len(chunk)
                if size > MAX_ARTIFACT_BYTES:
                    raise ResourceExhausted(f"artifact larger than {MAX_ARTIFACT_BYTES} bytes")
                body.write(chunk)
            body.seek(0)
            stream = cast(BinaryIO, body)
            blob: StoredBlob = await loop.run_in_executor(None, self.ctx.artifacts.put, stream)
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
            media_type=request.content_type or "application/octet-stream",
        )
        envelope = wrap(event, actor=self.actor(request))
        (position,) = await loop.run_in_executor(None, self.append, [envelope])
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
        chunks = await asyncio.get_running_loop().run_in_executor(
            None, self.ctx.artifacts.open, row["content_hash"]
        )
        response = web.StreamResponse(
            headers={
                "Content-Type": row["media_type"],
                "Content-Length": str(row["size_bytes"]),
                "ETag": f'"{row["content_hash"]}"',
                "Content-Disposition": f"attachment; filename*=UTF-8''{_filename(row['name'])}",
            }
        )
        await response.prepare(request)
        for chunk in chunks:
            await response.write(chunk)
        await response.write_eof()
        return response


def _filename(name: str) -> str:
    return quote(name.rsplit("/", 1)[-1], safe="")
