"""stdout/stderr capture: tee to the real stream, batched LogLinesLogged events."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from deardiary.buffer import EventBuffer
from deardiary.capture import OutputCapture
from deardiary.schemas.envelope import Envelope
from deardiary.schemas.events import LogLinesLogged
from deardiary.spool import Spool


@pytest.fixture
def buffer(tmp_path: Path) -> Iterator[EventBuffer]:
    spool = Spool(tmp_path)
    yield EventBuffer(spool)
    spool.close()


def lines(envelopes: list[Envelope]) -> list[tuple[str, str, str]]:
    out: list[tuple[str, str, str]] = []
    for env in envelopes:
        assert isinstance(env.body, LogLinesLogged)
        assert len(env.body.times) == len(env.body.levels) == len(env.body.messages)
        pairs = zip(env.body.levels, env.body.messages, strict=True)
        out += [(env.body.source, level, message) for level, message in pairs]
    return out


def test_lines_are_teed_and_batched(
    buffer: EventBuffer, capsys: pytest.CaptureFixture[str]
) -> None:
    with OutputCapture(buffer, "it"):
        print("hello")
        print("world", end="")
        print("!")
        sys.stderr.write("oops\n")
        print("no newline at the end", end="")
    assert capsys.readouterr() == ("hello\nworld!\nno newline at the end", "oops\n")
    envs = buffer.drain()
    assert len(envs) == 2  # one event per stream, not one per line
    assert lines(envs) == [
        ("stdout", "INFO", "hello"),
        ("stdout", "INFO", "world!"),
        ("stdout", "INFO", "no newline at the end"),
        ("stderr", "ERROR", "oops"),
    ]
    assert all(env.key == "it" for env in envs)


def test_the_shippers_drain_collects_lines_while_capturing(buffer: EventBuffer) -> None:
    with OutputCapture(buffer, "it", stderr=False):
        print("first")
        assert lines(buffer.drain()) == [("stdout", "INFO", "first")]
        print("second")
        print("third")
        assert lines(buffer.drain()) == [
            ("stdout", "INFO", "second"),
            ("stdout", "INFO", "third"),
        ]
    assert buffer.drain() == []


def test_streams_are_restored_and_progress_bars_collapse(buffer: EventBuffer) -> None:
    before = sys.stdout, sys.stderr
    with OutputCapture(buffer, "it", max_lines=2):
        for pct in range(0, 101, 10):
            sys.stdout.write(f"\rprogress {pct}%")
        sys.stdout.write("\n")
        print("a\r\nb")
        assert sys.stdout is not before[0]
    assert (sys.stdout, sys.stderr) == before
    assert [m for _, _, m in lines(buffer.drain())] == ["progress 100%", "a", "b"]


def test_threads_writing_at_once_lose_no_line(buffer: EventBuffer) -> None:
    with OutputCapture(buffer, "it", max_lines=50):

        def write(t: int) -> None:
            for i in range(500):
                sys.stdout.write(f"t{t} line {i}\n")  # one call: print() is two writes

        workers = [threading.Thread(target=write, args=(t,)) for t in range(4)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
    messages = [m for _, _, m in lines(buffer.drain())]
    assert sorted(messages) == sorted(f"t{t} line {i}" for t in range(4) for i in range(500))
    for t in range(4):
        assert [m for m in messages if m.startswith(f"t{t} ")] == [
            f"t{t} line {i}" for i in range(500)
        ]
