"""A crash-safe local disk spool of encoded log records, shared safely between processes.

Why: a trial must survive a server or broker outage without blocking and without losing
what it logged. What cannot be delivered now is written here and resent later, by this
process or by the next one that opens the same directory.

Layout of a spool directory (many processes may share one; a sweep's trials usually do):

* ``<owner>.lock`` -- held with ``flock`` by the living process that owns ``<owner>``,
  from its first file on (a process that never spools, as most never do, takes no lock:
  with no files of its own there is nothing another process could adopt);
* ``<owner>-<seq>.rec`` -- one file of records, written atomically (tmp, fsync, rename);
* ``*.tmp`` -- torn writes of a crashed process; never read;
* ``*.bad`` -- files that failed their checksum; kept for a human, never resent.

Owners are named by their start time, so files sort oldest-first by name. Files of an
owner whose lock is free (the process died or closed) are adopted: the adopter takes
the lock and resends them before its own. Files are deleted only after the transport
acknowledged them, so delivery is at-least-once; event ids make the repeats harmless.
"""

from __future__ import annotations

import functools
import os
import threading
import time

from deardiary.schemas.ids import sha256_hex
from deardiary.schemas.records import LogRecord, encode_records
from deardiary.schemas.wire import pack

from .notices import log

TYPE_CHECKING = False
if TYPE_CHECKING:  # `typing` costs a trial process milliseconds to import
    from collections.abc import Callable, Sequence
    from os import PathLike

__all__ = ["Spool", "default_spool_dir", "encode_records"]


_MAGIC = b"DDS1"


def _encoded(records: Sequence[LogRecord]) -> bytes:
    """A file's body: a MessagePack array of {event_id, key, payload} maps."""
    return pack([{"event_id": r.event_id, "key": r.key, "payload": r.payload} for r in records])


@functools.cache
def _decoder() -> Callable[[bytes], list[LogRecord]]:
    """Reads what `_encoded` wrote; msgspec validates it (reading a spool is the rare
    path: a trial process that never finds a file never imports msgspec)."""
    import msgspec

    class Stored(msgspec.Struct, frozen=True):
        event_id: str
        key: str
        payload: bytes

    decoder = msgspec.msgpack.Decoder(list[Stored])

    def decode(body: bytes) -> list[LogRecord]:
        return [LogRecord(r.event_id, r.key, r.payload) for r in decoder.decode(body)]

    return decode


def default_spool_dir(target: str) -> str:
    """``~/.cache/deardiary/spool/<short hash of the target>``: one spool per destination,
    so records are never resent to a different server than the one they were meant for.
    (Plain strings and os.path here: pathlib would add milliseconds to every trial's start.)"""
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    digest = sha256_hex(target.rstrip("/").encode())[:16]
    return os.path.join(cache, "deardiary", "spool", digest)


