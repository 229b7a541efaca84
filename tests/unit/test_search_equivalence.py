"""Searches with metric and param filters and orders, checked against a plain Python
reading of the language over the same rows.

The iterations, their params (keys in several sections) and series summaries (NaN,
±Infinity, NULL summaries, missing series, other groups) are generated from a seed;
Hypothesis writes filters (comparisons joined with AND / OR / NOT and parentheses) and
orders, and search_iterations must give exactly the rows, order and total the Python
evaluation gives, for any page (offset, limit) and experiment scope.
"""

from __future__ import annotations

import functools
import json
import math
import random
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from importlib.resources import files
from typing import Any

import duckdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deardiary.projections.queries.iterations import search_iterations
from deardiary.projections.queries.runs_table import runs_table

NOW = datetime(2026, 3, 1)
LOST = datetime(2026, 1, 1, 12)
METRIC_KEYS = ("loss", "acc", "lr")
GROUPS = ("", "val")
AGGS = ("last", "first", "min", "max", "mean", "count")
PARAM_KEYS = ("lr", "opt", "n")
SECTIONS = ("", "s1", "s2")
PARAM_VALUES = ("0.1", "1e-3", "abc", "10", "9", "", "adam", "Adam", "-2", "nan", "inf", "1")
FLOATS = (math.nan, math.inf, -math.inf, 0.0, 0.5, 1.0, -1.0, 2.0, 0.1)
TEAMS = ("vision", "nlp", "10", "2")
STATUSES = ("RUNNING", "SUCCEEDED", "FAILED")


@dataclass
class Iteration:
    iteration_id: str
    experiment_id: str
    name: str
    status: str
    tags: dict[str, str]
    params: dict[tuple[str, str], str] = field(default_factory=dict)  # (section, key)
    metrics: dict[tuple[str, str], dict[str, float | None]] = field(default_factory=dict)


def generate(seed: int, count: int = 40) -> list[Iteration]:
    rng = random.Random(seed)
    out = []
    for n in range(count):
        tags = {"team": rng.choice(TEAMS)} if rng.random() < 0.7 else {}
        it = Iteration(
            f"it{n:02d}",
            rng.choice(("e1", "e2")),
            f"run-{rng.randrange(8)}",
            rng.choice(STATUSES),
            tags,
        )
        for key in PARAM_KEYS:
            for section in SECTIONS:
                if rng.random() < 0.35:
                    it.params[(section, key)] = rng.choice(PARAM_VALUES)
        for key in METRIC_KEYS:
            for group in GROUPS:
                if rng.random() < 0.6:
                    summary: dict[str, float | None] = {a: rng.choice(FLOATS) for a in AGGS}
                    summary["count"] = float(rng.randrange(1, 4))
                    for agg in ("min", "max", "mean"):  # no finite point: NULL
                        if rng.random() < 0.15:
                            summary[agg] = None
                    it.metrics[(group, key)] = summary
        out.append(it)
    return out


def build(rows: list[Iteration]) -> duckdb.DuckDBPyConnection:
    conn = duckdb.connect()
    conn.execute(files("deardiary.projections").joinpath("schema.sql").read_text())
    start = datetime(2024, 1, 1)
    for n, it in enumerate(rows):
        conn.execute(
            "INSERT INTO iterations (iteration_id, experiment_id, project_id, name,"
            " parent_iteration_id, external_id, status, error_message, notes, tags, metadata,"
            " archived, deleted, created_by, created_at, updated_at, end_date, last_heartbeat,"
            " description, config)"
            " VALUES (?, ?, 'p1', ?, NULL, NULL, ?, '', '', ?, '{}', FALSE, FALSE, 'u', ?,"
            " ?, NULL, ?, '', '{}')",
            [it.iteration_id, it.experiment_id, it.name, it.status, json.dumps(it.tags)]
            + [start + timedelta(minutes=n % 7)] * 3,
        )
        for (section, key), value in it.params.items():
            conn.execute(
                "INSERT INTO params VALUES (?, ?, ?, ?, TIMESTAMP '2024-01-01', 'str')",
                [it.iteration_id, key, value, section],
            )
        for (group, key), s in it.metrics.items():
            values = [s[a] for a in ("first", "last", "min", "max", "mean")]
            conn.execute(
                "INSERT INTO last_metrics VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0, 0, NULL, NULL, 0,"
                " 0, 0, TIMESTAMP '2024-01-01', ?)",
                [it.iteration_id, key, *values, int(s["count"] or 0), group],
            )
    return conn


