"""Compile the iteration filter / order-by language to parameterised DuckDB SQL.

`compile_search` gives a FROM source -- `iterations i` left-joined with one grouped
scan of last_metrics (`_m`) and one of params (`_p`) over the keys the filter and order
name, a column per metric value or param test -- and a WHERE and ORDER BY over it. Why
joins: a correlated subquery per clause made DuckDB scan and group a whole table per
clause (a metric order three times), and a 10,000-iteration search ordered by a metric
cost ~3x one in the default order. A missing param or metric makes a comparison false.
The SQL text
is assembled only from fixed snippets chosen by field and operator; keys and values
always travel as bound parameters, which is what makes the language safe to expose
over HTTP.

Semantics worth knowing (they differ a little from raw SQL on purpose):
* Every comparison is two-valued: missing/NULL is false, and `NOT x` is its exact
  complement. `a != v` means "a exists and is not v".
* params / tags compare as strings, or numerically (TRY_CAST to DOUBLE) when the
  literal is a number; values that are not numbers never equal a number.
* Metrics follow IEEE for ordering (NaN is never < or > anything), but `= NaN`
  finds NaN values. `metrics.k` is the latest value, `metrics.k.<agg>` a summary;
  a metric key that itself ends in `.min` etc. must be back-quoted. `metrics.k` is
  the series logged without a group; `metrics@val.k` the one of group "val"
  (back-quote a group with other characters: metrics@`my group`.k).
* `params.k` is the param in any section; `params@Args.k` only in section "Args".
* `status = 'LOST'` finds RUNNING iterations whose heartbeats stopped, when the
  caller says since when (`lost_before`); they no longer match 'RUNNING' then.
* Times take ISO-8601 strings (naive = UTC) or epoch numbers (seconds, or
  milliseconds when |n| >= 1e11, MLflow's unit). `status` literals are
  upper-cased for =, != and IN (the stored values are RUNNING, SUCCEEDED, ...).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from deardiary.projections.queries.filter_parse import (
    BoolOp,
    Comparison,
    Field,
    Node,
    Not,
    Value,
    parse_filter,
    parse_order_by,
    syntax_error,
)
from deardiary.schemas.errors import InvalidArgument

MAX_SORT_KEYS = 16

Kind = Literal["text", "number", "string", "status", "time", "bool"]


@dataclass(frozen=True)
class CompiledFilter:
    """A SQL fragment with `?` placeholders and the values to bind, in order."""

    sql: str
    params: list[object]


@dataclass(frozen=True)
class _Frag:
    sql: str
    params: tuple[object, ...] = ()


def _join(*parts: _Frag | str) -> _Frag:
    frags = [_Frag(p) if isinstance(p, str) else p for p in parts]
    return _Frag("".join(f.sql for f in frags), tuple(v for f in frags for v in f.params))


def _bind(value: object, sql_type: str) -> _Frag:
    return _Frag(f"CAST(? AS {sql_type})", (value,))


@dataclass(frozen=True)
class _Attribute:
    sql: str
    kind: Kind


_DURATION_SQL = (
    "(COALESCE(epoch(i.end_date), epoch(get_current_timestamp())) - epoch(i.created_at))"
)
_ATTRIBUTES: dict[str, _Attribute] = {
    "status": _Attribute("i.status", "status"),
    "name": _Attribute("i.name", "string"),
    "iteration_id": _Attribute("i.iteration_id", "string"),
    "experiment_id": _Attribute("i.experiment_id", "string"),
    "project_id": _Attribute("i.project_id", "string"),
    "parent_iteration_id": _Attribute("i.parent_iteration_id", "string"),
    "external_id": _Attribute("i.external_id", "string"),
    "created_at": _Attribute("i.created_at", "time"),
    "end_date": _Attribute("i.end_date", "time"),
    "duration": _Attribute(_DURATION_SQL, "number"),
    "archived": _Attribute("i.archived", "bool"),
}
_ALIASES = {
    "id": "iteration_id",
    "run_id": "iteration_id",
    "run_name": "name",
    "start_time": "created_at",
    "end_time": "end_date",
}
_METRIC_COLUMNS = {agg: f'm."{agg}"' for agg in ("first", "last", "min", "max", "mean", "count")}
_PREFIXES = {
    spelled: prefix
    for prefix, spellings in (
        ("param", ("params", "param")),
        ("metric", ("metrics", "metric")),
        ("tag", ("tags", "tag")),
        ("attribute", ("attributes", "attribute", "attr")),
    )
    for spelled in spellings
}


@dataclass(frozen=True)
class _Param:
    key: str
    section: str | None = None  # None: any section


@dataclass(frozen=True)
class _Tag:
    key: str


@dataclass(frozen=True)
class _Metric:
    key: str
    column: str
    group: str = ""


_Target = _Attribute | _Param | _Tag | _Metric


class _Pivot:
    """One grouped scan of `table` (row alias `row`) joined to the iterations as `alias`:
    a column per aggregate the search reads (each the same SQL once), over the rows of
    the keys those aggregates name."""

    def __init__(self, table: str, row: str, alias: str) -> None:
        self.table, self.row, self.alias = table, row, alias
        self.columns: dict[_Frag, str] = {}
        self.keys: dict[str, None] = {}

    def column(self, aggregate: _Frag, key: str) -> _Frag:
        name = self.columns.setdefault(aggregate, f"c{len(self.columns)}")
        self.keys[key] = None
        return _Frag(f"{self.alias}.{name}")

    def join(self) -> _Frag:
        if not self.columns:
            return _Frag("")
        parts: list[_Frag | str] = [f" LEFT JOIN (SELECT {self.row}.iteration_id"]
        for aggregate, name in self.columns.items():
            parts += [", ", aggregate, f" AS {name}"]
        parts.append(f" FROM {self.table} {self.row} WHERE {self.row}.key IN (")
        for index, key in enumerate(self.keys):
            parts += [", " if index else "", _bind(key, "VARCHAR")]
        parts.append(
            f") GROUP BY {self.row}.iteration_id) {self.alias}"
            f" ON {self.alias}.iteration_id = i.iteration_id"
        )
        return _join(*parts)


_STATUS = _ATTRIBUTES["status"]
_LOST_STATUS = (
    "(CASE WHEN i.status = 'RUNNING' AND i.last_heartbeat < CAST(? AS TIMESTAMP)"
    " THEN 'LOST' ELSE i.status END)"
)


class _Compiler:
    def __init__(
        self,
        text: str,
        lost_before: datetime | None,
        metrics: _Pivot,
        params: _Pivot,
    ) -> None:
        """`metrics` and `params`: the joined scans that metric values and param tests
        become columns of."""
        self.text = text
        self.lost_before = lost_before
        self.metrics = metrics
        self.params = params

    def error(self, pos: int, message: str) -> InvalidArgument:
        return syntax_error(self.text, pos, message)

    # -- fields -------------------------------------------------------------

    def resolve(self, field: Field) -> _Target:
        head, rest = field.segments[0], field.segments[1:]
        prefix = _PREFIXES.get(head.text.lower()) if rest and not head.quoted else None
        if field.qualifier is not None and prefix not in ("metric", "param"):
            raise self.error(
                field.pos,
                f"'@' qualifies only metrics (metrics@<group>.<key>) and params"
                f" (params@<section>.<key>), not {field.text!r}",
            )
        qualifier = None if field.qualifier is None else field.qualifier.text
        if prefix is None:
            if rest:
                raise self.error(
                    field.pos,
                    f"unknown field {field.text!r}; use params.<key>, "
                    "metrics.<key>[.<agg>], tags.<key> or an attribute",
                )
            return self.attribute(head.text, field)
        if prefix == "attribute":
            if len(rest) != 1:
                raise self.error(field.pos, f"unknown attribute {field.text!r}")
            return self.attribute(rest[0].text, field)
        column = _METRIC_COLUMNS["last"]
        agg = rest[-1]
        if prefix == "metric" and len(rest) > 1 and not agg.quoted and agg.text in _METRIC_COLUMNS:
            column = _METRIC_COLUMNS[agg.text]
            rest = rest[:-1]
        key = ".".join(segment.text for segment in rest)
        if not key:
            raise self.error(field.pos, "empty key")
        if prefix == "param":
            return _Param(key, qualifier)
        if prefix == "tag":
            return _Tag(key)
        return _Metric(key, column, qualifier or "")

    def attribute(self, name: str, field: Field) -> _Attribute:
        lowered = name.lower()
        found = _ATTRIBUTES.get(_ALIASES.get(lowered, lowered))
        if found is None:
            names = ", ".join(sorted([*_ATTRIBUTES, *_ALIASES]))
            raise self.error(field.pos, f"unknown field {field.text!r} (attributes: {names})")
        return found

    # -- boolean structure --------------------------------------------------

    def node(self, node: Node) -> _Frag:
        if isinstance(node, BoolOp):
            parts: list[_Frag | str] = ["("]
            for index, operand in enumerate(node.operands):
                parts += [f" {node.op} " if index else "", self.node(operand)]
            return _join(*parts, ")")
        if isinstance(node, Not):
            return _join("(NOT ", self.node(node.operand), ")")
        return self.comparison(node)

    # -- comparisons --------------------------------------------------------

    def comparison(self, cmp: Comparison) -> _Frag:
        target = self.resolve(cmp.field)
        if cmp.op in ("IS NULL", "IS NOT NULL"):
            return self.null_test(target, cmp.op == "IS NULL")
        negated = cmp.op == "!=" or cmp.op.startswith("NOT ")
        op = "=" if cmp.op == "!=" else cmp.op.removeprefix("NOT ")
        kind: Kind
        if isinstance(target, _Param):
            value, kind = _Frag("p.value"), "text"
        elif isinstance(target, _Metric):
            value, kind = self.metric_value(target), "number"
        elif isinstance(target, _Tag):
            value, kind = self.tag_value(target.key), "text"
        else:
            value, kind = self.attribute_value(target), target.kind
        pred = self.predicate(value, kind, op, cmp)
        if negated:
            test = _join(value, " IS NOT NULL AND NOT COALESCE(", pred, ", FALSE)")
        else:
            test = _join("COALESCE(", pred, ", FALSE)")
        if isinstance(target, _Param):
            return self.param_test(target, test)
        return _join("(", test, ")")

    def attribute_value(self, target: _Attribute) -> _Frag:
        """An attribute's SQL; status shows LOST when the caller said since when."""
        if target is _STATUS and self.lost_before is not None:
            return _Frag(_LOST_STATUS, (self.lost_before,))
        return _Frag(target.sql)

    def null_test(self, target: _Target, is_null: bool) -> _Frag:
        if isinstance(target, _Param):
            exists = self.param_test(target, _Frag("TRUE"))
        elif isinstance(target, _Metric):  # a row's value is NULL (a mean of no finite point)
            exists = _join("(", self.metric_value(target), " IS NOT NULL)")  # or missing
        else:
            value = (
                self.tag_value(target.key)
                if isinstance(target, _Tag)
                else self.attribute_value(target)
            )
            return _join("(", value, " IS NULL)" if is_null else " IS NOT NULL)")
        return _join("(NOT ", exists, ")") if is_null else exists

    @staticmethod
    def param_match(target: _Param) -> _Frag:
        """Whether a params row (`p`) is one `target` names (of any iteration)."""
        found = _join("p.key = ", _bind(target.key, "VARCHAR"))
        if target.section is None:
            return found
        return _join(found, " AND p.section = ", _bind(target.section, "VARCHAR"))

    @staticmethod
    def metric_match(target: _Metric) -> _Frag:
        """Whether a last_metrics row (`m`) is the series `target` names (of any iteration)."""
        return _join(
            "m.key = ",
            _bind(target.key, "VARCHAR"),
            ' AND m."group" = ',
            _bind(target.group, "VARCHAR"),
        )

    def metric_value(self, target: _Metric) -> _Frag:
        """The value `target` names: the pivot's column (NULL when the iteration has no
        such series; there is one row per series)."""
        aggregate = _join(f"first({target.column}) FILTER (WHERE ", self.metric_match(target), ")")
        return self.metrics.column(aggregate, target.key)

    def param_test(self, target: _Param, test: _Frag) -> _Frag:
        """Whether some param `target` names (a key may be in several sections) passes
        `test`, a condition on `p.value`."""
        aggregate = _join("bool_or(", test, ") FILTER (WHERE ", self.param_match(target), ")")
        return _join("COALESCE(", self.params.column(aggregate, target.key), ", FALSE)")

    @staticmethod
    def tag_value(key: str) -> _Frag:
        pointer = "/" + key.replace("~", "~0").replace("/", "~1")  # RFC 6901 JSON pointer
        return _join("json_extract_string(i.tags, ", _bind(pointer, "VARCHAR"), ")")

    def predicate(self, value: _Frag, kind: Kind, op: str, cmp: Comparison) -> _Frag:
        """The positive test (`=`, `<`, `LIKE`, `IN`, ...) of `value` against literals."""
        if op in ("LIKE", "ILIKE"):
            if kind not in ("text", "string", "status"):
                raise self.error(cmp.pos, f"{op} needs a text field (params, tags, name, ...)")
            pattern = self.like_pattern(cmp.values[0])
            return _join(value, f" {op} ", _bind(pattern, "VARCHAR"), " ESCAPE '\\'")
        if op in ("<", "<=", ">", ">=") and kind == "bool":
            raise self.error(cmp.pos, f"operator {op} does not apply to a boolean")
        if kind == "text":
            strings = [v for v in cmp.values if v.kind == "string"]
            numbers = [v for v in cmp.values if v.kind == "number"]
            for v in cmp.values:
                if v.kind == "bool":
                    raise self.error(v.pos, "expected a quoted string or a number")
            parts: list[_Frag] = []
            if strings:
                bound = [_bind(v.value, "VARCHAR") for v in strings]
                parts.append(self.scalar_test(value, op, bound))
            if numbers:
                as_number = _join("TRY_CAST(", value, " AS DOUBLE)")
                parts.append(self.numeric_test(as_number, op, numbers))
            return parts[0] if len(parts) == 1 else _join("(", parts[0], " OR ", parts[1], ")")
        if kind == "number":
            return self.numeric_test(value, op, [self.number(v) for v in cmp.values])
        return self.scalar_test(value, op, [self.literal(v, kind, op) for v in cmp.values])

    @staticmethod
    def scalar_test(value: _Frag, op: str, bound: list[_Frag]) -> _Frag:
        if op == "IN":
            items: list[_Frag | str] = []
            for index, item in enumerate(bound):
                items += [", " if index else "", item]
            return _join(value, " IN (", *items, ")")
        return _join(value, f" {op} ", bound[0])

    def numeric_test(self, value: _Frag, op: str, literals: list[Value]) -> _Frag:
        nan = [v for v in literals if math.isnan(float(v.value))]
        plain = [v for v in literals if not math.isnan(float(v.value))]
        if nan and op != "IN" and op != "=":
            raise self.error(nan[0].pos, "NaN can only be compared with =, != or IN")
        parts: list[_Frag] = []
        if nan:
            parts.append(_join("isnan(", value, ")"))
        if plain:
            test = self.scalar_test(value, op, [_bind(float(v.value), "DOUBLE") for v in plain])
            if op in ("<", "<=", ">", ">="):
                test = _join("(", test, " AND NOT isnan(", value, "))")
            parts.append(test)
        return parts[0] if len(parts) == 1 else _join("(", parts[0], " OR ", parts[1], ")")

    def number(self, literal: Value) -> Value:
        if literal.kind != "number":
            raise self.error(literal.pos, "expected a number")
        return literal

    def literal(self, literal: Value, kind: Kind, op: str) -> _Frag:
        """Bind one literal for a string / status / time / bool attribute."""
        if kind in ("string", "status"):
            if literal.kind == "number" and math.isfinite(float(literal.value)):
                return _bind(literal.text, "VARCHAR")
            if literal.kind != "string":
                raise self.error(literal.pos, "expected a quoted string")
            text = str(literal.value)
            if kind == "status" and op in ("=", "IN"):
                text = text.upper()
            return _bind(text, "VARCHAR")
        if kind == "time":
            return _bind(self.timestamp(literal), "TIMESTAMP")
        if literal.kind == "number":
            truth = {1.0: True, 0.0: False}.get(float(literal.value))
        else:
            truth = {"true": True, "false": False}.get(str(literal.value).lower())
        if truth is None:
            raise self.error(literal.pos, "expected TRUE or FALSE")
        return _bind(truth, "BOOLEAN")

    def timestamp(self, literal: Value) -> datetime:
        """A naive UTC datetime from an ISO-8601 string or epoch seconds/milliseconds."""
        try:
            if literal.kind == "string":
                parsed = datetime.fromisoformat(str(literal.value))
                if parsed.tzinfo is not None:
                    parsed = parsed.astimezone(UTC).replace(tzinfo=None)
                return parsed
            if literal.kind == "number" and math.isfinite(float(literal.value)):
                seconds = float(literal.value)
                if abs(seconds) >= 1e11:
                    seconds /= 1000.0
                return datetime(1970, 1, 1) + timedelta(seconds=seconds)
        except (ValueError, OverflowError) as exc:
            raise self.error(literal.pos, f"invalid time ({exc})") from None
        raise self.error(literal.pos, "expected an ISO-8601 time string or epoch number")

    def like_pattern(self, literal: Value) -> str:
        if literal.kind != "string":
            raise self.error(literal.pos, "LIKE needs a quoted string pattern")
        pattern = str(literal.value)
        index = 0
        while index < len(pattern):
            if pattern[index] == "\\":
                if index + 1 == len(pattern):
                    raise self.error(literal.pos, "LIKE pattern ends with the escape character \\")
                index += 1
            index += 1
        return pattern

    # -- order by -----------------------------------------------------------

    def sort_value(self, target: _Target) -> _Frag:
        if isinstance(target, _Param):  # of several sections, the first by name
            first = _join(
                "arg_min(p.value, p.section) FILTER (WHERE ", self.param_match(target), ")"
            )
            return self.params.column(first, target.key)
        if isinstance(target, _Metric):
            return self.metric_value(target)
        if isinstance(target, _Tag):
            return self.tag_value(target.key)
        return self.attribute_value(target)


