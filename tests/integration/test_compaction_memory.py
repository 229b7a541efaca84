"""A compaction gives back what it freed in DuckDB's allocator (the hot rows and their
Arrow copy): none of it stays with the allocator as dirty pages for later reuse."""

from __future__ import annotations

import ctypes
from pathlib import Path

import duckdb
import pytest

from deardiary.projections.store import DuckDBProjectionStore
from tests.integration.test_hot_count import _Log

_ALL_ARENAS = 4096  # jemalloc's MALLCTL_ARENAS_ALL


def _jemalloc() -> ctypes.CDLL | None:
    """DuckDB's bundled jemalloc, where its module exports it (the Linux wheels)."""
    module = Path(duckdb.__file__).parent.parent
    for path in module.glob("_duckdb*.so"):
        lib = ctypes.CDLL(str(path))
        if hasattr(lib, "duckdb_je_mallctl"):
            return lib
    return None


def _read(lib: ctypes.CDLL, name: str) -> int:
    value, size = ctypes.c_size_t(), ctypes.c_size_t(ctypes.sizeof(ctypes.c_size_t))
    assert (
        lib.duckdb_je_mallctl(name.encode(), ctypes.byref(value), ctypes.byref(size), None, 0) == 0
    )
    return value.value


def _dirty_bytes(lib: ctypes.CDLL) -> int:
    """Freed pages the allocator holds for reuse, in every arena."""
    epoch, size = ctypes.c_uint64(1), ctypes.c_size_t(8)
    lib.duckdb_je_mallctl(
        b"epoch", ctypes.byref(epoch), ctypes.byref(size), ctypes.byref(epoch), size
    )
    return _read(lib, f"stats.arenas.{_ALL_ARENAS}.pdirty") * _read(lib, "arenas.page")


def test_compaction_leaves_no_freed_pages_with_duckdb(tmp_path: Path) -> None:
    lib = _jemalloc()
    if lib is None:
        pytest.skip("DuckDB's allocator statistics are not exported by this build")
    store, log = DuckDBProjectionStore(tmp_path / "p", hot_points_limit=10**9), _Log()
    try:
        for _ in range(4):
            store.apply(log.batch(100_000))
        store.compact()
        assert _dirty_bytes(lib) < 4 << 20  # ~90 MB when left for reuse
    finally:
        store.close()
