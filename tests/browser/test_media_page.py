"""The run page's Media, Checkpoints and System tabs and a model's runs, in a real browser.

One run logs through the SDK what issue 14 added -- images with captions at five steps,
a Plotly figure and a Vega-Lite figure, a histogram per step, text samples, a small
table, three checkpoints with keep-best-2 retention, system metrics sampled by the SDK's
own sampler -- and a model version made from its best checkpoint is used by a second
run. A person then sees: the image and its caption change with the step slider and the
thumbnails, both figures drawn by their libraries (loaded from our server), bars and an
overview of the histogram, the text and table, the checkpoints best first by their loss
(either goal) with the discarded one marked, a file downloaded, the system metrics in
sections of their own (not among the training charts), the model's producing and using
runs linked, and the past (as_of) without the later images. No script errors anywhere.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest

import deardiary as dd
from tests.browser.browser import Problems, canvas_ink, screenshot
from tests.e2e.serve_process import serve
from tests.ports import free_port

from playwright.sync_api import BrowserContext, Page, expect  # isort: skip

pytestmark = pytest.mark.slow

COLORS = [(220, 40, 40), (40, 160, 60), (40, 80, 220), (230, 180, 20), (150, 40, 200)]
PLOTLY = {
    "data": [{"type": "scatter", "mode": "lines", "x": [0, 0.5, 1], "y": [1, 0.8, 0.2]}],
    "layout": {"title": {"text": "precision-recall"}},
}
VEGA_LITE = {
    "$schema": "https://vega.github.io/schema/vega-lite/v5.json",
    "data": {"values": [{"label": "cat", "n": 3}, {"label": "dog", "n": 5}]},
    "mark": "bar",
    "encoding": {
        "x": {"field": "label", "type": "nominal"},
        "y": {"field": "n", "type": "quantitative"},
    },
}
CLI = [sys.executable, "-m", "deardiary.services.cli"]
REMOTE = {  # data from elsewhere: the page refuses to load it, and shows the spec
    "$schema": "https://vega.github.io/schema/vega-lite/v5.json",
    "data": {"url": "https://example.com/cars.json"},
    "mark": "point",
}
LOSSES = {1: 0.5, 2: 0.2, 3: 0.4}  # checkpoint step -> loss; keep-best-2 drops step 1


@dataclass
class World:
    url: str
    run: str
    user: str  # a run that used the model's version
    model_id: str
    before: int  # offset after the first three images
    experiment: str
    before_use: int  # offset before a run used the model's version


def _log(c: dd.Client, root: Path) -> World:
    with c.start_iteration(
        project="vision",
        experiment="cnn",
        name="media-run",
        capture_env=False,
        system_metrics=True,
        system_metrics_interval_s=0.05,
    ) as it:
        for step in range(5):
            image = np.zeros((16, 16, 3), dtype=np.uint8)
            image[:, :] = COLORS[step]
            it.log_image("samples", image, step=step, caption=f"epoch {step}")
            it.log_metric("loss", 1 / (step + 1), step=step)
            rng = np.random.default_rng(step)
            it.log_histogram("weights", rng.normal(step, 1.0, 2000), step=step, bins=20)
            if step == 2:
                before = c.flush()
        it.log_figure("pr-curve", PLOTLY, step=0, caption="PR at the end")
        it.log_figure("classes", VEGA_LITE, step=0)
        it.log_figure("remote", REMOTE, step=0)
        it.log_text("generated", "the cat sat", step=0)
        it.log_text("generated", "the cat sat on the mat", step=1)
        it.log_table("predictions", [{"id": 1, "label": "cat", "p": 0.9}], step=0)
        best = ""
        for step, loss in LOSSES.items():
            folder = root / f"ckpt-{step}"
            folder.mkdir()
            (folder / "weights.bin").write_bytes(bytes([step]) * 100 * step)
            ckpt = it.log_checkpoint(
                folder,
                step=step,
                metrics={"loss": loss, "acc": 1 - loss},
                keep_best=2,
                order_by="loss",
                goal="min",
            )
            best = ckpt if loss == min(LOSSES.values()) else best
        _wait_for_system_metrics(c, it.id)
    c.flush()
    version = c.register_checkpoint(best, "cnn-model")
    before_use = c.flush()
    with c.start_iteration(
        project="vision", experiment="eval", name="eval-run", capture_env=False
    ) as user:
        user.use_model(version, purpose="evaluation")
    c.flush()
    model_id = str(
        c.sql("SELECT model_id FROM models WHERE name = 'cnn-model'").to_pylist()[0]["model_id"]
    )
    return World("", it.id, user.id, model_id, before, it.experiment_id, before_use)


def _wait_for_system_metrics(c: dd.Client, iteration_id: str) -> None:
    """Until the SDK's sampler has logged two CPU samples (a condition, not a time)."""
    query = (
        "SELECT count(*) AS n FROM metrics WHERE \"group\" = 'system' AND key = 'cpu.percent'"
        f" AND iteration_id = '{iteration_id}'"
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        c.flush()
        if int(c.sql(query).to_pylist()[0]["n"]) >= 2:
            return
        time.sleep(0.05)
    raise AssertionError("the system-metrics sampler logged nothing")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("media")
    with serve(root / "data", free_port()) as url:
        c = dd.connect(url, spool_dir=root / "spool")
        try:
            w = _log(c, root)
            w.url = url
            yield w
        finally:
            c.close()


def shown_color(page: Page, selector: str) -> tuple[int, int, int]:
    """The color of the middle pixel of the (loaded) image under `selector`."""
    page.wait_for_function(
        "s => { const i = document.querySelector(s); return i?.complete && i.naturalWidth > 0 }",
        arg=selector,
    )
    rgb = page.eval_on_selector(
        selector,
        """img => {
            const c = document.createElement('canvas');
            c.width = img.naturalWidth; c.height = img.naturalHeight;
            const g = c.getContext('2d');
            g.drawImage(img, 0, 0);
            const d = g.getImageData(c.width >> 1, c.height >> 1, 1, 1).data;
            return [d[0], d[1], d[2]];
        }""",
    )
    return (int(rgb[0]), int(rgb[1]), int(rgb[2]))


def test_images_follow_the_step_slider_and_thumbnails(
    world: World, page: Page, browser: tuple[BrowserContext, Problems]
) -> None:
    page.goto(f"{world.url}/r/{world.run}")
    page.get_by_role("link", name="Media").click()
    expect(page).to_have_url(re.compile(rf"/r/{world.run}/media$"))
    samples = page.get_by_role("region", name="media samples")
    caption = samples.locator(".media-items figcaption")
    expect(caption).to_have_text("epoch 4")  # the latest step first
    assert shown_color(page, ".media-key[data-key=samples] .media-items img") == COLORS[4]
    slider = samples.get_by_role("slider", name="samples step")
    slider.focus()
    page.keyboard.press("Home")
    expect(caption).to_have_text("epoch 0")
    expect(samples.get_by_role("status", name="samples shown step")).to_have_text("0")
    expect(page).to_have_url(re.compile(r"/media\?step=0$"))  # a link to what is shown
    assert shown_color(page, ".media-key[data-key=samples] .media-items img") == COLORS[0]
    page.keyboard.press("ArrowRight")
    expect(caption).to_have_text("epoch 1")
    samples.get_by_role("button", name="step 3").click()
    expect(caption).to_have_text("epoch 3")
    assert shown_color(page, ".media-key[data-key=samples] .media-items img") == COLORS[3]
    expect(samples.get_by_role("button", name="step 3")).to_have_attribute("aria-current", "true")
    thumb = samples.get_by_role("button", name="step 0").locator("img").bounding_box()
    assert thumb is not None and thumb["width"] == thumb["height"] == 56
    page.goto(f"{world.url}/r/{world.run}/media?step=2")  # every key at (or before) step 2
    expect(caption).to_have_text("epoch 2")
    weights = page.locator(".media-key[data-key=weights]")  # the last key, far below
    below = weights.bounding_box()
    assert below is not None and below["y"] > 900 + 300  # the viewport and the page's margin
    expect(weights.locator(".histogram-box")).to_have_count(0)  # not drawn until scrolled to
    weights.scroll_into_view_if_needed()
    expect(weights.locator(".histogram-box")).to_have_attribute("data-step", "2")
    generated = page.get_by_role("region", name="media generated")
    generated.scroll_into_view_if_needed()
    expect(generated.locator("pre")).to_have_text("the cat sat on the mat")  # logged at step 1
    browser[1].expect_clean()


def test_figures_text_and_tables(
    world: World, page: Page, browser: tuple[BrowserContext, Problems]
) -> None:
    page.goto(f"{world.url}/r/{world.run}/media")
    plotly = page.locator(".media-key[data-key=pr-curve] figure.media-figure")
    expect(plotly).to_have_attribute("data-drawn", "1")
    expect(plotly.locator(".js-plotly-plot .main-svg").first).to_be_visible()
    expect(plotly).to_contain_text("precision-recall")  # the title, drawn by plotly
    expect(plotly).to_contain_text("PR at the end")
    vega = page.locator(".media-key[data-key=classes] figure.media-figure")
    expect(vega).to_have_attribute("data-drawn", "1")
    assert canvas_ink(page, ".media-key[data-key=classes] .figure-box") > 500
    screenshot(page, "media")
    remote = page.get_by_role("region", name="media remote").get_by_role("alert")
    expect(remote).to_contain_text("could not be drawn")
    expect(remote).to_contain_text("must be inline, not loaded from https://example.com")
    with page.expect_download() as download:
        page.get_by_role("region", name="media remote").get_by_role("button").click()
    assert json.loads(Path(download.value.path()).read_text()) == REMOTE
    text = page.get_by_role("region", name="media generated")
    text.scroll_into_view_if_needed()
    expect(text.locator("pre")).to_have_text("the cat sat on the mat")
    text.get_by_role("slider", name="generated step").focus()
    page.keyboard.press("Home")
    expect(text.locator("pre")).to_have_text("the cat sat")
    page.get_by_role("region", name="media predictions").scroll_into_view_if_needed()
    table = page.get_by_role("region", name="media predictions").locator("table")
    expect(table.locator("thead")).to_contain_text("label")
    expect(table.locator("tbody tr")).to_have_text(re.compile(r"1\s*cat\s*0\.9"))
    page.get_by_role("combobox", name="media key").select_option("pr-curve")
    expect(page).to_have_url(re.compile(r"key=pr-curve"))
    expect(page.locator(".media-key")).to_have_count(1)
    browser[1].expect_clean()


def test_histogram_bars_per_step_and_overview(
    world: World, page: Page, browser: tuple[BrowserContext, Problems]
) -> None:
    page.goto(f"{world.url}/r/{world.run}/media?key=weights")
    weights = page.get_by_role("region", name="histogram weights")
    bars = weights.locator(".histogram-box")
    expect(bars).to_have_attribute("data-drawn", "1")
    expect(bars).to_have_attribute("data-step", "4")
    assert canvas_ink(page, ".media-histogram .histogram-box") > 500
    expect(weights).to_contain_text("2000 values")
    weights.get_by_role("slider", name="weights step").focus()
    page.keyboard.press("Home")
    expect(bars).to_have_attribute("data-step", "0")
    expect(bars).to_have_attribute("data-drawn", "1")
    overview = weights.locator(".histogram-overview canvas")
    expect(overview).to_have_attribute("data-drawn", "1")
    assert canvas_ink(page, ".histogram-overview canvas") > 1000
    screenshot(page, "histogram")
    browser[1].expect_clean()


def test_a_long_run_is_shown_from_its_first_step_to_its_last(
    world: World, page: Page, browser: tuple[BrowserContext, Problems], tmp_path: Path
) -> None:
    c = dd.connect(world.url, spool_dir=tmp_path)
    with c.start_iteration(project="vision", experiment="long", capture_env=False) as it:
        for step in range(600):
            it.log_histogram("grads", histogram=([0.0, 1.0, 2.0], [1.0, step]), step=step)
            it.log_text("notes", f"note {step}", step=step)
    c.flush()
    c.close()
    page.goto(f"{world.url}/r/{it.id}/media?key=grads")
    grads = page.get_by_role("region", name="histogram grads")
    expect(grads).to_contain_text("500 of its 600 steps, spread evenly from the first to the last")
    expect(grads.locator(".histogram-box")).to_have_attribute("data-step", "599")
    grads.get_by_role("slider", name="grads step").focus()
    page.keyboard.press("Home")
    expect(grads.locator(".histogram-box")).to_have_attribute("data-step", "0")
    expect(grads).to_contain_text("(1 of 500)")
    page.goto(f"{world.url}/r/{it.id}/media?key=notes")
    notes = page.get_by_role("region", name="media notes")
    expect(notes).to_contain_text("500 of its 600 steps, spread evenly from the first to the last")
    expect(notes).to_contain_text("note 599")
    browser[1].expect_clean()


def test_checkpoints_best_first_by_a_metric_with_its_goal(
    world: World, page: Page, browser: tuple[BrowserContext, Problems]
) -> None:
    page.goto(f"{world.url}/r/{world.run}/checkpoints")
    table = page.get_by_role("table", name="checkpoints")
    steps = table.locator("tbody tr td:first-child")
    expect(steps).to_have_text(["2", "3"])  # by step; step 1 was discarded by keep-best-2
    page.get_by_role("combobox", name="order checkpoints by").select_option("loss")
    expect(page).to_have_url(re.compile(r"order_by=loss"))
    expect(steps).to_have_text(["2", "3"])  # 0.2, 0.4: lower is better
    expect(table.locator("tbody tr").first).to_contain_text("best")
    expect(table.locator("tbody tr").first.get_by_role("link")).to_have_text("version 1")
    page.get_by_role("combobox", name="goal").select_option("max")
    expect(steps).to_have_text(["3", "2"])
    table.get_by_role("button", name=re.compile("^acc")).click()  # acc's goal: max
    expect(page).to_have_url(re.compile(r"order_by=acc"))
    expect(steps).to_have_text(["2", "3"])  # 0.8, 0.6
    page.get_by_role("checkbox", name="show discarded").check()
    expect(steps).to_have_text(["2", "3", "1"])
    discarded = table.locator("tr.discarded")
    expect(discarded).to_have_count(1)
    expect(discarded).to_contain_text("discarded (keep 2 best by loss)")
    screenshot(page, "checkpoints")
    with page.expect_download() as download:
        table.locator("tbody tr").first.get_by_role("button", name="download weights.bin").click()
    path = download.value.path()
    assert download.value.suggested_filename == "weights.bin"
    assert Path(path).read_bytes() == bytes([2]) * 200
    browser[1].expect_clean()


def test_system_metrics_have_their_own_section(
    world: World, page: Page, browser: tuple[BrowserContext, Problems]
) -> None:
    page.goto(f"{world.url}/r/{world.run}")
    summaries = page.locator("table.metrics")
    expect(summaries.get_by_role("row", name=re.compile("^loss"))).to_be_visible()
    expect(summaries).not_to_contain_text("cpu.percent")  # counted, in their own tab
    expect(page.get_by_text(re.compile(r"and \d+ system metrics, in System"))).to_be_visible()
    page.goto(f"{world.url}/r/{world.run}/charts")
    expect(page.locator("figure.chart[data-metric=loss]")).to_have_attribute("data-drawn", "1")
    expect(page.locator("figure.chart[data-metric='cpu.percent']")).to_have_count(0)
    page.get_by_role("navigation", name="views").get_by_role("link", name="System").click()
    expect(page).to_have_url(re.compile(rf"/r/{world.run}/system$"))
    for section in ("CPU", "Memory", "Disk and network"):
        expect(page.get_by_role("heading", name=section)).to_be_visible()
    cpu = page.get_by_role("region", name="system CPU").locator(
        "figure.chart[data-metric='cpu.percent']"
    )
    expect(cpu).to_have_attribute("data-drawn", "1")
    expect(cpu).to_have_attribute("data-groups", "system")
    assert int(cpu.get_attribute("data-points") or 0) >= 2
    expect(page.get_by_role("combobox", name="x axis")).to_have_value("wall")
    screenshot(page, "system")
    page.goto(f"{world.url}/e/{world.experiment}/charts?runs={world.run}")
    training = page.locator("section > .chart-grid").first
    expect(training.locator("figure.chart[data-metric=loss]")).to_have_attribute("data-drawn", "1")
    expect(training.locator("figure.chart[data-metric='cpu.percent']")).to_have_count(0)
    system = page.get_by_role("region", name="system metrics")
    expect(system.locator("figure.chart[data-metric='cpu.percent']")).to_have_attribute(
        "data-drawn", "1"
    )
    page.goto(f"{world.url}/e/{world.experiment}/compare?runs={world.run}")
    overlays = page.locator(".compare .chart-grid")
    expect(overlays.locator("figure.chart[data-metric=loss]")).to_have_attribute("data-drawn", "1")
    expect(overlays.locator("figure.chart[data-metric='cpu.percent']")).to_have_count(0)
    browser[1].expect_clean()


def test_model_page_lists_the_runs_that_produced_and_used_it(
    world: World, page: Page, browser: tuple[BrowserContext, Problems]
) -> None:
    page.goto(f"{world.url}/models/{world.model_id}")
    runs = page.get_by_role("table", name="model runs")
    expect(runs.locator("tr[data-role=produced]")).to_contain_text("media-run")
    expect(runs.locator("tr[data-role=produced]")).to_contain_text("v1")
    expect(runs.locator("tr[data-role=used]")).to_contain_text("eval-run")
    api = f"{world.url}/api/v1/models/{world.model_id}/iterations"
    then = httpx.get(api, params={"as_of": world.before_use}).json()["items"]
    assert [r["role"] for r in then] == ["produced"]  # the use came later
    runs.get_by_role("link", name="eval-run").click()
    expect(page).to_have_url(re.compile(rf"/r/{world.user}$"))
    expect(page.get_by_role("heading", name=re.compile("eval-run"))).to_be_visible()
    browser[1].expect_clean()


def test_media_as_of_the_past(
    world: World, page: Page, browser: tuple[BrowserContext, Problems]
) -> None:
    media = httpx.get(
        f"{world.url}/api/v1/iterations/{world.run}/media", params={"as_of": world.before}
    ).json()["items"]
    assert [m["caption"] for m in media] == ["epoch 0", "epoch 1", "epoch 2"]  # the API agrees
    page.goto(f"{world.url}/r/{world.run}/media?as_of={world.before}")
    samples = page.get_by_role("region", name="media samples")
    expect(samples.locator(".media-items figcaption")).to_have_text("epoch 2")
    expect(samples).to_contain_text("(3 of 3)")
    expect(page.locator(".media-key[data-key=pr-curve]")).to_have_count(0)  # logged later
    page.get_by_role("link", name="Checkpoints").click()
    expect(page).to_have_url(re.compile(rf"/checkpoints\?as_of={world.before}$"))
    expect(page.get_by_text("No checkpoints kept.")).to_be_visible()
    browser[1].expect_clean()


def test_signed_in_user_sees_granted_media_and_no_other(
    tmp_path: Path, browser: tuple[BrowserContext, Problems]
) -> None:
    """Under --auth the images come with the sign-in token; another project's media,
    checkpoints and bytes are refused as such (a real `deardiary serve --auth`)."""
    data = tmp_path / "data"
    made = subprocess.run(
        [*CLI, "users", "create", "--data", str(data), "root", "--admin"],
        input="root-password-123\n",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert made.returncode == 0, made.stderr
    with serve(data, free_port(), "--auth") as url:
        admin = dd.connect(url, username="root", password="root-password-123", spool_dir=tmp_path)
        runs = {}
        for project, color in (("open", COLORS[1]), ("secret", COLORS[0])):
            with admin.start_iteration(project=project, experiment="e", capture_env=False) as it:
                it.log_image("samples", np.full((8, 8, 3), color, dtype=np.uint8), caption=project)
            runs[project] = it.id
        admin.create_user("ann", "ann-password-123")
        admin.grant("ann", "open", read=True)
        admin.close()
        page = browser[0].new_page()
        page.set_default_timeout(15_000)
        try:
            page.goto(f"{url}/login?next=/r/{runs['open']}/media")
            page.get_by_label("username").fill("ann")
            page.get_by_label("password").fill("ann-password-123")
            page.get_by_role("button", name="Sign in").click()
            expect(page.locator(".media-items figcaption")).to_have_text("open")
            assert shown_color(page, ".media-items img") == COLORS[1]
            for tab in ("media", "checkpoints"):
                page.goto(f"{url}/r/{runs['secret']}/{tab}")
                expect(page.get_by_role("alert").first).to_contain_text("No access")
                expect(page.locator(".media-items img")).to_have_count(0)
            browser[1].expect_clean(403)
        finally:
            page.evaluate("sessionStorage.clear()")
            page.close()
