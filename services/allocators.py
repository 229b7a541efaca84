"""`deardiary serve`'s allocators give back what a burst of work freed.

A compaction moves the hot points (2M by default) through three allocators, and each of
them kept what it freed for its own reuse: the server's RSS stayed 100-250 MB above what
it held before (the benchmark's 1M-point rounds: 324/399/471/479/480 MB, peak 789).
Measured in the server around each compaction of 2M points:

* DuckDB's own (bundled) jemalloc: the hot rows and compaction's Arrow copy of them,
  ~250 MB freed but resident until DuckDB allocated again. The store flushes it after
  each compaction (projections/store.py, `_give_back_freed_memory`).
* glibc malloc, under numpy's arrays of the sort and the tiles (16 MB a column of 2M
  points): glibc raises its mmap threshold to the largest mapped block freed (up to
  32 MB), after which such arrays come from the thread's arena and stay there once freed
  (~200-300 MB free in the arenas after two compactions). A fixed threshold maps every
  block of at least MMAP_THRESHOLD by itself and unmaps it when freed.
* Arrow's default pool (mimalloc) kept the pages of reads of the segments (the
  benchmark's `count(*)` of the metrics after each round: 4 -> 35-50 MB after two
  compactions, more with more segments); Arrow's jemalloc pool gives them back.

With all three the server's RSS right after a compaction is below what it was after the
first round (~220 MB), and the five rounds read 302/378/341/429/377, 340/394/370/413/344,
319/373/340/398/367, 328/379/344/406/363 MB, peak 619-643 (alternating with the old
settings: 314/400/477/474/470, 333/415/558/490/531, 300/398/511/515/516,
334/393/505/468/485, peak 674-825). Without the mmap threshold the last round came to
0.91-1.07 of the second, peak 681-734. Giving memory back costs touching it afresh when
it is needed again: a compaction of 2M points took 0.91 CPU-s (median of 9, fresh
processes) as before, 1.05 with the threshold, 0.94 with DuckDB's flush, 1.10 with both,
and the server's CPU over the five rounds (two compactions) 3.6-4.0 against 3.3-3.6
CPU-s. Arrow's jemalloc pool reads a 1M-point series for 19-30 ms of CPU against
mimalloc's 18-31.
"""

from __future__ import annotations

import ctypes
import os
import sys

MMAP_THRESHOLD = 4 << 20
"""Blocks of at least this many bytes are mapped by themselves: numpy's arrays of a
compaction, 8-16 MB a column at the default limit. A projector step's arrays (a few MB
at most) stay in the arenas, touched once, as before (1 MiB measured no different)."""
_M_MMAP_THRESHOLD = -3  # glibc's malloc.h
ARROW_POOL = "jemalloc"
"""Arrow's default pool for the server, unless ARROW_DEFAULT_MEMORY_POOL names one."""


def give_back_freed_memory() -> list[str]:
    """Apply the settings for this process, before pyarrow is imported (Arrow reads its
    pool's name from the environment when it loads); returns the names of those applied.
    Linux only: Arrow's wheels for other systems may have no jemalloc."""
    if not sys.platform.startswith("linux"):
        return []
    applied = []
    if "pyarrow" not in sys.modules and not os.environ.get("ARROW_DEFAULT_MEMORY_POOL"):
        os.environ["ARROW_DEFAULT_MEMORY_POOL"] = ARROW_POOL
        applied.append("arrow pool")
    if _malloc_mmap_threshold(MMAP_THRESHOLD):
        applied.append("malloc mmap threshold")
    return applied


def _malloc_mmap_threshold(size: int) -> bool:
    """glibc's mallopt(M_MMAP_THRESHOLD, size); False without glibc (mallopt answers 0
    to an option it does not know, as musl's does)."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, size))
