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
import contextlib
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds
from aiohttp import web

from deardiary.projections.queries.sql import check_statement, mentioned_relations
from deardiary.schemas.errors import (
    DearDiaryError,
    InvalidArgument,
    PermissionDenied,
    ResourceExhausted,
    Unavailable,
)
from deardiary.services.query.sql_relations import (
    POINTS,
    SCAN_ORDER,
    MetricParts,
    RelationSource,
)
from deardiary.services.settings import ServerSettings, env_name

Prepare = Callable[[duckdb.DuckDBPyConnection], None]

CONFIG: dict[str, str | bool] = {
    "enable_external_access": False,  # no files, ATTACH, COPY, INSTALL/LOAD, HTTP
    "python_enable_replacements": False,  # a Python variable's name is not a table
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
    "allow_persistent_secrets": False,
    "temp_directory": "",  # nothing spills to disk: over the memory limit is an error
}
_POINT_COLUMNS = ", ".join(f'"{name}"' for name in POINTS.names)
_SCAN_COLUMNS = ", ".join(f'"{name}"' for name in SCAN_ORDER.names)


@dataclass(frozen=True)
class SqlResult:
    """A statement's rows, and which of its columns hold JSON (by DuckDB type, not name)."""

    table: pa.Table
    json_columns: frozenset[str]


def _limit(setting: str, what: str) -> str:
    return f"{what} (setting {setting}, {env_name(setting)})"


class _Statement:
    """One running statement: the cursors to interrupt, and why it was stopped."""

    def __init__(self, user: str | None, deadline: float) -> None:
        self.user = user
        self.deadline = deadline
        self.stopped: DearDiaryError | None = None
        self._cursors: list[duckdb.DuckDBPyConnection] = []
        self._lock = threading.Lock()

    def attach(self, cursor: duckdb.DuckDBPyConnection) -> None:
        with self._lock:
            self._cursors.append(cursor)
        self.check()

    def detach(self, cursor: duckdb.DuckDBPyConnection) -> None:
        with self._lock:
            self._cursors.remove(cursor)

    def check(self) -> None:
        if self.stopped is not None:
            raise self.stopped

    def halt(self, reason: DearDiaryError) -> None:
        """Stop the statement (the first reason given sticks); safe from any thread, and
        repeated by the watchdog until the statement's thread notices."""
        with self._lock:
            if self.stopped is None:
                self.stopped = reason
            cursors = list(self._cursors)
        for cursor in cursors:
            with contextlib.suppress(duckdb.Error):  # closed meanwhile
                cursor.interrupt()


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
        self._active: set[_Statement] = set()
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

    async def run_async(self, query: str) -> SqlResult:
        """Run a statement for the current caller on the sandbox's own threads; when the
        awaiting task is cancelled (the client went away), the statement is interrupted."""
        user = self.caller() if self.caller is not None else None
        prepare = self.scoper() if self.scoper is not None else None
        statement = self._admit(user)
        try:
            future = self._pool.submit(self._execute, statement, query, prepare)
        except RuntimeError:  # the pool is shut down
            self._finish(statement)
            raise Unavailable("the server is shutting down", {"retryable": True}) from None
        future.add_done_callback(lambda _f: self._finish(statement))
        try:
            return await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            if not future.cancel():
                statement.halt(Unavailable("the client went away"))
            raise

    def running(self) -> int:
        """Statements admitted and not finished (queued or running)."""
        with self._lock:
            return len(self._active)

    def interrupt_all(self) -> None:
        """Interrupt every statement (at shutdown): each answers 503 UNAVAILABLE."""
        with self._lock:
            active = list(self._active)
        for statement in active:
            statement.halt(Unavailable("the server is shutting down", {"retryable": True}))

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._lock.notify_all()
        self.interrupt_all()
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._watchdog.join(timeout=5)
        self.db.close()

    # -- admission and the watchdog ------------------------------------------------------
    def _admit(self, user: str | None) -> _Statement:
        limit = self.settings.sql_per_user
        with self._lock:
            if self._closed:
                raise Unavailable("the server is shutting down", {"retryable": True})
            if user is not None:
                if self._per_user.get(user, 0) >= limit:
                    raise ResourceExhausted(
                        f"{user} is already running {limit} SQL statement(s), "
                        + _limit("sql_per_user", "the most one user may run at once")
                        + "; retry when one has finished",
                        {"retry_after_s": 1, "limit": limit, "setting": "sql_per_user"},
                    )
                self._per_user[user] = self._per_user.get(user, 0) + 1
            statement = _Statement(user, time.monotonic() + self.settings.sql_timeout_s)
            self._active.add(statement)
            self._lock.notify_all()
        return statement

    def _finish(self, statement: _Statement) -> None:
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

    def _timeout(self) -> ResourceExhausted:
        limit = self.settings.sql_timeout_s
        return ResourceExhausted(
            f"SQL statement stopped after {limit:g} s, "
            + _limit("sql_timeout_s", "the longest a statement may take"),
            {"limit_s": limit, "setting": "sql_timeout_s"},
        )

    def _watch(self) -> None:
        """Interrupt statements past their deadline; re-interrupt stopped ones until they
        end (an interrupt that lands between two queries of a statement is lost)."""
        with self._lock:
            while not self._closed:
                now = time.monotonic()
                wait: float | None = None
                for statement in list(self._active):
                    if statement.stopped is None and now >= statement.deadline:
                        statement.halt(self._timeout())
                    if statement.stopped is not None:
                        statement.halt(statement.stopped)
                        left = 0.05
                    else:
                        left = statement.deadline - now
                    wait = left if wait is None else min(wait, left)
                self._lock.wait(wait)

    # -- one statement ---------------------------------------------------------------------
    def _execute(self, statement: _Statement, query: str, prepare: Prepare | None) -> SqlResult:
        if time.monotonic() >= statement.deadline:
            raise self._timeout()
        for attempt in range(2):
            try:
                return self._attempt(statement, query, prepare)
            except duckdb.Error as exc:
                if statement.stopped is not None:
                    raise statement.stopped from None
                if _missing_file(exc) and attempt == 0:
                    continue  # a segment was merged away meanwhile: take a new snapshot
                raise self._failure(exc) from exc
        raise AssertionError("unreachable")

    def _attempt(self, statement: _Statement, query: str, prepare: Prepare | None) -> SqlResult:
        cursor = self.db.cursor()
        try:
            statement.attach(cursor)
            try:
                check_statement(cursor, query)
                names = mentioned_relations(cursor, query)
                if names:
                    self._provide(statement, cursor, names, prepare)
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
            limit = self.settings.sql_max_rows
            raise ResourceExhausted(
                f"the result has more than {limit} rows, "
                + _limit("sql_max_rows", "the most a SQL result may hold")
                + "; aggregate, or add a LIMIT",
                {"limit": limit, "setting": "sql_max_rows"},
            )
        return SqlResult(table, json_columns)

    def _provide(
        self,
        statement: _Statement,
        cursor: duckdb.DuckDBPyConnection,
        names: set[str],
        prepare: Prepare | None,
    ) -> None:
        """Register each named relation on `cursor`, read from one snapshot of the
        caller's scoped reader."""
        source = self.source.reader()
        try:
            statement.attach(source)
            try:
                if prepare is not None:
                    prepare(source)
                source.execute("BEGIN TRANSACTION")
                try:
                    for name in sorted(names - {"metrics"}):
                        cursor.register(name, _arrow(source, name))
                    if "metrics" in names:
                        readable = None
                        if prepare is not None:
                            readable = source.sql(
                                "SELECT iteration_id FROM iterations"
                            ).to_arrow_table()
                        parts = self.source.metric_parts(source, readable)
                        _provide_metrics(cursor, parts, readable)
                finally:
                    _end_transaction(source)
            finally:
                statement.detach(source)
        finally:
            source.close()

    def _failure(self, exc: duckdb.Error) -> DearDiaryError:
        if isinstance(exc, duckdb.OutOfMemoryException):
            limit = self.settings.sql_memory_limit
            return ResourceExhausted(
                f"SQL statement ran out of memory: {limit} is "
                + _limit("sql_memory_limit", "the memory all running statements share"),
                {"limit": limit, "setting": "sql_memory_limit"},
            )
        if isinstance(exc, duckdb.PermissionException):
            return PermissionDenied(f"SQL may not do this here: {exc}")
        if _missing_file(exc):
            return Unavailable("the projections changed while reading; retry", {"retryable": True})
        return InvalidArgument(f"SQL failed: {exc}")


