"""MLflow's model-registry search grammar, compiled to SQL over our projections.

``search_registered_models`` and ``search_model_versions`` take a filter of comparisons
joined by AND (``name LIKE 'clf%' AND tags.team = 'vision'``), ``order_by`` clauses
(``last_updated_timestamp DESC``) and an opaque page token. Comparisons name an
attribute (``name``; for versions also ``version_number``, ``run_id``, ``source_path``)
or a tag (``tags.key``, ``tag.`my key```); values are quoted strings, integers for
``version_number``, or a parenthesised list for IN / NOT IN. Anything else is
INVALID_PARAMETER_VALUE naming what was wrong, as MLflow answers it.

Every value becomes a bound parameter; identifiers come only from the tables below, so
no part of a filter is ever spliced into SQL.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass, field

from deardiary.services.mlflow_api.errors import MlflowError

_TOKEN = re.compile(
    r"""\s*(?:
    (?P<str>'(?:[^']|'')*'|"(?:[^"]|"")*")
    |(?P<num>-?\d+(?:\.\d+)?)
    |(?P<op>!=|<>|<=|>=|=|<|>)
    |(?P<paren>[(),])
    |(?P<word>(?:`[^`]*`|[A-Za-z_][A-Za-z0-9_.]*(?:`[^`]*`|"[^"]*")?)+)
    )""",
    re.VERBOSE,
)
IS_PROMPT = "mlflow.prompt.is_prompt"
"""The MLflow client's own filter keeps prompts apart: ``tags.`mlflow.prompt.is_prompt`
!= 'true'`` must match models that have no such tag."""
_KEYWORDS = frozenset({"AND", "LIKE", "ILIKE", "IN", "NOT"})
_ORDER = re.compile(r"^\s*(?P<key>\S+?)\s*(?:\s(?P<dir>ASC|DESC))?\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class Grammar:
    """What one search accepts: attribute -> SQL expression and its comparators."""

    attributes: dict[str, tuple[str, frozenset[str]]]
    numeric: frozenset[str]
    tags: str  # the SQL expression of the tags JSON column
    order_keys: dict[str, str]
    tie_breakers: tuple[str, ...]


_STRING_OPS = frozenset({"=", "!=", "LIKE", "ILIKE"})
_LIST_OPS = _STRING_OPS | {"IN", "NOT IN"}
_NUMERIC_OPS = frozenset({"=", "!=", "<", "<=", ">", ">="})

MODELS = Grammar(
    attributes={"name": ("m.name", _LIST_OPS)},
    numeric=frozenset(),
    tags="m.tags",
    order_keys={
        "name": "m.name",
        "creation_timestamp": "m.created_at",
        "last_updated_timestamp": "m.updated_at",
        "timestamp": "m.updated_at",
    },
    tie_breakers=("m.name ASC", "m.model_id ASC"),
)
VERSIONS = Grammar(
    attributes={
        "name": ("m.name", _LIST_OPS),
        "run_id": ("coalesce(v.iteration_id, '')", _LIST_OPS),
        "source_path": (
            """coalesce(json_extract_string(v.metadata, '$."mlflow.source"'), '')""",
            _STRING_OPS,
        ),
        "version_number": ("v.version", _NUMERIC_OPS),
    },
    numeric=frozenset({"version_number"}),
    tags="v.tags",
    order_keys={
        "name": "m.name",
        "version_number": "v.version",
        "creation_timestamp": "v.created_at",
        "last_updated_timestamp": "v.updated_at",
        "timestamp": "v.updated_at",
    },
    tie_breakers=("m.name ASC", "v.version DESC", "v.model_version_id ASC"),
)


@dataclass
class Compiled:
    """A WHERE fragment (AND-ed, possibly empty) and its parameters, and an ORDER BY."""

    where: list[str] = field(default_factory=list)
    params: list[object] = field(default_factory=list)
    order_by: str = ""


def _tokens(text: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        match = _TOKEN.match(text, pos)
        if match is None or match.end() == pos:
            raise MlflowError(f"Invalid filter {text!r}: cannot parse at {text[pos : pos + 30]!r}")
        kind = match.lastgroup
        assert kind is not None
        value = match.group(kind)
        if kind == "word" and value.upper() in _KEYWORDS:
            kind, value = "kw", value.upper()
        out.append((kind, value))
        pos = match.end()
    return out


def _unquote(value: str) -> str:
    quote = value[0]
    return value[1:-1].replace(quote * 2, quote)


def _identifier(word: str, grammar: Grammar) -> tuple[str, str]:
    """("attribute", name) or ("tag", key) for a filter's left-hand side."""
    kind, dot, key = word.partition(".")
    if not dot:
        kind, key = "attribute", word
    key = key.strip()
    if len(key) >= 2 and key[0] == key[-1] and key[0] in "`\"'":
        key = key[1:-1]
    if kind in ("tag", "tags"):
        if not key:
            raise MlflowError(f"Invalid filter: the tag in {word!r} has no key")
        return "tag", key
    if kind not in ("attribute", "attributes"):
        raise MlflowError(
            f"Invalid entity type {kind!r}. Valid entity types are ('attribute', 'tag', 'tags')"
        )
    if key not in grammar.attributes:
        valid = ", ".join(sorted(grammar.attributes))
        raise MlflowError(f"Invalid attribute key {key!r} specified. Valid keys are: {valid}")
    return "attribute", key


def _pointer(key: str) -> str:
    """A JSON Pointer to a top-level key (DuckDB's json functions take one)."""
    return "/" + key.replace("~", "~0").replace("/", "~1")


