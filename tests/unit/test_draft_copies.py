"""A fold's rows are private copies (`copy_row`): changing one, nested JSON values included,
never changes the prior state it was read from, and an event's rollback restores them.
Values that cannot change are shared, not walked by copy.deepcopy."""

from __future__ import annotations

import copy
from datetime import datetime
from decimal import Decimal
from typing import Any

import pytest

from deardiary.projections.draft import Draft, copy_row
from deardiary.projections.writes import PriorState


def _row() -> dict[str, Any]:
    shared = {"python": "3.11", "packages": ["numpy"]}
    return {
        "iteration_id": "it-1",
        "count": 3,
        "sum": -0.0,
        "done": False,
        "note": None,
        "at": datetime(2026, 11, 26, 18, 0),
        "price": Decimal("1.5"),
        "environment": shared,
        "again": shared,  # an alias within the row stays one object in the copy
        "tags": ["a", {"b": [1, 2]}],
    }


def test_a_copy_shares_immutable_values_and_copies_nested_ones() -> None:
    row = _row()
    got = copy_row(row)
    assert got == row and got is not row
    for column in ("iteration_id", "count", "sum", "done", "note", "at", "price"):
        assert got[column] is row[column]
    assert got["environment"] is not row["environment"]
    assert got["environment"]["packages"] is not row["environment"]["packages"]
    assert got["again"] is got["environment"]
    got["environment"]["packages"].append("scipy")
    got["tags"][1]["b"].append(3)
    assert row["environment"]["packages"] == ["numpy"] and row["tags"][1]["b"] == [1, 2]


def test_rows_of_scalars_are_copied_without_deepcopy(monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch of points reads and copies each series' summary twice (its journal and its
    working copy): copy.deepcopy walked every scalar of them."""
    walked: list[object] = []
    real = copy.deepcopy

    def counting(value: Any, memo: Any = None) -> Any:
        walked.append(value)
        return real(value, memo)

    monkeypatch.setattr(copy, "deepcopy", counting)  # the draft calls copy.deepcopy
    summary = {"iteration_id": "it-1", "key": "loss", "group": "", "count": 3, "sum": 1.5}
    key = ("it-1", "loss", "")
    prior = PriorState()
    prior.rows["last_metrics"] = {key: summary}
    d = Draft(prior)
    d.begin()
    first = d.get("last_metrics", key)
    assert first is not None
    d.commit()
    d.begin()
    again = d.get("last_metrics", key)  # the journal copies the working row
    assert again is first
    assert walked == []


def test_rollback_restores_the_row_before_the_event() -> None:
    key = "it-1"
    prior = PriorState()
    prior.rows["iterations"] = {key: _row()}
    d = Draft(prior)
    d.begin()
    row = d.get("iterations", key)
    assert row is not None
    row["environment"]["packages"].append("torch")
    row["count"] = 4
    d.put("iterations", row)
    d.commit()
    d.begin()
    row = d.get("iterations", key)
    assert row is not None
    row["environment"]["packages"].append("jax")
    row["count"] = 5
    d.put("iterations", row)
    d.rollback()  # the second event's changes go, the first's stay
    after = d.get("iterations", key)
    assert after is not None
    assert after["count"] == 4 and after["environment"]["packages"] == ["numpy", "torch"]
    assert prior.rows["iterations"][key]["environment"]["packages"] == ["numpy"]