@dataclass(frozen=True)
class CompiledSearch:
    """A filter and an order over one source: `SELECT ... FROM <source> WHERE <where>
    ORDER BY <order>`. `source` is `iterations i` left-joined with a grouped scan of
    last_metrics (`_m`) and of params (`_p`) over the keys named, when any are; `where`
    and `order` read `i` and those. Bind the parameters in the order of the text."""

    source: CompiledFilter
    where: CompiledFilter
    order: CompiledFilter


def compile_search(
    expression: str, order_by: str, lost_before: datetime | None = None
) -> CompiledSearch:
    """Compile a filter expression ("" matches everything) and an order-by spec
    (`field [ASC|DESC], ...`) over one source. With `lost_before`, `status` is the
    displayed one: LOST for a RUNNING iteration whose last heartbeat is older.

    Missing values sort last in either direction, and so do NaN metrics (DuckDB would put
    NaN first in DESC, the wrong end of a leaderboard). Params and tags sort numerically
    when they parse as numbers, then as text. The order always ends with i.iteration_id
    so pages never shuffle between requests.
    """
    metrics, params = _Pivot("last_metrics", "m", "_m"), _Pivot("params", "p", "_p")
    node = parse_filter(expression)
    compiler = _Compiler(expression, lost_before, metrics, params)
    where = _Frag("TRUE") if node is None else compiler.node(node)
    order = _order(_Compiler(order_by, lost_before, metrics, params), order_by)
    source = _join("iterations i", metrics.join(), params.join())
    return CompiledSearch(
        CompiledFilter(source.sql, list(source.params)),
        CompiledFilter(where.sql, list(where.params)),
        CompiledFilter(order.sql, list(order.params)),
    )


def _order(compiler: _Compiler, spec: str) -> _Frag:
    keys = parse_order_by(spec)
    if len(keys) > MAX_SORT_KEYS:
        raise compiler.error(keys[MAX_SORT_KEYS].field.pos, f"more than {MAX_SORT_KEYS} sort keys")
    parts: list[_Frag | str] = []
    for key in keys:
        target = compiler.resolve(key.field)
        value = compiler.sort_value(target)
        direction = " DESC NULLS LAST, " if key.descending else " ASC NULLS LAST, "
        if isinstance(target, _Metric):
            parts += ["CASE WHEN ", value, " IS NULL THEN 2 WHEN isnan(", value]
            parts += [") THEN 1 ELSE 0 END ASC, ", value, direction]
        elif isinstance(target, _Param | _Tag):
            parts += ["TRY_CAST(", value, " AS DOUBLE)", direction, value, direction]
        else:
            parts += [value, direction]
    return _join(*parts, "i.iteration_id ASC")