def compile_filter(text: str, grammar: Grammar, out: Compiled) -> None:
    """Add the filter's comparisons to `out` (empty text: none)."""
    tokens = _tokens(text or "")
    i = 0
    while i < len(tokens):
        if i and tokens[i] == ("kw", "AND"):
            i += 1
        elif i:
            raise MlflowError(f"Invalid filter {text!r}: comparisons must be joined by AND")
        if i >= len(tokens) or tokens[i][0] != "word":
            raise MlflowError(f"Invalid filter {text!r}: expected an attribute or tags.<key>")
        kind, key = _identifier(tokens[i][1], grammar)
        i += 1
        op, i = _comparator(tokens, i, text)
        value, i = _value(tokens, i, text, op)
        out.where.append(_comparison(kind, key, op, value, grammar, out.params))


def _comparator(tokens: list[tuple[str, str]], i: int, text: str) -> tuple[str, int]:
    if i < len(tokens) and tokens[i][0] == "op":
        op = tokens[i][1]
        return ("!=" if op == "<>" else op), i + 1
    if tokens[i : i + 2] == [("kw", "NOT"), ("kw", "IN")]:
        return "NOT IN", i + 2
    if i < len(tokens) and tokens[i][0] == "kw" and tokens[i][1] in ("LIKE", "ILIKE", "IN"):
        return tokens[i][1], i + 1
    raise MlflowError(f"Invalid filter {text!r}: expected a comparator (=, !=, LIKE, ...)")


def _value(tokens: list[tuple[str, str]], i: int, text: str, op: str) -> tuple[object, int]:
    if op in ("IN", "NOT IN"):
        if i >= len(tokens) or tokens[i] != ("paren", "("):
            raise MlflowError(f"Invalid filter {text!r}: {op} takes a list such as ('a', 'b')")
        items: list[str] = []
        i += 1
        while i < len(tokens) and tokens[i][0] == "str":
            items.append(_unquote(tokens[i][1]))
            i += 1
            if i < len(tokens) and tokens[i] == ("paren", ","):
                i += 1
        if i >= len(tokens) or tokens[i] != ("paren", ")") or not items:
            raise MlflowError(f"Invalid filter {text!r}: {op} takes quoted strings in ( )")
        return items, i + 1
    if i < len(tokens) and tokens[i][0] == "str":
        return _unquote(tokens[i][1]), i + 1
    if i < len(tokens) and tokens[i][0] == "num":
        number = tokens[i][1]
        return (int(number) if re.fullmatch(r"-?\d+", number) else float(number)), i + 1
    raise MlflowError(f"Invalid filter {text!r}: expected a quoted value after {op}")


def _comparison(
    kind: str, key: str, op: str, value: object, grammar: Grammar, params: list[object]
) -> str:
    if kind == "tag":
        if op not in _STRING_OPS or not isinstance(value, str):
            raise MlflowError(f"Invalid comparator {op!r} for a tag; use =, !=, LIKE or ILIKE")
        params.extend([_pointer(key), value])
        if key == IS_PROMPT:  # MLflow: a model without the tag is not a prompt
            return f"coalesce(json_extract_string({grammar.tags}, ?), 'false') {op} ?"
        return f"json_extract_string({grammar.tags}, ?) {op} ?"
    column, allowed = grammar.attributes[key]
    if op not in allowed:
        shown = ", ".join(sorted(allowed))
        raise MlflowError(f"Invalid comparator {op!r} for attribute {key!r}; use one of {shown}")
    if key in grammar.numeric:
        if isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
            value = int(value)
        if not isinstance(value, int):
            raise MlflowError(f"Invalid value {value!r} for {key!r}: expected an integer")
        params.append(value)
        return f"{column} {op} ?"
    if isinstance(value, list):
        params.extend(value)
        marks = ", ".join("?" for _ in value)
        return f"{column} {op} ({marks})"
    if not isinstance(value, str):
        raise MlflowError(f"Invalid value {value!r} for {key!r}: expected a quoted string")
    params.append(value)
    return f"{column} {op} ?"


def compile_order(clauses: list[str], grammar: Grammar, out: Compiled) -> None:
    """ORDER BY from MLflow's ``key [ASC|DESC]`` clauses, then the tie-breakers."""
    parts: list[str] = []
    for clause in clauses:
        match = _ORDER.match(clause)
        key = match.group("key") if match else ""
        for prefix in ("attribute.", "attributes."):
            key = key.removeprefix(prefix)
        if match is None or key not in grammar.order_keys:
            valid = ", ".join(sorted(grammar.order_keys))
            raise MlflowError(f"Invalid order_by clause {clause!r}. Valid keys are: {valid}")
        direction = (match.group("dir") or "ASC").upper()
        parts.append(f"{grammar.order_keys[key]} {direction}")
    out.order_by = ", ".join([*parts, *grammar.tie_breakers])


def page_offset(token: str) -> int:
    """The offset a page token carries (MLflow's own format: base64 of {"offset": n})."""
    if not token:
        return 0
    try:
        parsed = json.loads(base64.b64decode(token, validate=True))
        offset = parsed["offset"]
    except (binascii.Error, ValueError, TypeError, KeyError) as exc:
        raise MlflowError(f"Invalid page token {token[:100]!r}") from exc
    if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
        raise MlflowError(f"Invalid page token {token[:100]!r}")
    return offset


def page_token(offset: int) -> str:
    return base64.b64encode(json.dumps({"offset": offset}).encode()).decode()
