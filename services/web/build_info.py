"""Whether the committed page (static/) was built from the sources in web/.

`static/build-info.json` records a hash of every source file of the page (web/ without
node_modules and tests, the lockfile included). `make` rebuilds the page when the hash
differs (``python -m deardiary.services.web.build_info --check`` exits 1), then writes
the new hash (``--write``); a unit test fails when a commit changes web/ without the
build.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

from deardiary.services.web.routes import STATIC

INFO = "build-info.json"
SKIPPED_DIRS = {"node_modules", "dist", ".vite"}


def sources(web: Path) -> list[Path]:
    """The files the build reads, in a stable order."""
    out = []
    for path in sorted(web.rglob("*")):
        rel = path.relative_to(web)
        if any(part in SKIPPED_DIRS for part in rel.parts) or not path.is_file():
            continue
        if path.name.endswith((".test.ts", ".test.tsx")):
            continue
        out.append(path)
    return out


def source_hash(web: Path) -> str:
    digest = hashlib.sha256()
    for path in sources(web):
        digest.update(path.relative_to(web).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def recorded(static: Path = STATIC) -> str | None:
    try:
        info = json.loads((static / INFO).read_text())
    except (OSError, ValueError):
        return None
    value = info.get("source_hash") if isinstance(info, dict) else None
    return value if isinstance(value, str) else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--web", type=Path, default=Path("web"), help="the page's sources")
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--check", action="store_true", help="exit 1 when static/ is stale")
    action.add_argument("--write", action="store_true", help="record the sources' hash")
    args = parser.parse_args(argv)
    current = source_hash(args.web)
    if args.check:
        fresh = recorded() == current and (STATIC / "index.html").is_file()
        if not fresh:
            print("the web page's build is stale: rebuilding", file=sys.stderr)
        return 0 if fresh else 1
    (STATIC / INFO).write_text(json.dumps({"source_hash": current}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
