"""MLflow's ``mlflow-artifacts`` proxy over DearDiary's content-addressed artifact store.

The MLflow client uploads (PUT), downloads (GET), lists (GET ?path=) and deletes
artifacts by path under ``/api/2.0/mlflow-artifacts/artifacts/``; a run's artifact URI
is ``mlflow-artifacts:/<experiment>/<run>/artifacts`` and a logged model's
``mlflow-artifacts:/<experiment>/models/<model id>/artifacts`` (ids.py). A path maps
onto our artifacts as:

* ``<experiment>/<run>/artifacts/<name>`` -- artifact `name` of that run's iteration;
* ``<experiment>/models/m-<id>/artifacts/<name>`` -- of the logged model's iteration;
* ``<experiment>/<name>`` otherwise -- an artifact of the experiment itself.

So what our SDK logged to an iteration is listed and downloaded through MLflow, and
what MLflow uploaded is an ordinary ArtifactStored record (bytes stored once whatever
they are called). Names are checked like every artifact name (no traversal); the run
or model must be in the experiment the path names, and the caller must be able to read
it (else 404) -- and, to upload, create in its project, checked before a byte is read.
Downloads keep the hardening of our own route: an attachment, nosniff, a sandboxing
CSP, a whitelisted media type, bytes checked against the record. Multipart uploads are
answered "not supported" and presigned downloads do not exist (404), so a client told
to use them falls back to plain transfers.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any, BinaryIO, cast

import duckdb
import msgspec
from aiohttp import web
from msgspec import Meta

from deardiary.schemas.errors import ResourceExhausted
from deardiary.schemas.events import ArtifactBackend, ArtifactStored, EntityDeleted, EntityKind
from deardiary.services.artifacts import StoredBlob, media_type, validate_name
from deardiary.services.artifacts.routes import (
    BODY_IDLE_TIMEOUT_S,
    MAX_ARTIFACT_BYTES,
    TRANSFER_THREADS,
    TRANSFERS_PER_USER,
    BodyReader,
    artifact_id,
    send_blob,
)
from deardiary.services.auth.permissions import Action, check
from deardiary.services.http.query_params import query
from deardiary.services.mlflow_api import ids as mlflow_ids
from deardiary.services.mlflow_api.context import MlflowContext, principal, read
from deardiary.services.mlflow_api.endpoint import ARTIFACTS, TRACKING_V3, MlflowEndpoint
from deardiary.services.mlflow_api.errors import (
    NOT_IMPLEMENTED,
    RESOURCE_DOES_NOT_EXIST,
    MlflowError,
    not_found,
)
from deardiary.services.mlflow_api.registry_reads import iteration
from deardiary.services.query.context import caller_of

META_KIND = "mlflow.kind"
KIND_LOGGED_MODEL = "logged_model"
UNSUPPORTED_MULTIPART = "Multipart upload is not supported for the current artifact repository"
"""The message MLflow's client recognises to fall back to a plain upload."""
TAG = "mlflow artifacts"
Json = dict[str, Any]


