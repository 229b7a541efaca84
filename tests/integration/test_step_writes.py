"""A projector step writes an upsert in as few statements as its prior load allows
(`Writes.stored`: a new row is inserted with no delete first, a single held row of a table
without floats is updated in place) and, over a log that holds an event id once (SQLite),
neither looks up nor records applied event ids. Batches of every shape must still store
exactly what one batch of the whole log stores, and a log that stores a resent event again
(Kafka) must still fold it once."""

from __future__ import annotations

import math
import shutil
import tempfile
from pathlib import Path
from typing import Any, cast

import duckdb
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deardiary.projections.draft import Draft
from deardiary.projections.fold import Record
from deardiary.projections.store import FEW_KEYS, DuckDBProjectionStore
from deardiary.projections.writes import CHILD_OF, PRIMARY_KEYS, Lookups, PriorState, Writes
from deardiary.schemas.envelope import LogPosition
from deardiary.schemas.events import (
    EntityKind,
    IterationEnded,
    IterationStarted,
    IterationStatus,
    MetadataSet,
    ParamsLogged,
    TagsSet,
)
from deardiary.services.embedded import EmbeddedStore
from deardiary.services.log import EventLog
from deardiary.services.log.sqlite import SqliteEventLog
from deardiary.services.projector import Projector, apply_or_park
from tests.builders import T0, append_to_folder, envelope, metrics, sweep_start
from tests.faults.test_generated_events import _fold_in
from tests.faults.test_generated_events import _records as _generated
from tests.store_snapshot import snapshot
from tests.strategies import envelopes

MANY = FEW_KEYS + 4  # more rows than FEW_KEYS: the registered-table statements


def _started(n: int, first: Any) -> IterationStarted:
    return IterationStarted(
        iteration_id=f"it-{n}",
        experiment_id=first.experiment_id,
        project_id=first.project_id,
        name=f"it-{n}",
    )


def _tag(*numbers: int, value: str = "x") -> list[Any]:
    return [
        TagsSet(entity=EntityKind.ITERATION, entity_id=f"it-{n}", tags={"t": f"{value}{n}"})
        for n in numbers
    ]


def _groups() -> list[list[Any]]:
    """Each group is appended and folded as one batch: every mix of held, new and unknown
    keys, few and many, with and without floats."""
    start = sweep_start(iteration="it-0")
    first = start[-1]
    new = iter(range(1, 100))
    return [
        start + [_started(next(new), first) for _ in range(MANY)],  # many new rows
        _tag(0),  # one held row: updated in place
        _tag(0, 1, value="y"),  # two held: deleted and inserted
        [_started(next(new), first), *_tag(1, value="z")],  # one held, one new
        [*_tag(2, 3), _started(next(new), first)],  # two held, one new: some deleted
        [*_tag(*range(MANY), value="w"), *(_started(next(new), first) for _ in range(3))],
        [metrics("it-0", [("loss", 0.0, 0)])],  # a new series
        [metrics("it-0", [("loss", -0.0, 1)])],  # one held row with floats: -0.0 over 0.0
        [metrics("it-0", [("loss", math.nan, 2), ("acc", 0.5, 2)])],  # one held, one new
        [ParamsLogged(iteration_id="it-0", params={"lr": "0.1"})],
        [ParamsLogged(iteration_id="it-0", params={"lr": "0.2"})],  # refused: write-once
        [IterationEnded(iteration_id="it-0", status=IterationStatus.FAILED)],
        sweep_start(iteration="it-0"),  # announced again (a sweep's every trial): repeats
        [TagsSet(entity=EntityKind.PROJECT, entity_id=first.project_id, tags={"a": "1"})],
        [TagsSet(entity=EntityKind.PROJECT, entity_id=first.project_id, tags={"b": "2"})],
        [TagsSet(entity=EntityKind.EXPERIMENT, entity_id=first.experiment_id, tags={"c": "3"})],
        [metrics("it-404", [("loss", 1.0, 0)]), ParamsLogged(iteration_id="it-404", params={})],
        [TagsSet(entity=EntityKind.EXPERIMENT, entity_id=first.experiment_id, tags={"d": "4"})],
        [MetadataSet(entity=EntityKind.ITERATION, entity_id="it-1", metadata={"x": 1})],
        [MetadataSet(entity=EntityKind.ITERATION, entity_id="it-1", metadata={"x": 1.0})],
        [MetadataSet(entity=EntityKind.ITERATION, entity_id="it-1", metadata={"x": 1.0})],
        [MetadataSet(entity=EntityKind.ITERATION, entity_id="it-1", metadata={"x": True})],
    ]


def _state(store: EmbeddedStore) -> dict[str, list[tuple[Any, ...]]]:
    conn = store.store.reader()
    try:
        return snapshot(conn)
    finally:
        conn.close()


