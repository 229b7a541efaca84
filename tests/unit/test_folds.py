"""Folds as events in, Writes out: one test per rule of the domain."""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from deardiary.projections.fold import fold, lookups_for
from deardiary.projections.writes import PriorState, Row, Writes
from deardiary.schemas import ids
from deardiary.schemas.codec import ParkedRecord
from deardiary.schemas.envelope import LogPosition
from deardiary.schemas.events import (
    AccessTokenCreated,
    AccessTokenRevoked,
    EntityArchived,
    EntityKind,
    ExperimentCreated,
    IterationEnded,
    IterationStarted,
    IterationStatus,
    LogLinesLogged,
    ModelAliasSet,
    ModelCreated,
    ModelStage,
    ModelVersionCreated,
    ModelVersionStaged,
    NotesSet,
    ParamsLogged,
    PermissionGranted,
    ProjectCreated,
    TagsDeleted,
    TagsSet,
    UserCreated,
)
from tests.builders import T0, metrics, records, sweep_start


def _fold(events: list[object], prior: PriorState | None = None) -> Writes:
    return fold(prior or PriorState(), records(events))  # type: ignore[arg-type]


def _rows(w: Writes, table: str) -> list[Row]:
    return w.upserts.get(table, [])


def _prior_from(w: Writes) -> PriorState:
    """The prior state a later batch would see after `w` was applied."""
    prior = PriorState(next_offsets=dict(w.next_offsets), seen_event_ids=set(w.applied_event_ids))
    for table, rows in w.upserts.items():
        from deardiary.projections.writes import row_key

        prior.rows[table] = {row_key(table, r): r for r in rows}
    return prior


def test_concurrent_project_creation_is_one_entity() -> None:
    pid = ids.project_id("shared")
    w = _fold([ProjectCreated(project_id=pid, name="shared")] * 3)
    assert [r["name"] for r in _rows(w, "projects")] == ["shared"]
    assert _rows(w, "projects")[0]["created_at"] == datetime(1970, 1, 1) + timedelta(
        microseconds=T0
    )


def test_iteration_lifecycle_and_denormalised_project() -> None:
    w = _fold(
        [
            *sweep_start(),
            IterationEnded(
                iteration_id="it-1", status=IterationStatus.FAILED, error_message="boom"
            ),
        ]
    )
    (it,) = _rows(w, "iterations")
    assert it["status"] == "FAILED" and it["error_message"] == "boom"
    assert it["project_id"] == ids.project_id("proj")
    assert it["end_date"] is not None


def test_restarted_iteration_resumes() -> None:
    first = _fold(
        [*sweep_start(), IterationEnded(iteration_id="it-1", status=IterationStatus.KILLED)]
    )
    eid = ids.experiment_id(ids.project_id("proj"), "exp")
    again = fold(
        _prior_from(first),
        records([IterationStarted(iteration_id="it-1", experiment_id=eid)], start=4),
    )
    (it,) = _rows(again, "iterations")
    assert it["status"] == "RUNNING" and it["end_date"] is None


def test_iteration_carries_its_project_without_reading_the_experiment() -> None:
    w = _fold([IterationStarted(iteration_id="it", experiment_id="e", project_id="p")])
    assert _rows(w, "iterations")[0]["project_id"] == "p"
    assert "conflicts" not in w.inserts


def test_default_steps_are_max_plus_one_per_key() -> None:
    w = _fold(
        [
            *sweep_start(),
            metrics("it-1", [("loss", 1.0, -1), ("acc", 0.1, -1), ("loss", 0.9, -1)]),
            metrics("it-1", [("loss", 0.8, 10), ("loss", 0.7, -1), ("acc", 0.2, -1)]),
        ]
    )
    assert w.metric_points is not None
    pts = w.metric_points.to_pylist()
    assert [(p["key"], p["step"]) for p in pts] == [
        ("loss", 0),
        ("acc", 0),
        ("loss", 1),
        ("loss", 10),
        ("loss", 11),
        ("acc", 1),
    ]
    # the client's time and the log's time are both kept
    assert pts[0]["recorded_at"] == datetime(1970, 1, 1) + timedelta(microseconds=T0 + 3_000_000)
    assert pts[0]["client_time"] == datetime(1970, 1, 1) + timedelta(microseconds=T0)