class ListQuery(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    path: Annotated[
        str, Meta(max_length=4096, description="the folder to list, e.g. <exp>/<run>/artifacts")
    ] = ""


class RunListQuery(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The tracking service's ListArtifacts (what MLflow's REST reference documents)."""

    run_id: Annotated[str, Meta(max_length=200, description="the run")] = ""
    run_uuid: Annotated[str, Meta(max_length=200, description="the run (older name)")] = ""
    path: Annotated[str, Meta(max_length=4096, description="a folder in the run's artifacts")] = ""
    page_token: Annotated[str, Meta(max_length=4096, description="unused: one page")] = ""


@dataclass(frozen=True)
class Place:
    """Where a path points: an iteration's (or experiment's) artifacts, and a name (or
    folder, or "" for the root) in them."""

    experiment_id: str
    project_id: str
    iteration_id: str | None
    name: str


def _segments(path: str) -> list[str]:
    parts = path.strip("/").split("/") if path.strip("/") else []
    for part in parts:
        if part in ("", ".", ".."):
            raise MlflowError(f"Invalid artifact path {path[:200]!r}: empty, '.' or '..' segment")
    return parts


def _experiment(conn: duckdb.DuckDBPyConnection, experiment_id: str) -> str | None:
    found = conn.execute(
        "SELECT project_id FROM experiments WHERE experiment_id = ? AND NOT deleted",
        [experiment_id],
    ).fetchall()
    return str(found[0][0]) if found else None


def resolve(conn: duckdb.DuckDBPyConnection, path: str, default_project: str) -> Place:
    """The place an MLflow artifact path names, as the caller can see it (else 404)."""
    parts = _segments(path)
    if not parts:
        raise not_found("The artifact root holds experiments only; name one")
    shown, experiment_id = parts[0], mlflow_ids.experiment_from_mlflow(parts[0], default_project)
    inner: str | None = None
    if len(parts) >= 4 and parts[1] == "models" and parts[3] == "artifacts":
        inner = mlflow_ids.logged_model_from_mlflow(parts[2])
        rest = parts[4:]
        if inner is None:
            raise not_found(f"Logged model {parts[2][:100]!r} not found")
    elif len(parts) >= 3 and parts[2] == "artifacts":
        inner, rest = parts[1], parts[3:]
    if inner is None:
        project = _experiment(conn, experiment_id)
        if project is None:
            raise not_found(f"Experiment {shown[:100]!r} not found")
        return Place(experiment_id, project, None, "/".join(parts[1:]))
    found = iteration(conn, inner)
    logged = found is not None and found["metadata"].get(META_KIND) == KIND_LOGGED_MODEL
    if found is None or found["experiment_id"] != experiment_id or logged != (parts[1] == "models"):
        what = "Logged model" if parts[1] == "models" else "Run"
        raise not_found(f"{what} {'/'.join(parts[1:3])[:100]!r} not found in experiment {shown!r}")
    return Place(experiment_id, str(found["project_id"]), inner, "/".join(rest))


def _under(place: Place) -> tuple[str, list[object]]:
    """SQL over ``artifacts`` for the live artifacts at or under `place`."""
    params: list[object]
    if place.iteration_id is not None:
        owner, params = "iteration_id = ?", [place.iteration_id]
    else:
        owner, params = "experiment_id = ? AND iteration_id IS NULL", [place.experiment_id]
    if place.name:
        return (
            f"{owner} AND NOT deleted AND (name = ? OR starts_with(name, ?))",
            [*params, place.name, place.name + "/"],
        )
    return f"{owner} AND NOT deleted", params


def listing(conn: duckdb.DuckDBPyConnection, place: Place) -> list[Json]:
    """The files and folders directly in `place` (none when it names one file)."""
    where, params = _under(place)
    rows = conn.execute(
        f"SELECT name, size_bytes FROM artifacts WHERE {where} ORDER BY name", params
    ).fetchall()
    prefix = place.name + "/" if place.name else ""
    files: dict[str, Json] = {}
    for name, size in rows:
        if name == place.name:
            return []  # a file: MLflow lists nothing
        head, slash, _ = str(name)[len(prefix) :].partition("/")
        if slash:
            files.setdefault(head, {"path": head, "is_dir": True})
        else:
            files[head] = {"path": head, "is_dir": False, "file_size": int(size)}
    return [files[k] for k in sorted(files)]


def _record(conn: duckdb.DuckDBPyConnection, place: Place) -> dict[str, Any] | None:
    where, params = _under(place)
    cursor = conn.execute(
        f"SELECT * FROM artifacts WHERE {where} AND name = ? ORDER BY updated_at DESC LIMIT 1",
        [*params, place.name],
    )
    names = [d[0] for d in cursor.description or ()]
    found = cursor.fetchall()
    return dict(zip(names, found[0], strict=True)) if found else None


class Transfers:
    """Blob I/O on a small pool of its own, at most `per_user` transfers of one caller at
    once (as our own artifact routes), so big or slow transfers cannot starve reads. A
    caller's further transfers wait for a turn, holding no thread: MLflow's client
    downloads a folder with up to 20 threads and must not be refused for it."""

    def __init__(self, threads: int = TRANSFER_THREADS, per_user: int = TRANSFERS_PER_USER):
        self.pool = concurrent.futures.ThreadPoolExecutor(threads, "mlflow-artifacts")
        self.per_user = per_user
        self._gates: dict[str, tuple[asyncio.Semaphore, int]] = {}  # caller -> (gate, users)

    @asynccontextmanager
    async def slot(self, request: web.Request) -> AsyncIterator[None]:
        who = caller_of(request)
        gate, users = self._gates.get(who) or (asyncio.Semaphore(self.per_user), 0)
        self._gates[who] = (gate, users + 1)
        try:
            async with gate:
                yield
        finally:  # the event loop's thread only: no lock needed
            gate, users = self._gates[who]
            if users > 1:
                self._gates[who] = (gate, users - 1)
            else:
                del self._gates[who]


class ArtifactProxy:
    def __init__(self, ctx: MlflowContext, transfers: Transfers | None = None) -> None:
        self.ctx = ctx
        self.transfers = transfers or Transfers()

    def _path(self, request: web.Request) -> str:
        return request.match_info["artifact_path"]

    async def list(self, request: web.Request) -> Json:
        path = query(request, ListQuery).path
        if not _segments(path):
            return {}
        project = self.ctx.default_project
        files = await read(self.ctx, request, lambda c: listing(c, resolve(c, path, project)))
        return {"files": files} if files else {}

    async def list_run(self, request: web.Request) -> Json:
        """A run's artifacts at `path`, paths relative to the run's artifact root."""
        q = query(request, RunListQuery)
        run_id, project = q.run_id or q.run_uuid, self.ctx.default_project
        if not run_id:
            raise MlflowError("Missing value for required parameter 'run_id'.")
        sub = "/".join(_segments(q.path))

        def fetch(conn: duckdb.DuckDBPyConnection) -> Json:
            run = iteration(conn, run_id)
            if run is None or run["metadata"].get(META_KIND) == KIND_LOGGED_MODEL:
                raise not_found(f"Run '{run_id[:100]}' not found")
            experiment = mlflow_ids.experiment_to_mlflow(str(run["experiment_id"]), project)
            place = Place(str(run["experiment_id"]), str(run["project_id"]), run_id, sub)
            files = [
                {**f, "path": f"{sub}/{f['path']}" if sub else f["path"]}
                for f in listing(conn, place)
            ]
            root = mlflow_ids.run_artifact_uri(experiment, run_id)
            return {"root_uri": root, "files": files} if files else {"root_uri": root}

        return await read(self.ctx, request, fetch)

    async def server_info(self, request: web.Request) -> Json:
        """What MLflow's client asks before transfers: no multipart, no workspaces (so it
        uploads and downloads with one request each, without probing again)."""
        return {
            "store_type": "DearDiary",
            "workspaces_enabled": False,
            "multipart_uploads_enabled": False,
            "multipart_downloads_enabled": False,
        }

    async def download(self, request: web.Request) -> web.StreamResponse:
        path, project = self._path(request), self.ctx.default_project

        def find(conn: duckdb.DuckDBPyConnection) -> dict[str, Any]:
            place = resolve(conn, path, project)
            row = _record(conn, place) if place.name else None
            if row is None:
                raise not_found(f"Artifact {path[:200]!r} not found")
            return row

        row = await read(self.ctx, request, find)
        return await self._send(request, row)

    async def _send(self, request: web.Request, row: dict[str, Any]) -> web.StreamResponse:
        async with self.transfers.slot(request):
            label = repr(row["name"])
            return await send_blob(request, self.ctx.artifacts, self.transfers.pool, row, label)

    async def upload(self, request: web.Request) -> Json:
        path, caller = self._path(request), principal(request)
        declared = media_type(request.headers.get("Content-Type"))
        if request.content_length is not None and request.content_length > MAX_ARTIFACT_BYTES:
            raise ResourceExhausted(f"artifact larger than {MAX_ARTIFACT_BYTES} bytes")

        place = await self._writable(request, path)
        if not place.name:
            raise MlflowError(f"Artifact path {path[:200]!r} names no file")
        validate_name(place.name)
        store, loop = self.ctx.artifacts, asyncio.get_running_loop()
        async with self.transfers.slot(request):
            body = BodyReader(request.content, loop, MAX_ARTIFACT_BYTES, BODY_IDLE_TIMEOUT_S)
            stored = loop.run_in_executor(self.transfers.pool, store.put, cast(BinaryIO, body))
            try:
                blob: StoredBlob = await stored
            finally:
                body.abort()  # a cancelled handler must not leave the thread waiting
            if caller is not None:
                await loop.run_in_executor(
                    self.transfers.pool, store.mark_uploaded, blob.content_hash, caller.user_id
                )
        event = ArtifactStored(
            artifact_id=artifact_id(place.experiment_id, place.iteration_id, place.name),
            experiment_id=place.experiment_id,
            iteration_id=place.iteration_id,
            name=place.name,
            backend=ArtifactBackend(store.backend),
            uri=blob.uri,
            size_bytes=blob.size_bytes,
            content_hash=blob.content_hash,
            media_type=declared,
        )
        await self.ctx.emit(request, [event])
        return {}

    async def delete(self, request: web.Request) -> Json:
        path, project = self._path(request), self.ctx.default_project

        def doomed(conn: duckdb.DuckDBPyConnection) -> list[str]:
            where, params = _under(resolve(conn, path, project))
            rows = conn.execute(f"SELECT artifact_id FROM artifacts WHERE {where}", params)
            return [str(r[0]) for r in rows.fetchall()]

        ids = await read(self.ctx, request, doomed)
        if ids:
            events = [EntityDeleted(entity=EntityKind.ARTIFACT, entity_id=i) for i in ids]
            await self.ctx.emit(request, events)
        return {}

    async def _writable(self, request: web.Request, path: str) -> Place:
        """The place `path` names, once the caller may create there (checked before a
        byte of the body is read).

        Looked up in the projections as they are, and only when the run is not there
        yet, again after they caught up with the log: a client uploading a folder file
        by file would otherwise wait for each previous file's record to be applied
        (the upload's own record is checked again by the append path)."""
        caller, project = principal(request), self.ctx.default_project

        def place_of(conn: duckdb.DuckDBPyConnection) -> Place:
            place = resolve(conn, path, project)
            if caller is not None:
                check(conn, caller, place.project_id, Action.CREATE)
            return place

        try:
            return await self.ctx.query.run(place_of, caller_of(request))
        except MlflowError as exc:
            if exc.error_code != RESOURCE_DOES_NOT_EXIST:
                raise
        return await read(self.ctx, request, place_of)

    async def unsupported(self, request: web.Request) -> Json:
        """Multipart uploads: MLflow's "not supported" (after the checks an upload of
        the path would get), so its client falls back to one PUT."""
        await self._writable(request, self._path(request))
        raise MlflowError(UNSUPPORTED_MULTIPART, NOT_IMPLEMENTED)


def endpoints(ctx: MlflowContext) -> list[MlflowEndpoint]:
    proxy = ArtifactProxy(ctx)
    one = "/artifacts/{artifact_path:.+}"

    def ep(method: str, path: str, handler: Any, summary: str, **kw: Any) -> MlflowEndpoint:
        return MlflowEndpoint(method, path, handler, summary, service=ARTIFACTS, tag=TAG, **kw)

    return [
        ep("GET", "/artifacts", proxy.list, "List the artifacts in a folder", query=ListQuery),
        MlflowEndpoint(
            "GET",
            "/artifacts/list",
            proxy.list_run,
            "List a run's artifacts (the tracking service's ListArtifacts)",
            query=RunListQuery,
            tag=TAG,
        ),
        MlflowEndpoint(
            "GET",
            "/server-info",
            proxy.server_info,
            "What this server supports (MLflow's client asks before transfers)",
            service=TRACKING_V3,
            tag=TAG,
        ),
        ep("GET", one, proxy.download, "Download an artifact (as an attachment)"),
        ep("PUT", one, proxy.upload, "Upload an artifact (raw body)"),
        ep("DELETE", one, proxy.delete, "Delete an artifact, or a folder of them"),
        *(
            ep(
                "POST",
                f"/mpu/{step}/{{artifact_path:.+}}",
                proxy.unsupported,
                f"Multipart upload ({step}): not supported, upload with PUT",
            )
            for step in ("create", "complete", "abort")
        ),
    ]
