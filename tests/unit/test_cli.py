"""The `deardiary` command for a user: --version, flags from one declaration (and the
README's table of them), a port in use or a missing extra in one line."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from deardiary.services import entry, serve_options
from deardiary.services.cli import build_parser, main
from deardiary.version import __version__

README = Path(__file__).resolve().parents[2] / "README.md"


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert entry.main(["--version"]) == 0
    assert capsys.readouterr().out == f"deardiary {__version__}\n"
    with pytest.raises(SystemExit) as done:
        build_parser().parse_args(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out == f"deardiary {__version__}\n"


def test_the_readme_lists_every_serve_flag_as_declared() -> None:
    text = README.read_text()
    begin, end = "<!-- serve-flags:begin -->\n", "<!-- serve-flags:end -->"
    documented = text[text.index(begin) + len(begin) : text.index(end)]
    assert documented == serve_options.markdown_table(), (
        "run: python -m deardiary.services.serve_options"
    )


def test_serve_flags_come_from_variables_unless_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEARDIARY_PORT", "9123")
    monkeypatch.setenv("DEARDIARY_DATA", "/srv/diary")
    monkeypatch.setenv("DEARDIARY_AUTH", "true")
    args = build_parser().parse_args(["serve"])
    assert (args.port, args.data, args.auth) == (9123, "/srv/diary", True)
    args = build_parser().parse_args(["serve", "--port", "0", "--no-auth"])
    assert (args.port, args.auth) == (0, False)
    assert build_parser().parse_args(["sql", "SELECT 1"]).data == "/srv/diary"
    assert serve_options.serve_options(args).port == 0


def test_a_port_in_use_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code = main(["serve", "--data", str(tmp_path / "data"), "--port", str(port)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err[-1] == (
        f"error: cannot listen on 127.0.0.1:{port}: the address is already in use (another"
        " server?); choose another --port, or --port 0 for any free one"
    )
    assert not any("Traceback" in line for line in err)


def test_a_bad_flag_value_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--data", str(tmp_path), "--port", "70000"]) == 2
    assert capsys.readouterr().err == (
        "error: INVALID_ARGUMENT: invalid flag: Expected `int` <= 65535 - at `$.port`\n"
    )


def test_a_missing_extra_is_named() -> None:
    # As on a client-only install: DuckDB cannot be imported.
    code = (
        "import sys; sys.modules['duckdb'] = None\n"
        "from deardiary.services import entry\n"
        "sys.exit(entry.main(['sql', 'SELECT 1']))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 2
    # one line naming the module and the extra (the sql command imports its reader when it
    # runs, so the reader is the one that says it)
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("error: "), done.stderr
    assert "duckdb" in done.stderr and "pip install 'deardiary[server]'" in done.stderr
