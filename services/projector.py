"""The projector loop: load offsets -> read -> decode -> fold -> apply, on any EventLog.

The offsets stored with the projection are the truth: the loop always resumes from
them, so a crash anywhere replays at most the batch that was not committed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from deardiary.projections.fold import Record, fold, lookups_for
from deardiary.projections.store import DuckDBProjectionStore
from deardiary.schemas.codec import decode_record
from deardiary.schemas.envelope import LogPosition
from deardiary.services.log import EventLog

StopCondition = Callable[[LogPosition], bool]


class Projector:
    """Folds a log into a projection store, one transaction per batch."""

    def __init__(
        self,
        log: EventLog,
        store: DuckDBProjectionStore,
        max_records: int = 500,
        stop_before: StopCondition | None = None,
    ) -> None:
        self.log = log
        self.store = store
        self.max_records = max_records
        self.stop_before = stop_before
        self._lock = threading.Lock()
        self._applied = threading.Condition(self._lock)

    def step(self, timeout: float = 0.0) -> int:
        """Apply the next batch; returns how many log records it consumed."""
        with self._lock:
            offsets = self.store.next_offsets()
            raw = self.log.read(offsets, self.max_records, timeout)
            stop = self.stop_before
            # Records past an as-of bound are left unread; other partitions go on.
            batch: list[Record] = [
                (pos, decode_record(payload))
                for pos, payload in raw
                if stop is None or not stop(pos)
            ]
            if not batch:
                return 0
            if stop is not None:  # keep each partition's records contiguous from its offset
                past = {pos.partition for pos, _ in raw if stop(pos)}
                first_past = {
                    p: min(pos.offset for pos, _ in raw if pos.partition == p and stop(pos))
                    for p in past
                }
                batch = [
                    r
                    for r in batch
                    if r[0].partition not in first_past or r[0].offset < first_past[r[0].partition]
                ]
                if not batch:
                    return 0
            self.store.apply(fold(self.store.load_prior(lookups_for(batch)), batch))
            self._applied.notify_all()
            return len(batch)

    def catch_up(self) -> None:
        """Apply everything appended before this call."""
        end = self.log.end_offsets()
        while not self._reached(end):
            if self.step() == 0:
                break  # stopped by stop_before (as-of rebuilds)

    def _reached(self, target: dict[int, int]) -> bool:
        have = self.store.next_offsets()
        return all(have.get(p, 0) >= o for p, o in target.items())

    def wait_for(self, target: dict[int, int], timeout: float) -> bool:
        """Block until the projections have applied up to `target` (read-your-writes)."""
        with self._applied:
            return self._applied.wait_for(lambda: self._reached(target), timeout)

    def run(self, stop: threading.Event, wake: threading.Event, poll: float = 0.25) -> None:
        """Follow the log until `stop` is set; `wake` (set by appenders) skips the poll wait."""
        while not stop.is_set():
            if self.step(timeout=0) == 0:
                # Idle: time for housekeeping. Not under self._lock, so readers waiting
                # for their writes (wait_for) are answered while it runs.
                self.store.maybe_compact()
                wake.wait(poll)
                wake.clear()
