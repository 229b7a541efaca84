"""The safety nets behind the declarations: a fold's bug or a store's refusal parks one
record and never stops the rest, and a half-done fold leaves no trace.

The bugs are injected on purpose (a fold replaced for the test): the declarations keep
every real event away from these nets, so only a planted bug can reach them.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from deardiary.projections import fold as fold_module
from deardiary.projections.draft import Draft
from deardiary.projections.fold import fold
from deardiary.projections.folds.spec import FoldSpec
from deardiary.projections.store import DuckDBProjectionStore
from deardiary.projections.writes import PriorState
from deardiary.schemas.codec import decode, encode
from deardiary.schemas.envelope import LogPosition
from deardiary.schemas.events import EntityKind, NotesSet, TagsSet
from deardiary.services.log import LogRecord
from deardiary.services.log.sqlite import SqliteEventLog
from deardiary.services.projector import Projector, apply_or_park
from tests.builders import envelope, metrics, records, sweep_start


def _tags(value: str) -> TagsSet:
    return TagsSet(entity=EntityKind.ITERATION, entity_id="it-1", tags={"k": value})


@pytest.fixture
def buggy_tags(monkeypatch: pytest.MonkeyPatch) -> None:
    """TagsSet's fold changes the row, then raises for the value "boom"; for "bad-column"
    it writes a field the table has no column for (the store refuses the batch)."""
    original = fold_module.SPECS[TagsSet]

    def buggy(draft: Draft, event: TagsSet) -> None:
        row = draft.get("iterations", event.entity_id)
        assert row is not None
        row["notes"] = "half done"
        draft.put("iterations", row)
        if event.tags.get("k") == "boom":
            raise RuntimeError("a bug in a fold")
        if event.tags.get("k") == "bad-column":
            draft.put("iterations", {**row, "no_such_column": 1})

    monkeypatch.setitem(fold_module.SPECS, TagsSet, FoldSpec(buggy, original.lookups))


@pytest.mark.usefixtures("buggy_tags")
def test_a_fold_that_raises_parks_its_event_and_undoes_what_it_did() -> None:
    notes = NotesSet(entity=EntityKind.ITERATION, entity_id="it-1", notes="kept")
    batch = [*sweep_start(), _tags("boom"), notes]
    w = fold(PriorState(), records(batch))
    (parked,) = w.inserts["parked_events"]
    assert parked["event_type"] == "tags_set" and "a bug in a fold" in parked["error"]
    assert decode(parked["payload"]).body == _tags("boom")  # the event, kept whole
    (iteration,) = w.upserts["iterations"]
    assert iteration["notes"] == "kept"  # the later event applied; "half done" undone
    assert [e["type"] for e in w.inserts["events"]][-1] == "notes_set"
    assert w.next_offsets == {0: len(batch)}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[DuckDBProjectionStore]:
    store = DuckDBProjectionStore(tmp_path / "projections")
    yield store
    store.close()


@pytest.mark.usefixtures("buggy_tags")
def test_a_batch_the_store_refuses_is_applied_one_by_one_and_the_culprit_parked(
    store: DuckDBProjectionStore,
) -> None:
    first, second = metrics("it-1", [("loss", 1.0, -1)]), metrics("it-1", [("loss", 2.0, -1)])
    batch = records([*sweep_start(), first, _tags("bad-column"), second])
    apply_or_park(store, batch)
    conn = store.reader()
    assert conn.sql("SELECT count(*) FROM metrics").fetchall() == [(2,)]
    assert conn.sql("SELECT event_type FROM parked_events").fetchall() == [("tags_set",)]
    assert store.next_offsets() == {0: len(batch)}


class FlakyLog:
    """A real log whose reads fail a few times first (a disk or lock hiccup)."""

    def __init__(self, log: SqliteEventLog, failures: int) -> None:
        self.log, self.failures = log, failures

    def read(
        self, start: Mapping[int, int], max_records: int, timeout: float = 0.0
    ) -> list[tuple[LogPosition, bytes]]:
        if self.failures:
            self.failures -= 1
            raise OSError("disk hiccup")
        return self.log.read(start, max_records, timeout)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.log, name)


def test_the_projector_retries_errors_of_the_machinery_and_reports_them(
    tmp_path: Path, store: DuckDBProjectionStore
) -> None:
    log = SqliteEventLog(str(tmp_path / "log.db"))
    envs = [envelope(e, n) for n, e in enumerate(sweep_start())]
    log.append([LogRecord(e.event_id, e.key, encode(e)) for e in envs])
    flaky = FlakyLog(log, failures=2)
    projector = Projector(flaky, store)
    seen: list[str] = []
    stop, wake = threading.Event(), threading.Event()

    def watch(offsets: dict[int, int]) -> None:
        seen.append(projector.status().state)
        stop.set()

    projector.add_listener(watch)
    projector.run(stop, wake, poll=0.01)
    assert store.next_offsets() == {0: 3}
    assert projector.status().retries == 2 and "disk hiccup" in projector.status().last_error
    assert seen == ["running"]
    log.close()


def test_the_projector_outlives_a_bug_in_its_housekeeping(
    tmp_path: Path, store: DuckDBProjectionStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An error of no known kind escaping compaction is reported and retried; events
    appended afterwards are still applied (the thread used to die of it)."""
    log = SqliteEventLog(str(tmp_path / "log.db"))
    first, *rest = [envelope(e, n) for n, e in enumerate(sweep_start())]
    log.append([LogRecord(first.event_id, first.key, encode(first))])
    projector = Projector(log, store)
    failures = iter([RuntimeError("compaction bug")])

    def maybe_compact() -> None:
        error = next(failures, None)
        if error is not None:
            log.append([LogRecord(e.event_id, e.key, encode(e)) for e in rest])
            raise error

    monkeypatch.setattr(store, "maybe_compact", maybe_compact)
    stop, wake = threading.Event(), threading.Event()
    projector.add_listener(lambda offsets: stop.set() if offsets.get(0) == 3 else None)
    runner = threading.Thread(target=projector.run, args=(stop, wake, 0.01))
    runner.start()
    runner.join(timeout=60)
    stop.set()
    assert not runner.is_alive()
    assert store.next_offsets() == {0: 3}
    assert projector.status().retries == 1 and "compaction bug" in projector.status().last_error
    with projector.paused():  # nothing of the projector uses the store meanwhile
        store.compact()
    log.close()
