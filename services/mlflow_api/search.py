"""MLflow's search grammar, compiled to DuckDB SQL over our tables.

Filters: ``metrics.loss < 0.5 and params.lr = '0.01' and tags.team LIKE 'vision%'``.
A clause is an identifier ``<kind>.<key>`` (the key may be quoted with backquotes or
double quotes: ``tags."mlflow.runName"``, ``metrics.`val loss```), a comparator
(``= != < <= > >=``, ``LIKE``, ``ILIKE``, ``[NOT] IN (...)``, ``IS [NOT] NULL``) and a
value (a number, or a string in single or double quotes). MLflow joins clauses with AND
only; we also take OR and parentheses. Order-by items are ``<identifier> [ASC|DESC]``.

What an identifier means is the caller's: a `Resolve` maps (kind, key) to a SQL
expression and says whether it is numeric (the runs' and experiments' fields are in
`fields.py`). Values only ever travel as query parameters.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from deardiary.services.mlflow_api.errors import MlflowError

NUMERIC_COMPARATORS = ("=", "!=", "<", "<=", ">", ">=")
STRING_COMPARATORS = ("=", "!=", "LIKE", "ILIKE", "IN", "NOT IN", "IS NULL", "IS NOT NULL")
MAX_FILTER_CHARS = 10_000


@dataclass(frozen=True)
class Field:
    """An identifier compiled: `sql` (with ``?`` placeholders for `params`), numeric or
    string, and the comparators it takes."""

    sql: str
    params: tuple[object, ...] = ()
    numeric: bool = False
    comparators: tuple[str, ...] = ()
    many: bool = False
    """`sql` is a list: a comparison holds when it holds for any of its items."""
    compare: str = ""
    """For a numeric field that may hold NaN: the same value with NaN read as NULL (takes
    the same `params`), used by the comparisons other than ``!=``. A subquery's own
    ``nullif`` costs nothing; ``nullif`` around a subquery plans it twice (~2 ms)."""

    def allowed(self) -> tuple[str, ...]:
        if self.comparators:
            return self.comparators
        return (
            (*NUMERIC_COMPARATORS, "IS NULL", "IS NOT NULL") if self.numeric else STRING_COMPARATORS
        )


Resolve = Callable[[str, str], Field]
"""(kind, key) -> Field; kind is "" for a bare identifier. Raises MlflowError when unknown."""


@dataclass(frozen=True)
class Compiled:
    sql: str
    params: list[object]


_KINDS = {
    "metric": "metrics",
    "metrics": "metrics",
    "param": "params",
    "params": "params",
    "parameter": "params",
    "parameters": "params",
    "tag": "tags",
    "tags": "tags",
    "attribute": "attributes",
    "attributes": "attributes",
    "attr": "attributes",
    "run": "attributes",
    "dataset": "datasets",
    "datasets": "datasets",
}
"""MLflow's spellings of each kind of identifier -> ours."""

_SPACE = re.compile(r"\s*")
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_PLAIN_KEY = re.compile(r"[^\s=!<>(),'\"`]+")
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?(?![A-Za-z0-9_.])")
_OPERATOR = re.compile(r"!=|<>|<=|>=|=|<|>")
_KEYWORD = re.compile(r"(?i)(AND|OR|NOT|IN|IS|NULL|LIKE|ILIKE|ASC|DESC)\b")


def _invalid(message: str) -> MlflowError:
    return MlflowError(message)


