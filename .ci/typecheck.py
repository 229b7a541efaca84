"""Run mypy over the whole tree as the installed `deardiary` package sees it.

The source folders are mapped into `deardiary` by pyproject (client/ is the root,
schemas/ projections/ services/ its subpackages). mypy cannot follow setuptools'
editable import hook, so this builds a throwaway tree of symlinks with the installed
layout and checks that, plus tests/ and bench/.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    mapping: dict[str, str] = config["tool"]["setuptools"]["package-dir"]
    with tempfile.TemporaryDirectory(prefix="deardiary-typecheck-") as tmp:
        view = Path(tmp)
        root_pkg = view / "deardiary"
        root_pkg.mkdir()
        for item in (ROOT / mapping["deardiary"]).iterdir():
            os.symlink(item, root_pkg / item.name)
        for name, folder in mapping.items():
            if name != "deardiary":
                os.symlink(ROOT / folder, view / name.replace(".", "/"))
        env = dict(os.environ, MYPYPATH=str(view))
        targets = [str(root_pkg)]
        for extra in ("tests", "bench"):
            if (ROOT / extra).is_dir() and any((ROOT / extra).rglob("*.py")):
                targets += [str(ROOT / extra)]
        cmd = [
            sys.executable,
            "-m",
            "mypy",
            "--config-file",
            str(ROOT / "pyproject.toml"),
            *targets,
        ]
        return subprocess.call(cmd, env=env, cwd=ROOT)


if __name__ == "__main__":
    sys.exit(main())
