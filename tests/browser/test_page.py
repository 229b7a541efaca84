"""The web page in a real browser, against a real `deardiary serve` (no auth).

A sweep is logged through the SDK; a person opens the page, clicks from project to
experiment to run by their names and sees the rows, values, drawn charts, the compare
diff, the sweep views, the registry, a run's status change live, and edits a run's tags
and notes. Any script error on the page fails the test.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

import deardiary as dd
from tests.browser.browser import Problems, canvas_ink, screenshot
from tests.e2e.serve_process import serve
from tests.ports import free_port

from playwright.sync_api import BrowserContext, Page, expect  # isort: skip

pytestmark = pytest.mark.slow


@dataclass
class World:
    url: str
    client: dd.Client
    experiment_id: str
    trials: dict[str, str]  # name -> iteration id
    live: dd.Iteration
    travel: dd.Iteration  # a run changed after the offset `before` (time travel)
    before: int
    wide_experiment: str  # 120 metrics: 366 columns


def _travel(c: dd.Client) -> tuple[dd.Iteration, int]:
    """A run tagged stage=old with 50 loss points; after offset `before`, stage=new, 30
    more points and a validation group of its loss."""
    travel = c.start_iteration(
        project="mnist",
        experiment="history",
        name="travel",
        tags={"stage": "old"},
        capture_env=False,
    )
    for step in range(50):
        travel.log_metric("loss", 2 / (step + 1), step=step)
    before = c.flush()
    travel.set_tags({"stage": "new"})
    c.flush()  # the points below come after the tag in the log
    for step in range(50, 80):
        travel.log_metric("loss", 2 / (step + 1), step=step)
    for step in range(0, 80, 5):
        travel.log_metric("loss", 3 / (step + 1), step=step, group="val")
    travel.end()
    return travel, before


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("web")
    with serve(root / "data", free_port()) as url:
        c = dd.connect(url, spool_dir=root / "spool")
        trials: dict[str, str] = {}
        weights = root / "notes.txt"
        weights.write_text("best trial so far\n")
        for i, lr in enumerate((0.1, 0.01, 0.001)):
            with c.start_iteration(
                project="mnist",
                experiment="lr-sweep",
                name=f"trial-{i}",
                params={"lr": lr, "batch": 64, "optimizer": "adam" if i else "sgd"},
                capture_env=False,
            ) as it:
                for step in range(300):
                    loss = lr * 10 / (step + 1) + 0.05 * (1 + math.sin(step / 7))
                    it.log_metrics({"loss": loss, "acc": 1 - loss / 2}, step=step)
                trials[f"trial-{i}"] = it.id
                if i == 1:
                    it.log_artifact(weights)
                    version = it.register_model("digits")
        c.registry.stage("mnist", "digits", version, "Production")
        c.registry.set_alias("mnist", "digits", "champion", version)
        live = c.start_iteration(
            project="mnist", experiment="lr-sweep", name="live-trial", capture_env=False
        )
        live.log_metric("loss", 1.0)
        travel, before = _travel(c)
        with c.start_iteration(project="mnist", experiment="wide", capture_env=False) as wide:
            wide.log_metrics({f"m{k:03d}": k / 7 for k in range(120)}, step=0)
        c.flush()
        try:
            yield World(
                url, c, live.experiment_id, trials, live, travel, before, wide.experiment_id
            )
        finally:
            live.end()
            c.close()


def test_project_to_experiment_to_run_by_name(
    world: World, page: Page, browser: tuple[BrowserContext, Problems]
) -> None:
    page.goto(world.url + "/")
    expect(page.get_by_role("heading", name="Projects")).to_be_visible()
    screenshot(page, "projects")
    page.get_by_role("link", name="mnist", exact=True).click()
    expect(page.get_by_role("heading", name="mnist")).to_be_visible()
    page.get_by_role("link", name="lr-sweep").click()
    expect(page).to_have_url(re.compile(r"/e/[0-9a-f]+$"))
    grid = page.get_by_role("grid", name="runs")
    expect(grid.get_by_role("row")).to_have_count(5)  # the header and four runs
    row = grid.locator(".grid-row", has=page.get_by_role("link", name="trial-1", exact=True))
    expect(row).to_contain_text("0.01")
    expect(row).to_contain_text("adam")
    expect(page.get_by_text("4 runs")).to_be_visible()
    screenshot(page, "runs")
    row.get_by_role("link", name="trial-1").click()
    expect(page.get_by_role("heading", name=re.compile("trial-1"))).to_be_visible()
    params = page.locator("table.kv").first
    expect(params).to_contain_text("lr")
    expect(params).to_contain_text("0.01")
    metrics = page.locator("table.metrics")
    expect(metrics.get_by_role("row", name=re.compile("^loss"))).to_contain_text("300")
    screenshot(page, "run")
    browser[1].expect_clean()


def test_sort_filter_and_inline_filter_error(
    world: World, page: Page, browser: tuple[BrowserContext, Problems]
) -> None:
    page.goto(f"{world.url}/e/{world.experiment_id}?sort=params.lr:asc")
    grid = page.get_by_role("grid", name="runs")
    names = grid.locator(".grid-row[data-run] .pinned a")
    expect(names).to_have_text(["trial-2", "trial-1", "trial-0", "live-trial"])
    page.get_by_role("searchbox", name="filter").fill("params.lr = ")
    page.keyboard.press("Enter")
    expect(page.get_by_role("alert")).to_contain_text("expected a value")
    page.get_by_role("searchbox", name="filter").fill("params.lr >= 0.01 and metrics.loss < 10")
    page.keyboard.press("Enter")
    expect(names).to_have_text(["trial-1", "trial-0"])
    expect(page.get_by_role("alert")).to_have_count(0)
    browser[1].expect_clean(400)  # the malformed filter, refused on purpose


def test_charts_are_drawn_and_zoom_refetches(
    world: World, page: Page, browser: tuple[BrowserContext, Problems]
) -> None:
    runs = ",".join(world.trials.values())
    page.goto(f"{world.url}/e/{world.experiment_id}/charts?runs={runs}")
    chart = page.locator("figure.chart[data-metric=loss]")
    expect(chart).to_have_attribute("data-drawn", "1")
    assert canvas_ink(page, "figure.chart[data-metric=loss] .chart-box") > 500
    assert int(chart.get_attribute("data-points") or 0) == 900  # 3 x 300, fewer than the width
    screenshot(page, "charts")
    box = chart.locator(".u-over").bounding_box()
    assert box is not None
    page.mouse.move(box["x"] + box["width"] * 0.1, box["y"] + box["height"] / 2)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.3, box["y"] + box["height"] / 2, steps=5)
    page.mouse.up()
    expect(chart.get_by_role("button", name="reset zoom")).to_be_visible()
    expect(chart).not_to_have_attribute("data-points", "900")  # only the window, re-fetched
    page.get_by_role("checkbox", name="log scale").check()
    expect(page).to_have_url(re.compile("log=1"))
    assert canvas_ink(page, "figure.chart[data-metric=loss] .chart-box") > 500
    browser[1].expect_clean()


def test_select_rows_and_compare_shows_the_params_diff(
    world: World, page: Page, browser: tuple[BrowserContext, Problems]
) -> None:
    page.goto(f"{world.url}/e/{world.experiment_id}")
    for name in ("trial-0", "trial-1"):
        page.get_by_role("checkbox", name=f"select {name}").check()
    expect(page.get_by_text("2 selected")).to_be_visible()
    page.get_by_role("link", name="Compare").last.click()
    expect(page).to_have_url(re.compile(r"/compare\?runs="))
    diff = page.locator("table.diff-table")
    expect(diff.locator("tr[data-param=lr]")).to_have_class(re.compile("differs"))
    expect(diff.locator("tr[data-param=optimizer]")).to_have_class(re.compile("differs"))
    expect(diff.locator("tr[data-param=batch]")).not_to_have_class(re.compile("differs"))
    expect(diff.locator("tr[data-param=lr]")).to_contain_text("0.1")
    expect(page.locator("figure.chart[data-metric=loss]")).to_have_attribute("data-drawn", "1")
    screenshot(page, "compare")
    browser[1].expect_clean()


def test_sweep_views_and_registry(
    world: World, page: Page, browser: tuple[BrowserContext, Problems]
) -> None:
    page.goto(f"{world.url}/e/{world.experiment_id}/sweep?metric=loss&param=lr")
    expect(page.get_by_role("heading", name="Parallel coordinates")).to_be_visible()
    assert canvas_ink(page, "canvas.parallel") > 500
    expect(page.locator("canvas.parallel")).to_have_text(re.compile("optimizer: adam, sgd"))
    expect(page.locator(".sweep .chart-box canvas")).to_have_count(2)
    screenshot(page, "sweep")
    page.get_by_role("link", name="Models").click()
    page.get_by_role("link", name="digits").click()
    version = page.locator("section.version")
    expect(version).to_contain_text("Production")
    expect(version).to_contain_text("@champion")
    version.get_by_role("link", name="trial-1").click()
    expect(page.get_by_role("heading", name=re.compile("trial-1"))).to_be_visible()
    browser[1].expect_clean()


def test_run_tags_notes_artifacts_and_logs(
    world: World, page: Page, browser: tuple[BrowserContext, Problems]
) -> None:
    page.goto(f"{world.url}/r/{world.trials['trial-1']}")
    page.get_by_role("textbox", name="tag key").fill("reviewed")
    page.get_by_role("textbox", name="tag value").fill("yes")
    page.get_by_role("button", name="Add tag").click()
    expect(page.locator(".tags")).to_contain_text("reviewed=yes")
    page.get_by_role("textbox", name="notes").fill("the learning rate that worked")
    page.get_by_role("button", name="Save notes").click()
    expect(page.get_by_role("button", name="Save notes")).to_be_disabled()
    page.reload()  # the edits are events in the log, read back from the projections
    expect(page.locator(".tags")).to_contain_text("reviewed=yes")
    expect(page.get_by_role("textbox", name="notes")).to_have_value("the learning rate that worked")
    page.get_by_role("link", name="Artifacts").click()
    page.get_by_role("button", name="preview").click()
    expect(page.locator("figure.preview")).to_contain_text("best trial so far")
    page.get_by_role("link", name="History").click()
    expect(page.locator("table.history")).to_contain_text("notes set")
    browser[1].expect_clean()


def test_running_status_changes_live(
    world: World, page: Page, browser: tuple[BrowserContext, Problems]
) -> None:
    page.goto(f"{world.url}/e/{world.experiment_id}")
    row = page.locator(".grid-row", has=page.get_by_role("link", name="live-trial"))
    expect(row).to_contain_text("RUNNING")
    world.live.end()
    world.client.flush()
    expect(row).to_contain_text("SUCCEEDED", timeout=20_000)  # polled by the page
    browser[1].expect_clean()


def test_unknown_page_and_dark_mode(
    world: World, page: Page, browser: tuple[BrowserContext, Problems]
) -> None:
    page.emulate_media(color_scheme="dark")
    page.goto(f"{world.url}/e/{world.experiment_id}")
    expect(page.get_by_role("grid", name="runs")).to_be_visible()
    background = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert background == "rgb(21, 23, 28)"
    screenshot(page, "runs-dark")
    page.goto(f"{world.url}/e/{'0' * 32}")
    expect(page.get_by_role("alert")).to_contain_text("Not found")
    page.goto(f"{world.url}/nowhere/at/all")
    expect(page.locator("body")).to_contain_text("NOT_FOUND")  # not a page URL: the API 404
    browser[1].expect_clean(404)


def test_time_travel_shows_the_past_and_the_api_agrees(
    world: World, page: Page, browser: tuple[BrowserContext, Problems]
) -> None:
    travel, before = world.travel, world.before
    page.goto(f"{world.url}/e/{travel.experiment_id}")
    row = page.locator(".grid-row", has=page.get_by_role("link", name="travel"))
    expect(row).to_contain_text("stage=new")
    page.get_by_role("button", name="as of…").click()  # the control, by keyboard and mouse
    page.get_by_role("combobox", name="as of kind").select_option("offset")
    page.get_by_role("textbox", name="as of offset").fill(str(before))
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(rf"as_of={before}$"))
    expect(page.get_by_role("status")).to_contain_text(f"as of log offset {before}")
    expect(row).to_contain_text("stage=old")
    row.get_by_role("link", name="travel").click()  # the bound goes along
    expect(page).to_have_url(re.compile(rf"/r/{travel.id}\?as_of={before}$"))
    expect(page.locator(".tags")).to_contain_text("stage=old")
    expect(page.get_by_role("button", name="Add tag")).to_have_count(0)  # the past is read-only
    loss = page.locator("table.metrics").get_by_role("row", name=re.compile("^loss"))
    expect(loss).to_have_count(1)  # no validation group yet
    expect(loss.locator("td").nth(5)).to_have_text("50")  # points
    page.get_by_role("link", name="Charts").click()
    chart = page.locator("figure.chart[data-metric=loss]")
    expect(chart).to_have_attribute("data-drawn", "1")
    expect(chart).to_have_attribute("data-points", "50")
    screenshot(page, "as-of")
    api = f"{world.url}/api/v1/iterations/{travel.id}"
    assert httpx.get(api, params={"as_of": before}).json()["tags"] == {"stage": "old"}
    history = httpx.get(f"{api}/metric-history", params={"key": "loss", "as_of": before})
    assert len(history.json()["items"]) == 50
    page.get_by_role("link", name="Back to now").click()
    expect(page).to_have_url(re.compile(rf"/r/{travel.id}/charts$"))
    expect(chart).to_have_attribute("data-groups", ",val")  # train and val: two lines
    expect(chart).to_have_attribute("data-lines", "2")
    expect(chart).to_have_attribute("data-points", str(80 + 16))
    assert canvas_ink(page, "figure.chart[data-metric=loss] .chart-box") > 500
    page.get_by_role("link", name="History").click()
    tagged = page.locator("table.history tr", has_text="tags set")
    tagged.get_by_role("link", name="as of this event").click()
    expect(page).to_have_url(re.compile(r"as_of=\d+$"))
    expect(page.locator(".tags")).to_contain_text("stage=new")
    points = page.locator("table.metrics").get_by_role("row", name=re.compile("^loss")).first
    expect(points.locator("td").nth(5)).to_have_text("50")
    browser[1].expect_clean()


def test_compare_best_follows_each_metrics_goal(
    world: World, page: Page, browser: tuple[BrowserContext, Problems]
) -> None:
    runs = ",".join(world.trials[n] for n in ("trial-0", "trial-2"))
    page.goto(f"{world.url}/e/{world.experiment_id}/compare?runs={runs}")
    loss = page.locator("table.metrics-compare tr[data-metric=loss]")
    acc = page.locator("table.metrics-compare tr[data-metric=acc]")
    # trial-2 (lr 0.001) ends with the lower loss and so the higher acc: best on both rows
    expect(loss.locator("td.best")).to_have_count(1)
    expect(loss.locator("td.num").nth(1)).to_have_class(re.compile("best"))
    expect(acc.locator("td.num").nth(1)).to_have_class(re.compile("best"))
    acc.get_by_role("button", name=re.compile("goal of acc")).click()
    expect(page).to_have_url(re.compile("goals=acc%3Amin"))
    expect(acc.locator("td.num").nth(0)).to_have_class(re.compile("best"))
    browser[1].expect_clean()


def test_column_chooser_beyond_what_it_lists(
    world: World, page: Page, browser: tuple[BrowserContext, Problems]
) -> None:
    page.goto(f"{world.url}/e/{world.wide_experiment}")
    page.get_by_role("button", name="Columns").click()
    chooser = page.get_by_role("dialog", name="columns")
    expect(chooser.get_by_role("status")).to_contain_text("300 of 365 matches listed")
    page.get_by_role("searchbox", name="find a column").fill("m11 max")
    expect(chooser.get_by_role("status")).to_have_text("10 matches")  # m110 ... m119
    page.get_by_role("searchbox", name="find a column").fill("")
    chooser.get_by_role("button", name="hide all 365").click()
    expect(page).to_have_url(re.compile("metrics.m119.max"))  # beyond the 300 listed too
    headers = page.get_by_role("grid", name="runs").get_by_role("columnheader")
    expect(headers).to_have_count(1)  # the name stays
    browser[1].expect_clean()