def test_batches_of_every_shape_store_what_one_batch_stores(tmp_path: Path) -> None:
    live = tmp_path / "live"
    live.mkdir()
    with EmbeddedStore(live) as store:
        assert store.projector is not None and store.projector.log_dedups
        for group in _groups():
            append_to_folder(live, group)
            store.catch_up()
            assert store.store.conn.execute("SELECT count(*) FROM parked_events").fetchall() == [
                (0,)
            ]
        stepped = _state(store)
    (tmp_path / "rebuilt").mkdir()
    shutil.copy(live / "log.db", tmp_path / "rebuilt" / "log.db")
    with EmbeddedStore(tmp_path / "rebuilt") as store:
        store.catch_up()
        rebuilt = _state(store)
    assert stepped == rebuilt
    loss = [r for r in stepped["last_metrics"] if r[1] == "loss"]
    assert [r[3] for r in loss] == ["nan"]  # "last"
    tags = {r[0]: r[9] for r in stepped["iterations"]}
    assert tags["it-0"] == '{"t":"w0"}' and tags[f"it-{MANY - 1}"] == f'{{"t":"w{MANY - 1}"}}'
    assert [r[4] for r in stepped["projects"]] == ['{"a":"1","b":"2"}']  # tags
    assert [r[6] for r in stepped["experiments"]] == ['{"c":"3","d":"4"}']
    assert {r[0]: r[10] for r in stepped["iterations"]}["it-1"] == '{"x":true}'  # metadata


def test_a_held_float_row_keeps_negative_zero(tmp_path: Path) -> None:
    """-0.0 written over a stored 0.0 in its own batch stays -0.0 (DuckDB's UPDATE would
    keep the 0.0: the two compare equal)."""
    append_to_folder(
        tmp_path, [*sweep_start(iteration="it-0"), metrics("it-0", [("loss", 0.0, 0)])]
    )
    with EmbeddedStore(tmp_path) as store:
        store.catch_up()
        append_to_folder(tmp_path, [metrics("it-0", [("loss", -0.0, 1)])])
        store.catch_up()
        got = store.store.conn.execute("SELECT 1 / last FROM last_metrics").fetchall()
    assert got == [(-math.inf,)]