# -- the language, as Python ---------------------------------------------------------


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _like(value: str, pattern: str, fold: bool) -> bool:
    regex = "".join(".*" if c == "%" else "." if c == "_" else re.escape(c) for c in pattern)
    if fold:
        value, regex = value.lower(), regex.lower()
    return re.fullmatch(regex, value, re.DOTALL) is not None


def _compare(value: object, op: str, literal: object) -> bool:
    """value op literal for a non-NaN literal; any comparison with NaN is false."""
    a: Any = value
    if op == "=":
        return bool(a == literal)
    if op == "<":
        return bool(a < literal)
    if op == "<=":
        return bool(a <= literal)
    if op == ">":
        return bool(a > literal)
    return bool(a >= literal)


def _numeric(value: float, op: str, literals: list[float]) -> bool:
    if any(math.isnan(x) for x in literals) and math.isnan(value):
        return True
    plain = [x for x in literals if not math.isnan(x)]
    if op == "IN":
        return any(value == x for x in plain)
    return bool(plain) and _compare(value, op, plain[0])


@dataclass(frozen=True)
class Clause:
    """One comparison: `kind` metric / param / tag / name / status, its target, the
    operator as written and the literals (floats for numbers, str for strings)."""

    kind: str
    key: str
    qualifier: str | None  # metric group / param section; None: default / any section
    agg: str | None
    op: str
    literals: tuple[object, ...]

    def text(self) -> str:
        if self.kind == "metric":
            head = "metrics" + (f"@{self.qualifier}" if self.qualifier else "")
            target = f"{head}.{self.key}" + (f".{self.agg}" if self.agg else "")
        elif self.kind == "param":
            head = "params" + (f"@{self.qualifier}" if self.qualifier is not None else "")
            target = f"{head}.{self.key}"
        elif self.kind == "tag":
            target = f"tags.{self.key}"
        else:
            target = self.kind
        if self.op in ("IS NULL", "IS NOT NULL"):
            return f"{target} {self.op}"
        shown = [_literal_text(x) for x in self.literals]
        if self.op in ("IN", "NOT IN"):
            return f"{target} {self.op} ({', '.join(shown)})"
        return f"{target} {self.op} {shown[0]}"

    def holds(self, it: Iteration) -> bool:
        values: list[object]
        if self.kind == "param":
            values = [
                v
                for (section, key), v in it.params.items()
                if key == self.key and (self.qualifier is None or section == self.qualifier)
            ]
        elif self.kind == "metric":
            summary = it.metrics.get((self.qualifier or "", self.key))
            value = None if summary is None else summary[self.agg or "last"]
            values = [] if value is None else [value]
        elif self.kind == "tag":
            values = [it.tags[self.key]] if self.key in it.tags else []
        else:
            # every heartbeat here is older than LOST: a RUNNING iteration shows LOST
            status = "LOST" if it.status == "RUNNING" else it.status
            values = [it.name if self.kind == "name" else status]
        if self.op == "IS NULL":
            return not values
        if self.op == "IS NOT NULL":
            return bool(values)
        negated = self.op == "!=" or self.op.startswith("NOT ")
        op = "=" if self.op == "!=" else self.op.removeprefix("NOT ")
        tests = [self.test(v, op) for v in values]
        return any(not t for t in tests) if negated else any(tests)

    def test(self, value: object, op: str) -> bool:
        if op in ("LIKE", "ILIKE"):
            return _like(str(value), str(self.literals[0]), op == "ILIKE")
        if isinstance(value, float):
            return _numeric(value, op, [float(x) for x in self.literals])  # type: ignore[arg-type]
        assert isinstance(value, str)
        strings = [x for x in self.literals if isinstance(x, str)]
        if self.kind == "status":
            strings = [x.upper() for x in strings] if op in ("=", "IN") else strings
        numbers = [x for x in self.literals if isinstance(x, float)]
        if value in strings if op == "IN" else strings and _compare(value, op, strings[0]):
            return True
        as_number = _number(value)
        return bool(numbers) and as_number is not None and _numeric(as_number, op, numbers)


