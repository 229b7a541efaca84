"""The committed web page (services/web/static) is the build of the committed sources."""

from __future__ import annotations

import re
from pathlib import Path

from deardiary.services.web import build_info
from deardiary.services.web.routes import STATIC

ROOT = Path(__file__).resolve().parents[2]


def test_committed_build_matches_the_sources() -> None:
    assert build_info.recorded() == build_info.source_hash(ROOT / "web"), (
        "web/ changed since services/web/static was built: run `make web-build` and commit"
    )


def test_index_names_only_assets_that_exist_and_no_inline_script() -> None:
    index = (STATIC / "index.html").read_text()
    names = re.findall(r'(?:src|href)="/assets/([^"]+)"', index)
    assert names and all((STATIC / "assets" / n).is_file() for n in names)
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", index), "an inline script"
    assert "http://" not in index and "https://" not in index  # nothing from a CDN


def test_source_hash_changes_with_a_source(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.ts").write_text("x")
    (tmp_path / "node_modules").mkdir()
    (tmp_path / "node_modules" / "b.js").write_text("ignored")
    (tmp_path / "src" / "a.test.ts").write_text("ignored")
    before = build_info.source_hash(tmp_path)
    (tmp_path / "node_modules" / "b.js").write_text("still ignored")
    (tmp_path / "src" / "a.test.ts").write_text("still ignored")
    assert build_info.source_hash(tmp_path) == before
    (tmp_path / "src" / "a.ts").write_text("y")
    assert build_info.source_hash(tmp_path) != before