def test_last_metrics_summary() -> None:
    nan, inf = float("nan"), float("inf")
    w = _fold(
        [
            *sweep_start(),
            metrics("it-1", [("loss", 3.0, -1), ("loss", nan, -1), ("loss", 1.0, -1)]),
            metrics("it-1", [("loss", 1.0, -1), ("loss", 5.0, -1), ("loss", 2.0, -1)]),
            metrics("it-1", [("big", inf, 7)]),
        ]
    )
    rows = {r["key"]: r for r in _rows(w, "last_metrics")}
    loss = rows["loss"]
    assert (loss["first"], loss["last"], loss["count"]) == (3.0, 2.0, 6)
    assert (loss["min"], loss["min_step"]) == (1.0, 2)  # a tie keeps the earlier point
    assert (loss["max"], loss["max_step"]) == (5.0, 4)
    assert loss["mean"] == (3.0 + 1.0 + 1.0 + 5.0 + 2.0) / 5  # NaN points are not averaged
    assert (loss["first_step"], loss["last_step"], loss["top_step"]) == (0, 5, 5)
    assert rows["big"]["max"] == inf and math.isinf(rows["big"]["mean"])


def test_nan_only_series_has_no_min_max() -> None:
    w = _fold([*sweep_start(), metrics("it-1", [("x", float("nan"), -1)])])
    (row,) = _rows(w, "last_metrics")
    assert row["min"] is None and row["mean"] is None and math.isnan(row["last"])


def test_params_are_write_once() -> None:
    w = _fold(
        [
            *sweep_start(),
            ParamsLogged(iteration_id="it-1", params={"lr": "0.1", "bs": "32"}),
            ParamsLogged(iteration_id="it-1", params={"lr": "0.1"}),
            ParamsLogged(iteration_id="it-1", params={"lr": "0.2"}),
        ]
    )
    assert {(r["key"], r["value"]) for r in _rows(w, "params")} == {("lr", "0.1"), ("bs", "32")}
    (conflict,) = w.inserts["conflicts"]
    assert conflict["kind"] == "param_changed" and "0.2" in conflict["detail"]


def test_param_conflict_against_stored_value() -> None:
    prior = PriorState(
        rows={  # keyed (iteration, section, key)
            "params": {("it-1", "", "lr"): {"iteration_id": "it-1", "key": "lr", "value": "1"}}
        },
        existing={"iterations": {"it-1"}},
    )
    w = _fold([ParamsLogged(iteration_id="it-1", params={"lr": "2"})], prior)
    assert "params" not in w.upserts and w.inserts["conflicts"][0]["kind"] == "param_changed"


def test_model_versions_numbered_per_model_and_stages() -> None:
    pid = ids.project_id("proj")
    m1, m2 = ids.model_id(pid, "a"), ids.model_id(pid, "b")
    w = _fold(
        [
            ProjectCreated(project_id=pid, name="proj"),
            ModelCreated(model_id=m1, project_id=pid, name="a"),
            ModelCreated(model_id=m2, project_id=pid, name="b"),
            ModelVersionCreated(model_version_id="v1", model_id=m1),
            ModelVersionCreated(model_version_id="v2", model_id=m1),
            ModelVersionCreated(model_version_id="w1", model_id=m2),
            ModelVersionCreated(model_version_id="v1", model_id=m1),  # duplicate id: no-op
            ModelVersionStaged(model_version_id="v1", model_id=m1, stage=ModelStage.PRODUCTION),
            ModelVersionStaged(
                model_version_id="v2",
                model_id=m1,
                stage=ModelStage.PRODUCTION,
                archive_existing=True,
            ),
            ModelAliasSet(model_id=m1, alias="champion", model_version_id="v1"),
            ModelAliasSet(model_id=m1, alias="champion", model_version_id="v2"),
        ]
    )
    versions = {r["model_version_id"]: r for r in _rows(w, "model_versions")}
    assert {k: v["version"] for k, v in versions.items()} == {"v1": 1, "v2": 2, "w1": 1}
    assert versions["v1"]["stage"] == "Archived" and versions["v2"]["stage"] == "Production"
    assert versions["v1"]["aliases"] == [] and versions["v2"]["aliases"] == ["champion"]


