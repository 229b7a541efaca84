"""One browser per test module and a fresh page per test, for the page tests.

browser.py is imported inside the fixtures: it skips a whole module when Playwright or
Chromium is missing, which a conftest must not do at import time."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import BrowserContext, Page

    from tests.browser.browser import Problems


@pytest.fixture(scope="module")
def browser() -> Iterator[tuple[BrowserContext, Problems]]:
    from tests.browser.browser import chromium

    with chromium() as (context, problems):
        yield context, problems


@pytest.fixture
def page(browser: tuple[BrowserContext, Problems]) -> Iterator[Page]:
    page = browser[0].new_page()
    page.set_default_timeout(15_000)
    try:
        yield page
    finally:
        page.close()