def _literal_text(x: object) -> str:
    if isinstance(x, str):
        return "'" + x.replace("'", "''") + "'"
    assert isinstance(x, float)
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "Infinity" if x > 0 else "-Infinity"
    return repr(x)


Tree = Clause | tuple[str, list["Tree"]] | tuple[str, "Tree"]


def text_of(tree: Tree) -> str:
    if isinstance(tree, Clause):
        return tree.text()
    op, inner = tree
    if op == "NOT":
        assert not isinstance(inner, list)
        return f"NOT ({text_of(inner)})"
    assert isinstance(inner, list)
    return "(" + f" {op} ".join(text_of(t) for t in inner) + ")"


def holds(tree: Tree, it: Iteration) -> bool:
    if isinstance(tree, Clause):
        return tree.holds(it)
    op, inner = tree
    if op == "NOT":
        assert not isinstance(inner, list)
        return not holds(inner, it)
    assert isinstance(inner, list)
    results = [holds(t, it) for t in inner]
    return all(results) if op == "AND" else any(results)


NUMBERS = st.sampled_from([*FLOATS, 0.3, 10.0, 9.0, 1e-3, -2.0])
STRINGS = st.sampled_from(["abc", "0.1", "10", "9", "adam", "", "vision", "2", "nan"])
PATTERNS = st.sampled_from(["a%", "%a%", "_dam", "%", "1%", "%0", "run-_", "RUN%"])


@st.composite
def clauses(draw: st.DrawFn) -> Clause:
    kind = draw(st.sampled_from(["metric", "metric", "param", "param", "tag", "name", "status"]))
    key, qualifier, agg = "", None, None
    if kind == "metric":
        key = draw(st.sampled_from(METRIC_KEYS))
        qualifier = draw(st.sampled_from([None, "val"]))
        agg = draw(st.sampled_from([None, None, *AGGS]))
    elif kind == "param":
        key = draw(st.sampled_from(PARAM_KEYS))
        qualifier = draw(st.sampled_from([None, None, "s1", "s2"]))
    elif kind == "tag":
        key = draw(st.sampled_from(["team", "missing"]))
    if draw(st.integers(0, 7)) == 0:
        return Clause(
            kind, key, qualifier, agg, draw(st.sampled_from(["IS NULL", "IS NOT NULL"])), ()
        )
    text = kind in ("param", "tag", "name", "status")
    ops = ["=", "!=", "<", "<=", ">", ">=", "IN", "NOT IN"]
    if text:
        ops += ["LIKE", "NOT LIKE", "ILIKE", "NOT ILIKE"]
    if kind == "status":
        ops = ["=", "!=", "IN", "NOT IN"]
    op = draw(st.sampled_from(ops))
    if op.endswith("LIKE"):
        return Clause(kind, key, qualifier, agg, op, (draw(PATTERNS),))
    values: st.SearchStrategy[object]
    if kind == "status":
        values = st.sampled_from([*STATUSES, "running", "Failed", "LOST", "lost"])
    elif kind == "name":
        values = st.sampled_from(["run-1", "run-3", "run-9", "abc"])
    elif kind == "metric":
        values = NUMBERS
    else:
        values = st.one_of(NUMBERS, STRINGS)
    if op in ("<", "<=", ">", ">="):  # NaN compares only with =, != and IN
        values = values.filter(lambda x: not (isinstance(x, float) and math.isnan(x)))
    count = draw(st.integers(1, 3)) if op.endswith("IN") else 1
    return Clause(kind, key, qualifier, agg, op, tuple(draw(values) for _ in range(count)))


