"""One series' points read straight from the Parquet segments, with pyarrow.

A full series read is mostly its segments: DuckDB scanned a million points of one series
and converted them to Arrow in ~35 ms of CPU here; pyarrow decodes the same row groups
in ~5. The files come from the reader's snapshot (the `metric_segment_files` view lists
the same files as `metric_segment_points`, replaced with it in one transaction), so a
read still sees one state: a compaction after that statement leaves the files it names
on disk (RETIRE_AFTER_S) and this read goes on reading them.

Which row groups hold the series is decided from their statistics (cached per file:
segments are immutable), as DuckDB's scan did: a row group whose name columns are the
series' alone is read whole, one that may hold it among others is read with its name
columns and filtered, the rest are skipped.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

NAMES = ("iteration_id", "key", "group")
FILES_VIEW = "metric_segment_files"
"""The view listing the segment files of a snapshot: one row, `paths` (VARCHAR[]), in
the order `metric_segment_points` scans them, and `tiles`, their tile files (those
`metric_tiles` reads)."""
EXACT_STATS_BYTES = 255
"""A string statistic at least this long may be a truncated bound (DuckDB cuts them at
256 bytes): such a row group is never taken as the series' alone."""
FOOTERS_LIMIT = 4096
"""Files whose footers are kept (a few KiB each); cleared when full."""


def files_view_sql(paths: list[str], tiles: list[str]) -> str:
    """The `metric_segment_files` view's query for these segments (scan order) and their
    tile files."""

    def listed(files: list[str]) -> str:
        return "[" + ", ".join("'" + p.replace("'", "''") + "'" for p in files) + "]::VARCHAR[]"

    return f"SELECT {listed(paths)} AS paths, {listed(tiles)} AS tiles"


HOT_SERIES_VIEW = "metric_hot_series"
"""The series that have points not compacted yet (iteration_id, key, group); a row of
NULLs where the store cannot tell (every series may: the Kafka exports view)."""
UNKNOWN_HOT_SERIES = (
    'SELECT NULL::VARCHAR AS iteration_id, NULL::VARCHAR AS key, NULL::VARCHAR AS "group"'
)


@dataclass(frozen=True, slots=True)
class SeriesFiles:
    """Where a snapshot holds one series: its segment files (scan order), their tile
    files, and whether it may have points not compacted yet (else their query, ~3 ms of
    CPU here even when it finds nothing, is skipped)."""

    paths: list[str]
    tiles: list[str]
    hot: bool


def segment_files(conn: duckdb.DuckDBPyConnection, series: tuple[str, str, str]) -> SeriesFiles:
    """The files of the reader's snapshot, and whether `series` has hot points in it."""
    found = conn.execute(
        f"SELECT paths, tiles, EXISTS (SELECT 1 FROM {HOT_SERIES_VIEW} WHERE iteration_id IS NULL"
        ' OR (iteration_id = $it AND key = $key AND "group" = $g)) FROM ' + FILES_VIEW,
        {"it": series[0], "key": series[1], "g": series[2]},
    ).fetchall()
    if not found:
        return SeriesFiles([], [], True)
    paths, tiles, hot = found[0]
    return SeriesFiles([str(p) for p in paths], [str(p) for p in tiles], bool(hot))


@dataclass(frozen=True, slots=True)
class _Group:
    """A row group's bounds: per name column (min, max) bytes, None where unknown; the
    step range, None where unknown."""

    names: tuple[tuple[bytes, bytes] | None, ...]
    steps: tuple[int, int] | None


@dataclass(frozen=True, slots=True)
class _Footer:
    identity: tuple[int, int, int]  # inode, size, mtime: a file rewritten is read again
    metadata: pq.FileMetaData
    groups: tuple[_Group, ...]


_footers: dict[str, _Footer] = {}
_footers_lock = threading.Lock()


def _footer(path: str) -> _Footer:
    st = os.stat(path)
    identity = (st.st_ino, st.st_size, st.st_mtime_ns)
    known = _footers.get(path)
    if known is not None and known.identity == identity:
        return known
    metadata = pq.read_metadata(path)
    columns = {metadata.schema.column(i).name: i for i in range(metadata.num_columns)}
    groups = []
    for g in range(metadata.num_row_groups):
        rg = metadata.row_group(g)
        names = tuple(_bounds(rg.column(columns[n]).statistics) for n in NAMES)
        step = rg.column(columns["step"]).statistics if "step" in columns else None  # tiles: none
        steps = (int(step.min), int(step.max)) if step is not None and step.has_min_max else None
        groups.append(_Group(names, steps))
    footer = _Footer(identity, metadata, tuple(groups))
    with _footers_lock:
        if len(_footers) >= FOOTERS_LIMIT:
            _footers.clear()
        _footers[path] = footer
    return footer


