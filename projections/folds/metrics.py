"""Metric points: resolve default steps, emit the points, update `last_metrics`.

A series is (iteration, key, group): a validation `loss` (group "val") has steps and a
summary of its own, apart from the training `loss` (group ""). Every aggregate is a left
fold in log order (the running sum is accumulated point by point, ties keep the earlier
point), so folding a sequence in one batch or in many gives bit-identical results.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.ma  # pyarrow imports it at its first numpy conversion: at load, not mid-batch
import pyarrow as pa

from deardiary.projections.draft import Draft
from deardiary.projections.folds.spec import FoldSpec, Specs
from deardiary.projections.writes import Lookups
from deardiary.schemas.events import AUTO_STEP, MetricsLogged
from deardiary.schemas.limits import MAX_STEP

POINT_SCHEMA = pa.schema(
    [
        ("iteration_id", pa.dictionary(pa.int32(), pa.string())),
        ("key", pa.dictionary(pa.int32(), pa.string())),
        ("step", pa.int64()),
        ("value", pa.float64()),
        ("recorded_at", pa.timestamp("us")),
        ("client_time", pa.timestamp("us")),
        ("group", pa.dictionary(pa.int32(), pa.string())),
        ("partition", pa.int32()),
        ("offset", pa.int64()),
        ("seq", pa.int32()),
    ]
)


def _constant(value: str, n: int) -> pa.DictionaryArray:
    """`value` n times, as a dictionary of one (all-zero indices need no bounds check)."""
    indices = np.zeros(n, dtype=np.int32)
    return pa.DictionaryArray.from_arrays(indices, pa.array([value], pa.string()), safe=False)


def _resolve_steps(steps: np.ndarray, top: int) -> tuple[np.ndarray, int]:
    """Replace AUTO_STEP by max(step so far)+1, in order; returns the steps and the new max."""
    auto = steps == AUTO_STEP
    if not auto.any():
        return steps, max(top, int(steps.max()))
    if auto.all():
        resolved = np.arange(top + 1, top + 1 + len(steps), dtype=np.int64)
        return resolved, int(resolved[-1])
    resolved = steps.copy()
    for i, step in enumerate(steps.tolist()):
        if step == AUTO_STEP:
            top += 1
            resolved[i] = top
        else:
            top = max(top, step)
    return resolved, top


def _new_row(event: MetricsLogged, key: str, first: float, first_step: int) -> dict[str, Any]:
    """The last_metrics row of a key the iteration had not logged before."""
    return {
        "iteration_id": event.iteration_id,
        "key": key,
        "group": event.group,
        "first": first,
        "first_step": first_step,
        "count": 0,
        "sum": 0.0,
        "finite_count": 0,
        "min": None,
        "max": None,
        "min_step": None,
        "max_step": None,
    }


def _summary(
    draft: Draft,
    prior: dict[str, Any] | None,
    event: MetricsLogged,
    key: str,
    steps: np.ndarray,
    values: np.ndarray,
    top: int,
) -> dict[str, Any]:
    """Merge one key's points (in log order) into its last_metrics row."""
    row = prior or _new_row(event, key, float(values[0]), int(steps[0]))
    nans = np.isnan(values)
    fvals, fsteps = values, steps
    if nans.any():  # most series have none: no copies then
        finite = ~nans
        fvals, fsteps = values[finite], steps[finite]
    if len(fvals):
        lo, hi = int(np.argmin(fvals)), int(np.argmax(fvals))
        if row["min"] is None or fvals[lo] < row["min"]:
            row["min"], row["min_step"] = float(fvals[lo]), int(fsteps[lo])
        if row["max"] is None or fvals[hi] > row["max"]:
            row["max"], row["max_step"] = float(fvals[hi]), int(fsteps[hi])
        with np.errstate(invalid="ignore", over="ignore"):  # inf + -inf is NaN, by IEEE
            running = np.add.accumulate(np.concatenate(([row["sum"]], fvals)))
        row["sum"] = float(running[-1])
        row["finite_count"] += len(fvals)
    row["count"] += len(values)
    row["last"] = float(values[-1])
    row["last_step"] = int(steps[-1])
    row["top_step"] = top
    row["mean"] = row["sum"] / row["finite_count"] if row["finite_count"] else None
    row["last_recorded_at"] = draft.log_time
    return row


