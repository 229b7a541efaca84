"""Checks shared by several event types that a field's type cannot express."""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from typing import Any

from deardiary.schemas.limits import MAX_JSON_DEPTH, MAX_KEY_CHARS, json_depth


@functools.cache
def _key_pattern() -> re.Pattern[str]:
    """Compiled on first use (~0.3 ms here): the SDK never checks keys, the server does."""
    return re.compile(r"[\w\-./ :]+")  # \w: Unicode letters and digits, and '_'


def key_problem(key: str, max_chars: int = MAX_KEY_CHARS) -> str | None:
    """Why `key` is not a valid metric/param/tag key, or None when it is."""
    if not key:
        return "is empty"
    if len(key) > max_chars:
        return f"is longer than {max_chars} characters"
    if not _key_pattern().fullmatch(key):
        return "may only contain letters, digits, spaces and _ - . / :"
    if key.startswith("/"):
        return "must not start with '/'"
    if ".." in key.split("/"):
        return "must not contain a '..' segment"
    return None


def keys_problem(keys: Iterable[str], what: str) -> str | None:
    for key in keys:
        problem = key_problem(key)
        if problem is not None:
            return f"{what} key {key[:300]!r} {problem}"
    return None


def metadata_problem(metadata: Mapping[str, Any], what: str = "metadata") -> str | None:
    if json_depth(metadata) > MAX_JSON_DEPTH:
        return f"{what} nests deeper than {MAX_JSON_DEPTH} levels"
    return None
