"""One read, one snapshot: a query made of several statements (segments, then hot points;
tiles, then hot points) must not straddle a compaction that moves points between them."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

import duckdb

_held = threading.local()
"""Per thread, the ids of the connections a `snapshot` holds open (a cursor serves one
thread at a time). DuckDB cannot be asked: a BEGIN inside a transaction aborts it."""


@contextlib.contextmanager
def snapshot(conn: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """Run the block's statements in one read transaction on `conn` -- or in the
    enclosing snapshot's, when one holds `conn` already (reads nest). Nothing is
    written, so it is rolled back. Open transactions on readers only through this."""
    held: set[int] = _held.__dict__.setdefault("ids", set())
    if id(conn) in held:
        yield
        return
    conn.execute("BEGIN TRANSACTION")
    held.add(id(conn))
    try:
        yield
    finally:
        held.discard(id(conn))
        with contextlib.suppress(duckdb.Error):  # an interrupted statement ended it already
            conn.execute("ROLLBACK")