def _end_transaction(conn: duckdb.DuckDBPyConnection) -> None:
    with contextlib.suppress(duckdb.Error):  # an interrupted one may have ended already
        conn.execute("ROLLBACK")  # nothing was written


def _missing_file(exc: duckdb.Error) -> bool:
    text = str(exc)
    return "No such file" in text or "FileNotFound" in text


def _arrow(conn: duckdb.DuckDBPyConnection, name: str) -> pa.Table:
    """A relation as Arrow, its JSON columns typed as Arrow JSON so the sandbox sees JSON."""
    relation = conn.sql(f"SELECT * FROM {name}")
    types = relation.types
    table = relation.to_arrow_table()
    for i, kind in enumerate(types):
        if kind == "JSON":
            column = table.column(i)
            chunks = [pa.ExtensionArray.from_storage(pa.json_(), c) for c in column.chunks]
            field = pa.field(table.schema.field(i).name, pa.json_())
            table = table.set_column(i, field, pa.chunked_array(chunks, pa.json_()))
    return table


def _provide_metrics(
    cursor: duckdb.DuckDBPyConnection, parts: MetricParts, readable: pa.Table | None
) -> None:
    """`metrics` as a view: the Parquet files scanned in place (only the readable
    iterations' points), then the hot points."""
    files: ds.Dataset | pa.Table = SCAN_ORDER.empty_table()
    if parts.files:
        files = ds.dataset(parts.files, schema=SCAN_ORDER, format="parquet")
        if readable is not None:
            wanted = readable.column("iteration_id").combine_chunks()
            files = files.filter(ds.field("iteration_id").isin(wanted))
    cursor.register("_metrics_files", files)
    sources = [f"SELECT {_SCAN_COLUMNS} FROM _metrics_files"]
    if parts.hot is not None:
        cursor.register("_metrics_hot", parts.hot)
        sources.append(f"SELECT {_SCAN_COLUMNS} FROM _metrics_hot")
    # The union in scan order (count(*) reads a union's first column), then the columns
    # in the order users know.
    union = " UNION ALL ".join(sources)
    cursor.execute(f"CREATE TEMP VIEW metrics AS SELECT {_POINT_COLUMNS} FROM ({union})")


SANDBOX = web.AppKey("deardiary_sql_sandbox", SqlSandbox)
"""Where the server's SQL route finds its sandbox (set by the server's wiring)."""


def install(app: web.Application, sandbox: SqlSandbox) -> web.Application:
    """Give `app`'s SQL route this sandbox; its statements are interrupted when the
    server begins shutting down (SIGTERM), so in-flight requests end at once."""

    async def interrupt(_app: web.Application) -> None:
        sandbox.interrupt_all()

    app[SANDBOX] = sandbox
    app.on_shutdown.append(interrupt)
    return app
