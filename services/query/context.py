"""What the query service needs from its surroundings, in either mode."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypeVar

import duckdb

from deardiary.schemas.errors import Unavailable
from deardiary.services.artifacts import ArtifactStore

T = TypeVar("T")


@dataclass
class QueryContext:
    """Readers over the projections, read-your-writes waits, the artifact store, the clock."""

    reader: Callable[[], duckdb.DuckDBPyConnection]
    wait_for_offsets: Callable[[dict[int, int], float], bool]
    artifacts: ArtifactStore
    clock: Callable[[], datetime]
    lost_after_s: float = 120.0
    max_wait_s: float = 30.0
    # Called on the event loop per read; returns how to prepare the cursor (auth scoping).
    scoper: Callable[[], Callable[[duckdb.DuckDBPyConnection], None] | None] | None = None
    # The log's end, for "catch up before reading" (embedded mode).
    end_offsets: Callable[[], dict[int, int]] | None = None

    def now_and_lost_before(self) -> tuple[datetime, datetime]:
        now = self.clock()
        return now, now - timedelta(seconds=self.lost_after_s)

    async def run(self, fn: Callable[[duckdb.DuckDBPyConnection], T]) -> T:
        """Run a blocking read on a fresh cursor in a worker thread."""

        prepare = self.scoper() if self.scoper is not None else None

        def call() -> T:
            conn = self.reader()
            try:
                if prepare is not None:
                    prepare(conn)
                return fn(conn)
            finally:
                conn.close()

        return await asyncio.get_running_loop().run_in_executor(None, call)

    async def wait(self, min_offsets: dict[int, int]) -> None:
        """Read-your-writes: block until the projections applied these offsets (without
        any, until they applied everything appended so far, where that is cheap to know)."""
        loop = asyncio.get_running_loop()
        if not min_offsets:
            if self.end_offsets is not None:
                min_offsets = await loop.run_in_executor(None, self.end_offsets)
            if not min_offsets:
                return
        done = await loop.run_in_executor(None, self.wait_for_offsets, min_offsets, self.max_wait_s)
        if not done:
            raise Unavailable(
                f"projections did not reach {min_offsets} within {self.max_wait_s:.0f} s",
                {"retryable": True},
            )