class _Statements:
    """The store's own connection, noting each statement executed on it."""

    def __init__(self, conn: duckdb.DuckDBPyConnection) -> None:
        self._conn = conn
        self.executed: list[str] = []

    def execute(self, sql: str, *args: Any) -> Any:
        self.executed.append(" ".join(sql.split()))
        return self._conn.execute(sql, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


def test_new_and_single_held_rows_take_one_statement_and_ids_none(tmp_path: Path) -> None:
    append_to_folder(tmp_path, sweep_start(iteration="it-0"))
    with EmbeddedStore(tmp_path) as store:
        store.catch_up()
        watched = _Statements(store.store.conn)
        store.store.conn = watched  # type: ignore[assignment]
        trial = [
            *sweep_start(iteration="it-1"),  # project and experiment again, a new iteration
            ParamsLogged(iteration_id="it-1", params={"lr": "0.1"}),
            metrics("it-1", [("loss", 1.0, 0)]),
        ]
        append_to_folder(tmp_path, trial)
        store.catch_up()
        first_batch = len(watched.executed)
        append_to_folder(tmp_path, _tag(0))  # a held row, written to lately (a run's small request)
        store.catch_up()
        store.store.conn = watched._conn
        tagged = store.store.conn.execute("SELECT tags FROM iterations ORDER BY 1").fetchall()
        ids = store.store.conn.execute("SELECT count(*) FROM applied_events").fetchall()
    writes = [s for s in watched.executed if s.split()[0] in ("DELETE", "INSERT", "UPDATE")]
    assert not [s for s in writes if "iterations" in s and s.startswith("DELETE")]
    assert len([s for s in writes if s.startswith("INSERT INTO iterations")]) == 1
    assert len([s for s in writes if s.startswith("UPDATE iterations")]) == 1
    assert not [s for s in watched.executed if "applied_events" in s]
    reads = [s for s in watched.executed if s.startswith("SELECT")]
    # the new iteration is not among the store's keys, so neither are its params and
    # summaries; the project and experiment rows are remembered: no row is looked up
    read = {s.split(" FROM ")[1].split()[0] for s in reads}
    assert not read & {"iterations", "params", "last_metrics", "projects", "experiments"}
    later = watched.executed[first_batch:]
    assert not [s for s in later if s.startswith("SELECT") and "iterations" in s]  # remembered
    points = [s for s in writes if s.startswith("INSERT INTO metric_points_hot_data")]
    assert len(points) == 1 and "VALUES" in points[0]  # one point: as values
    assert tagged == [('{"t":"x0"}',), ("{}",)] and ids == [(0,)]


def _records(env: Any, offsets: list[int]) -> list[Record]:
    return [(LogPosition(0, o, T0 + o), env) for o in offsets]


def test_a_log_that_stores_a_resent_event_again_folds_it_once(tmp_path: Path) -> None:
    """Kafka keeps a resent event at a new offset: without `log_dedups` (Kafka mode's
    workers, the projector over a Kafka log) the ids are still checked, within a batch and
    across batches."""
    start = [envelope(e, n) for n, e in enumerate(sweep_start(iteration="it-0"))]
    tag = envelope(_tag(0)[0], 10)
    store = DuckDBProjectionStore(tmp_path / "store")
    try:
        batch: list[Record] = [(LogPosition(0, n, T0 + n), e) for n, e in enumerate(start)]
        apply_or_park(store, batch + _records(tag, [3, 4]))
        apply_or_park(store, _records(tag, [5]))
        folded = store.conn.execute(
            "SELECT count(*) FROM events WHERE event_id = ?", [tag.event_id]
        ).fetchall()
        assert folded == [(1,)]
        assert store.next_offsets() == {0: 6}
    finally:
        store.close()


def test_the_projector_trusts_only_a_log_that_says_it_dedups(tmp_path: Path) -> None:
    log = SqliteEventLog(str(tmp_path / "log.db"))
    store = DuckDBProjectionStore(tmp_path / "store")
    try:
        assert Projector(log, store).log_dedups
        assert not Projector(cast(EventLog, object()), store).log_dedups  # says nothing
    finally:
        store.close()
        log.close()


def test_rows_the_prior_load_said_nothing_of_are_replaced_or_inserted(tmp_path: Path) -> None:
    """Writes without `stored` (a fold that put rows it never looked up): a held row is
    replaced, a new one inserted -- one of each, and many."""
    first = sweep_start()[-1]
    append_to_folder(
        tmp_path, [*sweep_start(iteration="it-0"), *(_started(n, first) for n in range(1, MANY))]
    )
    with EmbeddedStore(tmp_path) as embedded:
        embedded.catch_up()
        store = embedded.store
        held = store.load_prior(Lookups(keys={"iterations": {f"it-{n}" for n in range(MANY)}}))
        rows = held.rows["iterations"]
        for ids in (["it-0"], [f"it-{n}" for n in range(1, MANY)]):
            changed = [dict(rows[i], notes="changed") for i in ids]
            fresh = [dict(r, iteration_id=f"{r['iteration_id']}-new", notes="new") for r in changed]
            for batch in ([changed[0]], fresh[:1], changed + fresh):
                store.apply(
                    Writes(next_offsets=store.next_offsets(), upserts={"iterations": batch})
                )
                wanted = sorted((r["iteration_id"], r["notes"]) for r in batch)
                got = store.conn.execute(
                    "SELECT iteration_id, notes FROM iterations"
                    " WHERE list_contains(?, iteration_id)"
                    " ORDER BY 1",
                    [[r["iteration_id"] for r in batch]],
                ).fetchall()
                assert got == wanted
        assert store.conn.execute("SELECT count(*) FROM iterations").fetchall() == [(2 * MANY,)]


def test_the_writes_say_only_what_the_prior_load_found() -> None:
    """Held (a row or an existence found), new (asked for, not found), or not said at all."""
    row = {"iteration_id": "held", "notes": ""}
    prior = PriorState(
        rows={"iterations": {"held": row}},
        existing={"iterations": {"exists"}},
        absent={"iterations": {"new"}},
    )
    draft = Draft(prior)
    for key in ("held", "exists", "new", "unasked"):
        draft.put("iterations", {"iteration_id": key, "notes": "x"})
    assert draft.writes({}, []).stored == {
        "iterations": {"held": True, "exists": True, "new": False}
    }


@settings(
    max_examples=20,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.lists(envelopes(), min_size=1, max_size=8), st.integers(1, 3))
def test_folds_write_a_child_only_under_a_stored_parent(batch: list[Any], size: int) -> None:
    """What the store's skipped lookups rely on (CHILD_OF): whatever the events, no child
    row is stored without its parent's row."""
    with tempfile.TemporaryDirectory() as tmp:
        store = DuckDBProjectionStore(Path(tmp))
        try:
            _fold_in(store, _generated(batch), size)
            for child, parent in CHILD_OF.items():
                column = PRIMARY_KEYS[parent][0]
                orphans = store.conn.execute(
                    f"SELECT count(*) FROM {child} c ANTI JOIN {parent} p USING ({column})"
                ).fetchall()
                assert orphans == [(0,)], child
        finally:
            store.close()


def test_the_writes_name_the_columns_a_fold_changed() -> None:
    """JSON columns by their stored text (1 and 1.0 differ), the rest by type and value."""
    held = {"iteration_id": "i", "name": "n", "archived": False, "metadata": {"x": 1}}
    draft = Draft(PriorState(rows={"iterations": {"i": held}}))
    for metadata, archived, want in (
        ({"x": 1}, False, ()),
        ({"x": 1.0}, False, ("metadata",)),
        ({"x": 1}, 0, ("archived",)),
    ):
        draft.put("iterations", dict(held, metadata=metadata, archived=archived))
        changed = draft.writes({}, []).changed["iterations"]["i"]
        assert sorted(changed) == list(want)
    draft.put("iterations", {"iteration_id": "i", "name": "m"})  # fields left out: NULL
    assert sorted(draft.writes({}, []).changed["iterations"]["i"]) == [
        "archived",
        "metadata",
        "name",
    ]
