"""Environment snapshot of a real git repository, and restoring it into a fresh folder."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from deardiary.environment import capture_environment, restore_environment
from deardiary.schemas.errors import InvalidArgument
from deardiary.schemas.events import Environment


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True
    )
    return done.stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    repo = tmp_path / "project"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "user.email", "t@example.com")
    git(repo, "config", "user.name", "T")
    (repo / "train.py").write_text("print('train')\n")
    (repo / "requirements.txt").write_text("numpy==2.0\n")
    (repo / "requirements-dev.txt").write_text("pytest\n")
    (repo / "pyproject.toml").write_text("[project]\nname = 'p'\n")
    (repo / "uv.lock").write_text("version = 1\n")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "init")
    return repo


def test_capture_and_restore_round_trip(repo: Path, tmp_path: Path) -> None:
    (repo / "train.py").write_text("print('train harder')\n")
    env = capture_environment(repo)

    assert env.git_sha == git(repo, "rev-parse", "HEAD")
    assert env.git_branch == "main"
    assert env.git_dirty is True
    assert "+print('train harder')" in env.git_diff
    assert env.python_version == ".".join(map(str, sys.version_info[:3]))
    assert env.entrypoint == sys.argv[0] and env.argv == sys.argv
    assert sorted(env.files) == [
        "pyproject.toml",
        "requirements-dev.txt",
        "requirements.txt",
        "uv.lock",
    ]
    assert "msgspec==" in env.pip_freeze.lower()

    out = tmp_path / "restored"
    written = restore_environment(env, out)
    assert sorted(p.relative_to(out).as_posix() for p in written) == [
        "git.diff",
        "pyproject.toml",
        "requirements-dev.txt",
        "requirements-freeze.txt",
        "requirements.txt",
        "uv.lock",
    ]
    for name in env.files:
        assert (out / name).read_text() == (repo / name).read_text()
    assert (out / "requirements-freeze.txt").read_text() == env.pip_freeze
    # The recorded diff applies to the recorded commit and reproduces the working tree.
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(repo), str(clone)], check=True)
    git(clone, "checkout", "-q", env.git_sha or "")
    git(clone, "apply", str(out / "git.diff"))
    assert (clone / "train.py").read_text() == "print('train harder')\n"


def test_a_clean_tree_is_not_dirty(repo: Path) -> None:
    env = capture_environment(repo, pip_freeze=False)
    assert env.git_dirty is False and env.git_diff == "" and env.pip_freeze == ""


def test_outside_a_repository_git_fields_are_empty(tmp_path: Path) -> None:
    (tmp_path / "environment.yml").write_text("name: x\n")
    env = capture_environment(tmp_path, pip_freeze=False)
    assert (env.git_sha, env.git_branch, env.git_dirty, env.git_diff) == (None, None, False, "")
    assert env.files == {"environment.yml": "name: x\n"}


@pytest.mark.parametrize("name", ["/etc/passwd", "../escape.txt", "a/../../b", "", "C:/x"])
def test_restore_refuses_unsafe_paths(tmp_path: Path, name: str) -> None:
    env = Environment(files={"requirements.txt": "ok\n", name: "evil\n"})
    with pytest.raises(InvalidArgument):
        restore_environment(env, tmp_path / "out")
    assert not (tmp_path / "out").exists()  # refused before anything was written


def test_restore_refuses_to_follow_a_symlink_out(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "link").symlink_to(tmp_path)
    env = Environment(files={"link/requirements.txt": "evil\n"})
    with pytest.raises(InvalidArgument):
        restore_environment(env, out)
    assert not (tmp_path / "requirements.txt").exists()


def test_dependency_files_are_found_as_glob_finds_them(tmp_path: Path) -> None:
    """The snapshot matches DEPENDENCY_FILES on listdir (no glob/re per trial process):
    the same files as `glob.glob` with hidden names included."""
    import glob

    from deardiary.environment import DEPENDENCY_FILES, _matches

    names = [
        "requirements.txt",
        "requirements-dev.txt",
        "requirements_test.txt",
        ".requirements.txt",
        "requirements.txt.bak",
        "requirementsX.TXT",
        "pyproject.toml",
        "poetry.lock",
        "uv.lock",
        "Pipfile",
        "environment.yaml",
        "setup.py",
        "README.md",
    ]
    for name in names:
        (tmp_path / name).write_text(name)
    (tmp_path / "requirements").mkdir()
    for name in ("base.txt", "gpu.txt", "notes.md", ".hidden.txt"):
        (tmp_path / "requirements" / name).write_text(name)
    (tmp_path / "setup.cfg").mkdir()  # a folder is matched, then skipped as not a file
    for pattern in DEPENDENCY_FILES:
        expected = sorted(glob.glob(pattern, root_dir=tmp_path, include_hidden=True))
        assert _matches(str(tmp_path), pattern) == expected, pattern
    env = capture_environment(tmp_path, pip_freeze=False)
    assert "setup.cfg" not in env.files and "requirements/gpu.txt" in env.files


def test_a_package_installed_from_a_url_or_a_folder_is_frozen_as_such(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from deardiary.environment import installed_packages

    site = tmp_path / "site"
    for name, origin in (
        ("fromgit-1.0.dist-info", '{"url": "git+https://x.example/r.git", "vcs_info": {}}'),
        ("editable-2.0.dist-info", '{"url": "file:///src/ed", "dir_info": {"editable": true}}'),
        ("wheelfile-3.0.dist-info", '{"url": "file:///w.whl", "archive_info": {}}'),
        ("broken-4.0.dist-info", "{not json"),
        ("plain-5.0.dist-info", None),
    ):
        (site / name).mkdir(parents=True)
        if origin is not None:
            (site / name / "direct_url.json").write_text(origin)
    monkeypatch.setattr(sys, "path", [str(site)])
    assert installed_packages().splitlines() == [
        "broken==4.0",
        "-e /src/ed",
        "fromgit @ git+https://x.example/r.git",
        "plain==5.0",
        "wheelfile==3.0",
    ]


def test_the_standard_library_s_folders_are_not_scanned_and_hold_no_distribution(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """installed_packages skips the standard library's folders (hundreds of names each
    trial): they hold no distribution, so the list is what scanning every folder finds."""
    import os

    from deardiary.environment import _STDLIB, installed_packages

    stdlib = os.path.dirname(os.__file__)
    assert {stdlib, os.path.join(stdlib, "lib-dynload")} == _STDLIB
    assert set(sys.path) & _STDLIB  # they are on this interpreter's path ...
    for folder in _STDLIB:
        assert not [n for n in os.listdir(folder) if n.endswith((".dist-info", ".egg-info"))]
    scanned: list[str] = []
    real_scandir = os.scandir

    def scandir(path: str) -> object:
        scanned.append(path)
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    assert installed_packages().count("\n") > 10  # this environment's packages are there
    assert scanned and not set(scanned) & _STDLIB  # ... and skipped
