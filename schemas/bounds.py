"""Every bound an event's values obey, as plain numbers (limits.py makes them msgspec
constraints). Here, apart, so the SDK's write path checks them without importing msgspec
(see `schemas/wire.py`)."""

from __future__ import annotations

AUTO_STEP = -1
"""The step that means "the key's last step + 1" (`MetricsLogged.steps`)."""
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
