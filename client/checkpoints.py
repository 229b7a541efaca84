"""Checkpoints and stored bytes from the SDK.

`Iteration.log_checkpoint(path_or_dir, step=, metrics=)` stores each file in the
content-addressed store and sends one CheckpointSaved event; `Client` lists checkpoints
best first by a metric, applies keep-best-N retention (discarded checkpoints' files that
nothing else names are deleted from the store), downloads a checkpoint or an artifact,
and registers a model version made from a checkpoint.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from deardiary.schemas import events, ids
from deardiary.schemas.errors import InvalidArgument, NotFound

from .manage import offsets_param
from .media import next_step, store_content

if TYPE_CHECKING:
    from pathlib import Path

    import pyarrow as pa

    from deardiary.services.embedded import EmbeddedStore

    from .buffer import EventBuffer
    from .client import Client
    from .reads import HttpReader, Reader
    from .transport import Acked

_JSON_COLUMNS = ("files", "metrics", "metadata")


if TYPE_CHECKING:  # annotations only: a Protocol class costs every trial process
    # ~0.5M instructions to create
    class _Iteration(Protocol):
        client: Client
        id: str

    class _Client(Protocol):
        url: str
        reader: Reader

        @property
        def buffer(self) -> EventBuffer: ...  # made by the first write

        def flush(self, timeout: float | None = None) -> int: ...

        def _written(self) -> Acked: ...

        def sql(self, query: str) -> pa.Table: ...


def _files_of(path: Path) -> list[tuple[str, Path]]:
    """(relative posix path, file) of a file, or of every file under a folder."""
    from pathlib import Path  # json and pathlib load on first use: `import deardiary` stays fast

    if path.is_file():
        return [(path.name, path)]
    if not path.is_dir():
        raise InvalidArgument(f"{path} is neither a file nor a folder")
    found = [
        (Path(root, name).relative_to(path).as_posix(), Path(root, name))
        for root, _, names in os.walk(path)
        for name in names
    ]
    return sorted(found)


def _quoted(text: str) -> str:
    if not text or not all(c.isalnum() or c in "-_" for c in text):
        raise InvalidArgument(f"not an id: {text!r}")
    return text


def _decoded(row: dict[str, Any]) -> dict[str, Any]:
    import json

    for column in _JSON_COLUMNS:
        if isinstance(row.get(column), str):
            row[column] = json.loads(row[column])
    return row


def _local_store(client: _Client) -> Any:
    from pathlib import Path

    from deardiary.services.artifacts.fs import FsArtifactStore  # local-folder mode only

    return FsArtifactStore(Path(client.url) / "artifacts")


def _http(client: _Client) -> HttpReader | None:
    from .reads import HttpReader

    return client.reader if isinstance(client.reader, HttpReader) else None


def _fetch(client: _Client, path: str, params: Mapping[str, Any]) -> bytes:
    """The raw bytes a GET route answers (errors raised as typed errors)."""
    from .transport import error_from_response

    reader = _http(client)
    assert reader is not None
    query = {**params, **offsets_param(client._written())}
    response = reader.http.request("GET", path, params=query, headers=reader.headers("*/*"))
    if response.status_code != 200:
        raise error_from_response(response.status_code, response.content)
    return bytes(response.content)


def _write(dest: Path, relative: str, chunks: Iterable[bytes]) -> Path:
    target = (dest / relative).resolve()
    if not target.is_relative_to(dest.resolve()):
        raise InvalidArgument(f"refusing to write {relative!r} outside {dest}")
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target, "wb") as fh:
        for chunk in chunks:
            fh.write(chunk)
    return target


def _with_local(client: _Client, fn: Callable[[EmbeddedStore], Any]) -> Any:
    from .reads import LocalReader

    reader = client.reader
    if not isinstance(reader, LocalReader):
        raise InvalidArgument("this needs a server or a data folder to ask")
    client.flush()
    store = _embedded(reader)
    with store:
        store.catch_up()
        return fn(store)


def _embedded(reader: Any) -> EmbeddedStore:
    from deardiary.services.embedded import EmbeddedStore

    return EmbeddedStore(reader.data_dir, create_log=False)


class CheckpointMixin:
    """Checkpoint logging of `Iteration`."""

    def log_checkpoint(
        self: _Iteration,
        path: str | Path,
        step: int | None = None,
        metrics: Mapping[str, float] | None = None,
        *,
        name: str = "",
        metadata: Mapping[str, Any] | None = None,
        keep_best: int | None = None,
        order_by: str | None = None,
        goal: str = "min",
    ) -> str:
        """Store a file or a folder of files as a checkpoint at `step` with the metrics at
        that step; returns its id. With `keep_best`, retention runs at once: the best N by
        `order_by` (or the latest N) are kept, the rest discarded and their files freed."""
        from pathlib import Path

        files = []
        for relative, file in _files_of(Path(path)):
            content_hash, size = store_content(self.client, self.id, file.read_bytes())
            files.append(
                events.CheckpointFile(path=relative, content_hash=content_hash, size_bytes=size)
            )
        checkpoint_id = ids.new_id()
        self.client.buffer.emit(
            events.CheckpointSaved(
                iteration_id=self.id,
                checkpoint_id=checkpoint_id,
                step=next_step(self.client, self.id, "checkpoint:", step),
                name=name or Path(path).name,
                files=files,
                metrics={str(k): float(v) for k, v in (metrics or {}).items()},
                metadata=dict(metadata or {}),
            )
        )
        if keep_best is not None:
            self.client.retain_checkpoints(self.id, keep_best, order_by=order_by, goal=goal)
        return checkpoint_id

    def use_model(self: _Iteration, model_version_id: str, purpose: str = "") -> None:
        """Record that this iteration used a model version (evaluated it, started from
        it): the model then leads to this run too (`c.model_iterations`)."""
        self.client.buffer.emit(
            events.ModelVersionUsed(
                iteration_id=self.id, model_version_id=model_version_id, purpose=purpose
            )
        )


class ClientCheckpointsMixin:
    """Checkpoints, artifacts' bytes and versions from checkpoints, for `Client`."""

    def checkpoints(
        self: _Client,
        iteration: str | _Iteration,
        order_by: str | None = None,
        goal: str = "min",
        include_discarded: bool = False,
    ) -> list[dict[str, Any]]:
        """An iteration's checkpoints: by step, or best first by a metric logged with them."""
        it = iteration if isinstance(iteration, str) else iteration.id
        reader = _http(self)
        if reader is not None:
            params = {"goal": goal, "include_discarded": include_discarded}
            if order_by is not None:
                params["order_by"] = order_by
            path = f"/api/v1/iterations/{it}/checkpoints"
            rows = reader.get_json(path, params, self._written())["items"]
            return [_decoded(r) for r in rows]

        def local(store: EmbeddedStore) -> list[dict[str, Any]]:
            from deardiary.projections.queries.media import checkpoints

            conn = store.store.reader()
            try:
                table = checkpoints(
                    conn, it, order_by=order_by, goal=goal, include_discarded=include_discarded
                )
            finally:
                conn.close()
            return [_decoded(r) for r in table.to_pylist()]

        result: list[dict[str, Any]] = _with_local(self, local)
        return result

    def retain_checkpoints(
        self: _Client,
        iteration: str | _Iteration,
        keep: int,
        *,
        order_by: str | None = None,
        goal: str = "min",
    ) -> dict[str, Any]:
        """Keep the best `keep` checkpoints by `order_by` (or the latest ones), discard the
        rest and free their files where nothing else names the bytes. Checkpoints a model
        version was made from are always kept."""
        it = iteration if isinstance(iteration, str) else iteration.id
        reader = _http(self)
        if reader is not None:
            body: dict[str, Any] = {"keep": keep, "goal": goal}
            if order_by is not None:
                body["order_by"] = order_by
            answer: dict[str, Any] = reader.request(
                "POST",
                f"/api/v1/iterations/{it}/checkpoints/retain",
                params=offsets_param(self._written()),
                json=body,
            )
            return answer
        listed = ClientCheckpointsMixin.checkpoints(self, it, order_by=order_by, goal=goal)
        ranked = [str(r["checkpoint_id"]) for r in listed]
        if order_by is None:
            ranked.reverse()
        versions = {
            str(r["checkpoint_id"])
            for r in self.sql(
                "SELECT checkpoint_id FROM model_versions"
                " WHERE checkpoint_id IS NOT NULL AND NOT deleted"
            ).to_pylist()
        }
        discard = [i for i in ranked[keep:] if i not in versions]
        reason = f"keep {keep}" + (f" best by {order_by}" if order_by else "")
        for checkpoint_id in discard:
            self.buffer.emit(
                events.CheckpointDiscarded(
                    iteration_id=it, checkpoint_id=checkpoint_id, reason=reason
                )
            )

        def free(store: EmbeddedStore) -> list[str]:
            from deardiary.projections.queries.media import checkpoint_files, referenced

            conn = store.store.reader()
            try:
                hashes = sorted(
                    {str(f["content_hash"]) for i in discard for f in checkpoint_files(conn, i)}
                )
                still = referenced(conn, hashes)
            finally:
                conn.close()
            blobs = _local_store(self)
            return [h for h in hashes if h not in still and blobs.delete(h)]

        freed: list[str] = _with_local(self, free) if discard else []
        kept = [i for i in ranked if i not in discard]
        return {"kept": kept, "discarded": discard, "freed_content": freed}

    def download_checkpoint(self: _Client, checkpoint_id: str, dest: str | Path) -> list[Path]:
        """Write a checkpoint's files under `dest` (their relative paths kept)."""
        import json
        from pathlib import Path

        rows = self.sql(
            "SELECT iteration_id, files FROM checkpoints"
            f" WHERE checkpoint_id = '{_quoted(checkpoint_id)}'"
        ).to_pylist()
        if not rows:
            raise NotFound(f"checkpoint {checkpoint_id!r} not found")
        it, files = str(rows[0]["iteration_id"]), rows[0]["files"]
        files = json.loads(files) if isinstance(files, str) else files
        out = Path(dest)
        written = []
        for f in files:
            h = str(f["content_hash"])
            if _http(self) is not None:
                data = _fetch(self, f"/api/v1/iterations/{it}/content", {"hash": h})
                written.append(_write(out, str(f["path"]), [data]))
            else:
                chunks: Iterator[bytes] = _local_store(self).open(h)
                written.append(_write(out, str(f["path"]), chunks))
        return written

    def download_artifact(self: _Client, artifact_id: str, dest: str | Path) -> Path:
        """Write an artifact's bytes to `dest` (a folder: under the artifact's file name)."""
        from pathlib import Path

        rows = self.sql(
            "SELECT name, content_hash FROM artifacts"
            f" WHERE artifact_id = '{_quoted(artifact_id)}' AND NOT deleted"
        ).to_pylist()
        if not rows:
            raise NotFound(f"artifact {artifact_id!r} not found")
        name, content_hash = str(rows[0]["name"]), str(rows[0]["content_hash"])
        target = Path(dest)
        folder, file_name = (
            (target, name.rsplit("/", 1)[-1]) if target.is_dir() else (target.parent, target.name)
        )
        if _http(self) is not None:
            data = _fetch(self, f"/api/v1/artifacts/{artifact_id}/content", {})
            return _write(folder, file_name, [data])
        return _write(folder, file_name, _local_store(self).open(content_hash))

    def register_checkpoint(
        self: _Client, checkpoint_id: str, model: str, description: str = ""
    ) -> str:
        """A new version of `model` (in the checkpoint's project; created when missing)
        made from a checkpoint; returns the version's id. Retention keeps the checkpoint."""
        rows = self.sql(
            "SELECT c.iteration_id, i.project_id FROM checkpoints c JOIN iterations i"
            f" USING (iteration_id) WHERE c.checkpoint_id = '{_quoted(checkpoint_id)}'"
        ).to_pylist()
        if not rows:
            raise NotFound(f"checkpoint {checkpoint_id!r} not found")
        it, project_id = str(rows[0]["iteration_id"]), str(rows[0]["project_id"])
        model_id = ids.model_id(project_id, model)
        version_id = ids.new_id()
        self.buffer.emit(events.ModelCreated(model_id=model_id, project_id=project_id, name=model))
        self.buffer.emit(
            events.ModelVersionCreated(
                model_version_id=version_id,
                model_id=model_id,
                iteration_id=it,
                checkpoint_id=checkpoint_id,
                description=description,
            )
        )
        self.flush()
        return version_id

    def model_version(self: _Client, model_id: str, version: int) -> dict[str, Any]:
        """A model's version by its number (1, 2, ...)."""
        rows = self.sql(
            "SELECT * FROM model_versions"
            f" WHERE model_id = '{_quoted(model_id)}' AND version = {int(version)}"
            " AND NOT deleted"
        ).to_pylist()
        if not rows:
            raise NotFound(f"model {model_id!r} has no version {version}")
        return _decoded_registry(rows[0])

    def model_iterations(self: _Client, model_id: str) -> list[dict[str, Any]]:
        """The iterations a model's versions were made from (role "produced") or that
        used one (role "used"), each with those versions."""
        from .reads import HttpReader

        reader = self.reader
        if isinstance(reader, HttpReader):
            path = f"/api/v1/models/{_quoted(model_id)}/iterations"
            found: list[dict[str, Any]] = reader.get_json(path, {}, self._written())["items"]
            return found

        def local(store: EmbeddedStore) -> list[dict[str, Any]]:
            from deardiary.projections.queries.registry import model_iterations

            conn = store.store.reader()
            try:
                rows: list[dict[str, Any]] = model_iterations(conn, model_id).to_pylist()
                return rows
            finally:
                conn.close()

        result: list[dict[str, Any]] = _with_local(self, local)
        return result


def _decoded_registry(row: dict[str, Any]) -> dict[str, Any]:
    import json

    for column in ("tags", "metadata", "aliases"):
        if isinstance(row.get(column), str):
            row[column] = json.loads(row[column])
    return row
