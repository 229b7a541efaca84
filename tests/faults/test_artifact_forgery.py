"""Artifact records name only content their author may have; downloads cannot be turned
into pages of the server's origin; uploads and downloads stream within limits.

Every refusal is checked for its code, its one error body, and for having appended
nothing (the log's end offsets are unchanged).
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator

import httpx
import msgspec
import pytest

from deardiary.schemas import ids
from deardiary.schemas.events import ArtifactStored, ExperimentCreated, ProjectCreated
from deardiary.services.artifacts import served_media_type
from deardiary.services.artifacts.fs import FsArtifactStore
from deardiary.services.artifacts.routes import ArtifactRoutes
from deardiary.services.http import build_app, start_in_thread
from deardiary.services.served_app import artifact_part
from tests.faults.auth_world import AuthWorld, auth_world, events_body, post_events, upload


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthWorld]:
    with auth_world(tmp_path_factory.mktemp("forgery")) as built:
        yield built


def _forged(world: AuthWorld, **changes: object) -> ArtifactStored:
    """An ArtifactStored of rita's, into her own project C, naming B's bytes."""
    base = ArtifactStored(
        artifact_id=ids.new_id(),
        experiment_id=world.c.ids["experiment_id"],
        name="stolen.txt",
        uri="file:///anything",
        size_bytes=len(world.b.content),
        content_hash=world.b.content_hash,
        media_type="text/html",
    )
    return msgspec.structs.replace(base, **changes)


def _refused(r: httpx.Response, status: int, code: str) -> None:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code


def _content(world: AuthWorld, artifact_id: str, headers: dict[str, str]) -> httpx.Response:
    return httpx.get(f"{world.url}/api/v1/artifacts/{artifact_id}/content", headers=headers)


def _store(world: AuthWorld) -> FsArtifactStore:
    return FsArtifactStore(world.data / "artifacts")


def test_another_projects_content_hash_is_refused(world: AuthWorld) -> None:
    before = world.end_offsets()
    event = _forged(world)
    _refused(post_events(world.url, world.rita, event), 403, "PERMISSION_DENIED")
    # the same inside a batch that creates a new project of hers for it
    project_id = ids.project_id("rita-new-project")
    experiment_id = ids.experiment_id(project_id, "e")
    batch = (
        ProjectCreated(project_id=project_id, name="rita-new-project"),
        ExperimentCreated(experiment_id=experiment_id, project_id=project_id, name="e"),
        in_batch := _forged(world, experiment_id=experiment_id),
    )
    between = world.end_offsets()
    _refused(post_events(world.url, world.rita, *batch), 403, "PERMISSION_DENIED")
    # only the new project's creation may be in the log (the log decides who creates it)
    assert between == before and world.end_offsets()[0] - before[0] <= 1
    for artifact_id in (event.artifact_id, in_batch.artifact_id):
        _refused(_content(world, artifact_id, world.rita), 404, "NOT_FOUND")


def test_content_the_caller_uploaded_may_be_recorded_again(world: AuthWorld) -> None:
    up = upload(world.url, world.rita, world.c.ids["experiment_id"], "mine.bin", b"rita's own")
    assert up.status_code == 200, up.text
    content_hash = up.json()["content_hash"]
    assert _store(world).uploaded(content_hash, ids.user_id("rita"))  # durable, on disk
    assert not _store(world).uploaded(content_hash, ids.user_id("olive"))
    event = _forged(world, content_hash=content_hash, size_bytes=len(b"rita's own"))
    r = post_events(world.url, world.rita, event)
    assert r.status_code == 200, r.text
    got = _content(world, event.artifact_id, world.rita)
    assert got.status_code == 200, got.text
    assert got.content == b"rita's own"
    assert got.headers["Content-Type"] == "application/octet-stream"  # not text/html
    assert got.headers["X-Content-Type-Options"] == "nosniff"
    assert got.headers["Content-Disposition"].startswith("attachment;")
    assert got.headers["Content-Security-Policy"].startswith("sandbox")


def test_content_readable_in_another_project_may_be_referenced(world: AuthWorld) -> None:
    """rita may read A, so she may record A's bytes in her own project (she can fetch
    them anyway); she may not record B's."""
    event = _forged(world, content_hash=world.a.content_hash, size_bytes=len(world.a.content))
    assert post_events(world.url, world.rita, event).status_code == 200
    got = _content(world, event.artifact_id, world.rita)
    assert got.status_code == 200 and got.content == world.a.content


