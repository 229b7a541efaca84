"""Media and histograms listed with `max_steps`: at most that many steps of each key,
spread evenly from its first to its last, against a model of the rule (the first step of
each of max_steps - 1 equal runs of the steps but the last, and the last step), on real
DuckDB tables from schema.sql."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from importlib.resources import files

import duckdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deardiary.projections.folds.media import histogram_id, media_id
from deardiary.projections.queries.media import histograms, media
from deardiary.schemas.errors import InvalidArgument

T = datetime(2024, 1, 1)


@pytest.fixture(scope="module")
def conn() -> Iterator[duckdb.DuckDBPyConnection]:
    connection = duckdb.connect()
    connection.execute(files("deardiary.projections").joinpath("schema.sql").read_text())
    yield connection
    connection.close()


def _fill(conn: duckdb.DuckDBPyConnection, steps: dict[str, list[int]]) -> None:
    conn.execute("DELETE FROM histograms")
    rows = [
        (histogram_id("it", key, step), "it", key, step, [0.0, 1.0], [float(step)], 1.0, 0.0, 1.0)
        for key, key_steps in steps.items()
        for step in key_steps
    ]
    if rows:
        conn.executemany(
            "INSERT INTO histograms VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [[*row, T, T] for row in rows],
        )


def _expected(steps: list[int], max_steps: int) -> list[int]:
    """The rule: split the sorted steps but the last into max_steps - 1 runs whose lengths
    differ by at most one (the longer runs first), keep each run's first step and the
    last step."""
    *ordered, last = sorted(steps)
    runs = max_steps - 1
    if len(ordered) <= runs:
        return [*ordered, last]
    size, longer = divmod(len(ordered), runs)
    kept, at = [], 0
    for run in range(runs):
        kept.append(ordered[at])
        at += size + (run < longer)
    return [*kept, last]


def _listed(conn: duckdb.DuckDBPyConnection, **kw: object) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for row in histograms(conn, "it", **kw).to_pylist():  # type: ignore[arg-type]
        out.setdefault(row["key"], []).append(row["step"])
    return out


@settings(max_examples=150, deadline=None, derandomize=True, database=None)
@given(
    st.dictionaries(
        st.sampled_from(["a", "b", "layer.0/w"]),
        st.sets(st.integers(0, 10**6), min_size=1, max_size=300).map(sorted),
        min_size=1,
    ),
    st.integers(2, 40),
)
def test_each_key_keeps_evenly_spread_steps_with_its_first_and_last(
    conn: duckdb.DuckDBPyConnection, steps: dict[str, list[int]], max_steps: int
) -> None:
    _fill(conn, steps)
    got = _listed(conn, max_steps=max_steps, limit=10_000)
    assert got == {key: _expected(s, max_steps) for key, s in sorted(steps.items())}
    for key, kept in got.items():
        assert len(kept) == min(len(steps[key]), max_steps)
        assert kept[0] == steps[key][0] and kept[-1] == steps[key][-1]


def test_key_steps_counts_the_window_and_limit_still_applies(
    conn: duckdb.DuckDBPyConnection,
) -> None:
    _fill(conn, {"a": list(range(100)), "b": list(range(0, 1000, 10))})
    rows = histograms(conn, "it", max_steps=5, min_step=10, max_step=50).to_pylist()
    assert [(r["key"], r["step"], r["key_steps"]) for r in rows] == [
        ("a", 10, 41), ("a", 20, 41), ("a", 30, 41), ("a", 40, 41), ("a", 50, 41),
        ("b", 10, 5), ("b", 20, 5), ("b", 30, 5), ("b", 40, 5), ("b", 50, 5),
    ]  # fmt: skip
    assert "_run" not in rows[0] and "histogram_id" not in rows[0]
    assert len(histograms(conn, "it", max_steps=10, limit=3)) == 3
    assert _listed(conn, key="b", max_steps=3) == {"b": [0, 500, 990]}
    # without max_steps, every step (up to the limit), each with its key's count
    whole = histograms(conn, "it", key="a").to_pylist()
    assert [r["step"] for r in whole] == list(range(100))
    assert {r["key_steps"] for r in whole} == {100}


def test_max_steps_below_two_is_refused(conn: duckdb.DuckDBPyConnection) -> None:
    for bad in (1, 0, -3):
        with pytest.raises(InvalidArgument):
            histograms(conn, "it", max_steps=bad)


def _fill_media(conn: duckdb.DuckDBPyConnection, items: dict[str, dict[int, int]]) -> None:
    """`items`: per key, how many items (indexes) each step has."""
    conn.execute("DELETE FROM media")
    rows = [
        (
            media_id("it", key, step, i),
            "it",
            key,
            step,
            i,
            "text",
            "",
            0,
            "text/plain",
            "",
            f"{key}/{step}/{i}",
            0,
            0,
            "{}",
            T,
            T,
        )
        for key, steps in items.items()
        for step, count in steps.items()
        for i in range(count)
    ]
    if rows:
        conn.executemany(f"INSERT INTO media VALUES ({', '.join('?' * 16)})", rows)


@settings(max_examples=100, deadline=None, derandomize=True, database=None)
@given(
    st.dictionaries(
        st.sampled_from(["samples", "text"]),
        st.dictionaries(st.integers(0, 10**6), st.integers(1, 3), min_size=1, max_size=200),
        min_size=1,
    ),
    st.integers(2, 30),
)
def test_media_keeps_every_item_of_the_spread_steps(
    conn: duckdb.DuckDBPyConnection, items: dict[str, dict[int, int]], max_steps: int
) -> None:
    _fill_media(conn, items)
    page = media(conn, "it", max_steps=max_steps, limit=10_000)
    rows = page.items.to_pylist()
    expected = [
        (key, step, i, len(steps))
        for key, steps in sorted(items.items())
        for step in _expected(list(steps), max_steps)
        for i in range(steps[step])
    ]
    assert [(r["key"], r["step"], r["index"], r["key_steps"]) for r in rows] == expected
    assert page.total == len(expected)
    whole = media(conn, "it", limit=10_000)  # without max_steps: every item
    assert whole.total == sum(sum(steps.values()) for steps in items.values())


def test_media_pages_through_the_spread_items(conn: duckdb.DuckDBPyConnection) -> None:
    _fill_media(conn, {"a": dict.fromkeys(range(100), 2)})
    first = media(conn, "it", max_steps=3, limit=4)
    rest = media(conn, "it", max_steps=3, limit=4, offset=4)
    assert first.total == rest.total == 6
    steps = [r["step"] for r in first.items.to_pylist() + rest.items.to_pylist()]
    assert steps == [0, 0, 50, 50, 99, 99]
    with pytest.raises(InvalidArgument):
        media(conn, "it", max_steps=1)