def _row_columns(raw_index: np.ndarray, nkeys: int) -> list[int] | None:
    """For a batch of rows -- every key once a row, in the same order in each, as the SDK
    sends `log_metrics({...}, step)` step after step -- each key index's column in a row;
    None for any other batch."""
    if not nkeys or len(raw_index) % nkeys:
        return None
    rows = raw_index.reshape(-1, nkeys)
    first = rows[0]
    if np.bincount(first, minlength=nkeys).max() != 1 or not (rows == first).all():
        return None
    column: list[int] = np.argsort(first).tolist()
    return column


def _key_runs(
    raw_index: np.ndarray,
    nkeys: int,
    steps: np.ndarray,
    values: np.ndarray,
    column: list[int] | None,
) -> tuple[list[tuple[int, np.ndarray, np.ndarray]], np.ndarray | None]:
    """Each key's (index, steps, values) in log order, keys in index order, and the order
    that sorted the points by key (None when no sort was needed).

    In a batch of rows (`column`) each key's run is a strided view: no sort and no
    gathers. Any other batch is sorted by key once (a stable radix sort of the 16-bit key
    index) and each key's run is a slice."""
    if column is not None:
        return [(k, steps[c::nkeys], values[c::nkeys]) for k, c in enumerate(column)], None
    order = np.argsort(raw_index, kind="stable")
    ends = np.cumsum(np.bincount(raw_index, minlength=nkeys)).tolist()
    by_key_steps, by_key_values = steps[order], values[order]
    runs, start = [], 0
    for k, end in enumerate(ends):
        if end > start:  # a key without points has no run
            runs.append((k, by_key_steps[start:end], by_key_values[start:end]))
        start = end
    return runs, order


def _fold_runs(
    draft: Draft,
    event: MetricsLogged,
    runs: list[tuple[int, np.ndarray, np.ndarray]],
    order: np.ndarray | None,
    steps: np.ndarray,
) -> bool:
    """Each key's summary from its run, default steps resolved into `steps`; False (and
    nothing changed) when automatic steps would pass MAX_STEP."""
    # Resolve every key's steps first: a batch whose automatic steps would pass MAX_STEP
    # is refused whole (recorded), before any summary changes.
    resolved_keys = []
    auto = False
    for k, given, run_values in runs:
        key = event.keys[k]
        prior = draft.get("last_metrics", (event.iteration_id, key, event.group))
        top = prior["top_step"] if prior is not None else -1
        resolved, top = _resolve_steps(given, top)
        if top > MAX_STEP:
            draft.conflict(
                "step_overflow",
                event.iteration_id,
                f"metric {key!r}: automatic steps would pass {MAX_STEP}; batch refused",
            )
            return False
        auto = auto or resolved is not given
        resolved_keys.append((key, given, run_values, prior, resolved, top))
    for key, given, run_values, prior, resolved, top in resolved_keys:
        if resolved is not given:
            given[:] = resolved  # a view of `steps` or of the sorted copy
        summary = _summary(draft, prior, event, key, resolved, run_values, top)
        draft.put("last_metrics", summary)
    if auto and order is not None:  # back in log order
        steps[order] = np.concatenate([run[1] for run in runs])
    return True


