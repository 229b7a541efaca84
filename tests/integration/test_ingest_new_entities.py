"""The embedded store knows every key of its projects, experiments and iterations
(COMPLETE_TABLES), so a batch that creates one -- each trial of a sweep starts a new
iteration -- is folded and checked at the door without asking the projections about it:
the projector's step reads no row for it, the gateway's checker opens no cursor. What the
checks refuse stays refused: an iteration of another project, a param that changes (stored
or earlier in the batch), a missing parent."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import duckdb
import pytest

from deardiary.projections import store as store_module
from deardiary.projections.fold import fold, lookups_for
from deardiary.projections.store import DuckDBProjectionStore
from deardiary.schemas.errors import Conflict, NotFound
from deardiary.schemas.events import IterationStarted, MetricsLogged, ParamsLogged
from deardiary.services.gateway.parents import IngestParents
from deardiary.services.projector import apply_or_park
from tests.builders import envelope, metrics, records, sweep_start


def _trial(n: int, project: str = "proj", lr: str = "0.1") -> list[Any]:
    return [
        *sweep_start(project=project, iteration=f"it-{n}"),
        ParamsLogged(iteration_id=f"it-{n}", params={"lr": lr}),
        metrics(f"it-{n}", [("loss", 1.0, 0)]),
    ]


class _Readers:
    """The store's reader, counting the cursors it hands out."""

    def __init__(self, store: DuckDBProjectionStore) -> None:
        self.store = store
        self.opened = 0

    def __call__(self) -> duckdb.DuckDBPyConnection:
        self.opened += 1
        return self.store.reader()


def _checker(store: DuckDBProjectionStore, pool: ThreadPoolExecutor, hook: bool) -> Any:
    readers = _Readers(store)

    async def caught_up() -> None:  # everything is applied already in these tests
        return None

    absent = store.certainly_absent if hook else None
    return IngestParents(readers, caught_up, pool, absent=absent), readers


def _check(parents: IngestParents, events: list[Any], start: int) -> None:
    envs = [envelope(e, start + i) for i, e in enumerate(events)]

    async def run() -> None:
        checked = await parents.check(None, envs)
        parents.appended(checked)

    asyncio.run(run())


@pytest.mark.parametrize("hook", [True, False])
def test_a_new_iteration_is_checked_without_the_projections(tmp_path: Path, hook: bool) -> None:
    store = DuckDBProjectionStore(tmp_path / "store")
    pool = ThreadPoolExecutor(2)
    try:
        apply_or_park(store, records(_trial(0)))
        parents, readers = _checker(store, pool, hook)
        _check(parents, _trial(1), 100)  # learns the project and experiment
        before = readers.opened
        _check(parents, _trial(2), 200)  # a sweep's next trial: all of it new
        if hook:
            assert readers.opened == before  # fails without the store's keys
        else:
            assert readers.opened >= before + 2  # how it was: two lookups of it-2
    finally:
        pool.shutdown()
        store.close()


def test_what_the_checks_refuse_stays_refused(tmp_path: Path) -> None:
    store = DuckDBProjectionStore(tmp_path / "store")
    pool = ThreadPoolExecutor(2)
    try:
        apply_or_park(store, records([*_trial(0), *sweep_start(project="other", iteration="x")]))
        parents, _ = _checker(store, pool, hook=True)
        _check(parents, _trial(1), 100)
        # it-0 exists in "proj": started again from another project's experiment
        with pytest.raises(Conflict, match="another project"):
            _check(parents, sweep_start(project="other", iteration="it-0"), 200)
        # it-0 resumed with a changed param (stored 0.1)
        with pytest.raises(Conflict, match="write-once") as changed:
            _check(parents, _trial(0, lr="0.2"), 300)
        assert changed.value.details == {"key": "lr", "stored": "0.1", "refused": "0.2"}
        _check(parents, _trial(0, lr="0.1"), 400)  # the same value again is fine
        # a new iteration whose batch logs two values of one param
        twice = [*_trial(5), ParamsLogged(iteration_id="it-5", params={"lr": "0.3"})]
        with pytest.raises(Conflict, match="write-once"):
            _check(parents, twice, 500)
        # points for an iteration that was never started
        with pytest.raises(NotFound, match="it-9"):
            _check(parents, [metrics("it-9", [("loss", 1.0, 0)])], 600)
        orphan = IterationStarted(iteration_id="it-8", experiment_id="nope", name="x")
        with pytest.raises(NotFound, match="nope"):
            _check(parents, [orphan], 700)
    finally:
        pool.shutdown()
        store.close()


