"""Hypothesis strategies built from the declared event types themselves (msgspec.inspect).

Whatever the declarations allow -- every event type, every entity kind, every bound
(strings at their maximum length, integers at both ends of their range) -- is what
these strategies generate, so a property over them covers exactly what the gateway
accepts. Ids come from a tiny pool, so events keep meeting each other's entities.
"""

from __future__ import annotations

from typing import Any

import msgspec
import msgspec.inspect as mi
from hypothesis import strategies as st

from deardiary.schemas.envelope import Envelope
from deardiary.schemas.events import AUTO_STEP, Event, MetricsLogged
from deardiary.schemas.limits import MAX_STEP, MAX_TIME_US, MIN_TIME_US

IDS = st.sampled_from(["a", "b", "x" * 128])
KEYS = st.sampled_from(["loss", "acc", "k" * 250, "a b:c.d-e_f/g", "Verlust_ä"])
JSON_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**64 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
)
JSON = st.recursive(
    JSON_SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=20,
)


def _text(t: mi.StrType, name: str) -> st.SearchStrategy[str]:
    if name.endswith("_id") or name in ("event_id", "key"):
        return IDS
    low, high = t.min_length or 0, t.max_length
    chars = st.text(min_size=low, max_size=min(high or 40, 40))
    if high is not None and high <= 10_000:  # the longest a field may be, sometimes
        return st.one_of(chars, st.just("é" * high), st.just("\x00" + "x" * (high - 1)))
    return chars


def _int(t: mi.IntType) -> st.SearchStrategy[int]:
    low = t.ge if t.ge is not None else -(2**63)
    high = t.le if t.le is not None else 2**63 - 1
    return st.one_of(st.integers(low, high), st.sampled_from([low, high]))


def _of(t: mi.Type, name: str = "") -> st.SearchStrategy[Any]:
    match t:
        case mi.StrType():
            return _text(t, name)
        case mi.IntType():
            return _int(t)
        case mi.FloatType():
            return st.floats(allow_nan=True, allow_infinity=True)
        case mi.BoolType():
            return st.booleans()
        case mi.NoneType():
            return st.none()
        case mi.BytesType():
            return st.binary(max_size=64)
        case mi.AnyType():
            return JSON
        case mi.EnumType():
            return st.sampled_from(list(t.cls))
        case mi.ListType():
            low = t.min_length or 0
            return st.lists(
                _of(t.item_type, name), min_size=low, max_size=max(low, min(t.max_length or 4, 4))
            )
        case mi.DictType():
            keys = KEYS if isinstance(t.key_type, mi.StrType) else _of(t.key_type)
            return st.dictionaries(keys, _of(t.value_type), max_size=3)
        case mi.UnionType():
            return st.one_of([_of(option, name) for option in t.types])
        case mi.StructType():
            return struct_of(t)
    raise NotImplementedError(f"no strategy for {t!r}")


def struct_of(t: mi.StructType) -> st.SearchStrategy[Any]:
    if t.cls is MetricsLogged:
        return st.one_of(metric_batches(), _fields(t))  # well-formed and random columns
    return _fields(t)


def _fields(t: mi.StructType) -> st.SearchStrategy[Any]:
    fields = {
        f.name: _of(f.type, f.name)
        if f.required
        else st.one_of(st.just(f.default), _of(f.type, f.name))
        for f in t.fields
        if f.default_factory is msgspec.NODEFAULT
    }
    return st.fixed_dictionaries(fields).map(lambda kw: t.cls(**kw))


@st.composite
def metric_batches(draw: st.DrawFn) -> MetricsLogged:
    """Well-formed batches with steps and times anywhere in (and at the ends of) range."""
    n = draw(st.integers(0, 6))
    keys = draw(st.lists(KEYS, min_size=1, max_size=3, unique=True))
    steps = st.one_of(
        st.sampled_from([AUTO_STEP, 0, MAX_STEP, MAX_STEP - 1]), st.integers(AUTO_STEP, MAX_STEP)
    )
    times = st.one_of(st.sampled_from([MIN_TIME_US, MAX_TIME_US]), st.integers(0, MAX_TIME_US))
    return MetricsLogged.from_points(
        draw(IDS),
        [draw(st.sampled_from(keys)) for _ in range(n)],
        [draw(st.floats(allow_nan=True, allow_infinity=True)) for _ in range(n)],
        [draw(steps) for _ in range(n)],
        [draw(times) for _ in range(n)],
        group=draw(st.sampled_from(["", "val"])),
    )


EVENTS: st.SearchStrategy[Event] = _of(mi.type_info(Event))
_ENVELOPE = mi.type_info(Envelope)
assert isinstance(_ENVELOPE, mi.StructType)


@st.composite
def envelopes(draw: st.DrawFn, actor: str = "") -> Envelope:
    """An envelope as a client may send it: any event, its own partition key, any time."""
    body = draw(EVENTS)
    return Envelope(
        event_id=draw(st.uuids()).hex,
        body=body,
        key=body.partition_key() or "k",
        client_time=draw(
            st.one_of(st.sampled_from([MIN_TIME_US, MAX_TIME_US]), st.integers(0, MAX_TIME_US))
        ),
        actor=actor or draw(st.sampled_from(["", "ann"])),
    )
