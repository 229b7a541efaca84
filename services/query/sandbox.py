"""Where user SQL runs: a DuckDB instance of its own that holds nothing and reaches nothing.

The sandbox is an in-memory DuckDB opened with external access disabled (no files,
ATTACH, COPY, INSTALL/LOAD), Python replacement scans off and its configuration locked
(no SET). Each statement gets a fresh cursor on which exactly the published relations
it names are registered, read from the caller's scoped projection cursor -- so an
internal table, another project's rows or a file cannot be named: they are not there.

Limits, after PostgreSQL's `statement_timeout` and Datasette's SQL time limit: a
statement is interrupted at `sql_timeout_s` (counted from its arrival, so waiting for a
thread counts), fails past `sql_max_rows` rows or DuckDB's `sql_memory_limit`, runs on
`sql_threads` threads of its own with at most `sql_per_user` per signed-in user (more
answer 429 at once), and is interrupted when its HTTP client goes away or the server
shuts down.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

import duckdb
import pyarrow as pa
from aiohttp import web

from deardiary.projections.queries.snapshot import snapshot
from deardiary.projections.queries.sql import check_statement, mentioned_relations
from deardiary.schemas.errors import (
    DearDiaryError,
    InvalidArgument,
    PermissionDenied,
    Unavailable,
)
from deardiary.services.query.encoding import table_response
from deardiary.services.query.sql_limits import (
    Statement,
    busy_user,
    out_of_memory,
    timed_out,
    too_many_rows,
)
from deardiary.services.query.sql_relations import RelationSource, provide
from deardiary.services.settings import ServerSettings

Prepare = Callable[[duckdb.DuckDBPyConnection], None]
T = TypeVar("T")

CONFIG: dict[str, str | bool] = {
    "enable_external_access": False,  # no files, ATTACH, COPY, INSTALL/LOAD, HTTP
    "python_enable_replacements": False,  # a Python variable's name is not a table
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
    "allow_persistent_secrets": False,
    "temp_directory": "",  # nothing spills to disk: over the memory limit is an error
}


OWNER = ServerSettings(sql_timeout_s=86_400.0, sql_max_rows=2**62, sql_memory_limit="80%")
"""Limits for a data folder's owner reading it in-process (`deardiary sql --data` with no
server, the SDK's local reads): nobody else to protect, so only DuckDB's own memory
default; the sandbox itself (no files, no internal tables, no settings) is the same."""


@dataclass(frozen=True)
class SqlResult:
    """A statement's rows, and which of its columns hold JSON (by DuckDB type, not name)."""

    table: pa.Table
    json_columns: frozenset[str]


