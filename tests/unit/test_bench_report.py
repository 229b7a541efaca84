"""docs/benchmarks.md is rendered from a results JSON: the committed ones render whole."""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))

from report import render  # noqa: E402


def test_the_newest_full_run_renders_without_template_leftovers() -> None:
    newest = sorted((ROOT / "bench" / "results").glob("*-full.json"))[-1]
    page = render(json.loads(newest.read_text()))
    assert "{" not in page and "}" not in page
    assert "| a. `log_metric` call, median (µs) |" in page and "## Profiles" in page
