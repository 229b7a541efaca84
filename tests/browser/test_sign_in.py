"""The web page of a server with --auth: sign in, see only granted projects, and a
refusal for an ungranted one shown as such (a real `deardiary serve --auth`)."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

import deardiary as dd
from tests.browser.browser import chromium, screenshot
from tests.e2e.serve_process import serve
from tests.ports import free_port

from playwright.sync_api import expect  # isort: skip

pytestmark = pytest.mark.slow
ROOT_PW = "root-password-123"
ANN_PW = "ann-password-123"
CLI = [sys.executable, "-m", "deardiary.services.cli"]


@dataclass
class World:
    url: str
    secret_experiment: str
    secret_run: str
    vision_experiment: str
    granted_then: str  # an ISO time at which ann could read "secret" (revoked since)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("web-auth")
    data = root / "data"
    made = subprocess.run(
        [*CLI, "users", "create", "--data", str(data), "root", "--admin"],
        input=ROOT_PW + "\n",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert made.returncode == 0, made.stderr
    with serve(data, free_port(), "--auth") as url:
        admin = dd.connect(url, username="root", password=ROOT_PW, spool_dir=root / "s1")
        admin.create_user("ann", ANN_PW)
        for project in ("vision", "secret"):
            with admin.start_iteration(
                project=project,
                experiment=f"{project}-exp",
                name=f"{project}-run",
                params={"lr": 0.1},
                capture_env=False,
            ) as it:
                it.log_metric("loss", 0.5)
            if project == "secret":
                secret, secret_run = it.experiment_id, it.id
            else:
                vision = it.experiment_id
        admin.flush()
        admin.grant("ann", "vision", read=True, update=True)
        admin.grant("ann", "secret", read=True)
        time.sleep(0.05)
        granted_then = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        time.sleep(0.05)
        admin.revoke("ann", "secret")
        admin.close()
        yield World(url, secret, secret_run, vision, granted_then)


def test_sign_in_shows_only_granted_projects_and_refuses_the_others(world: World) -> None:
    with chromium() as (context, problems):
        page = context.new_page()
        page.set_default_timeout(15_000)
        page.goto(world.url + "/")
        expect(page).to_have_url(re.compile(r"/login\?next=%2F$"))
        page.get_by_label("username").fill("ann")
        page.get_by_label("password").fill("wrong-password")
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_role("alert")).to_contain_text("Wrong username or password")
        screenshot(page, "sign-in")
        page.get_by_label("password").fill(ANN_PW)
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_role("link", name="vision", exact=True)).to_be_visible()
        expect(page.get_by_text("secret")).to_have_count(0)
        expect(page.locator("header")).to_contain_text("ann")
        page.get_by_role("link", name="vision-exp").click()
        expect(page.get_by_role("link", name="vision-run")).to_be_visible()
        page.goto(f"{world.url}/e/{world.secret_experiment}")  # a link someone shared
        expect(page.get_by_role("alert")).to_contain_text("No access")
        expect(page.get_by_text("secret-run")).to_have_count(0)
        problems.expect_clean(401, 403)  # the wrong password and the ungranted project
        page.get_by_role("button", name="sign out").click()
        expect(page).to_have_url(re.compile("/login"))


def test_as_of_a_time_she_was_granted_a_revoked_project_stays_refused(world: World) -> None:
    """Time travel is scoped by today's grants: ann could read "secret" back then."""
    with chromium() as (context, problems):
        page = context.new_page()
        page.set_default_timeout(15_000)
        then = world.granted_then
        page.goto(f"{world.url}/login?next=/e/{world.vision_experiment}%3Fas_of%3D{then}")
        page.get_by_label("username").fill("ann")
        page.get_by_label("password").fill(ANN_PW)
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_role("status")).to_contain_text("as of")
        expect(page.get_by_role("link", name="vision-run")).to_be_visible()
        for shared in (f"/e/{world.secret_experiment}", f"/r/{world.secret_run}"):
            page.goto(f"{world.url}{shared}?as_of={then}")
            expect(page.get_by_role("alert")).to_contain_text("No access")
            expect(page.get_by_text("secret-run")).to_have_count(0)
        problems.expect_clean(403)