def _fold_rows(
    draft: Draft, event: MetricsLogged, column: list[int], steps: np.ndarray, values: np.ndarray
) -> None:
    """`_fold_runs` for a batch of rows without NaN or default steps (a sweep's): every
    key's first, last, min, max and top step from column-wise reductions of the rows at
    once, and its running sum from one accumulation down the columns -- each column is
    still added point by point in log order, from the key's sum so far, so the numbers
    are `_summary`'s to the bit."""
    nkeys = len(column)
    step_rows, value_rows = steps.reshape(-1, nkeys), values.reshape(-1, nkeys)
    count = len(value_rows)
    keys = [(event.iteration_id, key, event.group) for key in event.keys]
    priors = [draft.get("last_metrics", key) for key in keys]
    start = np.zeros(nkeys)
    start[column] = [0.0 if p is None else p["sum"] for p in priors]
    with np.errstate(invalid="ignore", over="ignore"):  # inf + -inf is NaN, by IEEE
        sums = np.add.accumulate(np.vstack([start, value_rows]), axis=0)[-1].tolist()
    every = np.arange(nkeys)
    lo, hi = value_rows.argmin(axis=0), value_rows.argmax(axis=0)
    mins, min_steps = value_rows[lo, every].tolist(), step_rows[lo, every].tolist()
    maxs, max_steps = value_rows[hi, every].tolist(), step_rows[hi, every].tolist()
    firsts, first_steps = value_rows[0].tolist(), step_rows[0].tolist()
    lasts, last_steps = value_rows[-1].tolist(), step_rows[-1].tolist()
    tops = step_rows.max(axis=0).tolist()
    log_time = draft.log_time
    for k, c in enumerate(column):
        prior = priors[k]
        row = prior or _new_row(event, event.keys[k], firsts[c], first_steps[c])
        if row["min"] is None or mins[c] < row["min"]:
            row["min"], row["min_step"] = mins[c], min_steps[c]
        if row["max"] is None or maxs[c] > row["max"]:
            row["max"], row["max_step"] = maxs[c], max_steps[c]
        row["sum"] = sums[c]
        row["finite_count"] += count
        row["count"] += count
        row["last"], row["last_step"] = lasts[c], last_steps[c]
        row["top_step"] = max(-1 if prior is None else prior["top_step"], tops[c])
        row["mean"] = row["sum"] / row["finite_count"]
        row["last_recorded_at"] = log_time
        draft.put("last_metrics", row)


def fold_metrics(draft: Draft, event: MetricsLogged) -> None:
    n = event.num_points
    if n == 0 or not draft.parent("iterations", event.iteration_id, "iteration"):
        return
    raw_index = np.frombuffer(event.key_index, dtype="<u2")
    steps = np.frombuffer(event.steps, dtype="<i8").copy()
    values = np.frombuffer(event.values, dtype="<f8")
    times = np.frombuffer(event.times, dtype="<i8")
    nkeys = len(event.keys)
    column = _row_columns(raw_index, nkeys)
    # steps were checked to be >= AUTO_STEP (event.problem())
    if column is not None and int(steps.min()) > AUTO_STEP and not np.isnan(values).any():
        _fold_rows(draft, event, column, steps, values)
    else:
        runs, order = _key_runs(raw_index, nkeys, steps, values, column)
        if not _fold_runs(draft, event, runs, order, steps):
            return
    pos = draft.position
    draft.point_tables.append(
        pa.Table.from_arrays(
            [
                _constant(event.iteration_id, n),
                # indices checked against the keys by event.problem() before any fold
                pa.DictionaryArray.from_arrays(
                    raw_index.astype(np.int32), pa.array(event.keys, pa.string()), safe=False
                ),
                pa.array(steps),
                pa.array(values),
                pa.array(np.full(n, pos.log_time, dtype=np.int64), pa.timestamp("us")),
                pa.array(times, pa.timestamp("us")),
                _constant(event.group, n),
                pa.array(np.full(n, pos.partition, dtype=np.int32)),
                pa.array(np.full(n, pos.offset, dtype=np.int64)),
                pa.array(np.arange(n, dtype=np.int32)),
            ],
            schema=POINT_SCHEMA,
        )
    )


def _lookups(want: Lookups, event: MetricsLogged) -> None:
    want.want_exists("iterations", event.iteration_id)
    for key in event.keys:
        want.want("last_metrics", (event.iteration_id, key, event.group))


def _history_summary(event: MetricsLogged) -> object:
    return {
        "iteration_id": event.iteration_id,
        "keys": event.keys,
        "group": event.group,
        "points": event.num_points,
    }


SPECS: Specs = {MetricsLogged: FoldSpec(fold_metrics, _lookups, _history_summary)}