def test_entity_changes_tags_notes_archive() -> None:
    w = _fold(
        [
            *sweep_start(),
            TagsSet(entity=EntityKind.ITERATION, entity_id="it-1", tags={"a": "1", "b": "2"}),
            TagsDeleted(entity=EntityKind.ITERATION, entity_id="it-1", keys=["a"]),
            NotesSet(entity=EntityKind.ITERATION, entity_id="it-1", notes="hello"),
            EntityArchived(entity=EntityKind.ITERATION, entity_id="it-1"),
            NotesSet(entity=EntityKind.EXPERIMENT, entity_id="missing", notes="x"),
        ]
    )
    (it,) = _rows(w, "iterations")
    assert it["tags"] == {"b": "2"} and it["notes"] == "hello" and it["archived"] is True
    assert w.inserts["conflicts"][0]["kind"] == "not_found"


def test_access_events_keep_only_hashes_in_history() -> None:
    w = _fold(
        [
            UserCreated(user_id="u1", username="ann", password_hash="scrypt$abc"),
            PermissionGranted(user_id="u1", project_id="p", read=True),
            AccessTokenCreated(token_id="t1", user_id="u1", token_hash="sha$1"),
            AccessTokenRevoked(token_id="t1"),
        ]
    )
    assert _rows(w, "access_tokens")[0]["revoked"] is True
    assert _rows(w, "permissions")[0]["can_read"] is True
    summaries = [e["summary"] for e in w.inserts["events"]]
    assert all("password_hash" not in s and "token_hash" not in s for s in summaries)


def test_log_lines_keep_order() -> None:
    w = _fold(
        [
            *sweep_start(),
            LogLinesLogged(
                iteration_id="it-1",
                times=[1, 2],
                levels=["INFO", "ERROR"],
                messages=["a", "b"],
                source="stdout",
            ),
        ]
    )
    assert [(r["message"], r["seq"]) for r in w.inserts["logs"]] == [("a", 0), ("b", 1)]


def test_redelivery_and_duplicate_event_ids_are_no_ops() -> None:
    batch = records(sweep_start())
    first = fold(PriorState(), batch)
    prior = _prior_from(first)
    assert fold(prior, batch).upserts == {}  # same offsets again
    moved = [(LogPosition(0, 10 + i, T0), env) for i, (_, env) in enumerate(batch)]
    again = fold(prior, moved)  # same events at new offsets (a client resend)
    assert again.upserts == {} and again.applied_event_ids == []
    assert again.next_offsets == {0: 13}


def test_unknown_records_are_parked_not_dropped() -> None:
    parked = ParkedRecord(event_id="x", event_type="from_the_future", error="bad", payload=b"\x80")
    w = fold(PriorState(), [(LogPosition(0, 0, T0), parked)])
    assert w.inserts["parked_events"][0]["event_type"] == "from_the_future"
    assert w.next_offsets == {0: 1}


def test_lookups_name_the_rows_a_batch_reads() -> None:
    eid = ids.experiment_id(ids.project_id("proj"), "exp")
    want = lookups_for(
        records(
            [
                ExperimentCreated(experiment_id=eid, project_id="p", name="exp"),
                metrics("it-1", [("loss", 1.0, -1)]),
                ModelVersionStaged(model_version_id="v", model_id="m", stage=ModelStage.STAGING),
            ]
        )
    )
    assert want.keys["last_metrics"] == {("it-1", "loss", "")}  # (iteration, key, group)
    assert want.keys["experiments"] == {eid} and want.model_versions_of == {"m"}
