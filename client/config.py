"""Configuration as params: nested dicts flattened to dotted keys, types kept.

`{"optimizer": {"lr": 1e-3, "name": "adam"}, "epochs": 10}` becomes the params
`optimizer.lr = "0.001"`, `optimizer.name = "adam"`, `epochs = "10"` (texts, compared by
filters as always), their types (`float`, `str`, `int`) and, when anything was nested,
the whole nested config as logged.
"""

from __future__ import annotations

from collections.abc import Mapping

TYPE_CHECKING = False
if TYPE_CHECKING:  # `typing` costs a trial process milliseconds to import
    from typing import Any


def _type(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "str"
    if isinstance(value, list | tuple):
        return "json"
    if hasattr(value, "item") and callable(value.item):  # a numpy scalar
        return _type(value.item())
    return "str"


def _text(value: Any) -> str:
    if isinstance(value, list | tuple):
        import json  # only for list params: a trial's plain params never load it

        try:
            return json.dumps(value, separators=(",", ":"), default=str)
        except (TypeError, ValueError):
            return str(value)
    if hasattr(value, "item") and callable(value.item) and not isinstance(value, str):
        return str(value.item())
    return str(value)


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if hasattr(value, "item") and callable(value.item):
        return _jsonable(value.item())
    return str(value)


def flatten(params: Mapping[str, Any]) -> tuple[dict[str, str], dict[str, str], dict[str, Any]]:
    """(texts by dotted key, types of the values that are not str, the nested config --
    empty when nothing was nested)."""
    values: dict[str, str] = {}
    types: dict[str, str] = {}
    nested = False

    def walk(prefix: str, mapping: Mapping[str, Any]) -> None:
        nonlocal nested
        for key, value in mapping.items():
            name = f"{prefix}{key}"
            if isinstance(value, Mapping) and value:
                nested = True
                walk(f"{name}.", value)
                continue
            values[name] = _text(value)
            kind = _type(value)
            if kind != "str":
                types[name] = kind

    walk("", {str(k): v for k, v in params.items()})
    return values, types, (_jsonable(params) if nested else {})