def test_size_must_be_the_stored_size(world: AuthWorld) -> None:
    own = upload(world.url, world.rita, world.c.ids["experiment_id"], "sized.bin", b"12345")
    assert own.status_code == 200
    before = world.end_offsets()
    h = own.json()["content_hash"]
    for size in (6, 4, 0):
        r = post_events(world.url, world.rita, _forged(world, content_hash=h, size_bytes=size))
        _refused(r, 400, "INVALID_ARGUMENT")
    negative = events_body(_forged(world, content_hash=h, size_bytes=5)).replace(
        b'"size_bytes":5', b'"size_bytes":-1'
    )
    r = httpx.post(
        f"{world.url}/api/v1/events",
        content=negative,
        headers={**world.rita, "Content-Type": "application/json"},
    )
    _refused(r, 400, "INVALID_ARGUMENT")
    assert world.end_offsets() == before


def test_bytes_nobody_stored_are_refused_even_to_an_admin(world: AuthWorld) -> None:
    before = world.end_offsets()
    unknown = hashlib.sha256(b"never uploaded").hexdigest()
    rita = post_events(world.url, world.rita, _forged(world, content_hash=unknown, size_bytes=3))
    _refused(rita, 403, "PERMISSION_DENIED")  # no oracle of what the store holds
    admin = post_events(world.url, world.admin, _forged(world, content_hash=unknown, size_bytes=3))
    _refused(admin, 400, "INVALID_ARGUMENT")
    assert world.end_offsets() == before


def test_an_artifact_or_iteration_of_another_project_cannot_be_taken_over(
    world: AuthWorld,
) -> None:
    own = upload(world.url, world.rita, world.c.ids["experiment_id"], "own2.bin", b"own bytes")
    h = own.json()["content_hash"]
    before = world.end_offsets()
    mine = {"content_hash": h, "size_bytes": len(b"own bytes")}
    takeover = _forged(world, artifact_id=world.b.ids["artifact_id"], **mine)
    r = post_events(world.url, world.rita, takeover)  # the id is taken elsewhere: 403 or 409
    _refused(r, r.status_code, "CONFLICT" if r.status_code == 409 else "PERMISSION_DENIED")
    assert r.status_code in (403, 409)
    borrowed = _forged(world, iteration_id=world.b.ids["iteration_id"], **mine)
    _refused(post_events(world.url, world.rita, borrowed), 403, "PERMISSION_DENIED")
    assert world.end_offsets() == before
    assert _content(world, world.b.ids["artifact_id"], world.olive).content == world.b.content


@pytest.mark.parametrize("name", ["../../etc/passwd", "/etc/passwd", "a/%2e%2e/%2e%2e/x", "a\\b"])
def test_names_that_traverse_are_refused(world: AuthWorld, name: str) -> None:
    before = world.end_offsets()
    up = upload(world.url, world.rita, world.c.ids["experiment_id"], name, b"x")
    _refused(up, 400, "INVALID_ARGUMENT")
    h = hashlib.sha256(world.c.content).hexdigest()
    event = _forged(world, name=name, content_hash=h, size_bytes=len(world.c.content))
    _refused(post_events(world.url, world.rita, event), 400, "INVALID_ARGUMENT")
    assert world.end_offsets() == before


@pytest.mark.parametrize(
    ("declared", "served"),
    [
        ("text/html", "application/octet-stream"),
        ("image/svg+xml", "application/octet-stream"),
        ("application/javascript", "application/octet-stream"),
        ("text/plain; charset=latin-1", "text/plain; charset=utf-8"),
        ("TEXT/CSV", "text/csv; charset=utf-8"),
        ("application/json", "application/json; charset=utf-8"),
        ("image/png", "image/png"),
        ("application/x-parquet", "application/x-parquet"),
        ("", "application/octet-stream"),
    ],
)
def test_downloads_are_served_as_a_whitelisted_attachment(
    world: AuthWorld, declared: str, served: str
) -> None:
    content = f"<script>alert('{declared}')</script>".encode()
    up = upload(world.url, world.rita, world.c.ids["experiment_id"], "page.html", content, declared)
    assert up.status_code == 200, up.text
    got = _content(world, up.json()["artifact_id"], world.rita)
    assert got.status_code == 200 and got.content == content
    assert got.headers["Content-Type"] == served == served_media_type(declared)
    assert got.headers["X-Content-Type-Options"] == "nosniff"
    assert got.headers["Content-Disposition"] == "attachment; filename*=UTF-8''page.html"
    assert got.headers["Content-Security-Policy"].startswith("sandbox")


