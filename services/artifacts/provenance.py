"""An artifact record may name only content its author may have.

An ArtifactStored event that arrives through the event route (not the upload route,
which writes its own) is a claim: "these bytes, this size, this media type". Left
unchecked it lets anyone who learns a content hash — from a shared listing, a log, a
guess at a well-known file — point an artifact of their own at another project's
bytes and download them. So, under auth, a record from a non-administrator must name
bytes that the same caller uploaded (the store keeps a marker per uploader) or that an
artifact in a project the caller may read already names; and for everyone the bytes
must be in the store with exactly the recorded size, or downloads would break.
"""

from __future__ import annotations

import duckdb

from deardiary.schemas.errors import InvalidArgument, PermissionDenied
from deardiary.schemas.events import ArtifactStored
from deardiary.services.artifacts import ArtifactStore, check_hash, media_type, validate_name
from deardiary.services.auth.identity import Principal
from deardiary.services.auth.permissions import project_of

_READABLE_WITH_HASH = (
    "SELECT 1 FROM {db}.main.artifacts a JOIN {db}.main.experiments e USING (experiment_id)"
    " JOIN {db}.main.permissions p ON p.project_id = e.project_id"
    " WHERE a.content_hash = ? AND NOT a.deleted AND p.user_id = ? AND p.can_read LIMIT 1"
)


def _db(conn: duckdb.DuckDBPyConnection) -> str:
    return str(conn.execute("SELECT current_database()").fetchall()[0][0])


def may_reference(
    conn: duckdb.DuckDBPyConnection, store: ArtifactStore, principal: Principal, content_hash: str
) -> bool:
    """Whether the caller may name these bytes: an admin, their uploader, or a reader of
    an artifact that names them. `conn` is an unscoped reader of the projections."""
    if principal.is_admin or store.uploaded(content_hash, principal.user_id):
        return True
    sql = _READABLE_WITH_HASH.format(db=_db(conn))
    return bool(conn.execute(sql, [content_hash, principal.user_id]).fetchall())


def check_artifact_record(
    conn: duckdb.DuckDBPyConnection,
    store: ArtifactStore,
    principal: Principal,
    project_id: str,
    event: ArtifactStored,
) -> None:
    """Refuse an ArtifactStored that names content the caller may not have (403), bytes
    not in the store or of another size (400), a bad name or media type (400), or an
    artifact id or iteration of another project (403). `project_id` is the project the
    event writes into, already authorised; `conn` is an unscoped reader."""
    validate_name(event.name)
    media_type(event.media_type)
    content_hash = check_hash(event.content_hash)
    owned = (("artifact_id", event.artifact_id), ("iteration_id", event.iteration_id))
    for parameter, value in owned:
        owner = None if value is None else project_of(conn, parameter, value)
        if owner is not None and owner != project_id and not principal.is_admin:
            raise PermissionDenied(
                f"{parameter.removesuffix('_id')} {value!r} belongs to another project",
                {"parameter": parameter},
            )
    _check_content(
        conn,
        store,
        principal,
        (content_hash, event.size_bytes),
        "an artifact may name only content you uploaded (POST /api/v1/artifacts) or may read",
    )


def check_contents(
    conn: duckdb.DuckDBPyConnection,
    store: ArtifactStore,
    principal: Principal,
    contents: list[tuple[str, int]],
) -> None:
    """Content other events name (media, checkpoint files: `Event.contents()`) is held to
    the rule of artifact records: bytes the caller uploaded or may read, in the store with
    exactly the recorded size."""
    for content in contents:
        check_hash(content[0])
        _check_content(
            conn,
            store,
            principal,
            content,
            "an event may name only content you uploaded or may read",
        )


def _check_content(
    conn: duckdb.DuckDBPyConnection,
    store: ArtifactStore,
    principal: Principal,
    content: tuple[str, int],
    refused: str,
) -> None:
    """The caller may name these bytes (else `refused`, 403), and they are in the store
    with exactly the recorded size (400)."""
    content_hash, size_bytes = content
    if not may_reference(conn, store, principal, content_hash):
        raise PermissionDenied(refused, {"content_hash": content_hash})
    stored = store.size(content_hash)
    if stored is None:
        raise InvalidArgument(
            f"content {content_hash} is not in the artifact store; upload it first",
            {"content_hash": content_hash},
        )
    if stored != size_bytes:
        raise InvalidArgument(
            f"size_bytes {size_bytes} differs from the stored content's {stored} bytes",
            {"content_hash": content_hash, "size_bytes": stored},
        )
