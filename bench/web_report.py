"""The web page's section of docs/benchmarks.md (bench/web_workloads.py measures it), with
MLflow's UI on the same data beside it where it was measured."""

from __future__ import annotations

from typing import Any


def _ok(value: float | None, target: float) -> str:
    if value is None:
        return ""
    return "✅" if value <= target else "❌"


def _ms(value: Any) -> str:
    return f"{value:,.0f}" if isinstance(value, int | float) else "—"


def _calls(calls: list[list[Any]] | None) -> str:
    """API calls of one load as `route start→end`, in the order they started."""
    if not calls:
        return "—"
    shown = [f"`{path.removeprefix('/api/v1')}` {start}→{end}" for path, start, end in calls]
    return ", ".join(shown)


def _first_call(calls: list[list[Any]] | None) -> str:
    return f"at {min(c[1] for c in calls):,} ms" if calls else "not seen"


def web_section(r: dict[str, Any]) -> list[str]:
    web = r.get("deardiary", {}).get("web")
    if not web:
        return []
    if "error" in web:
        return ["## The web page, in a real browser", "", f"Not measured: {web['error']}", ""]
    ml = web.get("mlflow") or {}
    ml_ok = bool(ml) and "error" not in ml
    ml_chart_note = ""
    if ml_ok and ml.get("chart_steps") != web["chart_steps"]:
        ml_chart_note = f" ({ml['chart_steps']:,} steps)"
    rows = [
        (
            f"runs table of {web['table_runs']:,} iterations x {web['table_columns']} columns:"
            " navigation to rows with values (ms)",
            web["table_interactive_ms"],
            _ok(web["table_interactive_ms"], 1000),
            "≤ 1,000",
            _ms(ml.get("table_rows_ms")) + " ¹" if ml_ok else "",
        ),
        (
            "jump to the middle of that table (rows and columns), until drawn (ms)",
            web["table_scroll_ms"],
            "",
            "",
            "— ²" if ml_ok else "",
        ),
        (
            f"chart of {web['chart_runs']} runs x {web['chart_steps']:,} steps:"
            " navigation to drawn (ms)",
            web["chart_drawn_ms"],
            _ok(web["chart_drawn_ms"], 500),
            "≤ 500",
            _ms(ml.get("chart_drawn_ms")) + ml_chart_note + " ³" if ml_ok else "",
        ),
        (
            f"experiment with {web['keys']:,} metric keys: navigation to its first 4 charts (ms)",
            web["keys_first_charts_ms"],
            "",
            "",
            "",
        ),
        (
            "  ... long tasks meanwhile (count / longest ms / blocking ms beyond 50 ms each)",
            f"{web['keys_long_tasks']} / {web['keys_longest_task_ms']} / {web['keys_blocking_ms']}",
            "",
            "no freeze",
            "",
        ),
    ]
    load = ""
    if "load_before" in web:
        load = (
            f" The machine's 1-minute load average was {web['load_before']:.1f} before and"
            f" {web['load_after']:.1f} after DearDiary's views (2 cores)."
        )
    lines = [
        "## The web page, in a real browser",
        "",
        "Headless Chromium (Debian's package) driven by Playwright against `deardiary serve`;"
        " each time is `performance.now()` in the page at the first animation frame where"
        " the view's condition holds (navigation start = 0: page, script and every API call"
        " included), the median of 3 loads after a warm-up load (`bench/web_workloads.py`)."
        f" Of the {web['keys']:,}-key experiment's charts, {web.get('keys_charts_in_dom')} were"
        f" placed and {web.get('keys_charts_drawn')} drawn: only charts in view fetch and draw."
        + load,
        "",
    ]
    if ml_ok:
        lines += [
            "| measure | DearDiary | | target | MLflow " + ml.get("version", "") + " UI |",
            "| --- | ---: | --- | --- | ---: |",
        ]
        for name, value, ok, target, theirs in rows:
            lines.append(f"| {name} | {value} | {ok} | {target} | {theirs} |")
    else:
        lines += ["| measure | DearDiary | | target |", "| --- | ---: | --- | --- |"]
        for name, value, ok, target, _ in rows:
            lines.append(f"| {name} | {value} | {ok} | {target} |")
    lines.append("")
    if ml_ok:
        lines += [
            "MLflow's UI on the same data, same browser, same machine: the same"
            f" {ml['table_runs']:,} runs with their params and metrics and the same 10"
            f" `loss` series{ml_chart_note}, written into MLflow's own SQLite store (its"
            " schema, its first run of each experiment through its store API, the rest in"
            " bulk into its tables:"
            f" {ml.get('load_s', 0):,.0f} s; `bench/mlflow_web_load.py`), served by"
            " `mlflow server` (job execution off).",
            f"¹ Its experiment's runs table (Model training) until more than 10 rows show"
            f" their run names: its first page is 100 runs ({ml.get('table_rows_shown')} rows"
            " placed) and it shows no param or metric column until chosen.",
            "² MLflow's table pages 100 runs at a time (a 'load more' button): no jump.",
            "³ Its runs page in chart mode until Plotly has drawn the 10 `loss` lines (MLflow"
            " samples each series on the server)"
            + (
                f", on series of {ml['chart_steps']:,} steps: its sampled read (window"
                " functions in SQLite over each series' points) took 273 s for 10 x 1,000,000"
                " steps in one load under load 8, so it is measured on shorter ones."
                if ml_chart_note
                else "."
            ),
            "",
        ]
    elif ml:
        lines += [f"MLflow's UI: not measured ({ml['error']}).", ""]
    lines += [
        "Where the time went (the median load; API calls as `route start→end` ms from"
        " navigation, so the server's share and the page's share can be told apart):",
        "",
        f"* DearDiary runs table: first API call {_first_call(web.get('table_api'))};"
        f" {_calls(web.get('table_api'))}",
        f"* DearDiary chart: first API call {_first_call(web.get('chart_api'))};"
        f" {_calls(web.get('chart_api'))}",
    ]
    if ml_ok:
        lines += [
            f"* MLflow runs table: first API call {_first_call(ml.get('table_api'))};"
            f" {_calls(ml.get('table_api'))}",
            f"* MLflow chart: first API call {_first_call(ml.get('chart_api'))};"
            f" {_calls(ml.get('chart_api'))}",
        ]
    lines.append("")
    return lines