FILTERS: st.SearchStrategy[Tree] = st.recursive(
    clauses(),
    lambda inner: st.one_of(
        st.tuples(st.sampled_from(["AND", "OR"]), st.lists(inner, min_size=2, max_size=3)),
        st.tuples(st.just("NOT"), inner),
    ),
    max_leaves=5,
)


@dataclass(frozen=True)
class SortKey:
    kind: str  # metric / param / tag / name
    key: str
    qualifier: str | None
    agg: str | None
    descending: bool

    def text(self) -> str:
        clause = Clause(self.kind, self.key, self.qualifier, self.agg, "IS NULL", ())
        target = clause.text().removesuffix(" IS NULL")
        return target + (" DESC" if self.descending else " ASC")


@st.composite
def sort_keys(draw: st.DrawFn) -> SortKey:
    kind = draw(st.sampled_from(["metric", "metric", "param", "tag", "name"]))
    if kind == "metric":
        key = draw(st.sampled_from(METRIC_KEYS))
        return SortKey(
            kind,
            key,
            draw(st.sampled_from([None, "val"])),
            draw(st.sampled_from([None, *AGGS])),
            draw(st.booleans()),
        )
    if kind == "param":
        key = draw(st.sampled_from(PARAM_KEYS))
        return SortKey(
            kind, key, draw(st.sampled_from([None, "s1", "s2"])), None, draw(st.booleans())
        )
    return SortKey(kind, "team", None, None, draw(st.booleans()))


def _nulls_last(a: object, b: object, descending: bool, number: bool) -> int:
    """Compare two sort values: NULL last either way; numbers put NaN above all."""
    if a is None or b is None:
        return (a is None) - (b is None)
    ka: Any
    kb: Any
    if number:
        ka = (1, 0.0) if math.isnan(a) else (0, a)  # type: ignore[arg-type]
        kb = (1, 0.0) if math.isnan(b) else (0, b)  # type: ignore[arg-type]
    else:
        ka, kb = (0, a), (0, b)
    result = int(ka > kb) - int(ka < kb)
    return -result if descending else result


def sort_value(key: SortKey, it: Iteration) -> object:
    if key.kind == "metric":
        summary = it.metrics.get((key.qualifier or "", key.key))
        return None if summary is None else summary[key.agg or "last"]
    if key.kind == "param":
        found = sorted(
            (section, v)
            for (section, k), v in it.params.items()
            if k == key.key and (key.qualifier is None or section == key.qualifier)
        )
        return found[0][1] if found else None
    if key.kind == "tag":
        return it.tags.get(key.key)
    return it.name


def compare_rows(keys: list[SortKey]) -> Callable[[Iteration, Iteration], int]:
    def compare(a: Iteration, b: Iteration) -> int:
        for key in keys:
            va, vb = sort_value(key, a), sort_value(key, b)
            if key.kind == "metric":  # missing last, then NaN, then the values
                ca = 2 if va is None else 1 if math.isnan(va) else 0  # type: ignore[arg-type]
                cb = 2 if vb is None else 1 if math.isnan(vb) else 0  # type: ignore[arg-type]
                found = (ca > cb) - (ca < cb) or (
                    _nulls_last(va, vb, key.descending, True) if ca == cb == 0 else 0
                )
            elif key.kind in ("param", "tag"):  # as numbers where they parse, then as text
                na = None if va is None else _number(str(va))
                nb = None if vb is None else _number(str(vb))
                found = _nulls_last(na, nb, key.descending, True) or _nulls_last(
                    va, vb, key.descending, False
                )
            else:
                found = _nulls_last(va, vb, key.descending, False)
            if found:
                return found
        return (a.iteration_id > b.iteration_id) - (a.iteration_id < b.iteration_id)

    return compare