def _watch_rows(store: DuckDBProjectionStore, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    asked: list[str] = []
    rows_by_key: Callable[..., Any] = store._rows_by_key
    existing: Callable[..., Any] = store._existing_keys

    def rows(table: str, keys: set[Any]) -> Any:
        asked.extend([table] * bool(keys))
        return rows_by_key(table, keys)

    def exist(table: str, keys: set[Any]) -> Any:
        asked.extend([table] * bool(keys))
        return existing(table, keys)

    monkeypatch.setattr(store, "_rows_by_key", rows)
    monkeypatch.setattr(store, "_existing_keys", exist)
    return asked


def test_keys_are_known_before_their_batch_commits_and_after_a_reopen(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = DuckDBProjectionStore(tmp_path / "store")
    asked = _watch_rows(store, monkeypatch)
    apply_or_park(store, records(_trial(0)))
    assert not store.certainly_absent("iterations", "it-0")
    assert store.certainly_absent("iterations", "it-1")
    assert asked == []  # a new store: nothing to look up
    # a batch that fails to commit: its keys may be stored as far as anyone asking knows
    batch = records(_trial(1), start=10)
    monkeypatch.setattr(store, "_insert_points", _refuse)
    with pytest.raises(RuntimeError):
        store.apply(fold(store.load_prior(lookups_for(batch)), batch))
    monkeypatch.undo()
    assert not store.certainly_absent("iterations", "it-1")
    asked = _watch_rows(store, monkeypatch)
    apply_or_park(store, batch)  # it-1 is looked up (it may be there) and then written
    assert asked == ["iterations"]
    store.close()
    reopened = DuckDBProjectionStore(tmp_path / "store")
    asked = _watch_rows(reopened, monkeypatch)
    assert not reopened.certainly_absent("iterations", "it-1")
    assert not reopened.certainly_absent("projects", _trial(0)[0].project_id)
    assert reopened.certainly_absent("iterations", "it-2")
    apply_or_park(reopened, records(_trial(2), start=20))
    assert "iterations" not in asked
    got = reopened.conn.execute("SELECT iteration_id FROM iterations ORDER BY 1").fetchall()
    assert got == [("it-0",), ("it-1",), ("it-2",)]
    reopened.close()


def _refuse(*args: Any) -> None:
    raise RuntimeError("disk full")


def test_past_the_limit_keys_are_looked_up_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_module, "KNOWN_KEYS_LIMIT", 2)
    store = DuckDBProjectionStore(tmp_path / "store")
    apply_or_park(store, records(_trial(0)))  # it-0: one iteration, within the limit
    assert store.certainly_absent("iterations", "it-1")
    apply_or_park(store, records([*_trial(1)[2:], *_trial(2)[2:]], start=10))  # 3 > 2
    assert not store.certainly_absent("iterations", "it-9")  # not known: it may be stored
    asked = _watch_rows(store, monkeypatch)
    late = [ev for ev in _trial(3)[2:] if not isinstance(ev, MetricsLogged)]
    apply_or_park(store, records(late, start=20))
    assert asked == ["iterations"]
    store.close()
    reopened = DuckDBProjectionStore(tmp_path / "store")  # 4 iterations stored: too many
    assert not reopened.certainly_absent("iterations", "it-9")
    assert reopened.certainly_absent("projects", "nope")  # one project: all known
    reopened.close()