def _fsync_dir(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _try_lock(path: str) -> int | None:
    """An fd holding an exclusive flock on `path`, or None when a living process holds it."""
    import fcntl  # here: a process that never spools nor adopts never loads it (~0.3 ms)

    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


class Spool:
    """Records that still need delivery, as files in one directory, oldest first.

    Thread-safe. Only the owner reads and deletes its files; `write` may be called from
    any thread (the shipper, or a logger whose buffer overflowed).
    """

    def __init__(self, directory: str | PathLike[str]) -> None:
        self.directory = os.fspath(directory)
        os.makedirs(self.directory, exist_ok=True)
        self._mutex = threading.Lock()
        self.owner = f"{time.time_ns():020d}p{os.getpid()}"
        self._own_fd: int | None = None  # the owner's lock: taken before its first file
        self._next_seq = 0
        self._files: set[str] = set()  # own + adopted record files not yet acknowledged
        self._sizes: dict[str, int] = {}  # records in a file, once written or read
        self._adopted: dict[str, int] = {}  # owner -> fd of the lock we hold for it

    def _path(self, name: str) -> str:
        return os.path.join(self.directory, name)

    # -- writing ---------------------------------------------------------------------------

    def reserve(self) -> int:
        """A sequence number for a future `write`: reserve it when the records' place in
        the order is decided, write it later, and the file still sorts in that place."""
        with self._mutex:
            seq = self._next_seq
            self._next_seq += 1
            return seq

    def write(self, records: Sequence[LogRecord], seq: int | None = None) -> str:
        """Durably store `records` (tmp file, fsync, rename, fsync of the directory)."""
        if seq is None:
            seq = self.reserve()
        self._lock_owner()
        name = f"{self.owner}-{seq:012d}.rec"
        import zlib  # spooling is the rare path; a trial that never spools never loads it

        body = _encoded(records)
        data = _MAGIC + zlib.crc32(body).to_bytes(4, "little") + body
        final = self._path(name)
        tmp = self._path(f"{name}.tmp")
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)
        _fsync_dir(self.directory)
        with self._mutex:
            self._files.add(name)
            self._sizes[name] = len(records)
        return name

    def _lock_owner(self) -> None:
        """Hold the owner's lock before its first file exists, so no other process adopts
        the files of a living one. Should another process hold that name's lock (it found
        the lock file between its creation and our flock and took us for gone), the owner
        takes a new name: none of its files exist yet."""
        with self._mutex:
            while self._own_fd is None:
                self._own_fd = _try_lock(self._path(f"{self.owner}.lock"))
                if self._own_fd is None:  # pragma: no cover - a race of microseconds
                    self.owner = f"{time.time_ns():020d}p{os.getpid()}"

    # -- reading ---------------------------------------------------------------------------

    def is_empty(self) -> bool:
        with self._mutex:
            return not self._files

    def pending(self) -> list[str]:
        """Names of the record files to resend, oldest first (adopted owners sort first)."""
        with self._mutex:
            return sorted(self._files)

    def read(self, name: str) -> list[LogRecord]:
        """The records of one file; a file that fails its checksum is set aside as ``.bad``."""
        path = self._path(name)
        try:
            with open(path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            with self._mutex:
                self._files.discard(name)
            return []
        import zlib

        crc = int.from_bytes(data[4:8], "little")
        body = data[8:]
        try:
            if data[:4] != _MAGIC or zlib.crc32(body) != crc:
                raise ValueError("bad magic or checksum")
            records = _decoder()(body)
            with self._mutex:
                self._sizes[name] = len(records)
            return records
        except ValueError as exc:  # msgspec.DecodeError is one
            log.error("spool file %s is corrupt (%s); kept as .bad, not resent", path, exc)
            os.replace(path, path + ".bad")
            with self._mutex:
                self._files.discard(name)
            return []

    def remove(self, name: str) -> None:
        """Forget a file whose records the transport acknowledged."""
        _unlink_quietly(self._path(name))
        with self._mutex:
            self._files.discard(name)
            self._sizes.pop(name, None)
        self._release_finished()

    def waiting(self) -> tuple[int, int]:
        """(files, records) waiting to be resent, without reading any file: records of
        files adopted from earlier processes and not read yet are not counted."""
        with self._mutex:
            return len(self._files), sum(self._sizes.get(n, 0) for n in self._files)

    def pending_records(self) -> int:
        """How many records the spool holds (reads every file; for tests and reports)."""
        return sum(len(self.read(name)) for name in self.pending())

    # -- adoption --------------------------------------------------------------------------

    def adopt(self) -> int:
        """Take over the files of owners that are gone; returns how many files were adopted."""
        owners: set[str] = set()
        for entry in os.scandir(self.directory):
            if entry.name.endswith(".rec"):
                owners.add(entry.name.rsplit("-", 1)[0])
            elif entry.name.endswith(".lock"):
                owners.add(entry.name.removesuffix(".lock"))
        found = 0
        for owner in sorted(owners):
            with self._mutex:
                if owner == self.owner or owner in self._adopted:
                    continue
            fd = _try_lock(self._path(f"{owner}.lock"))
            if fd is None:
                continue
            names = sorted(
                e.name
                for e in os.scandir(self.directory)
                if e.name.startswith(owner + "-") and e.name.endswith(".rec")
            )
            for e in os.scandir(self.directory):
                if e.name.startswith(owner + "-") and e.name.endswith(".tmp"):
                    os.unlink(e.path)  # a torn write of a dead process
            with self._mutex:
                self._adopted[owner] = fd
                self._files.update(names)
            found += len(names)
        self._release_finished()
        return found

    def _release_finished(self) -> None:
        """Drop the locks (and lock files) of adopted owners whose files are all delivered."""
        with self._mutex:
            done = [o for o in self._adopted if not any(n.startswith(o + "-") for n in self._files)]
            fds = [(o, self._adopted.pop(o)) for o in done]
        for owner, fd in fds:
            _unlink_quietly(self._path(f"{owner}.lock"))
            os.close(fd)

    def close(self) -> None:
        """Release the locks; undelivered files stay for the next process to adopt."""
        with self._mutex:
            fd, self._own_fd = self._own_fd, None
            own_left = any(n.startswith(self.owner + "-") for n in self._files)
            adopted = list(self._adopted.items())
            self._adopted.clear()
            self._files.clear()
        for _owner, afd in adopted:
            os.close(afd)
        if fd is not None:
            if not own_left:
                _unlink_quietly(self._path(f"{self.owner}.lock"))
            os.close(fd)


def _unlink_quietly(path: str) -> None:
    try:  # noqa: SIM105 - importing contextlib is ~0.7 ms of a trial process
        os.unlink(path)
    except FileNotFoundError:
        pass
