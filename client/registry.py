"""Model registry and artifacts from the SDK: events through the buffer, bytes by upload.

Registry changes are ordinary events (ordered with everything else this client logs);
version numbers are assigned by the fold, so read them back after `flush()`.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from deardiary.schemas import ids
from deardiary.schemas.errors import InvalidArgument
from deardiary.schemas.events import (
    ArtifactBackend,
    ArtifactStored,
    ModelAliasSet,
    ModelCreated,
    ModelStage,
    ModelVersionCreated,
    ModelVersionStaged,
    ProjectCreated,
)

if TYPE_CHECKING:
    from pathlib import Path

    from .client import Client


class Registry:
    def __init__(self, client: Client) -> None:
        self.client = client

    def create_model(self, project: str, name: str, description: str = "") -> str:
        project_id = ids.project_id(project)
        model_id = ids.model_id(project_id, name)
        self.client.buffer.emit(ProjectCreated(project_id=project_id, name=project))
        self.client.buffer.emit(
            ModelCreated(
                model_id=model_id, project_id=project_id, name=name, description=description
            )
        )
        return model_id

    def register_version(
        self,
        project: str,
        model: str,
        *,
        iteration_id: str | None = None,
        artifact_id: str | None = None,
        description: str = "",
    ) -> str:
        """A new version of `model` (created if needed); returns the version's id."""
        model_id = self.create_model(project, model)
        version_id = ids.new_id()
        self.client.buffer.emit(
            ModelVersionCreated(
                model_version_id=version_id,
                model_id=model_id,
                iteration_id=iteration_id,
                artifact_id=artifact_id,
                description=description,
            )
        )
        return version_id

    def stage(
        self,
        project: str,
        model: str,
        version_id: str,
        stage: str,
        archive_existing: bool = False,
    ) -> None:
        self.client.buffer.emit(
            ModelVersionStaged(
                model_version_id=version_id,
                model_id=ids.model_id(ids.project_id(project), model),
                stage=_stage(stage),
                archive_existing=archive_existing,
            )
        )

    def set_alias(self, project: str, model: str, alias: str, version_id: str | None) -> None:
        self.client.buffer.emit(
            ModelAliasSet(
                model_id=ids.model_id(ids.project_id(project), model),
                alias=alias,
                model_version_id=version_id,
            )
        )

    def log_artifact(
        self,
        experiment_id: str,
        iteration_id: str | None,
        path: Path,
        name: str,
        description: str = "",
    ) -> dict[str, Any]:
        """Store a file's bytes (content-addressed) and record it; returns id and hash."""
        from .reads import HttpReader

        reader = self.client.reader
        if isinstance(reader, HttpReader):
            # The server records the artifact at once: its iteration must be in the log first.
            self.client.flush()
            with open(path, "rb") as fh:
                params = {"experiment_id": experiment_id, "name": name, "description": description}
                if iteration_id:
                    params["iteration_id"] = iteration_id
                result: dict[str, Any] = reader.request(
                    "POST", "/api/v1/artifacts", params=params, content=fh.read()
                )
            return result
        # local-folder mode: the bytes go into the folder's own content-addressed store
        from deardiary.services.artifacts import validate_name
        from deardiary.services.artifacts.fs import FsArtifactStore

        validate_name(name)
        store = FsArtifactStore(os.path.join(self.client.url, "artifacts"))
        with open(path, "rb") as fh:
            blob = store.put(fh)
        event = ArtifactStored(
            artifact_id=ids.artifact_id(experiment_id, iteration_id, name),
            experiment_id=experiment_id,
            iteration_id=iteration_id,
            name=name,
            description=description,
            backend=ArtifactBackend.FILESYSTEM,
            uri=blob.uri,
            size_bytes=blob.size_bytes,
            content_hash=blob.content_hash,
        )
        self.client.buffer.emit(event)
        return {
            "artifact_id": event.artifact_id,
            "content_hash": blob.content_hash,
            "size_bytes": blob.size_bytes,
            "uri": blob.uri,
        }


def _stage(name: str) -> ModelStage:
    """``"Production"``, ``"production"``, ... as the registry's stage (else a clear error)."""
    for stage in ModelStage:
        if stage.value.lower() == str(name).lower():
            return stage
    names = ", ".join(s.value for s in ModelStage)
    raise InvalidArgument(f"unknown model stage {name!r}: one of {names}")
