"""Lexer and parser for the iteration filter language (syntax only, no SQL).

Users type these expressions into a search box, a CLI flag or an HTTP query, so
every mistake must come back as an InvalidArgument naming the column where it
happened, and nothing an attacker types can reach the SQL text: the parser only
produces a small typed tree (`Node`), and filter.py turns fields into fixed SQL
snippets and every literal into a bound parameter.

Grammar (keywords case-insensitive, precedence NOT > AND > OR):

    expr       := and_expr (OR and_expr)*
    and_expr   := not_expr (AND not_expr)*
    not_expr   := NOT not_expr | '(' expr ')' | comparison
    comparison := field ( OP value | [NOT] (LIKE|ILIKE) value
                        | [NOT] IN '(' value (',' value)* ')' | IS [NOT] NULL )
    field      := segment ['@' segment] ('.' segment)*
                  segment: bare word, or `back quoted` (`` is a `); '@' qualifies the
                  prefix: metrics@<group>.<key>, params@<section>.<key>
    value      := 'str' | "str" (doubled quote or backslash escapes) | number | NaN | [+-]Infinity
                | TRUE | FALSE
    order_by   := field [ASC|DESC] (',' field [ASC|DESC])*
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Literal as TypingLiteral

from deardiary.schemas.errors import InvalidArgument

MAX_LENGTH = 10_000
"""Longest expression accepted; a search box never needs more, a DoS attempt does."""

MAX_DEPTH = 64
"""Deepest nesting of parentheses and NOTs (keeps Python and DuckDB recursion bounded)."""

MAX_COMPARISONS = 100
"""Most comparisons in one filter: each param/metric test is a correlated subquery and
DuckDB's planning time grows faster than linearly with their number (450 take ~13 s)."""

_KEYWORDS = frozenset(
    {"AND", "OR", "NOT", "IN", "IS", "NULL", "LIKE", "ILIKE", "TRUE", "FALSE", "ASC", "DESC"}
)
_SPECIAL_NUMBERS = {"NAN": float("nan"), "INFINITY": float("inf"), "INF": float("inf")}
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)
_SIGNED_WORD = re.compile(r"[+-](infinity|inf|nan)\b", re.IGNORECASE)
_OPERATOR = re.compile(r"<=|>=|!=|<>|==|=|<|>")
_STRING_ESCAPES = {"\\": "\\", "'": "'", '"': '"', "n": "\n", "t": "\t", "r": "\r"}


def _is_word_char(ch: str) -> bool:
    """Characters of a bare key segment: word characters plus the usual metric-name
    separators (`train/loss`, `val-acc`, `eval:top1`)."""
    return ch.isalnum() or ch in "_/-:"


@dataclass(frozen=True)
class Segment:
    text: str
    quoted: bool


@dataclass(frozen=True)
class Token:
    kind: TypingLiteral["field", "keyword", "string", "number", "op", "(", ")", ",", "eof"]
    pos: int
    text: str
    segments: tuple[Segment, ...] = ()
    value: str | float = ""
    qualifier: Segment | None = None


@dataclass(frozen=True)
class Field:
    segments: tuple[Segment, ...]
    pos: int
    text: str
    qualifier: Segment | None = None
    """What `@` after the first segment names: a metric group, a param section."""


@dataclass(frozen=True)
class Value:
    """A literal. `kind` says how it was written; `text` is its source spelling."""

    kind: TypingLiteral["string", "number", "bool"]
    value: str | float | bool
    text: str
    pos: int


@dataclass(frozen=True)
class Comparison:
    field: Field
    op: str  # = != < <= > >= LIKE ILIKE IN, NOT LIKE/ILIKE/IN, IS NULL, IS NOT NULL
    values: tuple[Value, ...]
    pos: int


@dataclass(frozen=True)
class Not:
    operand: Node


@dataclass(frozen=True)
class BoolOp:
    op: TypingLiteral["AND", "OR"]
    operands: tuple[Node, ...]


Node = Comparison | Not | BoolOp


@dataclass(frozen=True)
class SortKey:
    field: Field
    descending: bool


def syntax_error(text: str, pos: int, message: str) -> InvalidArgument:
    """An InvalidArgument pointing at `pos` (0-based) as a 1-based line/column."""
    line = text.count("\n", 0, pos) + 1
    column = pos - (text.rfind("\n", 0, pos) + 1) + 1
    where = f"line {line}, column {column}" if "\n" in text else f"column {column}"
    near = text[pos : pos + 20].split("\n")[0]
    shown = f" near {near!r}" if near else ""
    return InvalidArgument(
        f"{message} at {where}{shown}",
        {"position": pos, "line": line, "column": column},
    )


