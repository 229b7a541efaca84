"""Every server setting is documented in the README, exactly as declared."""

from __future__ import annotations

from pathlib import Path

import pytest

from deardiary.schemas.errors import InvalidArgument
from deardiary.services.settings import describe, markdown_table, settings_from

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_readme_lists_every_setting_as_declared() -> None:
    text = README.read_text()
    begin, end = "<!-- settings:begin -->\n", "<!-- settings:end -->"
    documented = text[text.index(begin) + len(begin) : text.index(end)]
    assert documented == markdown_table(), "run: python -m deardiary.services.settings"
    assert all(help_text for *_, help_text in describe())


def test_settings_come_from_the_environment_and_are_checked() -> None:
    assert settings_from({"DEARDIARY_SQL_TIMEOUT_S": "2.5"}).sql_timeout_s == 2.5
    assert settings_from({}, sql_threads=3).sql_threads == 3
    with pytest.raises(InvalidArgument):
        settings_from({"DEARDIARY_SQL_TIMEOUT_S": "-1"})
    with pytest.raises(InvalidArgument):
        settings_from({"DEARDIARY_MAX_CONNECTIONS": "many"})
