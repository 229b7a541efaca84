"""Rendering Arrow results for people and scripts: an aligned table, CSV or JSON lines.

NaN and +/-inf survive every format: the table prints NaN / Infinity / -Infinity,
CSV nan / inf / -inf (pyarrow's spelling, read back by pandas and DuckDB), JSON the
NaN / Infinity tokens that Python's json and pandas read back.
"""

from __future__ import annotations

import io
import json
import math
from datetime import datetime
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        return repr(value)
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def render_table(table: pa.Table) -> str:
    rows = [[_cell(v) for v in row.values()] for row in table.to_pylist()]
    header = table.column_names
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(header)]
    lines = [
        "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)),
        "  ".join("-" * w for w in widths),
    ]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    lines.append(f"({table.num_rows} row{'s' if table.num_rows != 1 else ''})")
    return "\n".join(line.rstrip() for line in lines) + "\n"


def render_csv(table: pa.Table) -> str:
    out = io.BytesIO()
    pacsv.write_csv(table, out)
    return out.getvalue().decode()  # pyarrow writes nan/inf/-inf, which pandas reads back


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    return value


def render_json(table: pa.Table) -> str:
    return "".join(
        json.dumps({k: _json_value(v) for k, v in row.items()}, allow_nan=True) + "\n"
        for row in table.to_pylist()
    )


RENDERERS = {"table": render_table, "csv": render_csv, "json": render_json}
