"""Snapshot what a run needs to be reproduced, and write it back out.

Why: "which code and which packages produced this curve?" is the first question about
any old run. The snapshot is taken once per process, on a thread of its own, and every
iteration gets it before it ends (`client/snapshot.py`). Every probe is bounded in time
and size and tolerates its tool being absent (no git, not a repository), because a
missing detail must never stop a training run.

Why it is cheap: a sweep takes one per trial process. The package list is read from
the installed distributions' metadata folder names (what `pip freeze` prints, without
starting pip, which alone took a second), the platform from `uname`, and git runs only
inside a work tree: one call for the commit and branch, one for the diff.
"""

from __future__ import annotations

import os
import sys

from deardiary.schemas.errors import InvalidArgument

TYPE_CHECKING = False
if TYPE_CHECKING:  # `typing` costs a trial process milliseconds to import
    from pathlib import Path, PurePosixPath
    from typing import Any

    from deardiary.schemas.events import Environment

# The capture runs in every trial process, so it works on plain strings with os.path and
# glob: pathlib (with urllib.parse and ipaddress) would cost each trial milliseconds.

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


def _run(args: list[str], cwd: str, timeout: float) -> str | None:
    """stdout of a command, or None when it is missing, fails or takes too long."""
    import subprocess

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


class _Git:  # not a NamedTuple: ~0.65M instructions less
    __slots__ = ("branch", "diff", "dirty", "sha", "toplevel")

    def __init__(
        self, toplevel: str, sha: str | None, branch: str | None, dirty: bool, diff: str
    ) -> None:
        self.toplevel = toplevel
        self.sha = sha
        self.branch = branch
        self.dirty = dirty
        self.diff = diff


def _work_tree(start: str) -> str | None:
    """The nearest folder at or above `start` holding ``.git`` (no process started)."""
    folder = start
    while True:
        if os.path.exists(os.path.join(folder, ".git")):
            return folder
        parent = os.path.dirname(folder)
        if parent == folder:
            return None
        folder = parent


def _git(root: str, timeout: float) -> _Git | None:
    top = _work_tree(os.path.realpath(root))
    if top is None:
        return None
    git = ["git", "-C", root]
    heads = _run([*git, "rev-parse", "HEAD", "--abbrev-ref", "HEAD"], root, timeout)
    sha = branch = None
    if heads is not None:
        lines = heads.split()
        sha = lines[0] if lines else None
        branch = lines[1] if len(lines) > 1 and lines[1] != "HEAD" else None
    diff = _run([*git, "diff", "HEAD", "--no-color", "--no-ext-diff"], root, timeout)
    if diff is None:  # no commit yet: the changes against the empty index are the diff
        diff = _run([*git, "diff", "--no-color", "--no-ext-diff"], root, timeout)
    return _Git(
        toplevel=top,
        sha=sha,
        branch=branch,
        dirty=bool(diff and diff.strip()),  # tracked files changed (staged or not)
        diff=_bounded(diff or "", MAX_DIFF_BYTES),
    )


_STDLIB = frozenset(
    (os.path.dirname(os.__file__), os.path.join(os.path.dirname(os.__file__), "lib-dynload"))
)
"""The standard library's folders on sys.path: they never hold a distribution's metadata."""


def installed_packages() -> str:
    """The installed distributions as a requirements list, one ``name==version`` a line
    (``-e path`` for editable installs, ``name @ url`` for ones installed from a URL),
    read from the ``*.dist-info``/``*.egg-info`` folder names on ``sys.path``."""
    lines: dict[str, str] = {}
    for entry in sys.path:
        if entry in _STDLIB:  # ~280 names scanned for none: ~0.4 ms of every trial here
            continue
        try:
            found = list(os.scandir(entry or "."))
        except OSError:
            continue
        for item in found:
            stem, dot, kind = item.name.rpartition(".")
            if kind not in ("dist-info", "egg-info") or not dot:
                continue
            name, _, version = stem.partition("-")
            if not name or not version or name.lower() in lines:
                continue
            line = f"{name}=={version.split('-')[0]}"
            direct = os.path.join(item.path, "direct_url.json")
            if kind == "dist-info" and os.path.exists(direct):
                import json  # only for a distribution installed from a URL or a folder

                try:
                    with open(direct, "rb") as fh:
                        origin = json.loads(fh.read())
                    url = str(origin.get("url", ""))
                    if origin.get("dir_info", {}).get("editable"):
                        line = f"-e {url.removeprefix('file://')}"
                    elif url and "archive_info" not in origin:
                        line = f"{name} @ {url}"
                except (OSError, ValueError, AttributeError):
                    pass
            lines[name.lower()] = line
    return "".join(f"{lines[k]}\n" for k in sorted(lines))


