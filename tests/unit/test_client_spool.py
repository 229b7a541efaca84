"""The disk spool: atomic files, oldest-first, torn and corrupt files, adoption after a crash."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from deardiary.services.log import LogRecord
from deardiary.spool import Spool, default_spool_dir


def records(tag: str, n: int = 3) -> list[LogRecord]:
    return [LogRecord(f"{tag}-{i}", "key", f"{tag} payload {i}".encode()) for i in range(n)]


def test_files_round_trip_in_reserved_order(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    first, second = spool.reserve(), spool.reserve()
    spool.write(records("second"), second)  # written first, but reserved later
    spool.write(records("first"), first)
    spool.write(records("third"))
    names = spool.pending()
    assert [spool.read(n)[0].event_id for n in names] == ["first-0", "second-0", "third-0"]
    assert spool.read(names[0]) == records("first")
    assert spool.pending_records() == 9
    for name in names:
        spool.remove(name)
    assert spool.is_empty() and not list(tmp_path.glob("*.rec"))
    spool.close()
    assert os.listdir(tmp_path) == []  # nothing left, not even the lock file


def test_a_restarted_process_adopts_what_the_last_one_left(tmp_path: Path) -> None:
    old = Spool(tmp_path)
    old.write(records("a"))
    old.write(records("b"))
    old.close()  # undelivered files stay

    new = Spool(tmp_path)
    assert new.is_empty()  # nothing is adopted until asked (no I/O surprises)
    assert new.adopt() == 2
    new.write(records("mine"))
    assert [new.read(n)[0].event_id for n in new.pending()] == ["a-0", "b-0", "mine-0"]
    for name in new.pending():
        new.remove(name)
    new.close()
    assert os.listdir(tmp_path) == []


def test_a_spool_takes_its_lock_with_its_first_file(tmp_path: Path) -> None:
    """A process that never spools (most never do) makes no lock file: with no files of
    its own there is nothing to guard; the lock is held from the first file on."""
    spool = Spool(tmp_path)
    assert spool.adopt() == 0
    assert os.listdir(tmp_path) == []
    name = spool.write(records("a"))
    assert sorted(os.listdir(tmp_path)) == sorted([name, f"{spool.owner}.lock"])
    other = Spool(tmp_path)
    assert other.adopt() == 0  # its owner lives: held
    other.close()
    spool.close()
    assert sorted(os.listdir(tmp_path)) == sorted([name, f"{spool.owner}.lock"])
    heir = Spool(tmp_path)
    assert heir.adopt() == 1  # released at close: adopted, lock file and all
    heir.remove(name)
    heir.close()
    assert os.listdir(tmp_path) == []


def test_files_of_a_living_process_are_not_adopted(tmp_path: Path) -> None:
    alive = Spool(tmp_path)
    alive.write(records("alive"))
    other = Spool(tmp_path)
    assert other.adopt() == 0 and other.is_empty()
    other.close()
    assert alive.pending_records() == 3
    alive.close()


def test_torn_tmp_files_are_ignored_and_corrupt_files_set_aside(tmp_path: Path) -> None:
    dead = Spool(tmp_path)
    good = dead.write(records("good"))
    bad = dead.write(records("bad"))
    dead.close()
    (tmp_path / f"{dead.owner}-000000000009.rec.tmp").write_bytes(b"\x93half a wri")
    data = bytearray((tmp_path / bad).read_bytes())
    data[-3] ^= 0xFF  # a flipped bit fails the checksum
    (tmp_path / bad).write_bytes(bytes(data))

    spool = Spool(tmp_path)
    assert spool.adopt() == 2
    assert not list(tmp_path.glob("*.tmp"))
    assert spool.read(good) == records("good")
    assert spool.read(bad) == []
    assert (tmp_path / f"{bad}.bad").exists()
    assert spool.pending() == [good]
    spool.close()


def test_files_survive_a_killed_process(tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import os
        from deardiary.services.log import LogRecord
        from deardiary.spool import Spool
        spool = Spool({str(tmp_path)!r})
        spool.write([LogRecord("e1", "k", b"one"), LogRecord("e2", "k", b"two")])
        os._exit(0)  # no close: the lock is released by the OS, as after kill -9
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
    spool = Spool(tmp_path)
    assert spool.adopt() == 1
    assert [r.payload for n in spool.pending() for r in spool.read(n)] == [b"one", b"two"]
    spool.close()


def test_default_dir_is_per_target_under_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    a = default_spool_dir("http://host:9000/")
    assert a == default_spool_dir("http://host:9000")
    assert a != default_spool_dir("http://other:9000")
    assert Path(a).parent == tmp_path / "deardiary" / "spool"
