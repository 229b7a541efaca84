"""The SQL sandbox's limits: one running statement's interrupt handle, and the errors a
limit answers with (each names its setting and environment variable, so an operator
knows what to raise)."""

from __future__ import annotations

import contextlib
import threading

import duckdb

from deardiary.schemas.errors import DearDiaryError, ResourceExhausted
from deardiary.services.settings import ServerSettings, env_name


class Statement:
    """One admitted statement: its user, its deadline, the cursors working for it (the
    sandbox's and the projections' reader), and why it was stopped, if it was."""

    def __init__(self, user: str | None, deadline: float) -> None:
        self.user = user
        self.deadline = deadline
        self.stopped: DearDiaryError | None = None
        self._cursors: list[duckdb.DuckDBPyConnection] = []
        self._lock = threading.Lock()

    def attach(self, cursor: duckdb.DuckDBPyConnection) -> None:
        """Work on `cursor` from now on (raises at once if already stopped)."""
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
        """Stop the statement (the first reason given sticks); safe from any thread. An
        interrupt landing between two queries is lost, so callers repeat it until the
        statement has ended."""
        with self._lock:
            if self.stopped is None:
                self.stopped = reason
            cursors = list(self._cursors)
        for cursor in cursors:
            with contextlib.suppress(duckdb.Error):  # closed meanwhile
                cursor.interrupt()


def _setting(name: str, what: str) -> str:
    return f"{what} (setting {name}, {env_name(name)})"


def timed_out(settings: ServerSettings) -> ResourceExhausted:
    limit = settings.sql_timeout_s
    return ResourceExhausted(
        f"SQL statement stopped after {limit:g} s, "
        + _setting("sql_timeout_s", "the longest a statement may take"),
        {"limit_s": limit, "setting": "sql_timeout_s"},
    )


def too_many_rows(settings: ServerSettings) -> ResourceExhausted:
    limit = settings.sql_max_rows
    return ResourceExhausted(
        f"the result has more than {limit} rows, "
        + _setting("sql_max_rows", "the most a SQL result may hold")
        + "; aggregate, or add a LIMIT",
        {"limit": limit, "setting": "sql_max_rows"},
    )


def out_of_memory(settings: ServerSettings) -> ResourceExhausted:
    limit = settings.sql_memory_limit
    return ResourceExhausted(
        f"SQL statement ran out of memory: {limit} is "
        + _setting("sql_memory_limit", "the memory all running statements share"),
        {"limit": limit, "setting": "sql_memory_limit"},
    )


def busy_user(settings: ServerSettings, user: str) -> ResourceExhausted:
    """429 at once (with Retry-After), rather than a queue one user could fill."""
    limit = settings.sql_per_user
    return ResourceExhausted(
        f"{user} is already running {limit} SQL statement(s), "
        + _setting("sql_per_user", "the most one user may run at once")
        + "; retry when one has finished",
        {"retry_after_s": 1, "limit": limit, "setting": "sql_per_user"},
    )