SEEDS = (1, 2, 3)


@pytest.fixture(scope="module", params=SEEDS)
def store(
    request: pytest.FixtureRequest,
) -> Iterator[tuple[list[Iteration], duckdb.DuckDBPyConnection]]:
    rows = generate(request.param)
    conn = build(rows)
    yield rows, conn
    conn.close()


@settings(max_examples=120, deadline=None, derandomize=True, database=None)
@given(
    tree=st.one_of(st.none(), FILTERS),
    keys=st.lists(sort_keys(), max_size=3),
    scope=st.sampled_from([(), ("e1",), ("e1", "e2")]),
    offset=st.sampled_from([0, 0, 3, 17, 45]),
    limit=st.sampled_from([0, 1, 5, 100]),
)
def test_search_matches_the_python_reading(
    store: tuple[list[Iteration], duckdb.DuckDBPyConnection],
    tree: Tree | None,
    keys: list[SortKey],
    scope: tuple[str, ...],
    offset: int,
    limit: int,
) -> None:
    rows, conn = store
    expression = "" if tree is None else text_of(tree)
    order = ", ".join(k.text() for k in keys) or "name ASC"
    page = search_iterations(
        conn,
        now=NOW,
        lost_before=LOST,
        experiment_ids=scope,
        filter_expression=expression,
        order_by=order,
        limit=limit,
        offset=offset,
    )
    chosen = [
        it
        for it in rows
        if (not scope or it.experiment_id in scope) and (tree is None or holds(tree, it))
    ]
    chosen.sort(
        key=functools.cmp_to_key(compare_rows(keys or [SortKey("name", "", None, None, False)]))
    )
    expected = [it.iteration_id for it in chosen[offset : offset + limit]]
    assert (page.items["iteration_id"].to_pylist(), page.total) == (expected, len(chosen)), (
        expression,
        order,
    )


def test_the_reading_is_not_vacuous() -> None:
    """The generated data gives each kind of clause both answers somewhere (else the
    comparison above would prove little)."""
    rows = generate(SEEDS[0])
    samples = [
        Clause("metric", "loss", None, None, "<", (0.5,)),
        Clause("metric", "loss", None, None, "=", (math.nan,)),
        Clause("metric", "acc", "val", "mean", "IS NULL", ()),
        Clause("param", "lr", None, None, "=", ("abc",)),
        Clause("param", "lr", None, None, "!=", ("abc",)),
        Clause("param", "opt", "s1", None, ">", (1.0,)),
        Clause("tag", "team", None, None, "LIKE", ("%i%",)),
    ]
    for clause in samples:
        answers = {clause.holds(it) for it in rows}
        assert answers == {True, False}, clause.text()


@settings(max_examples=40, deadline=None, derandomize=True, database=None)
@given(tree=FILTERS)
def test_runs_table_filters_alike(
    store: tuple[list[Iteration], duckdb.DuckDBPyConnection], tree: Tree
) -> None:
    """The runs table's rows (an experiment's, in creation order) pass the same filter."""
    rows, conn = store
    table = runs_table(
        conn, "e1", [], now=NOW, lost_before=LOST, filter_expression=text_of(tree), base=False
    )
    # created_at is start + (n % 7) minutes, n the position in `rows`; ties by id
    chosen = sorted(
        (n % 7, it.iteration_id)
        for n, it in enumerate(rows)
        if it.experiment_id == "e1" and holds(tree, it)
    )
    assert table["iteration_id"].to_pylist() == [i for _, i in chosen], text_of(tree)
