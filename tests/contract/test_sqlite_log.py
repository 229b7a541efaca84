"""The embedded SQLite log honours the EventLog contract."""

from __future__ import annotations

from pathlib import Path

from deardiary.services.log import EventLog
from deardiary.services.log.sqlite import SqliteEventLog
from tests.contract.event_log_contract import EventLogContract


class TestSqliteEventLog(EventLogContract):
    dedups_on_append = True

    def create_log(self, tmp_path: Path) -> EventLog:
        return SqliteEventLog(str(tmp_path / "log.db"))
