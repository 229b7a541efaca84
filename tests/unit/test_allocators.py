"""`deardiary serve`'s allocator settings (services/allocators.py), each in a fresh process:
they are the process's, and Arrow reads its pool's name only as it loads."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc, Linux")

PROBE = """
import ctypes, json, sys
{apply}
import numpy as np
import pyarrow as pa

class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]

mallinfo2 = ctypes.CDLL(None).mallinfo2
mallinfo2.restype = MallInfo2
first = np.ones(2_000_000)  # 16 MB, a column of a 2M-point compaction
del first  # glibc's own threshold rises past it here
before = mallinfo2().hblkhd
again = np.ones(2_000_000)
print(json.dumps({{
    "applied": applied,
    "pool": pa.default_memory_pool().backend_name,
    "mapped": mallinfo2().hblkhd - before >= again.nbytes,
}}))
"""
APPLY = "from deardiary.services.allocators import give_back_freed_memory\n"


def _probe(apply: str, **env: str) -> dict[str, object]:
    environ = {k: v for k, v in os.environ.items() if k != "ARROW_DEFAULT_MEMORY_POOL"}
    out = subprocess.run(
        [sys.executable, "-c", PROBE.format(apply=apply)],
        env={**environ, **env},
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, object] = json.loads(out.stdout)
    return result


def test_a_big_array_freed_and_made_again_is_mapped_by_itself_and_arrow_pools_in_jemalloc() -> None:
    found = _probe(APPLY + "applied = give_back_freed_memory()")
    assert found == {
        "applied": ["arrow pool", "malloc mmap threshold"],
        "pool": "jemalloc",
        "mapped": True,  # freed, it is unmapped: not kept in the arena
    }


def test_without_the_settings_glibc_keeps_the_second_array_in_its_arena() -> None:
    """The probe tells the two apart (a guard of the test above)."""
    assert _probe("applied = []")["mapped"] is False


def test_a_pool_named_in_the_environment_is_kept() -> None:
    found = _probe(APPLY + "applied = give_back_freed_memory()", ARROW_DEFAULT_MEMORY_POOL="system")
    assert found["pool"] == "system"
    assert found["applied"] == ["malloc mmap threshold"]


def test_serve_applies_them_before_anything_loads_pyarrow(tmp_path: Path) -> None:
    code = (
        "import os, sys\n"
        "from deardiary.services.cli import main\n"
        f"main(['serve', '--data', {str(tmp_path)!r}, '--port', '70000'])\n"  # refused
        "print(os.environ.get('ARROW_DEFAULT_MEMORY_POOL'))\n"
    )
    environ = {k: v for k, v in os.environ.items() if k != "ARROW_DEFAULT_MEMORY_POOL"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=environ, capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["jemalloc"]