class _Parser:
    def __init__(self, text: str, resolve: Resolve) -> None:
        if len(text) > MAX_FILTER_CHARS:
            raise _invalid(f"a search expression may have at most {MAX_FILTER_CHARS} characters")
        self.text = text
        self.pos = 0
        self.resolve = resolve
        self.params: list[object] = []

    # -- scanning ------------------------------------------------------------------------
    def _skip(self) -> None:
        found = _SPACE.match(self.text, self.pos)
        assert found is not None
        self.pos = found.end()

    def at_end(self) -> bool:
        self._skip()
        return self.pos >= len(self.text)

    def _error(self, wanted: str) -> MlflowError:
        shown = self.text[self.pos : self.pos + 30] or "the end"
        return _invalid(
            f"Invalid search expression {self.text[:200]!r}: expected {wanted} at {shown!r}"
        )

    def keyword(self, *words: str) -> str | None:
        self._skip()
        found = _KEYWORD.match(self.text, self.pos)
        if found and found.group(1).upper() in words:
            self.pos = found.end()
            return found.group(1).upper()
        return None

    def punct(self, char: str) -> bool:
        self._skip()
        if self.text.startswith(char, self.pos):
            self.pos += len(char)
            return True
        return False

    def _quoted(self) -> str | None:
        """A string in ', " or ` quotes (a doubled quote or a backslash escapes one)."""
        self._skip()
        if self.pos >= len(self.text) or self.text[self.pos] not in "'\"`":
            return None
        quote, i, out = self.text[self.pos], self.pos + 1, []
        while i < len(self.text):
            ch = self.text[i]
            if ch == "\\" and i + 1 < len(self.text):
                out.append(self.text[i + 1])
                i += 2
            elif ch == quote and self.text.startswith(quote * 2, i):
                out.append(quote)
                i += 2
            elif ch == quote:
                self.pos = i + 1
                return "".join(out)
            else:
                out.append(ch)
                i += 1
        raise _invalid(f"Invalid search expression {self.text[:200]!r}: unterminated string")

    def identifier(self) -> tuple[str, str]:
        """(kind, key): ``kind.key`` with a plain or quoted key, a quoted ``"kind.key"``,
        or a bare word (kind "")."""
        self._skip()
        quoted = self._quoted()
        if quoted is not None:
            head, dot, rest = quoted.partition(".")
            return (_KINDS.get(head.lower(), head), rest) if dot else ("", quoted)
        word = _WORD.match(self.text, self.pos)
        if word is None:
            raise self._error("an identifier such as metrics.loss or params.lr")
        self.pos = word.end()
        if not self.text.startswith(".", self.pos):
            return "", word.group(0)
        self.pos += 1
        kind = _KINDS.get(word.group(0).lower())
        if kind is None:
            raise _invalid(
                f"Invalid entity type {word.group(0)!r} in {self.text[:200]!r}: expected "
                "metrics, params, tags, attributes or datasets"
            )
        quoted_key = self._quoted()
        if quoted_key is not None:
            return kind, quoted_key
        plain = _PLAIN_KEY.match(self.text, self.pos)
        if plain is None:
            raise self._error("a key")
        self.pos = plain.end()
        return kind, plain.group(0)

    def value(self, numeric: bool) -> object:
        self._skip()
        text = self._quoted()
        if text is not None:
            if numeric:
                raise _invalid(f"Expected a numeric value, got the string {text!r}")
            return text
        number = _NUMBER.match(self.text, self.pos)
        if number is None:
            raise self._error("a number or a quoted string")
        self.pos = number.end()
        return float(number.group(0)) if numeric else number.group(0)

    # -- grammar -------------------------------------------------------------------------
    def expression(self) -> str:
        terms = [self.term()]
        while self.keyword("OR"):
            terms.append(self.term())
        return terms[0] if len(terms) == 1 else "(" + " OR ".join(terms) + ")"

    def term(self) -> str:
        factors = [self.factor()]
        while self.keyword("AND"):
            factors.append(self.factor())
        return " AND ".join(factors)

    def factor(self) -> str:
        if self.punct("("):
            inner = self.expression()
            if not self.punct(")"):
                raise self._error("')'")
            return f"({inner})"
        return self.comparison()

    def _comparator(self) -> str:
        self._skip()
        op = _OPERATOR.match(self.text, self.pos)
        if op is not None:
            self.pos = op.end()
            return "!=" if op.group(0) == "<>" else op.group(0)
        word = self.keyword("LIKE", "ILIKE", "IN", "IS", "NOT")
        if word == "IS":
            return "IS NOT NULL" if self.keyword("NOT") else self._null("IS NULL")
        if word == "NOT":
            if self.keyword("IN"):
                return "NOT IN"
            raise self._error("IN after NOT")
        if word is None:
            raise self._error("a comparator (=, !=, <, >, LIKE, ILIKE, IN, IS NULL)")
        return word

    def _null(self, comparator: str) -> str:
        if not self.keyword("NULL"):
            raise self._error("NULL")
        return comparator

    def _values(self, numeric: bool) -> list[object]:
        if not self.punct("("):
            raise self._error("'(' after IN")
        values = [self.value(numeric)]
        while self.punct(","):
            values.append(self.value(numeric))
        if not self.punct(")"):
            raise self._error("')'")
        return values

    def _any(self, expr: str, field: Field, op: str) -> str:
        """A comparison with a list field: true when any item satisfies it."""
        self.params.extend(field.params)
        if op in ("IS NULL", "IS NOT NULL"):
            return f"coalesce(len({expr}), 0) {'=' if op == 'IS NULL' else '>'} 0"
        if op in ("IN", "NOT IN"):
            values = self._values(field.numeric)
            self.params.extend(values)
            listed = f"list_has_any({expr}, [{', '.join('?' for _ in values)}])"
            return listed if op == "IN" else f"NOT coalesce({listed}, FALSE)"
        self.params.append(self.value(field.numeric))
        return f"coalesce(len(list_filter({expr}, lambda x: x {op} ?)), 0) > 0"

    def comparison(self) -> str:
        kind, key = self.identifier()
        field = self.resolve(kind, key)
        op = self._comparator()
        if op == "IS NOT NULL":
            op = self._null(op)
        if op not in field.allowed():
            shown = f"{kind}.{key}" if kind else key
            raise _invalid(
                f"Invalid comparator {op!r} for {shown!r}; expected one of "
                + ", ".join(field.allowed())
            )
        expr = f"({field.sql})"
        if field.many:
            return self._any(expr, field, op)
        if op in ("IS NULL", "IS NOT NULL"):
            self.params.extend(field.params)
            return f"{expr} {op}"
        if op in ("IN", "NOT IN"):
            values = self._values(field.numeric)
            self.params.extend([*field.params, *values])
            return f"{expr} {op} ({', '.join('?' for _ in values)})"
        value = self.value(field.numeric)
        if field.numeric and op != "!=":
            # NaN matches no comparison (as in Python), though DuckDB holds NaN equal to
            # itself and above every number: read as NULL it matches none. A field that
            # says how (a metric: inside its subquery) is written once.
            self.params.extend([*field.params, value])
            if field.compare:
                return f"(({field.compare}) {op} ?)"
            return f"(nullif({expr}, 'NaN'::DOUBLE) {op} ?)"
        self.params.extend([*field.params, value])
        return f"{expr} {op} ?"


def compile_filter(text: str, resolve: Resolve) -> Compiled:
    """A filter as a SQL condition ("TRUE" when empty)."""
    if not text or not text.strip():
        return Compiled("TRUE", [])
    parser = _Parser(text, resolve)
    sql = parser.expression()
    if not parser.at_end():
        raise parser._error("AND, OR or the end")
    return Compiled(sql, parser.params)


def compile_order_by(items: Sequence[str], resolve: Resolve) -> Compiled:
    """Order-by items as a SQL ORDER BY list (missing values last); "" when none."""
    parts: list[str] = []
    params: list[object] = []
    for item in items:
        parser = _Parser(item, resolve)
        kind, key = parser.identifier()
        field = resolve(kind, key)
        direction = parser.keyword("ASC", "DESC") or "ASC"
        if not parser.at_end():
            raise _invalid(f"Invalid order_by clause {item[:200]!r}")
        parts.append(f"({field.sql}) {direction} NULLS LAST")
        params.extend(field.params)
    return Compiled(", ".join(parts), params)
