"""What an event may carry: every bound declared once, obeyed by gateway, SDK and folds.

The event types attach these to their fields as msgspec constraints (so decoding
refuses what is out of range, with the field's ``$.path``), and `rules.py` checks what
a type cannot say (columnar metric bytes, nesting depth, entity kinds). A value inside
these bounds always folds; a value outside never reaches a fold.
"""

from __future__ import annotations

from typing import Annotated, Any

from msgspec import Meta

from deardiary.schemas.bounds import (
    MAX_DOCUMENT_CHARS,
    MAX_FILES,
    MAX_HISTOGRAM_BINS,
    MAX_ID_CHARS,
    MAX_INDEX,
    MAX_JSON_DEPTH,
    MAX_KEY_CHARS,
    MAX_MEDIA_TYPE_CHARS,
    MAX_METRIC_KEYS,
    MAX_NAME_CHARS,
    MAX_PARAM_VALUE_CHARS,
    MAX_PIXELS,
    MAX_SIZE_BYTES,
    MAX_STEP,
    MAX_TAG_VALUE_CHARS,
    MAX_TEXT_CHARS,
    MAX_TIME_US,
    MIN_TIME_US,
)

__all__ = [
    "MAX_DOCUMENT_CHARS",
    "MAX_FILES",
    "MAX_HISTOGRAM_BINS",
    "MAX_ID_CHARS",
    "MAX_INDEX",
    "MAX_JSON_DEPTH",
    "MAX_KEY_CHARS",
    "MAX_MEDIA_TYPE_CHARS",
    "MAX_METRIC_KEYS",
    "MAX_NAME_CHARS",
    "MAX_PARAM_VALUE_CHARS",
    "MAX_PIXELS",
    "MAX_SIZE_BYTES",
    "MAX_STEP",
    "MAX_TAG_VALUE_CHARS",
    "MAX_TEXT_CHARS",
    "MAX_TIME_US",
    "MIN_TIME_US",
    "Document",
    "ExplicitStep",
    "Id",
    "IdOrEmpty",
    "Key",
    "MediaType",
    "Metadata",
    "Name",
    "ParamValue",
    "SizeBytes",
    "Step",
    "TagValue",
    "Tags",
    "Text",
    "TimeUs",
    "json_depth",
]

TimeUs = Annotated[int, Meta(ge=MIN_TIME_US, le=MAX_TIME_US)]
Step = Annotated[int, Meta(ge=-1, le=MAX_STEP)]
ExplicitStep = Annotated[int, Meta(ge=0, le=MAX_STEP)]
Id = Annotated[str, Meta(min_length=1, max_length=MAX_ID_CHARS)]
IdOrEmpty = Annotated[str, Meta(max_length=MAX_ID_CHARS)]
"""An optional id written as "" by older clients."""
Key = Annotated[str, Meta(max_length=MAX_KEY_CHARS)]
Name = Annotated[str, Meta(max_length=MAX_NAME_CHARS)]
Text = Annotated[str, Meta(max_length=MAX_TEXT_CHARS)]
Document = Annotated[str, Meta(max_length=MAX_DOCUMENT_CHARS)]
ParamValue = Annotated[str, Meta(max_length=MAX_PARAM_VALUE_CHARS)]
TagValue = Annotated[str, Meta(max_length=MAX_TAG_VALUE_CHARS)]
Tags = dict[Key, TagValue]
Metadata = dict[Key, Any]
SizeBytes = Annotated[int, Meta(ge=0, le=MAX_SIZE_BYTES)]
MediaType = Annotated[str, Meta(max_length=MAX_MEDIA_TYPE_CHARS)]


def json_depth(value: Any, limit: int = MAX_JSON_DEPTH) -> int:
    """How deeply `value` nests (0 for a scalar); stops counting past `limit`."""
    if limit < 0:
        return 0
    if isinstance(value, dict):
        children: Any = value.values()
    elif isinstance(value, list | tuple):
        children = value
    else:
        return 0
    return 1 + max((json_depth(v, limit - 1) for v in children), default=0)
