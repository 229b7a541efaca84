"""The raw metric-history read over real HTTP (auth on): a large series comes back
exactly -- every step, value (NaN, infinities and -0.0 bit for bit) and time -- in
Arrow and in JSON; an empty series, an unknown key and another project's series are
answered as documented. (Guards of the route the 1M-point bench row measures.)"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

import httpx
import numpy as np
import pyarrow as pa
import pytest

import deardiary as dd
from deardiary.projections.queries.metric_series import SERIES_SCHEMA
from deardiary.transport import arrow_accept
from tests.e2e.auth_people import ANN_PW, BOB_PW, login, serving_people

ARROW = "application/vnd.apache.arrow.stream"
POINTS = 120_000
SPECIAL = {7: math.nan, 8: math.inf, 9: -math.inf, 10: -0.0, 11: 5e-324, POINTS - 1: math.nan}


def _value(i: int) -> float:
    return SPECIAL.get(i, ((i * 7919) % 1000) / 1000.0 - 0.5)


def _step(i: int) -> int:
    return 3 * i + (i % 2)  # gaps, strictly increasing


@dataclass
class Logged:
    url: str
    ann: dict[str, str]
    bob: dict[str, str]
    big: str
    empty: str
    before_us: int
    after_us: int


@pytest.fixture(scope="module")
def logged(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Logged]:
    data = tmp_path_factory.mktemp("series") / "data"
    with serving_people(data) as (url, _, _admin):
        c = dd.connect(url, username="ann", password=ANN_PW, spool_dir=data.parent / "spool")
        before = time.time_ns() // 1000
        with c.start_iteration(project="ann-proj", experiment="exp", capture_env=False) as big:
            for i in range(POINTS):
                big.log_metric("loss", _value(i), step=_step(i))
        after = time.time_ns() // 1000
        with c.start_iteration(project="ann-proj", experiment="exp", capture_env=False) as empty:
            empty.log_metric("other", 1.0)
        c.flush()
        c.close()
        ann, bob = login(url, "ann", ANN_PW), login(url, "bob", BOB_PW)
        yield Logged(url, ann, bob, big.id, empty.id, before, after)


def _history(
    logged: Logged, iteration: str, key: str, fmt: str, who: str = "ann"
) -> httpx.Response:
    return httpx.get(
        f"{logged.url}/api/v1/iterations/{iteration}/metric-history",
        params={"key": key, "format": fmt},
        headers=logged.ann if who == "ann" else logged.bob,
        timeout=60,
    )


def test_a_large_series_comes_back_exactly_in_arrow(logged: Logged) -> None:
    r = _history(logged, logged.big, "loss", "arrow")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/vnd.apache.arrow.stream"
    assert int(r.headers["content-length"]) == len(r.content)
    table = pa.ipc.open_stream(r.content).read_all()
    assert table.schema == SERIES_SCHEMA
    assert table["step"].to_pylist() == [_step(i) for i in range(POINTS)]
    want = np.array([_value(i) for i in range(POINTS)], dtype=np.float64)
    got = table["value"].to_numpy()
    assert np.array_equal(got.view(np.int64), want.view(np.int64))  # NaN, -0.0 bit for bit
    for name in ("recorded_at", "client_time"):
        assert table[name].null_count == 0
    client = table["client_time"].cast(pa.int64()).to_numpy()
    assert logged.before_us <= client.min() and client.max() <= logged.after_us
    assert np.all(np.diff(client) >= 0)  # one thread logged them in order
    recorded = table["recorded_at"].cast(pa.int64()).to_numpy()
    assert recorded.min() >= logged.before_us


def test_json_and_arrow_answer_the_same_points(logged: Logged) -> None:
    table = pa.ipc.open_stream(_history(logged, logged.big, "loss", "arrow").content).read_all()
    r = _history(logged, logged.big, "loss", "json")
    assert r.status_code == 200, r.text
    items = r.json()["items"]
    assert len(items) == POINTS

    def text(v: float) -> object:
        if math.isnan(v):
            return "NaN"
        return ("Infinity" if v > 0 else "-Infinity") if math.isinf(v) else v

    def iso(t: datetime) -> str:
        return t.isoformat() + "Z"

    want = [
        {
            "step": s,
            "value": text(v),
            "recorded_at": iso(at),
            "client_time": iso(ct),
        }
        for s, v, at, ct in zip(*(table[n].to_pylist() for n in SERIES_SCHEMA.names), strict=True)
    ]
    assert items == want
    assert math.copysign(1.0, items[10]["value"]) == -1.0  # -0.0 kept its sign in JSON too


def test_an_empty_series_and_an_unknown_key_are_empty_tables(logged: Logged) -> None:
    for iteration, key in ((logged.empty, "loss"), (logged.big, "no-such-key")):
        r = _history(logged, iteration, key, "arrow")
        assert r.status_code == 200, r.text
        table = pa.ipc.open_stream(r.content).read_all()
        assert table.schema == SERIES_SCHEMA and table.num_rows == 0
        j = _history(logged, iteration, key, "json")
        assert j.status_code == 200 and j.json()["items"] == []


def test_an_unknown_iteration_is_not_found(logged: Logged) -> None:
    r = _history(logged, "no-such-iteration", "loss", "arrow")
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "NOT_FOUND"


def test_another_projects_series_is_refused(logged: Logged) -> None:
    for fmt in ("arrow", "json", "msgpack"):
        r = _history(logged, logged.big, "loss", fmt, who="bob")
        assert r.status_code == 403, (fmt, r.status_code)
        assert r.headers["content-type"].startswith("application/json")
        assert r.json()["error"]["code"] == "PERMISSION_DENIED"
        assert b"ARROW" not in r.content and len(r.content) < 1000


def _same(a: pa.Table, b: pa.Table) -> None:
    """Equal tables, NaN and -0.0 compared bit for bit (Table.equals: NaN != NaN)."""
    assert a.schema == b.schema and a.num_rows == b.num_rows
    for name in a.column_names:
        x, y = (t[name].combine_chunks() for t in (a, b))
        if pa.types.is_timestamp(x.type):
            x, y = x.cast(pa.int64()), y.cast(pa.int64())
        assert np.array_equal(x.to_numpy().view(np.int64), y.to_numpy().view(np.int64)), name


@pytest.mark.parametrize("codec", ["lz4", "zstd"])
def test_compressed_buffers_when_the_accept_header_asks(logged: Logged, codec: str) -> None:
    plain = _history(logged, logged.big, "loss", "arrow")
    r = httpx.get(
        f"{logged.url}/api/v1/iterations/{logged.big}/metric-history",
        params={"key": "loss"},
        headers={**logged.ann, "Accept": f'{ARROW}; codecs="bogus, {codec}"'},
        timeout=60,
    )
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == f"{ARROW}; codecs={codec}"
    assert len(r.content) * 2 < len(plain.content)
    got = pa.ipc.open_stream(r.content).read_all()
    _same(got, pa.ipc.open_stream(plain.content).read_all())


def test_an_unknown_codec_gets_the_plain_stream(logged: Logged) -> None:
    plain = _history(logged, logged.big, "loss", "arrow")
    for accept in (f"{ARROW}; codecs=snappy", ARROW, "*/*; codecs=zstd"):
        r = httpx.get(
            f"{logged.url}/api/v1/iterations/{logged.big}/metric-history",
            params={"key": "loss", "format": "arrow"},
            headers={**logged.ann, "Accept": accept},
            timeout=60,
        )
        assert r.headers["content-type"] == ARROW
        assert r.content == plain.content


def test_the_sdk_reads_the_series_exactly(logged: Logged) -> None:
    c = dd.connect(logged.url, username="ann", password=ANN_PW, spool_dir=None)
    try:
        got = c.metric_history(logged.big, "loss")
    finally:
        c.close()
    plain = pa.ipc.open_stream(_history(logged, logged.big, "loss", "arrow").content).read_all()
    _same(got, plain)


def test_the_sdk_asks_for_lz4_only_from_a_server_beyond_loopback() -> None:
    for host in ("127.0.0.1", "127.8.0.1", "localhost", "[::1]", "app.localhost"):
        assert arrow_accept(host) == ARROW, host
    for host in ("10.0.0.7", "tracking.example.com", "[2001:db8::1]"):
        assert arrow_accept(host) == f'{ARROW}; codecs="lz4"', host