def _bounds(stats: pq.Statistics | None) -> tuple[bytes, bytes] | None:
    if stats is None or not stats.has_min_max:
        return None
    return bytes(stats.min_raw), bytes(stats.max_raw)


def _holds(group: _Group, wanted: tuple[bytes, ...], lo: int | None, hi: int | None) -> str:
    """'all' (every row is the series'), 'some' (may hold it among others) or 'none'."""
    if group.steps is not None and (
        (lo is not None and group.steps[1] < lo) or (hi is not None and group.steps[0] > hi)
    ):
        return "none"
    pairs = list(zip(group.names, wanted, strict=True))
    for bounds, value in pairs:  # bounds hold over all rows: any column can exclude
        if bounds is not None and (value < bounds[0] or value > bounds[1]):
            return "none"
    alone = all(
        bounds is not None and bounds[0] == bounds[1] == value and len(value) < EXACT_STATS_BYTES
        for bounds, value in pairs
    )
    return "all" if alone else "some"


def series_points(
    files: list[str],
    series: tuple[str, str, str],
    columns: list[str],
    lo: int | None,
    hi: int | None,
    schema: pa.Schema,
) -> pa.Table:
    """`columns` of the series' rows in `files` (segments, or tile files with lo = hi =
    None), in file then row order, with lo <= step <= hi (None: unbounded), as `schema`."""
    wanted = tuple(v.encode() for v in series)
    parts: list[pa.Table] = []
    for path in files:
        footer = _footer(path)
        kinds = [_holds(g, wanted, lo, hi) for g in footer.groups]
        if all(k == "none" for k in kinds):
            continue
        reader = pq.ParquetFile(path, metadata=footer.metadata, read_dictionary=list(NAMES))
        run: list[int] = []
        for index, kind in enumerate([*kinds, "none"]):
            if kind == "all":
                run.append(index)
                continue
            if run:  # consecutive whole row groups in one read
                parts.append(reader.read_row_groups(run, columns=columns, use_threads=False))
                run = []
            if kind == "some":
                parts.append(_filtered(reader, index, series, columns))
    if not parts:
        return schema.empty_table()
    # Files differ in their columns' nullability (OPTIONAL where written from Arrow:
    # compaction since 4f37111 and replay's direct segments; REQUIRED in older compacted
    # segments): the parts' schemas are unified, their values are the same.
    table = pa.concat_tables(parts, promote_options="default") if len(parts) > 1 else parts[0]
    if lo is not None or hi is not None:
        steps = table["step"]
        keep = pc.and_(
            pc.greater_equal(steps, lo if lo is not None else np.iinfo(np.int64).min),
            pc.less_equal(steps, hi if hi is not None else np.iinfo(np.int64).max),
        )
        table = table.filter(keep)
    return table.cast(schema)


def _filtered(
    reader: pq.ParquetFile, index: int, series: tuple[str, str, str], columns: list[str]
) -> pa.Table:
    """The series' rows of one row group that holds others' too."""
    group = reader.read_row_group(index, columns=[*columns, *NAMES], use_threads=False)
    keep: pa.ChunkedArray | None = None
    for name, value in zip(NAMES, series, strict=True):
        match = _equal(group[name], value)
        keep = match if keep is None else pc.and_(keep, match)
    assert keep is not None
    return group.filter(keep).select(columns)


def _equal(column: pa.ChunkedArray, value: str) -> pa.ChunkedArray:
    """column == value, for a dictionary-encoded string column (compared by index)."""
    chunks = []
    for chunk in column.chunks:
        if pa.types.is_dictionary(chunk.type):
            at = np.flatnonzero(chunk.dictionary.to_numpy(zero_copy_only=False) == value)
            if len(at) == 0:
                chunks.append(pa.array(np.zeros(len(chunk), dtype=bool)))
                continue
            chunks.append(pc.is_in(chunk.indices, pa.array(at, chunk.indices.type)))
        else:
            chunks.append(pc.equal(chunk, value))
    return pa.chunked_array(chunks, pa.bool_())
