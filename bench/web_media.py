"""The run page's Media tab measured in a real browser (Debian's chromium, Playwright).

One run logged through the SDK into a real `deardiary serve`: `steps` steps of a
256 x 256 image (random pixels: a worst case for PNG), a histogram per step (64 bins of
10,000 values), a Plotly figure of 10,000 points and a Vega-Lite chart of 1,000 points.
Times are `performance.now()` in the page at the first animation frame where the
condition holds, medians of `repeat` loads after a warm-up load (assets cached):

* navigation until the latest image is shown (the media list, then its bytes);
* a step change (the slider's arrow key) until the new image is shown, bytes not cached;
* navigation until a key's histogram bars and its overview of every step are drawn;
* navigation until each figure is drawn, with its library loaded cold (a fresh browser
  profile: plotly.js 1.5 MB, vega + vega-lite 770 KB) and warm (from the cache).

Not asserted anywhere: `python bench/web_media.py [--steps N]` prints them; bench/run.py
keeps them in its results as deardiary.web_media.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from procs import deardiary_serve, free_port, running
from web_workloads import CHROMIUM, FLAGS

# functions, not expressions: the page's CSP refuses to eval a string (no bypass here)
IMAGE_SHOWN = (
    "() => { const i = document.querySelector('.media-items img');"
    " return i && i.complete && i.naturalWidth > 0 && performance.now() }"
)
HISTOGRAM_DRAWN = (
    "() => document.querySelector(\".histogram-box[data-drawn='1']\")"
    " && document.querySelector(\".histogram-overview canvas[data-drawn='1']\")"
    " && performance.now()"
)
FIGURE_DRAWN = (
    "() => document.querySelector(\"figure.media-figure[data-drawn='1']\") && performance.now()"
)
NEXT_IMAGE = (
    "h => { const i = document.querySelector('.media-items img');"
    " return i && i.dataset.hash !== h && i.complete && i.naturalWidth > 0"
    " && performance.now() - window.__stepAsked }"
)


def _log(url: str, spool: Path, steps: int) -> str:
    import numpy as np

    import deardiary as dd

    c = dd.connect(url, spool_dir=spool)
    rng = np.random.default_rng(0)
    with c.start_iteration(project="bench", experiment="media", capture_env=False) as it:
        for step in range(steps):
            image = rng.integers(0, 255, (256, 256, 3), dtype=np.uint8)
            it.log_image("samples", image, step=step, caption=f"step {step}")
            it.log_histogram("weights", rng.normal(step / 50, 1, 10_000), step=step)
        x = np.linspace(0, 1, 10_000)
        line = {"type": "scatter", "x": x.tolist(), "y": np.sin(x * 40).tolist()}
        it.log_figure("plotly", {"data": [line], "layout": {}})
        points = [{"a": i, "b": i % 7} for i in range(1000)]
        it.log_figure(
            "vega",
            {
                "$schema": "https://vega.github.io/schema/vega-lite/v5.json",
                "data": {"values": points},
                "mark": "point",
                "encoding": {
                    "x": {"field": "a", "type": "quantitative"},
                    "y": {"field": "b", "type": "quantitative"},
                },
            },
        )
    c.flush()
    c.close()
    return it.id


def _until(page: Any, condition: str, arg: Any = None) -> float:
    return float(page.wait_for_function(condition, arg=arg, polling="raf").json_value())


def _median(xs: list[float]) -> float:
    return round(sorted(xs)[len(xs) // 2], 1)


def _load(page: Any, url: str, condition: str, repeat: int) -> float:
    page.goto(url)
    _until(page, condition)
    times = []
    for _ in range(repeat):
        page.goto(url)
        times.append(_until(page, condition))
    return _median(times)


def _context(playwright: Any) -> tuple[Any, str]:
    profile = tempfile.mkdtemp(prefix="deardiary-bench-media-")
    context = playwright.chromium.launch_persistent_context(
        profile,
        executable_path=CHROMIUM,
        headless=True,
        args=FLAGS,
        viewport={"width": 1400, "height": 900},
    )
    return context, profile


def media_views(work: Path, steps: int, repeat: int = 3) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    root = Path(tempfile.mkdtemp(prefix="media-", dir=work))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    out: dict[str, Any] = {"steps": steps, "repeat": repeat}
    try:
        with running(
            deardiary_serve(root / "data", port, root / "serve.log"), url, root / "serve.log"
        ):
            run = _log(url, root / "spool", steps)
            page_of = f"{url}/r/{run}/media"
            with sync_playwright() as p:
                context, profile = _context(p)
                try:
                    page = context.new_page()
                    page.set_default_timeout(120_000)
                    out["first_image_ms"] = _load(
                        page, f"{page_of}?key=samples", IMAGE_SHOWN, repeat
                    )
                    page.get_by_role("slider", name="samples step").focus()
                    changes = []
                    for _ in range(min(20, steps - 1)):
                        before = page.eval_on_selector(".media-items img", "i => i.dataset.hash")
                        page.evaluate("window.__stepAsked = performance.now()")
                        page.keyboard.press("ArrowLeft")
                        changes.append(_until(page, NEXT_IMAGE, before))
                    out["step_change_ms"] = _median(changes) if changes else None
                    out["step_change_max_ms"] = round(max(changes), 1) if changes else None
                    out["histograms_drawn_ms"] = _load(
                        page, f"{page_of}?key=weights", HISTOGRAM_DRAWN, repeat
                    )
                    for key in ("plotly", "vega"):
                        out[f"{key}_warm_ms"] = _load(
                            page, f"{page_of}?key={key}", FIGURE_DRAWN, repeat
                        )
                finally:
                    context.close()
                    shutil.rmtree(profile, ignore_errors=True)
                for key in ("plotly", "vega"):  # a fresh profile each: the library not cached
                    context, profile = _context(p)
                    try:
                        page = context.new_page()
                        page.set_default_timeout(120_000)
                        page.goto(f"{page_of}?key={key}")
                        out[f"{key}_cold_ms"] = round(_until(page, FIGURE_DRAWN), 1)
                    finally:
                        context.close()
                        shutil.rmtree(profile, ignore_errors=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        print(json.dumps(media_views(Path(work), args.steps), indent=2))


if __name__ == "__main__":
    main()


def media_section(r: dict[str, Any]) -> list[str]:
    """The Media tab's lines of docs/benchmarks.md (bench/report.py)."""
    m = r.get("deardiary", {}).get("web_media")
    if not m:
        return []
    title = "## The run page's media, in a real browser"
    if "error" in m:
        return [title, "", f"Not measured: {m['error']}", ""]

    def ms(key: str) -> str:
        value = m.get(key)
        return f"{value:,.0f}" if isinstance(value, int | float) else "—"

    return [
        title,
        "",
        f"One run of {m['steps']} steps, each a 256 x 256 image (random pixels) and a histogram,",
        "a Plotly figure of 10,000 points and a Vega-Lite chart of 1,000 points, logged through",
        "the SDK; `performance.now()` in the page, medians of loads after a warm-up",
        "(`bench/web_media.py`).",
        "",
        "| what | ms |",
        "| --- | ---: |",
        f"| navigation to the latest image shown | {ms('first_image_ms')} |",
        f"| a step change (arrow key) to the new image shown, not cached: median, max"
        f" | {ms('step_change_ms')}, {ms('step_change_max_ms')} |",
        f"| navigation to a histogram's bars and its overview of every step drawn"
        f" | {ms('histograms_drawn_ms')} |",
        f"| Plotly figure drawn: plotly.js loaded cold, cached | {ms('plotly_cold_ms')},"
        f" {ms('plotly_warm_ms')} |",
        f"| Vega-Lite figure drawn: vega loaded cold, cached | {ms('vega_cold_ms')},"
        f" {ms('vega_warm_ms')} |",
        "",
    ]