class _Lexer:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def error(self, pos: int, message: str) -> InvalidArgument:
        return syntax_error(self.text, pos, message)

    def tokens(self) -> list[Token]:
        out: list[Token] = []
        text = self.text
        while True:
            while self.pos < len(text) and text[self.pos].isspace():
                self.pos += 1
            if self.pos >= len(text):
                out.append(Token("eof", self.pos, ""))
                return out
            out.append(self._token())

    def _token(self) -> Token:
        text, start = self.text, self.pos
        ch = text[start]
        if ch in "(),":
            self.pos += 1
            return Token(ch, start, ch)  # type: ignore[arg-type]
        if ch in "'\"":
            return self._string()
        op = _OPERATOR.match(text, start)
        if op:
            self.pos = op.end()
            canonical = {"<>": "!=", "==": "="}.get(op.group(), op.group())
            return Token("op", start, op.group(), value=canonical)
        signed = _SIGNED_WORD.match(text, start)
        if signed:
            self.pos = signed.end()
            number = _SPECIAL_NUMBERS[signed.group(1).upper()]
            return Token("number", start, signed.group(), value=-number if ch == "-" else number)
        number_match = _NUMBER.match(text, start)
        if number_match:
            end = number_match.end()
            if end < len(text) and (_is_word_char(text[end]) or text[end] in ".`"):
                raise self.error(start, "malformed number")
            self.pos = end
            return Token("number", start, number_match.group(), value=float(number_match.group()))
        if ch == "`" or ch.isalpha() or ch == "_":
            return self._field()
        raise self.error(start, f"unexpected character {ch!r}")

    def _string(self) -> Token:
        text, start = self.text, self.pos
        quote = text[start]
        chars: list[str] = []
        i = start + 1
        while i < len(text):
            ch = text[i]
            if ch == quote:
                if i + 1 < len(text) and text[i + 1] == quote:
                    chars.append(quote)
                    i += 2
                    continue
                self.pos = i + 1
                return Token("string", start, text[start : i + 1], value="".join(chars))
            if ch == "\\" and i + 1 < len(text):
                nxt = text[i + 1]
                # Unknown escapes stay as written, so LIKE patterns keep `\%` and `\_`.
                chars.append(_STRING_ESCAPES.get(nxt, "\\" + nxt))
                i += 2
                continue
            chars.append(ch)
            i += 1
        raise self.error(start, "unterminated string")

    def _field(self) -> Token:
        text, start = self.text, self.pos
        segments: list[Segment] = []
        qualifier: Segment | None = None
        while True:
            segments.append(self._segment("a key after '.'"))
            if len(segments) == 1 and self.pos < len(text) and text[self.pos] == "@":
                self.pos += 1
                qualifier = self._segment("a group or section after '@'")
            if self.pos < len(text) and text[self.pos] == ".":
                self.pos += 1
                continue
            break
        if self.pos < len(text) and text[self.pos] == "`":
            raise self.error(self.pos, "unexpected back quote")
        spelled = text[start : self.pos]
        if qualifier is not None:
            return Token("field", start, spelled, segments=tuple(segments), qualifier=qualifier)
        if len(segments) == 1 and not segments[0].quoted:
            word = segments[0].text.upper()
            if word in _KEYWORDS:
                return Token("keyword", start, spelled, value=word)
            if word in _SPECIAL_NUMBERS:
                return Token("number", start, spelled, value=_SPECIAL_NUMBERS[word])
        return Token("field", start, spelled, segments=tuple(segments))

    def _segment(self, expected: str) -> Segment:
        """A bare or back-quoted segment at the current position."""
        text, seg_start = self.text, self.pos
        if self.pos < len(text) and text[self.pos] == "`":
            return self._backquoted()
        while self.pos < len(text) and _is_word_char(text[self.pos]):
            self.pos += 1
        if self.pos == seg_start:
            raise self.error(seg_start, f"expected {expected}")
        return Segment(text[seg_start : self.pos], quoted=False)

    def _backquoted(self) -> Segment:
        text, start = self.text, self.pos
        chars: list[str] = []
        i = start + 1
        while i < len(text):
            if text[i] == "`":
                if i + 1 < len(text) and text[i + 1] == "`":
                    chars.append("`")
                    i += 2
                    continue
                self.pos = i + 1
                return Segment("".join(chars), quoted=True)
            chars.append(text[i])
            i += 1
        raise self.error(start, "unterminated back-quoted key")


