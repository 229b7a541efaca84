"""The projector's linger between steps of a stream of appends (projector_linger_ms): the
next step gathers what arrives meanwhile, unless a read waits for its writes, and
nothing of it holds up a write to an idle log or a shutdown. The linger here is ten
minutes, so whatever ends it early is one of those rules, not the clock."""

from __future__ import annotations

import asyncio
import inspect
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from deardiary.projections.store import DuckDBProjectionStore
from deardiary.schemas.codec import encode
from deardiary.schemas.events import Event
from deardiary.services.log import LogRecord
from deardiary.services.log.sqlite import SqliteEventLog
from deardiary.services.projector import Projector
from deardiary.services.query.context import ProjectorProgress
from deardiary.services.settings import ServerSettings
from tests.builders import envelope, metrics, sweep_start

LONG = 600.0


def _until(done: Callable[[], bool], timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


@pytest.fixture
def running(tmp_path: Path) -> Iterator[tuple[SqliteEventLog, Projector, threading.Event]]:
    log = SqliteEventLog(str(tmp_path / "log.db"))
    store = DuckDBProjectionStore(tmp_path / "projections")
    projector = Projector(log, store, linger_s=LONG)
    stop, wake = threading.Event(), threading.Event()
    thread = threading.Thread(target=projector.run, args=(stop, wake, 0.01), daemon=True)
    thread.start()
    appended = 0

    def append(events: list[Event]) -> None:
        nonlocal appended
        envs = [envelope(e, appended + n) for n, e in enumerate(events)]
        appended += len(envs)
        log.append([LogRecord(e.event_id, e.key, encode(e)) for e in envs])
        wake.set()

    projector.append = append  # type: ignore[attr-defined]
    yield log, projector, stop
    stop.set()
    thread.join(timeout=60)
    assert not thread.is_alive(), "a lingering projector must stop at once"
    store.close()
    log.close()


def test_a_step_after_a_step_lingers_until_a_read_waits(
    running: tuple[SqliteEventLog, Projector, threading.Event],
) -> None:
    _, projector, _ = running
    append = projector.append  # type: ignore[attr-defined]
    start = sweep_start()
    append(start[:1])  # an idle projector applies a write at once...
    assert _until(lambda: projector.store.next_offsets() == {0: 1})
    append(start[1:])  # ...then lingers before the next step
    time.sleep(0.3)
    assert projector.store.next_offsets() == {0: 1}
    assert projector.wait_for({0: 3}, timeout=60)  # a read waiting for its writes: no linger
    append([metrics("it-1", [("loss", 1.0, -1)])])
    time.sleep(0.3)
    assert projector.store.next_offsets() == {0: 3}
    projector.hurry = lambda: True  # what the server asks: reads waiting in the query context
    assert _until(lambda: projector.store.next_offsets() == {0: 4})


def test_no_linger_without_a_setting_and_the_server_default() -> None:
    assert inspect.signature(Projector).parameters["linger_s"].default == 0.0
    assert ServerSettings().projector_linger_ms == 250.0


def test_stop_ends_a_linger(running: tuple[SqliteEventLog, Projector, threading.Event]) -> None:
    _, projector, _ = running
    append = projector.append  # type: ignore[attr-defined]
    append(sweep_start())
    assert _until(lambda: projector.store.next_offsets() == {0: 3})
    # lingering now; the fixture's teardown stops the thread and checks it ended


def test_a_read_that_starts_waiting_ends_a_linger_at_once(
    running: tuple[SqliteEventLog, Projector, threading.Event],
) -> None:
    """The server's reads wait through ProjectorProgress, which tells the projector
    (`hurry_now`) instead of being asked every few ms (`hurry` stays unset here: the
    linger would last its ten minutes)."""
    _, projector, _ = running
    progress = ProjectorProgress(projector.store.next_offsets)
    projector.add_listener(progress.on_applied)
    progress.on_wait = projector.hurry_now
    append = projector.append  # type: ignore[attr-defined]
    start = sweep_start()
    append(start[:1])
    assert _until(lambda: projector.store.next_offsets() == {0: 1})
    append(start[1:])  # lingering now
    time.sleep(0.2)
    assert projector.store.next_offsets() == {0: 1}
    assert asyncio.run(progress.reached({0: 3}, timeout=30))
