"""What an event may carry: every bound declared once, obeyed by gateway, SDK and folds.

The event types attach these to their fields as msgspec constraints (so decoding
refuses what is out of range, with the field's ``$.path``), and `rules.py` checks what
a type cannot say (columnar metric bytes, nesting depth, entity kinds). A value inside
these bounds always folds; a value outside never reaches a fold.
"""

from __future__ import annotations

from typing import Annotated, Any

from msgspec import Meta

MIN_TIME_US = 0
"""Times are microseconds since the Unix epoch, from 1970-01-01 ..."""
MAX_TIME_US = 253_402_300_799_999_999
"""... to 9999-12-31T23:59:59.999999 (what every reader's datetime type can hold)."""
MAX_STEP = 2**62
"""Explicit steps are 0..MAX_STEP; automatic steps (max+1) may not pass it either."""
MAX_ID_CHARS = 128
MAX_KEY_CHARS = 250
"""Metric, param and tag keys (MLflow's limit)."""
MAX_NAME_CHARS = 500
MAX_PARAM_VALUE_CHARS = 6_000
"""Param values (MLflow's limit)."""
MAX_TAG_VALUE_CHARS = 8_000
MAX_TEXT_CHARS = 1_000_000
"""Notes, descriptions, error messages, one log line."""
MAX_DOCUMENT_CHARS = 16_000_000
"""A git diff, a pip freeze, a dependency manifest."""
MAX_METRIC_KEYS = 1 << 16
"""Distinct keys in one metric batch (the per-point index is a uint16)."""
MAX_JSON_DEPTH = 32
"""Nesting of metadata values (dicts and lists inside dicts and lists)."""
MAX_SIZE_BYTES = 2**53
MAX_MEDIA_TYPE_CHARS = 255
MAX_HISTOGRAM_BINS = 10_000
"""Bins of one histogram (its edges are one more)."""
MAX_PIXELS = 1 << 20
"""Width or height of an image, as recorded."""
MAX_INDEX = 1_000_000
"""Media items of one key at one step (a batch of samples)."""
MAX_FILES = 10_000
"""Files of one checkpoint."""

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
