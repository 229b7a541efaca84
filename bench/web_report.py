"""The web page's section of docs/benchmarks.md (bench/web_workloads.py measures it)."""

from __future__ import annotations

from typing import Any


def _ok(value: float | None, target: float) -> str:
    if value is None:
        return ""
    return "✅" if value <= target else "❌"


def web_section(r: dict[str, Any]) -> list[str]:
    web = r.get("deardiary", {}).get("web")
    if not web:
        return []
    if "error" in web:
        return ["## The web page, in a real browser", "", f"Not measured: {web['error']}", ""]
    rows = [
        (
            f"runs table of {web['table_runs']:,} iterations x {web['table_columns']} columns:"
            " navigation to rows with values (ms)",
            web["table_interactive_ms"],
            _ok(web["table_interactive_ms"], 1000),
            "≤ 1,000",
        ),
        (
            "jump to the middle of that table (rows and columns), until drawn (ms)",
            web["table_scroll_ms"],
            "",
            "",
        ),
        (
            f"chart of {web['chart_runs']} runs x {web['chart_steps']:,} steps:"
            " navigation to drawn (ms)",
            web["chart_drawn_ms"],
            _ok(web["chart_drawn_ms"], 500),
            "≤ 500",
        ),
        (
            f"experiment with {web['keys']:,} metric keys: navigation to its first 4 charts (ms)",
            web["keys_first_charts_ms"],
            "",
            "",
        ),
        (
            "  ... long tasks meanwhile (count / longest ms / blocking ms beyond 50 ms each)",
            f"{web['keys_long_tasks']} / {web['keys_longest_task_ms']} / {web['keys_blocking_ms']}",
            "",
            "no freeze",
        ),
    ]
    lines = [
        "## The web page, in a real browser",
        "",
        "Headless Chromium (Debian's package) driven by Playwright against `deardiary serve`;"
        " times are `performance.now()` in the page, from the start of navigation (page,"
        " script and every API call included), medians of 3 loads (`bench/web_workloads.py`).",
        f" Of the {web['keys']:,}-key experiment's charts, {web.get('keys_charts_in_dom')} were"
        f" placed and {web.get('keys_charts_drawn')} drawn: only charts in view fetch and draw.",
        "",
        "| measure | DearDiary | | target |",
        "| --- | ---: | --- | --- |",
    ]
    for name, value, ok, target in rows:
        lines.append(f"| {name} | {value} | {ok} | {target} |")
    ml = web.get("mlflow")
    if ml:
        lines += ["", f"MLflow's UI on the same machine: {ml}"]
    lines.append("")
    return lines