class SqlSandbox:
    """Runs user SQL over a `RelationSource`; one per server or local data folder."""

    def __init__(
        self,
        source: RelationSource,
        settings: ServerSettings | None = None,
        *,
        scoper: Callable[[], Prepare | None] | None = None,
        caller: Callable[[], str | None] | None = None,
    ) -> None:
        """`scoper` (called on the event loop) gives how to scope a reader cursor to the
        current caller, None for an unscoped one; `caller` names the current user for
        the per-user limit (None: anonymous, not limited per user)."""
        self.source = source
        self.settings = settings or ServerSettings()
        self.scoper, self.caller = scoper, caller
        config = {
            **CONFIG,
            "memory_limit": self.settings.sql_memory_limit,
            "threads": self.settings.sql_threads,
        }
        try:
            self.db = duckdb.connect(":memory:", config=config)  # type: ignore[arg-type]
        except duckdb.Error as exc:
            raise InvalidArgument(f"invalid SQL sandbox setting: {exc}") from exc
        self.db.execute("SET lock_configuration = true")
        self._pool = ThreadPoolExecutor(self.settings.sql_threads, thread_name_prefix="dd-sql")
        self._lock = threading.Condition()
        self._active: set[Statement] = set()
        self._per_user: dict[str, int] = {}
        self._closed = False
        self._watchdog = threading.Thread(target=self._watch, name="dd-sql-watchdog", daemon=True)
        self._watchdog.start()

    # -- running ---------------------------------------------------------------------
    def run(self, query: str, prepare: Prepare | None = None) -> SqlResult:
        """Run a statement in this thread (local reads, the CLI): time limit, no pool."""
        statement = self._admit(None)
        try:
            return self._execute(statement, query, prepare)
        finally:
            self._finish(statement)

    async def run_async(self, query: str, finish: Callable[[SqlResult], T]) -> T:
        """Run a statement for the current caller on the sandbox's own threads, and
        `finish(result)` there too (encoding a large result is no work for the event
        loop); when the awaiting task is cancelled (the client went away), the statement
        is interrupted."""
        user = self.caller() if self.caller is not None else None
        prepare = self.scoper() if self.scoper is not None else None
        statement = self._admit(user)

        def work() -> T:
            return finish(self._execute(statement, query, prepare))

        try:
            future = self._pool.submit(work)
        except RuntimeError:  # the pool is shut down
            self._finish(statement)
            raise Unavailable("the server is shutting down", {"retryable": True}) from None
        future.add_done_callback(lambda _f: self._finish(statement))
        try:
            return await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            if not future.cancel():
                self._stop(statement, Unavailable("the client went away"))
            raise

    def running(self) -> int:
        """Statements admitted and not finished (queued or running)."""
        with self._lock:
            return len(self._active)

    def interrupt_all(self) -> None:
        """Interrupt every statement (at shutdown): each answers 503 UNAVAILABLE."""
        for statement in self._snapshot():
            self._stop(statement, Unavailable("the server is shutting down", {"retryable": True}))

    def _snapshot(self) -> list[Statement]:
        with self._lock:
            return list(self._active)

    def _stop(self, statement: Statement, reason: DearDiaryError) -> None:
        """Halt `statement` and wake the watchdog, which repeats the interrupt until the
        statement ends: one interrupt landing between two of its queries is lost."""
        statement.halt(reason)
        with self._lock:
            self._lock.notify_all()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._lock.notify_all()
        self.interrupt_all()
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._watchdog.join(timeout=5)
        self.db.close()

    # -- admission and the watchdog ------------------------------------------------------
    def _admit(self, user: str | None) -> Statement:
        with self._lock:
            if self._closed:
                raise Unavailable("the server is shutting down", {"retryable": True})
            if user is not None:
                if self._per_user.get(user, 0) >= self.settings.sql_per_user:
                    raise busy_user(self.settings, user)
                self._per_user[user] = self._per_user.get(user, 0) + 1
            statement = Statement(user, time.monotonic() + self.settings.sql_timeout_s)
            self._active.add(statement)
            self._lock.notify_all()
        return statement

    def _finish(self, statement: Statement) -> None:
        with self._lock:
            if statement not in self._active:
                return
            self._active.discard(statement)
            if statement.user is not None:
                left = self._per_user[statement.user] - 1
                if left:
                    self._per_user[statement.user] = left
                else:
                    del self._per_user[statement.user]

    def _watch(self) -> None:
        """Interrupt statements past their deadline; re-interrupt stopped ones until they
        end (an interrupt that lands between two queries of a statement is lost)."""
        with self._lock:
            while not self._closed:
                now = time.monotonic()
                wait: float | None = None
                for statement in list(self._active):
                    if statement.stopped is None and now >= statement.deadline:
                        statement.halt(timed_out(self.settings))
                    if statement.stopped is not None:
                        statement.halt(statement.stopped)
                        left = 0.05
                    else:
                        left = statement.deadline - now
                    wait = left if wait is None else min(wait, left)
                self._lock.wait(None if wait is None else min(wait, 3600.0))

    # -- one statement ---------------------------------------------------------------------
    def _execute(self, statement: Statement, query: str, prepare: Prepare | None) -> SqlResult:
        if time.monotonic() >= statement.deadline:
            raise timed_out(self.settings)
        for attempt in range(2):
            try:
                return self._attempt(statement, query, prepare)
            except (duckdb.Error, OSError) as exc:
                if statement.stopped is not None:
                    raise statement.stopped from None
                if _missing_file(exc) and attempt == 0:
                    continue  # a segment was merged away meanwhile: take a new snapshot
                raise self._failure(exc) from exc
        raise AssertionError("unreachable")

    def _attempt(self, statement: Statement, query: str, prepare: Prepare | None) -> SqlResult:
        cursor = self.db.cursor()
        try:
            statement.attach(cursor)
            try:
                check_statement(cursor, query)
                names = mentioned_relations(cursor, query)
                if names:
                    self._provide(statement, cursor, names, query, prepare)
                statement.check()
                relation = cursor.sql(query)
                json_columns = frozenset(
                    c for c, t in zip(relation.columns, relation.types, strict=True) if t == "JSON"
                )
                table = relation.limit(self.settings.sql_max_rows + 1).to_arrow_table()
            finally:
                statement.detach(cursor)
        finally:
            cursor.close()
        if table.num_rows > self.settings.sql_max_rows:
            raise too_many_rows(self.settings)
        return SqlResult(table, json_columns)

    def _provide(
        self,
        statement: Statement,
        cursor: duckdb.DuckDBPyConnection,
        names: set[str],
        query: str,
        prepare: Prepare | None,
    ) -> None:
        """Register each named relation on `cursor`, read from one snapshot of the
        caller's scoped reader (`prepare` scopes it; None: an unscoped caller)."""
        source = self.source.reader()
        try:
            statement.attach(source)
            try:
                if prepare is not None:
                    prepare(source)
                with snapshot(source):
                    provide(cursor, source, self.source, names, query, prepare is not None)
            finally:
                statement.detach(source)
        finally:
            source.close()

    def _failure(self, exc: duckdb.Error | OSError) -> DearDiaryError:
        if isinstance(exc, duckdb.OutOfMemoryException):
            return out_of_memory(self.settings)
        if isinstance(exc, duckdb.PermissionException):
            return PermissionDenied(f"SQL may not do this here: {exc}")
        if _missing_file(exc):
            return Unavailable("the projections changed while reading; retry", {"retryable": True})
        return InvalidArgument(f"SQL failed: {exc}")


def _missing_file(exc: duckdb.Error | OSError) -> bool:
    text = str(exc)
    return isinstance(exc, OSError) or "No such file" in text or "FileNotFound" in text


SANDBOX = web.AppKey("deardiary_sql_sandbox", SqlSandbox)
"""Where the server's SQL route finds its sandbox (set by the server's wiring)."""


def responder(request: web.Request) -> Callable[[SqlResult], web.Response]:
    """The HTTP answer of a result (JSON, Arrow or MessagePack, as asked), made on the
    statement's thread; a value JSON cannot carry is the caller's 400, not our 500."""

    def respond(result: SqlResult) -> web.Response:
        try:
            return table_response(request, result.table, json_columns=result.json_columns)
        except (OverflowError, ValueError, pa.ArrowException) as exc:
            raise InvalidArgument(
                f"a value of the result cannot be sent as JSON ({exc}): cast it (e.g. to"
                " VARCHAR) or ask for ?format=arrow"
            ) from exc

    return respond


def install(app: web.Application, sandbox: SqlSandbox) -> web.Application:
    """Give `app`'s SQL route this sandbox. (At SIGTERM the runner calls
    `sandbox.interrupt_all()` once in-flight requests had their grace period.)"""
    app[SANDBOX] = sandbox
    return app
