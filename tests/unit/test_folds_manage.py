"""Management verbs as events: names, delete/restore, moves, and every kind holding notes,
description and metadata (issue 14). Events in, Writes out; and the projection format."""

from __future__ import annotations

from pathlib import Path

import pytest

from deardiary.projections.fold import fold
from deardiary.projections.integrity import ProjectionOutdated
from deardiary.projections.store import PROJECTION_FORMAT, DuckDBProjectionStore
from deardiary.projections.writes import PriorState, Row, Writes
from deardiary.schemas import ids
from deardiary.schemas.events import (
    ArtifactStored,
    DescriptionSet,
    EntityDeleted,
    EntityKind,
    EntityRenamed,
    EntityRestored,
    ExperimentCreated,
    IterationMoved,
    MetadataSet,
    NotesSet,
    ProjectCreated,
)
from deardiary.services.rebuild import open_or_rebuild
from tests.builders import records, sweep_start

PID = ids.project_id("proj")
EID = ids.experiment_id(PID, "exp")


def _fold(events: list[object]) -> Writes:
    return fold(PriorState(), records(events))  # type: ignore[arg-type]


def _row(w: Writes, table: str, column: str, value: str) -> Row:
    (row,) = [r for r in w.upserts.get(table, []) if r[column] == value]
    return row


def _conflicts(w: Writes) -> list[str]:
    return [c["kind"] for c in w.inserts.get("conflicts", [])]


def test_rename_changes_the_name_and_never_the_id() -> None:
    w = _fold(
        [
            *sweep_start(),
            EntityRenamed(entity=EntityKind.EXPERIMENT, entity_id=EID, name="better"),
            EntityRenamed(entity=EntityKind.ITERATION, entity_id="it-1", name="trial 7"),
        ]
    )
    assert _row(w, "experiments", "experiment_id", EID)["name"] == "better"
    assert _row(w, "iterations", "iteration_id", "it-1")["name"] == "trial 7"
    assert _conflicts(w) == []


def test_a_model_version_has_no_name_and_an_empty_name_is_refused() -> None:
    w = _fold(
        [
            *sweep_start(),
            EntityRenamed(entity=EntityKind.MODEL_VERSION, entity_id="v", name="x"),
            EntityRenamed(entity=EntityKind.ITERATION, entity_id="it-1", name="  "),
        ]
    )
    assert _conflicts(w) == ["invalid_event", "invalid_event"]
    assert _row(w, "iterations", "iteration_id", "it-1")["name"] == "it-1"


def test_delete_then_restore() -> None:
    deleted = _fold([*sweep_start(), EntityDeleted(entity=EntityKind.ITERATION, entity_id="it-1")])
    assert _row(deleted, "iterations", "iteration_id", "it-1")["deleted"] is True
    restored = _fold(
        [
            *sweep_start(),
            EntityDeleted(entity=EntityKind.ITERATION, entity_id="it-1"),
            EntityRestored(entity=EntityKind.ITERATION, entity_id="it-1"),
        ]
    )
    assert _row(restored, "iterations", "iteration_id", "it-1")["deleted"] is False


def test_every_kind_holds_notes_description_and_metadata() -> None:
    artifact = ArtifactStored(
        artifact_id="a1",
        experiment_id=EID,
        iteration_id="it-1",
        name="w.bin",
        uri="file:///x",
        size_bytes=1,
        content_hash="0" * 64,
    )
    w = _fold(
        [
            *sweep_start(),
            artifact,
            DescriptionSet(entity=EntityKind.ITERATION, entity_id="it-1", description="why"),
            NotesSet(entity=EntityKind.ARTIFACT, entity_id="a1", notes="best so far"),
            MetadataSet(entity=EntityKind.ARTIFACT, entity_id="a1", metadata={"epoch": 3}),
        ]
    )
    assert _conflicts(w) == []
    assert _row(w, "iterations", "iteration_id", "it-1")["description"] == "why"
    stored = _row(w, "artifacts", "artifact_id", "a1")
    assert stored["notes"] == "best so far" and stored["metadata"] == {"epoch": 3}


def test_move_within_a_project_and_never_across() -> None:
    other_exp = ids.experiment_id(PID, "exp-2")
    foreign_pid = ids.project_id("other")
    foreign_exp = ids.experiment_id(foreign_pid, "exp")
    w = _fold(
        [
            *sweep_start(),
            ExperimentCreated(experiment_id=other_exp, project_id=PID, name="exp-2"),
            ProjectCreated(project_id=foreign_pid, name="other"),
            ExperimentCreated(experiment_id=foreign_exp, project_id=foreign_pid, name="exp"),
            IterationMoved(iteration_id="it-1", experiment_id=other_exp),
            IterationMoved(iteration_id="it-1", experiment_id=foreign_exp),
            IterationMoved(iteration_id="nope", experiment_id=other_exp),
        ]
    )
    it = _row(w, "iterations", "iteration_id", "it-1")
    assert it["experiment_id"] == other_exp and it["project_id"] == PID
    assert _conflicts(w) == ["cross_project_move", "not_found"]


def _old_store(path: Path) -> None:
    """A store as release 1 left it: tables, no recorded format."""
    store = DuckDBProjectionStore(path)
    store.conn.execute("DROP TABLE projection_format")
    store.close()


def test_projections_of_another_format_are_outdated_and_rebuilt(tmp_path: Path) -> None:
    projections = tmp_path / "projections"
    _old_store(projections)
    with pytest.raises(ProjectionOutdated, match="format 1"):
        DuckDBProjectionStore(projections)
    store, rebuild = open_or_rebuild(projections, {0: 0})
    try:
        assert rebuild is not None and rebuild.moved_to.name.startswith("projections.outdated-")
        found = store.conn.execute("SELECT version FROM projection_format").fetchall()
        assert found == [(PROJECTION_FORMAT,)]
    finally:
        store.close()
    again = DuckDBProjectionStore(projections)  # this release's format: opened as it is
    again.close()
