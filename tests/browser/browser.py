"""Headless Chromium (Debian's package) driven by Playwright, and what a page reported.

Launched as the project's machines allow: Debian's /usr/bin/chromium (never a browser
Playwright downloads), the flags that keep it off the network, a fresh user-data dir.
Every console error and uncaught page error is collected; a test fails on any it did
not expect (a refused request it provoked on purpose is named by its status).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

CHROMIUM = os.environ.get("DEARDIARY_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SHOTS = os.environ.get("DEARDIARY_SCREENSHOTS")  # a folder: save the main views there

try:
    from playwright.sync_api import BrowserContext, Page, sync_playwright
except ImportError:  # pragma: no cover - the dev extra installs it
    pytest.skip("playwright is not installed", allow_module_level=True)
if not Path(CHROMIUM).exists():
    pytest.skip("chromium is missing (make test installs it as root)", allow_module_level=True)


@dataclass
class Problems:
    seen: list[str] = field(default_factory=list)

    def expect_clean(self, *allowed_statuses: int) -> None:
        """No script errors; failed loads only with these statuses (provoked on purpose)."""
        allowed = tuple(f"status of {s} " for s in allowed_statuses)
        failed_load = "console: Failed to load resource"
        bad = [
            p for p in self.seen if not (p.startswith(failed_load) and any(a in p for a in allowed))
        ]
        self.seen.clear()
        assert bad == [], bad


@contextmanager
def chromium(
    color_scheme: Literal["light", "dark"] = "light", width: int = 1400, height: int = 900
) -> Iterator[tuple[BrowserContext, Problems]]:
    """A fresh browser context and its problem list."""
    profile = tempfile.mkdtemp(prefix="deardiary-chromium-")
    problems = Problems()
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            profile,
            executable_path=CHROMIUM,
            headless=True,
            args=FLAGS,
            viewport={"width": width, "height": height},
            color_scheme=color_scheme,
        )
        try:
            context.on(
                "console",
                lambda m: problems.seen.append(f"console: {m.text}") if m.type == "error" else None,
            )
            context.on("weberror", lambda e: problems.seen.append(f"page error: {e.error}"))
            yield context, problems
        finally:
            context.close()
            shutil.rmtree(profile, ignore_errors=True)


def screenshot(page: Page, name: str) -> None:
    """Save a screenshot of the page into $DEARDIARY_SCREENSHOTS (docs/ for the README)."""
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SHOTS) / f"web-{name}.png"))


def canvas_ink(page: Page, selector: str) -> int:
    """How many pixels of the first canvas under `selector` are painted (not blank)."""
    return int(
        page.eval_on_selector(
            selector,
            """el => {
                const c = el.tagName === 'CANVAS' ? el : el.querySelector('canvas');
                const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                let n = 0;
                for (let i = 3; i < d.length; i += 4) if (d[i] !== 0) n++;
                return n;
            }""",
        )
    )
