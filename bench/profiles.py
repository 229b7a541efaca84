"""Profiles the benchmark takes of itself, boiled down to what docs/benchmarks.md shows.

Three sources: py-spy's raw (collapsed-stack) output of a server process, sampled from
outside while it works; cProfile of an in-process run (replay); DuckDB's own query
profile (reads)."""

from __future__ import annotations

import cProfile
import json
import pstats
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb

_LINE = re.compile(r":\d+\)$")
_TID = re.compile(r"^thread \(\d+\): ")
_OURS = ("services/", "projections/", "schemas/", "client/")
ROOT = Path(__file__).resolve().parent.parent


def _frame(text: str) -> str:
    """`fn (path:line)` -> `fn (path)`, so samples of one function add up."""
    return _LINE.sub(")", text)


class CollapsedStacks:
    """py-spy `--format raw` output: one `frame;frame;... count` line per distinct stack."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def summary(self, top: int = 12) -> dict[str, Any]:
        threads: Counter[str] = Counter()
        own: Counter[str] = Counter()
        inclusive: Counter[str] = Counter()
        total = 0
        if self.path.exists():
            for line in self.path.read_text().splitlines():
                stack, _, count = line.rpartition(" ")
                if not stack or not count.isdigit():
                    continue
                n = int(count)
                frames = [_frame(f) for f in stack.split(";")]
                total += n
                threads[_TID.sub("", frames[0])] += n
                own[frames[-1]] += n
                for f in set(frames[1:]):
                    if any(f"({p}" in f for p in _OURS):
                        inclusive[f] += n

        def shares(c: Counter[str]) -> list[tuple[float, str]]:
            return [(round(100 * n / total, 1), f) for f, n in c.most_common(top)]

        return {
            "samples": total,
            "threads": shares(threads) if total else [],
            "self": shares(own) if total else [],
            "inclusive": shares(inclusive) if total else [],
        }


@contextmanager
def py_spy(pid: int, out: Path, rate: int = 100) -> Iterator[CollapsedStacks]:
    """Sample `pid` (all threads, not idle ones) while the block runs."""
    exe = Path(sys.executable).with_name("py-spy")
    args = ["-p", str(pid), "-r", str(rate), "-f", "raw", "-t", "--nonblocking", "-o", str(out)]
    spy = subprocess.Popen(
        [str(exe), "record", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield CollapsedStacks(out)
    finally:
        spy.send_signal(signal.SIGINT)  # py-spy writes its output on Ctrl-C
        try:
            spy.wait(timeout=60)
        except subprocess.TimeoutExpired:
            spy.kill()
            spy.wait()


def cprofile_summary(profile: cProfile.Profile, top: int = 12) -> list[tuple[float, str]]:
    """Cumulative seconds of the heaviest functions, ours and the libraries' C calls."""
    stats = pstats.Stats(profile)
    rows: list[tuple[float, str]] = []
    for (path, line, name), (_, _, _, cumulative, _) in stats.stats.items():  # type: ignore[attr-defined]
        if path == "~":
            rows.append((round(cumulative, 3), name))
            continue
        where = Path(path).resolve()
        if where.is_relative_to(ROOT) and str(where.relative_to(ROOT)).startswith(_OURS):
            rows.append((round(cumulative, 3), f"{name} ({where.relative_to(ROOT)}:{line})"))
    return sorted(rows, reverse=True)[:top]


class _EachStatement:
    """A cursor whose every statement writes its own DuckDB profile (`profiling_output`
    keeps only the last statement's: a read of several showed its last, often empty one)."""

    def __init__(self, conn: duckdb.DuckDBPyConnection, out: Path) -> None:
        self._conn, self._out, self.files = conn, out, list[Path]()

    def _next(self) -> None:
        path = self._out / f"statement-{len(self.files):03d}.json"
        self.files.append(path)
        self._conn.execute(f"SET profiling_output = '{path}'")

    def sql(self, query: str, **kw: Any) -> duckdb.DuckDBPyRelation:
        self._next()  # a relation runs when fetched, before the next statement is made
        return self._conn.sql(query, **kw)

    def execute(self, query: str, *args: Any) -> duckdb.DuckDBPyConnection:
        self._next()
        return self._conn.execute(query, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


def duckdb_profile(
    conn: duckdb.DuckDBPyConnection,
    run: Callable[[duckdb.DuckDBPyConnection], object],
    out: Path,
    top: int = 8,
) -> dict[str, Any]:
    """DuckDB's own profile of every statement `run` makes on the cursor it is given (time
    per operator type, summed), beside the whole read's time in-process: what a read
    spends outside DuckDB (Arrow, numpy, pyarrow's Parquet reads) is the difference."""
    out.mkdir(parents=True, exist_ok=True)
    each = _EachStatement(conn, out)
    conn.execute("SET enable_profiling = 'json'")
    try:
        wall, cpu = time.perf_counter(), time.process_time()
        run(each)  # type: ignore[arg-type]
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    finally:
        conn.execute("SET enable_profiling = 'no_output'")
    by_type: Counter[str] = Counter()
    rows: Counter[str] = Counter()
    total = cpu_time = 0.0

    def walk(node: dict[str, Any]) -> None:
        by_type[node["type"]] += node.get("timing", 0.0)
        rows[node["type"]] += node.get("intermediate_rows", 0)
        for child in node.get("children", []):
            walk(child)

    statements = [json.loads(p.read_text()) for p in each.files if p.is_file()]
    for tree in statements:
        for op in tree.get("operator", []):
            walk(op)
        query = tree.get("query", {})
        total += query.get("total_time", 0.0)
        cpu_time += query.get("cpu_time", 0.0)
    return {
        "statements": len(each.files),
        "total_ms": round(1000 * total, 1),
        "cpu_ms": round(1000 * cpu_time, 1),
        "read_ms": round(1000 * wall, 1),
        "read_cpu_ms": round(1000 * cpu, 1),
        "operators": [
            (round(1000 * t, 1), f"{name} ({rows[name]:,} rows)")
            for name, t in by_type.most_common(top)
        ],
    }