class _Parser:
    def __init__(self, text: str, what: str) -> None:
        if len(text) > MAX_LENGTH:
            raise InvalidArgument(
                f"{what} is too long ({len(text)} characters, at most {MAX_LENGTH})",
                {"length": len(text), "max_length": MAX_LENGTH},
            )
        for index, ch in enumerate(text):
            category = unicodedata.category(ch)
            if category == "Cs" or (category == "Cc" and not ch.isspace()):
                raise syntax_error(text, index, f"invalid character U+{ord(ch):04X}")
        self.text = text
        self.tokens = _Lexer(text).tokens()
        self.index = 0
        self.depth = 0
        self.comparisons = 0

    @property
    def current(self) -> Token:
        return self.tokens[self.index]

    def advance(self) -> Token:
        token = self.tokens[self.index]
        if token.kind != "eof":
            self.index += 1
        return token

    def error(self, message: str, token: Token | None = None) -> InvalidArgument:
        token = token or self.current
        found = "end of input" if token.kind == "eof" else repr(token.text)
        return syntax_error(self.text, token.pos, f"{message}, found {found}")

    def at_keyword(self, *words: str) -> bool:
        return self.current.kind == "keyword" and self.current.value in words

    def expect_keyword(self, word: str) -> None:
        if not self.at_keyword(word):
            raise self.error(f"expected {word}")
        self.advance()

    def expect(self, kind: str, shown: str) -> Token:
        if self.current.kind != kind:
            raise self.error(f"expected {shown}")
        return self.advance()

    def expect_end(self) -> None:
        if self.current.kind != "eof":
            raise self.error("expected AND, OR or end of expression")

    # -- filter expressions -------------------------------------------------

    def expression(self) -> Node:
        operands = [self.and_expression()]
        while self.at_keyword("OR"):
            self.advance()
            operands.append(self.and_expression())
        return operands[0] if len(operands) == 1 else BoolOp("OR", tuple(operands))

    def and_expression(self) -> Node:
        operands = [self.not_expression()]
        while self.at_keyword("AND"):
            self.advance()
            operands.append(self.not_expression())
        return operands[0] if len(operands) == 1 else BoolOp("AND", tuple(operands))

    def not_expression(self) -> Node:
        token = self.current
        if self.at_keyword("NOT") or token.kind == "(":
            self.depth += 1
            if self.depth > MAX_DEPTH:
                raise self.error(f"nesting deeper than {MAX_DEPTH} levels")
            self.advance()
            if token.kind == "(":
                node: Node = self.expression()
                self.expect(")", "')'")
            else:
                node = Not(self.not_expression())
            self.depth -= 1
            return node
        return self.comparison()

    def field(self) -> Field:
        token = self.current
        if token.kind != "field":
            raise self.error("expected a field such as params.<key>, metrics.<key> or status")
        self.advance()
        return Field(token.segments, token.pos, token.text, token.qualifier)

    def comparison(self) -> Comparison:
        self.comparisons += 1
        if self.comparisons > MAX_COMPARISONS:
            raise self.error(f"more than {MAX_COMPARISONS} comparisons")
        field = self.field()
        token = self.current
        if token.kind == "op":
            self.advance()
            return Comparison(field, str(token.value), (self.value(),), token.pos)
        if self.at_keyword("IS"):
            self.advance()
            negated = self.at_keyword("NOT")
            if negated:
                self.advance()
            self.expect_keyword("NULL")
            return Comparison(field, "IS NOT NULL" if negated else "IS NULL", (), token.pos)
        negated = self.at_keyword("NOT")
        if negated:
            self.advance()
        if self.at_keyword("LIKE", "ILIKE"):
            op = str(self.advance().value)
            values: tuple[Value, ...] = (self.value(),)
        elif self.at_keyword("IN"):
            op = "IN"
            self.advance()
            values = self.value_list()
        else:
            expected = "IN, LIKE or ILIKE" if negated else "an operator (=, !=, <, LIKE, IN, IS…)"
            raise self.error(f"expected {expected}")
        return Comparison(field, f"NOT {op}" if negated else op, values, token.pos)

    def value_list(self) -> tuple[Value, ...]:
        self.expect("(", "'(' to open the IN list")
        values = [self.value()]
        while self.current.kind == ",":
            self.advance()
            values.append(self.value())
        self.expect(")", "',' or ')' in the IN list")
        return tuple(values)

    def value(self) -> Value:
        token = self.current
        if token.kind == "string":
            self.advance()
            return Value("string", token.value, token.text, token.pos)
        if token.kind == "number":
            self.advance()
            return Value("number", token.value, token.text, token.pos)
        if self.at_keyword("TRUE", "FALSE"):
            self.advance()
            return Value("bool", token.value == "TRUE", token.text, token.pos)
        if self.at_keyword("NULL"):
            raise self.error("use IS NULL / IS NOT NULL to test for missing values")
        raise self.error("expected a value (a quoted string or a number)")

    # -- order by -----------------------------------------------------------

    def sort_keys(self) -> list[SortKey]:
        keys: list[SortKey] = []
        while True:
            field = self.field()
            descending = False
            if self.at_keyword("ASC", "DESC"):
                descending = self.advance().value == "DESC"
            keys.append(SortKey(field, descending))
            if self.current.kind != ",":
                break
            self.advance()
        if self.current.kind != "eof":
            raise self.error("expected ASC, DESC, ',' or end of order")
        return keys


def parse_filter(text: str) -> Node | None:
    """Parse a filter expression; None for an empty one (match everything)."""
    parser = _Parser(text, "filter expression")
    if parser.current.kind == "eof":
        return None
    node = parser.expression()
    parser.expect_end()
    return node


def parse_order_by(text: str) -> list[SortKey]:
    """Parse `field [ASC|DESC], ...`; empty for an empty spec."""
    parser = _Parser(text, "order by")
    if parser.current.kind == "eof":
        return []
    return parser.sort_keys()