def _platform() -> str:
    """Like `platform.platform()` (``Linux-6.1.0-x86_64-with-glibc2.36``), without its
    cost (it reads the interpreter's binary to find the C library)."""
    u = os.uname()
    text = f"{u.sysname}-{u.release}-{u.machine}"
    try:
        libc = os.confstr("CS_GNU_LIBC_VERSION") or ""
    except (ValueError, OSError):
        libc = ""
    if libc:
        text += "-with-" + libc.replace(" ", "")
    return text


def _matches(root: str, pattern: str) -> list[str]:
    """The names under `root` a DEPENDENCY_FILES pattern (a folder part, at most one
    ``*``) matches, sorted -- what `glob.glob` finds, without compiling a regular
    expression per pattern (glob, fnmatch and re cost each trial process ~2M
    instructions)."""
    folder, _, name = pattern.rpartition("/")
    head, star, tail = name.partition("*")
    try:
        found = os.listdir(os.path.join(root, folder) if folder else root)
    except OSError:
        return []
    if star:
        hits = [n for n in found if n.startswith(head) and n[len(head) :].endswith(tail)]
    else:
        hits = [name] if name in found else []
    return sorted(f"{folder}/{n}" if folder else n for n in hits)


def _dependency_files(root: str) -> dict[str, str]:
    files: dict[str, str] = {}
    for pattern in DEPENDENCY_FILES:
        for relative in _matches(root, pattern):
            path = os.path.join(root, relative)
            try:
                if not os.path.isfile(path) or os.stat(path).st_size > MAX_FILE_BYTES:
                    continue
                with open(path, encoding="utf-8", errors="replace") as fh:
                    text = fh.read()
            except OSError:
                continue
            files[relative.replace(os.sep, "/")] = text
    return files


def environment_fields(
    root: str | os.PathLike[str] | None = None, *, pip_freeze: bool = True, timeout: float = 15.0
) -> dict[str, Any]:
    """`capture_environment` as plain values: every field of `Environment`, in its order
    (the SDK sends it as such: see `schemas/wire.py`)."""
    cwd = os.getcwd()
    given = os.fspath(root) if root is not None else None
    git = _git(given or cwd, timeout)
    project = given or (git.toplevel if git else cwd)
    v = sys.version_info
    return {
        "python_version": f"{v.major}.{v.minor}.{v.micro}",
        "platform": _platform(),
        "entrypoint": sys.argv[0] if sys.argv else "",
        "argv": list(sys.argv),
        "git_sha": git.sha if git else None,
        "git_branch": git.branch if git else None,
        "git_dirty": git.dirty if git else False,
        "git_diff": git.diff if git else "",
        "pip_freeze": installed_packages() if pip_freeze else "",
        "files": _dependency_files(project),
    }


def capture_environment(
    root: str | os.PathLike[str] | None = None, *, pip_freeze: bool = True, timeout: float = 15.0
) -> Environment:
    """The environment of this process; dependency files come from `root` (default: the
    git work tree containing the current directory, else the current directory)."""
    from deardiary.schemas.events import Environment

    return Environment(**environment_fields(root, pip_freeze=pip_freeze, timeout=timeout))


def _safe_relative(name: str) -> PurePosixPath:
    from pathlib import PurePosixPath

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
