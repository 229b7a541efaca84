"""Finding the server that owns a data folder: ``<data>/server.json``.

`deardiary serve` holds the folder's projections (DuckDB allows one writer process), so a
second process cannot open them. Instead it finds the server here and asks it over HTTP.
The file names the server's URL and PID and a random local-admin token; it is written
atomically with mode 0600 (whoever can read it can read the log in the same folder
anyway) and removed at a clean shutdown. A file left by a killed server names a dead PID
and is ignored.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

import msgspec

SERVER_FILE = "server.json"
LOCAL_TOKEN_PREFIX = "ddl."


class ServerInfo(msgspec.Struct, frozen=True, kw_only=True):
    url: str
    pid: int
    token: str
    auth: bool = False


def new_local_token() -> str:
    return LOCAL_TOKEN_PREFIX + secrets.token_urlsafe(32)


def process_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def publish(root: Path, info: ServerInfo) -> Path:
    """Write `root`/server.json atomically, readable by its owner only."""
    path = Path(root) / SERVER_FILE
    tmp = path.with_name(f".{SERVER_FILE}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, msgspec.json.encode(info))
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    return path


def withdraw(root: Path, pid: int | None = None) -> None:
    """Remove server.json if it names `pid` (this process by default)."""
    path = Path(root) / SERVER_FILE
    found = _read(path)
    if found is not None and found.pid == (os.getpid() if pid is None else pid):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _read(path: Path) -> ServerInfo | None:
    try:
        return msgspec.json.decode(path.read_bytes(), type=ServerInfo)
    except (OSError, msgspec.DecodeError, msgspec.ValidationError):
        return None


def find_server(root: str | Path) -> ServerInfo | None:
    """The live server that owns `root`, or None (no file, or its process is gone)."""
    found = _read(Path(root) / SERVER_FILE)
    if found is None or not process_alive(found.pid):
        return None
    return found
