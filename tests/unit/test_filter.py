"""The filter / order-by compiler, run for real against DuckDB tables built from schema.sql.

Every case checks the exact set (or order) of iteration ids, so a wrong operator,
precedence or NULL rule shows up as a wrong answer, not just as "it ran".
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from datetime import datetime
from importlib.resources import files

import duckdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deardiary.projections.queries.filter import CompiledFilter, CompiledSearch, compile_search
from deardiary.schemas.errors import ErrorCode, InvalidArgument

ALL = {"it1", "it2", "it3", "it4"}
NAN = math.nan
INF = math.inf
UNICODE_NAME = 'delta\'s "quoted" δέλτα 🚀'

Row = tuple[str, str, str, str, str | None, str | None, dict[str, str], str, str | None, bool]
ITERATIONS: list[Row] = [
    # id, experiment, name, status, parent, external_id, tags, created_at, end_date, archived
    ("it1", "e1", "alpha", "RUNNING", None, "ext-1",
     {"team": "vision", "prio": "2", "a/b~c": "x"}, "2024-01-01 00:00:00", None, False),
    ("it2", "e1", "beta", "SUCCEEDED", "it1", None,
     {"team": "nlp", "prio": "10"}, "2024-02-01 00:00:00", "2024-02-01 01:00:00", False),
    ("it3", "e2", "gamma", "FAILED", None, "42",
     {}, "2024-03-01 00:00:00", "2024-03-01 00:00:30", True),
    ("it4", "e2", UNICODE_NAME, "KILLED", None, None,
     {"team": "vision"}, "2023-12-31 00:00:00", "2024-01-01 00:00:00", False),
]  # fmt: skip
PARAMS = [
    ("it1", "lr", "0.1"),
    ("it1", "opt", "adam"),
    ("it1", "layers", "10"),
    ("it1", "my-key.x", "yes"),
    ("it2", "lr", "0.01"),
    ("it2", "opt", "sgd"),
    ("it2", "layers", "9"),
    ("it3", "lr", "1e-3"),
    ("it3", "opt", "adam"),
    ("it3", "note", "it's; DROP TABLE params; --"),
    ("it4", "lr", "abc"),
    ("it4", "opt", "Adam"),
]
# iteration, key, first, last, min, max, mean, count
METRICS: list[tuple[str, str, float, float, float | None, float | None, float | None, int]] = [
    ("it1", "loss", 2.0, 0.5, 0.4, 2.0, 1.0, 10),
    ("it1", "acc", 0.1, 0.8, 0.1, 0.8, 0.5, 10),
    ("it1", "x", 1.0, 2.0, 1.0, 3.0, 2.0, 3),
    ("it2", "loss", 1.5, 0.3, 0.3, 1.5, 0.7, 20),
    ("it2", "acc", 0.2, NAN, 0.2, 0.2, 0.2, 20),
    ("it3", "loss", 0.9, NAN, 0.9, 0.9, None, 5),
    ("it3", "acc", 0.5, INF, 0.5, 0.5, 0.5, 5),
    ("it4", "val.loss", 1.0, 1.0, 1.0, 1.0, 1.0, 1),
    ("it4", "x.max", 7.0, 7.0, 7.0, 7.0, 7.0, 1),
]

# the same keys in other groups (issue 14): a validation loss is its own series
GROUPED_METRICS: list[
    tuple[str, str, float, float, float | None, float | None, float | None, int, str]
] = [
    ("it1", "loss", 3.0, 2.5, 2.5, 3.0, 2.7, 4, "val"),
    ("it3", "loss", 0.2, 0.1, 0.1, 0.2, 0.15, 2, "val"),
    ("it4", "loss", 9.0, 9.0, 9.0, 9.0, 9.0, 1, "my group"),
]


def _build(conn: duckdb.DuckDBPyConnection) -> None:
    conn.execute(files("deardiary.projections").joinpath("schema.sql").read_text())
    for it, exp, name, status, parent, ext, tags, created, end, archived in ITERATIONS:
        conn.execute(
            "INSERT INTO iterations (iteration_id, experiment_id, project_id, name,"
            " parent_iteration_id, external_id, status, error_message, notes, tags, metadata,"
            " archived, deleted, created_by, created_at, updated_at, end_date, last_heartbeat,"
            " description, config)"
            " VALUES (?, ?, 'p1', ?, ?, ?, ?, '', '', ?, '{}', ?, FALSE, 'u', ?,"
            " TIMESTAMP '2024-06-01', ?, TIMESTAMP '2024-06-01', '', '{}')",
            [it, exp, name, parent, ext, status, json.dumps(tags), archived, created, end],
        )
    for it, key, value in PARAMS:
        conn.execute(
            "INSERT INTO params VALUES (?, ?, ?, '', TIMESTAMP '2024-01-01', 'str')",
            [it, key, value],
        )
    grouped = [(*m, "") for m in METRICS] + GROUPED_METRICS
    for it, key, first, last, lo, hi, mean, count, group in grouped:
        conn.execute(
            "INSERT INTO last_metrics VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0, 0, NULL, NULL, 0, 0, 0,"
            " TIMESTAMP '2024-01-01', ?)",
            [it, key, first, last, lo, hi, mean, count, group],
        )


@pytest.fixture(scope="module")
def conn() -> Iterator[duckdb.DuckDBPyConnection]:
    connection = duckdb.connect()
    _build(connection)
    yield connection
    connection.close()


def search_filter(expression: str) -> CompiledSearch:
    return compile_search(expression, "")


def search_order(spec: str) -> CompiledSearch:
    return compile_search("", spec)


def searched(conn: duckdb.DuckDBPyConnection, expression: str, spec: str) -> list[str]:
    search = compile_search(expression, spec)
    sql = (
        f"SELECT i.iteration_id FROM {search.source.sql} WHERE {search.where.sql}"
        f" ORDER BY {search.order.sql}"
    )
    params = [*search.source.params, *search.where.params, *search.order.params]
    return [row[0] for row in conn.execute(sql, params).fetchall()]


def ids(conn: duckdb.DuckDBPyConnection, expression: str) -> set[str]:
    """The ids the filter selects (no id twice: the joins keep one row per iteration)."""
    found = searched(conn, expression, "")
    assert len(found) == len(set(found))
    return set(found)


def ordered(conn: duckdb.DuckDBPyConnection, spec: str) -> list[str]:
    """The ids in that order."""
    return searched(conn, "", spec)


def _error(call: object, text: str) -> InvalidArgument:
    assert callable(call)
    with pytest.raises(InvalidArgument) as info:
        call(text)
    assert info.value.code == ErrorCode.INVALID_ARGUMENT
    return info.value


CASES: list[tuple[str, set[str]]] = [
    # params: strings
    ("params.opt = 'adam'", {"it1", "it3"}),
    ("params.opt != 'adam'", {"it2", "it4"}),
    ("params.opt <> 'adam'", {"it2", "it4"}),
    ("params.opt == 'adam'", {"it1", "it3"}),
    ("params.opt LIKE 'a%'", {"it1", "it3"}),
    ("params.opt ILIKE 'adam'", {"it1", "it3", "it4"}),
    ("params.opt NOT LIKE 'a%'", {"it2", "it4"}),
    ("params.opt NOT ILIKE 'A%'", {"it2"}),
    ("params.opt like '_dam'", {"it1", "it3", "it4"}),
    ("params.layers >= '10'", {"it1", "it2"}),
    ("params.layers > '9'", set()),
    ("params.lr = '1e-3'", {"it3"}),
    ("params.lr = '0.001'", set()),
    # params: numbers compare numerically, non-numbers never equal a number
    ("params.layers > 9", {"it1"}),
    ("params.layers <= 9.0", {"it2"}),
    ("params.lr < 0.05", {"it2", "it3"}),
    ("params.lr = 0.001", {"it3"}),
    ("params.lr = 1E-3", {"it3"}),
    ("params.lr != 0.1", {"it2", "it3", "it4"}),
    ("params.lr > -1", {"it1", "it2", "it3"}),
    ("params.lr IN (0.1, 'abc')", {"it1", "it4"}),
    ("params.lr NOT IN (0.1, 'abc')", {"it2", "it3"}),
    ("params.opt IN ('sgd')", {"it2"}),
    ("params.note IS NOT NULL", {"it3"}),
    ("params.note IS NULL", {"it1", "it2", "it4"}),
    ("params.opt is null", set()),
    # a missing param makes every comparison false, and NOT its complement
    ("params.missing = 'x'", set()),
    ("params.missing != 'x'", set()),
    ("NOT params.missing = 'x'", ALL),
    ("params.`my-key.x` = 'yes'", {"it1"}),
    ("params.my-key.x = 'yes'", {"it1"}),
    ("param.`my-key`.x = 'yes'", {"it1"}),
    ("params.学习率 = 'x'", set()),
    # metrics: latest value, IEEE ordering, NaN / infinity literals
    ("metrics.loss < 0.45", {"it2"}),
    ("metrics.loss > 0.4", {"it1"}),
    ("metrics.loss >= 0.3", {"it1", "it2"}),
    ("metrics.loss <= 0.3", {"it2"}),
    ("metrics.loss = 0.5", {"it1"}),
    ("metrics.loss != 0.5", {"it2", "it3"}),
    ("metrics.loss = NaN", {"it3"}),
    ("metrics.loss = nan", {"it3"}),
    ("metrics.loss != NaN", {"it1", "it2"}),
    ("metrics.loss IN (0.3, NaN)", {"it2", "it3"}),
    ("metrics.loss NOT IN (0.3, NaN)", {"it1"}),
    ("metrics.acc = Infinity", {"it3"}),
    ("metrics.acc = inf", {"it3"}),
    ("metrics.acc > 1", {"it3"}),
    ("metrics.acc < Infinity", {"it1"}),
    ("metrics.acc >= -Infinity", {"it1", "it3"}),
    ("metrics.acc = -Infinity", set()),
    ("metrics.acc > 8e-1", {"it3"}),
    ("metric.acc > .5", {"it1", "it3"}),
    ("metrics.loss IS NULL", {"it4"}),
    ("metrics.loss IS NOT NULL", {"it1", "it2", "it3"}),
    # metric summaries
    ("metrics.loss.min <= 0.4", {"it1", "it2"}),
    ("metrics.loss.max = 2", {"it1"}),
    ("metrics.loss.first = 2.0", {"it1"}),
    ("metrics.loss.last = 0.3", {"it2"}),
    ("metrics.loss.count >= 20", {"it2"}),
    ("metrics.loss.count IN (5, 10)", {"it1", "it3"}),
    ("metrics.loss.mean > 0.8", {"it1"}),
    ("metrics.loss.mean IS NULL", {"it3", "it4"}),
    ("metrics.loss.mean != 5", {"it1", "it2"}),
    ("metrics.val.loss = 1", {"it4"}),
    ("metrics.x.max = 3", {"it1"}),
    ("metrics.`x.max` = 7", {"it4"}),
    ("metrics.x.`max` = 7", {"it4"}),
    # tags
    ("tags.team = 'vision'", {"it1", "it4"}),
    ("tags.team != 'vision'", {"it2"}),
    ("tags.team LIKE 'v%'", {"it1", "it4"}),
    ("tags.team IS NULL", {"it3"}),
    ("tags.prio > 5", {"it2"}),
    ("tags.prio > '5'", set()),
    ("tags.`a/b~c` = 'x'", {"it1"}),
    ("tag.team IN ('nlp', 'other')", {"it2"}),
    # attributes
    ("status = 'RUNNING'", {"it1"}),
    ("status = 'running'", {"it1"}),
    ("status != 'running'", {"it2", "it3", "it4"}),
    ("status IN ('failed', 'Killed')", {"it3", "it4"}),
    ("status NOT IN ('failed', 'Killed')", {"it1", "it2"}),
    ("status LIKE 'S%'", {"it2"}),
    ("name = 'beta'", {"it2"}),
    ("Name = 'beta'", {"it2"}),
    ("run_name = 'beta'", {"it2"}),
    ("attributes.name = 'beta'", {"it2"}),
    ("name ILIKE '%TA'", {"it2"}),
    ("id = 'it2'", {"it2"}),
    ("run_id = 'it1'", {"it1"}),
    ("iteration_id IN ('it1', 'it3', 'nope')", {"it1", "it3"}),
    ("experiment_id = 'e2'", {"it3", "it4"}),
    ("project_id = 'p1'", ALL),
    ("parent_iteration_id = 'it1'", {"it2"}),
    ("parent_iteration_id IS NULL", {"it1", "it3", "it4"}),
    ("parent_iteration_id != 'it1'", set()),
    ("NOT parent_iteration_id = 'it1'", {"it1", "it3", "it4"}),
    ("external_id = 'ext-1'", {"it1"}),
    ("external_id = 42", {"it3"}),
    ("external_id IS NOT NULL", {"it1", "it3"}),
    ("archived = true", {"it3"}),
    ("archived = 'false'", {"it1", "it2", "it4"}),
    ("archived = 1", {"it3"}),
    ("archived != TRUE", {"it1", "it2", "it4"}),
    ("archived IN (false)", {"it1", "it2", "it4"}),
    # times: ISO strings (naive = UTC, offsets converted) and epoch seconds / milliseconds
    ("created_at >= '2024-02-01'", {"it2", "it3"}),
    ("start_time < '2024-01-01T00:00:00Z'", {"it4"}),
    ("created_at = '2024-01-01T01:00:00+01:00'", {"it1"}),
    ("created_at = '2024-01-01 00:00:00'", {"it1"}),
    ("created_at >= 1706745600", {"it2", "it3"}),
    ("created_at >= 1706745600000", {"it2", "it3"}),
    ("created_at < 1704067200.5", {"it1", "it4"}),
    ("created_at IN ('2024-01-01', '2024-03-01')", {"it1", "it3"}),
    ("end_date IS NULL", {"it1"}),
    ("end_time > '2024-01-15'", {"it2", "it3"}),
    ("end_date != '2024-01-01'", {"it2", "it3"}),
    # duration: seconds, a running iteration counts up to now
    ("duration = 3600", {"it2"}),
    ("duration < 60", {"it3"}),
    ("duration > 86400", {"it1"}),
    ("duration >= 86400", {"it1", "it4"}),
    # boolean structure: precedence NOT > AND > OR, parentheses, case-insensitive keywords
    ("status = 'RUNNING' OR name = 'beta' AND params.opt = 'sgd'", {"it1", "it2"}),
    ("(status = 'RUNNING' OR name = 'beta') AND params.opt = 'sgd'", {"it2"}),
    ("params.opt = 'sgd' AND name = 'beta' OR status = 'RUNNING'", {"it1", "it2"}),
    ("params.opt = 'sgd' AND (name = 'beta' OR status = 'RUNNING')", {"it2"}),
    ("NOT status = 'RUNNING' AND archived = false", {"it2", "it4"}),
    ("NOT (status = 'RUNNING' AND archived = false)", {"it2", "it3", "it4"}),
    ("NOT NOT status = 'RUNNING'", {"it1"}),
    ("not (not (status = 'RUNNING'))", {"it1"}),
    ("status = 'running' or NAME = 'gamma' and not archived = false", {"it1", "it3"}),
    ("((metrics.loss < 1)) and (tags.team = 'nlp' or tags.team = 'vision')", {"it1", "it2"}),
    ("metrics.loss < 1 OR metrics.loss = NaN OR metrics.loss IS NULL", ALL),
    ("status = 'RUNNING'\n\tOR\r\nstatus = 'FAILED'", {"it1", "it3"}),
    ("", ALL),
    ("   \n ", ALL),
]


@pytest.mark.parametrize(("expression", "expected"), CASES)
def test_filter_selects_exact_ids(
    conn: duckdb.DuckDBPyConnection, expression: str, expected: set[str]
) -> None:
    assert ids(conn, expression) == expected


@pytest.mark.parametrize("expression", [e for e, _ in CASES if e.strip()])
def test_not_is_the_exact_complement(conn: duckdb.DuckDBPyConnection, expression: str) -> None:
    matched = ids(conn, expression)
    assert ids(conn, f"NOT ({expression})") == ALL - matched


def test_values_are_bound_never_pasted() -> None:
    search = search_filter("params.`k'q` = 'zz''zz' AND metrics.m > 1.5 AND tags.t = 'x'")
    for part in (search.source, search.where):
        assert "k'q" not in part.sql and "zz" not in part.sql and "1.5" not in part.sql
        assert part.sql.count("?") == len(part.params)
    # the metric's key and group ("") and the key scanned; the param's test, key and key
    assert search.source.params == ["m", "", "m", "zz'zz", "k'q", "k'q"]
    assert search.where.params == [1.5, "/t", "x"]
    empty = search_filter("")
    assert (empty.source, empty.where) == (
        CompiledFilter("iterations i", []),
        CompiledFilter("TRUE", []),
    )


ORDERS: list[tuple[str, list[str]]] = [
    ("", ["it1", "it2", "it3", "it4"]),
    ("metrics.loss ASC", ["it2", "it1", "it3", "it4"]),
    ("metrics.loss", ["it2", "it1", "it3", "it4"]),
    ("metrics.loss DESC", ["it1", "it2", "it3", "it4"]),
    ("metrics.acc desc", ["it3", "it1", "it2", "it4"]),
    ("metrics.loss.count DESC", ["it2", "it1", "it3", "it4"]),
    ("params.lr ASC", ["it3", "it2", "it1", "it4"]),
    ("params.lr DESC", ["it1", "it2", "it3", "it4"]),
    ("params.layers DESC", ["it1", "it2", "it3", "it4"]),
    ("params.layers ASC", ["it2", "it1", "it3", "it4"]),
    ("tags.prio DESC", ["it2", "it1", "it3", "it4"]),
    ("tags.team ASC, created_at DESC", ["it2", "it1", "it4", "it3"]),
    ("created_at DESC", ["it3", "it2", "it1", "it4"]),
    ("start_time", ["it4", "it1", "it2", "it3"]),
    ("end_date DESC", ["it3", "it2", "it4", "it1"]),
    ("experiment_id DESC, name ASC", ["it4", "it3", "it1", "it2"]),
    ("archived", ["it1", "it2", "it4", "it3"]),
    ("duration DESC", ["it1", "it4", "it2", "it3"]),
    ("status", ["it3", "it4", "it1", "it2"]),
]


@pytest.mark.parametrize(("spec", "expected"), ORDERS)
def test_order_by(conn: duckdb.DuckDBPyConnection, spec: str, expected: list[str]) -> None:
    assert ordered(conn, spec) == expected


def test_order_by_ends_with_tiebreak_and_binds_keys() -> None:
    search = search_order("params.`a'b` DESC")
    assert search.order.sql.endswith("i.iteration_id ASC")
    assert "a'b" not in search.source.sql + search.order.sql
    assert search.source.params == ["a'b", "a'b"] and search.order.params == []
    assert search_order("").order == CompiledFilter("i.iteration_id ASC", [])


def test_filter_and_order_combine(conn: duckdb.DuckDBPyConnection) -> None:
    assert searched(conn, "experiment_id = 'e1' OR metrics.acc > 0", "metrics.acc DESC") == [
        "it3",
        "it1",
        "it2",
    ]


ERRORS: list[tuple[str, int]] = [
    ("params.x = ", 12),
    ("status = 'x' AND", 17),
    ("foo = 1", 1),
    ("i.iteration_id = 'it1'", 1),
    ("attributes.nope = 1", 1),
    ("status = 'abc", 10),
    ("(status = 'x'", 14),
    ("status = 'x')", 13),
    ("status == 'x' AND name ~ 'y'", 24),
    ("metrics.loss < 'a'", 16),
    ("metrics.loss < NaN", 16),
    ("metrics.loss LIKE 'a'", 14),
    ("params.lr LIKE 5", 16),
    ("params.lr LIKE 'abc\\\\'", 16),
    ("status IN ()", 12),
    ("status IN ('a' 'b')", 16),
    ("status IN 'a'", 11),
    ("created_at > 'yesterday'", 14),
    ("created_at > 1e300", 14),
    ("created_at LIKE '2024%'", 12),
    ("duration > '1h'", 12),
    ("archived = 'maybe'", 12),
    ("archived > true", 10),
    ("name = true", 8),
    ("name = NaN", 8),
    ("params.x = false", 12),
    ("status = NULL", 10),
    ("params.x = 1 2", 14),
    ("params. = 1", 8),
    ("params.`` = 1", 1),
    ("metrics.loss < 1.2.3", 16),
    ("metrics.loss < 12abc", 16),
    ("status NOT = 'x'", 12),
    ("status IS 'x'", 11),
    ("NOT", 4),
    ("AND status = 'x'", 1),
    ("status", 7),
    ("`status", 1),
    ("status` = 'x'", 7),
]


@pytest.mark.parametrize(("expression", "column"), ERRORS)
def test_errors_point_at_the_column(expression: str, column: int) -> None:
    error = _error(search_filter, expression)
    assert error.details["column"] == column, error.message
    assert f"column {column}" in error.message


def test_errors_on_later_lines_give_line_and_column() -> None:
    error = _error(search_filter, "status = 'a'\n  AND foo = 1")
    assert (error.details["line"], error.details["column"]) == (2, 7)
    assert "line 2, column 7" in error.message


@pytest.mark.parametrize(
    ("spec", "column"),
    [("metrics.loss UP", 14), ("foo", 1), ("created_at DESC,", 17), ("ASC", 1), ("a b", 3)],
)
def test_order_by_errors(spec: str, column: int) -> None:
    assert _error(search_order, spec).details["column"] == column


def test_limits(conn: duckdb.DuckDBPyConnection) -> None:
    _error(search_filter, "status = '" + "x" * 10_000 + "'")
    _error(search_order, ", ".join(["created_at"] * 17))
    assert len(ordered(conn, ", ".join(["created_at"] * 16))) == 4
    deep = "(" * 64 + "status = 'RUNNING'" + ")" * 64
    assert ids(conn, deep) == {"it1"}
    assert ids(conn, "NOT " * 64 + "status = 'RUNNING'") == {"it1"}
    _error(search_filter, "(" * 65 + "status = 'RUNNING'" + ")" * 65)
    _error(search_filter, "NOT " * 65 + "status = 'RUNNING'")
    wide = " OR ".join(["metrics.loss = 0.5"] * 100)
    assert ids(conn, wide) == {"it1"}
    error = _error(search_filter, wide + " OR status = 'x'")
    assert error.details["column"] == len(wide) + 5


INJECTIONS: list[tuple[str, set[str]]] = [
    ("name = 'x''; DROP TABLE iterations; --'", set()),
    ("params.note = 'it''s; DROP TABLE params; --'", {"it3"}),
    ('params.note = "it\'s; DROP TABLE params; --"', {"it3"}),
    ("params.note = 'it\\'s; DROP TABLE params; --'", {"it3"}),
    ("params.note LIKE '%DROP TABLE%'", {"it3"}),
    ("name = 'delta''s \"quoted\" δέλτα 🚀'", {"it4"}),
    ('name = "delta\'s ""quoted"" δέλτα 🚀"', {"it4"}),
    ("params.`x'; DROP TABLE params; --` = 'a'", set()),
    ("params.`a``b` = 1", set()),
    ("params.`lr') OR ('1'='1` = 'abc'", set()),
    ("tags.`team') OR ('1'='1` = 'x'", set()),
    ("tags.`$.team` = 'vision'", set()),
    ("name = '%' OR name = '_'", set()),
    ("name LIKE '%' AND archived = true", {"it3"}),
    ("name = 'x\\\\'' OR 1=1 --'", set()),  # the string x\' OR 1=1 --
]


@pytest.mark.parametrize(("expression", "expected"), INJECTIONS)
def test_injection_attempts_stay_literals(
    conn: duckdb.DuckDBPyConnection, expression: str, expected: set[str]
) -> None:
    assert ids(conn, expression) == expected
    assert conn.execute("SELECT count(*) FROM iterations").fetchone() == (4,)
    assert conn.execute("SELECT count(*) FROM params").fetchone() == (len(PARAMS),)


@pytest.mark.parametrize(
    "expression",
    [
        "status = 'x'; DROP TABLE iterations",
        "status = 'x' -- comment",
        "status = 'x' /* comment */",
        "status = 'x' OR 1=1",
        "1=1 OR status = 'x'",
        "status = 'x' UNION SELECT 1",
        "name = 'a\\'",
        "name = 'a\x00b'",
        "name = '\ud800'",
        "name = \u2018x\u2019",
        "params.x LIKE '%' ESCAPE ''",
        "status = 'x' ; --",
        "params.`x` `y` = 1",
        "status = $1",
        "status = ?",
        "status = :name",
    ],
)
def test_injection_attempts_are_rejected(conn: duckdb.DuckDBPyConnection, expression: str) -> None:
    _error(search_filter, expression)
    assert conn.execute("SELECT count(*) FROM iterations").fetchone() == (4,)


def _runs(conn: duckdb.DuckDBPyConnection, expression: str) -> None:
    """Compile or raise InvalidArgument; whatever compiles must execute."""
    try:
        search_filter(expression)
    except InvalidArgument:
        return
    ids(conn, expression)


TOKENS = st.sampled_from(
    [
        "params.lr", "metrics.loss", "metrics.loss.min", "tags.team", "status", "name", "id",
        "created_at", "end_date", "duration", "archived", "params.`a b`", "metrics.`x.max`",
        "=", "!=", "<", "<=", ">", ">=", "LIKE", "ILIKE", "IN", "NOT", "IS", "NULL", "AND", "OR",
        "(", ")", ",", "'a%'", '"x"', "'2024-01-01'", "0", "-1.5", "1e3", "NaN", "-Infinity",
        "true", "'\\'", "'a\\\\'", "`", ";", "--", "'", "''", "1704067200000",
    ]
)  # fmt: skip


@settings(max_examples=400, deadline=None, derandomize=True, database=None)
@given(st.lists(TOKENS, max_size=12).map(" ".join))
def test_token_soup_compiles_and_runs_or_is_invalid(
    conn: duckdb.DuckDBPyConnection, expression: str
) -> None:
    _runs(conn, expression)


FIELDS = st.sampled_from(
    [
        "params.lr", "params.opt", "metrics.loss", "metrics.acc.max", "metrics.loss.count",
        "tags.team", "tags.`a/b~c`", "status", "name", "external_id", "created_at", "end_time",
        "duration", "archived", "params.`x'y`", "metrics.nope",
    ]
)  # fmt: skip
OPERATORS = st.sampled_from(
    ["=", "!=", "<", "<=", ">", ">=", "LIKE", "ILIKE", "NOT LIKE", "NOT ILIKE", "IN", "NOT IN"]
)
VALUES = st.one_of(
    st.sampled_from(
        [
            "'adam'", "'a%'", "'a\\\\'", "'\\%x'", "'\\_'", '"x""y"', "'2024-01-01T00:00:00Z'",
            "0", "-1.5", "1e3", "1e400", "NaN", "-Infinity", "true", "FALSE", "1704067200000",
            "-99999999999999999999", "'RUNNING'", "'0.1'",
        ]
    ),
    st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=8).map(
        lambda text: "'" + text.replace("'", "''") + "'"
    ),
    st.floats(allow_nan=False).map(repr),
)  # fmt: skip


@st.composite
def comparisons(draw: st.DrawFn) -> str:
    field, op = draw(FIELDS), draw(OPERATORS)
    if draw(st.integers(0, 9)) == 0:
        return f"{field} IS {draw(st.sampled_from(['', 'NOT ']))}NULL"
    if op.endswith("IN"):
        return f"{field} {op} ({', '.join(draw(st.lists(VALUES, min_size=1, max_size=3)))})"
    return f"{field} {op} {draw(VALUES)}"


EXPRESSIONS = st.recursive(
    comparisons(),
    lambda inner: st.one_of(
        st.tuples(inner, st.sampled_from([" AND ", " OR ", " and ", " OR NOT "]), inner).map(
            "".join
        ),
        inner.map(lambda e: f"NOT ({e})"),
        inner.map(lambda e: f"({e})"),
    ),
    max_leaves=6,
)


@settings(max_examples=1500, deadline=None, derandomize=True, database=None)
@given(EXPRESSIONS)
def test_generated_expressions_compile_and_run_or_are_invalid(
    conn: duckdb.DuckDBPyConnection, expression: str
) -> None:
    _runs(conn, expression)


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(st.text(st.characters(codec="utf-8"), max_size=80))
def test_random_text_compiles_and_runs_or_is_invalid(
    conn: duckdb.DuckDBPyConnection, expression: str
) -> None:
    _runs(conn, expression)


@settings(max_examples=200, deadline=None, derandomize=True, database=None)
@given(st.lists(TOKENS, max_size=6).map(" ".join))
def test_order_by_soup_compiles_and_runs_or_is_invalid(
    conn: duckdb.DuckDBPyConnection, spec: str
) -> None:
    try:
        search_order(spec)
    except InvalidArgument:
        return
    assert sorted(ordered(conn, spec)) == sorted(ALL)


def test_time_literals_bind_as_naive_utc() -> None:
    compiled = search_filter("created_at > '2024-06-01T12:00:00-02:00'").where
    assert compiled.params == [datetime(2024, 6, 1, 14, 0)]
