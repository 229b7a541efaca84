"""Snapshot what a run needs to be reproduced, and write it back out.

Why: "which code and which packages produced this curve?" is the first question about
any old run. The snapshot is taken once at iteration start; every probe is bounded in
time and size and tolerates its tool being absent (no git, no pip, not a repository),
because a missing detail must never stop a training run from starting.
"""

from __future__ import annotations

import importlib.metadata
import platform
import subprocess
import sys
from pathlib import Path, PurePosixPath
from typing import NamedTuple

from deardiary.schemas.errors import InvalidArgument
from deardiary.schemas.events import Environment

MAX_DIFF_BYTES = 1 << 20
MAX_FILE_BYTES = 4 << 20
DEPENDENCY_FILES = (
    "requirements*.txt",
    "requirements/*.txt",
    "pyproject.toml",
    "setup.cfg",
    "environment.yml",
    "environment.yaml",
    "Pipfile",
    "Pipfile.lock",
    "poetry.lock",
    "uv.lock",
)
FREEZE_FILE = "requirements-freeze.txt"
DIFF_FILE = "git.diff"


def _run(args: list[str], cwd: Path, timeout: float) -> str | None:
    """stdout of a command, or None when it is missing, fails or takes too long."""
    try:
        done = subprocess.run(
            args, cwd=cwd, capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if done.returncode != 0:
        return None
    return done.stdout.decode("utf-8", "replace")


def _bounded(text: str, limit: int) -> str:
    data = text.encode()
    if len(data) <= limit:
        return text
    cut = data[:limit].decode("utf-8", "ignore")
    return cut + f"\n[... truncated by deardiary: {len(data)} bytes, kept {limit}]\n"


class _Git(NamedTuple):
    toplevel: Path
    sha: str | None
    branch: str | None
    dirty: bool
    diff: str


def _git(root: Path, timeout: float) -> _Git | None:
    git = ["git", "-C", str(root)]
    top = _run([*git, "rev-parse", "--show-toplevel"], root, timeout)
    if top is None:
        return None
    sha = _run([*git, "rev-parse", "HEAD"], root, timeout)
    branch = _run([*git, "rev-parse", "--abbrev-ref", "HEAD"], root, timeout)
    status = _run([*git, "status", "--porcelain", "--untracked-files=no"], root, timeout)
    diff = _run([*git, "diff", "HEAD", "--no-color", "--no-ext-diff"], root, timeout)
    if diff is None:  # no commit yet: the changes against the empty index are the diff
        diff = _run([*git, "diff", "--no-color", "--no-ext-diff"], root, timeout)
    return _Git(
        toplevel=Path(top.strip()),
        sha=sha.strip() if sha else None,
        branch=branch.strip() if branch and branch.strip() != "HEAD" else None,
        dirty=bool(status and status.strip()),
        diff=_bounded(diff or "", MAX_DIFF_BYTES),
    )


def _pip_freeze(timeout: float) -> str:
    frozen = _run([sys.executable, "-m", "pip", "freeze"], Path.cwd(), timeout)
    if frozen is not None:
        return frozen
    # No pip in this environment (uv, conda without pip): the installed distributions say
    # the same thing, minus editable-install details.
    lines = {
        f"{d.metadata['Name']}=={d.version}"
        for d in importlib.metadata.distributions()
        if d.metadata["Name"]
    }
    return "".join(f"{line}\n" for line in sorted(lines, key=str.lower))


def _dependency_files(root: Path) -> dict[str, str]:
    files: dict[str, str] = {}
    for pattern in DEPENDENCY_FILES:
        for path in sorted(root.glob(pattern)):
            if not path.is_file() or path.stat().st_size > MAX_FILE_BYTES:
                continue
            try:
                text = path.read_text("utf-8", "replace")
            except OSError:
                continue
            files[path.relative_to(root).as_posix()] = text
    return files


def capture_environment(
    root: Path | None = None, *, pip_freeze: bool = True, timeout: float = 15.0
) -> Environment:
    """The environment of this process; dependency files come from `root` (default: the
    git work tree containing the current directory, else the current directory)."""
    cwd = Path.cwd()
    git = _git(root or cwd, timeout)
    project = root or (git.toplevel if git else cwd)
    return Environment(
        python_version=platform.python_version(),
        platform=platform.platform(),
        entrypoint=sys.argv[0] if sys.argv else "",
        argv=list(sys.argv),
        git_sha=git.sha if git else None,
        git_branch=git.branch if git else None,
        git_dirty=git.dirty if git else False,
        git_diff=git.diff if git else "",
        pip_freeze=_pip_freeze(timeout) if pip_freeze else "",
        files=_dependency_files(project),
    )


def _safe_relative(name: str) -> PurePosixPath:
    path = PurePosixPath(name.replace("\\", "/"))
    parts = path.parts
    if not parts or path.is_absolute() or ".." in parts or ":" in parts[0]:
        raise InvalidArgument(f"refusing to restore unsafe path {name!r}", {"path": name})
    return path


def restore_environment(env: Environment, directory: Path) -> list[Path]:
    """Write the recorded dependency files back under `directory`, plus the frozen package
    list (requirements-freeze.txt) and the uncommitted changes (git.diff) when recorded.
    Every path is checked before anything is written; returns the files written."""
    planned: list[tuple[Path, str]] = [
        (directory.joinpath(*_safe_relative(name).parts), text) for name, text in env.files.items()
    ]
    if env.pip_freeze:
        planned.append((directory / FREEZE_FILE, env.pip_freeze))
    if env.git_diff:
        planned.append((directory / DIFF_FILE, env.git_diff))
    base = directory.resolve()
    for path, _ in planned:
        if not path.resolve().is_relative_to(base):  # a symlink pointing out of `directory`
            raise InvalidArgument(f"refusing to write outside {directory}: {path}")
    written: list[Path] = []
    for path, text in planned:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, "utf-8", newline="")
        written.append(path)
    return written