@pytest.mark.parametrize("declared", ["text", "text/", "a b/c", "text/plain,text/html"])
def test_an_upload_with_a_malformed_media_type_is_refused(world: AuthWorld, declared: str) -> None:
    before = world.end_offsets()
    up = upload(world.url, world.rita, world.c.ids["experiment_id"], "x.txt", b"x", declared)
    _refused(up, 400, "INVALID_ARGUMENT")
    assert world.end_offsets() == before


def test_a_record_that_disagrees_with_its_bytes_is_a_clear_error(world: AuthWorld) -> None:
    content = b"will be damaged on disk " * 100
    up = upload(world.url, world.rita, world.c.ids["experiment_id"], "damaged.bin", content)
    assert up.status_code == 200
    blob = _store(world)._path(up.json()["content_hash"])
    blob.write_bytes(content[:10])  # the disk lost most of it
    r = _content(world, up.json()["artifact_id"], world.rita)
    _refused(r, 409, "CONFLICT")
    assert r.json()["error"]["details"] == {
        "recorded_size_bytes": len(content),
        "stored_size_bytes": 10,
    }
    blob.unlink()
    _refused(_content(world, up.json()["artifact_id"], world.rita), 404, "NOT_FOUND")


def test_a_large_download_streams_whole(world: AuthWorld) -> None:
    content = bytes(range(256)) * (5 * 4096 + 7)  # ~5 MiB: several chunks
    up = upload(world.url, world.rita, world.c.ids["experiment_id"], "big.bin", content)
    assert up.status_code == 200
    url = f"{world.url}/api/v1/artifacts/{up.json()['artifact_id']}/content"
    with httpx.stream("GET", url, headers=world.rita) as r:
        assert r.headers["Content-Length"] == str(len(content))
        got = b"".join(r.iter_bytes())
    assert got == content


def test_uploads_are_limited_in_size_and_per_caller(world: AuthWorld) -> None:
    """A second app over the same server, with small limits (no auth: callers are told
    apart by address)."""
    routes = ArtifactRoutes(
        world.server.ctx, world.server.append, lambda _r: "", max_bytes=1024, per_user=1
    )
    store_root = world.data / "artifacts"
    before = world.end_offsets()
    with start_in_thread(build_app([artifact_part(routes)])) as small:
        params = {"experiment_id": world.c.ids["experiment_id"], "name": "limited.bin"}
        url = f"{small.url}/api/v1/artifacts"
        _refused(httpx.post(url, params=params, content=b"x" * 2000), 413, "RESOURCE_EXHAUSTED")

        def chunked() -> Iterator[bytes]:
            for _ in range(20):
                yield b"y" * 100

        _refused(httpx.post(url, params=params, content=chunked()), 413, "RESOURCE_EXHAUSTED")
        assert world.end_offsets() == before
        assert not list(store_root.glob(".upload-*"))  # nothing half-written is left

        release, started = threading.Event(), threading.Event()

        def slow() -> Iterator[bytes]:
            yield b"z" * 10
            started.set()
            release.wait(30)
            yield b"z" * 10

        results: list[httpx.Response] = []
        first = threading.Thread(
            target=lambda: results.append(httpx.post(url, params=params, content=slow()))
        )
        first.start()
        try:
            assert started.wait(30)
            second = httpx.post(url, params=params, content=b"w")
            assert second.status_code == 429, second.text
            assert int(second.headers["Retry-After"]) >= 1
        finally:
            release.set()
            first.join(30)
        assert results and results[0].status_code == 200, results
        assert results[0].json()["size_bytes"] == 20
