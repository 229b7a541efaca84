"""Poison inputs: refused with a clear 4xx at the door, and harmless if they reach the log.

The inputs that used to be acknowledged and then stop the projector for good (an
automatic step past int64, times of 2**62, a change aimed at a kind it cannot target, ...) are
sent over real HTTP to a real server; the same events are also written straight into
the log (as a Kafka client could, bypassing the gateway). Afterwards the server still
folds new events, /readyz is ready, a restart works, and a replay from offset 0
answers exactly what the live projections answer.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from deardiary.schemas import codec, ids
from deardiary.schemas.envelope import Envelope, wrap
from deardiary.schemas.events import (
    EntityKind,
    EntityRenamed,
    ExperimentCreated,
    IterationStarted,
    LogLinesLogged,
    MetricsLogged,
    ParamsLogged,
    ProjectCreated,
    TagsSet,
)
from deardiary.schemas.limits import MAX_STEP
from deardiary.services.embedded import EmbeddedStore
from deardiary.services.http import start_in_thread
from deardiary.services.log import LogRecord
from deardiary.services.log.sqlite import SqliteEventLog
from deardiary.services.replay import replay
from deardiary.services.server import embedded_server
from tests.store_snapshot import snapshot

MSGPACK = {"Content-Type": "application/msgpack"}


@dataclass
class Served:
    url: str
    data: Path
    ids: dict[str, str]


def _post(url: str, *envelopes: Envelope) -> httpx.Response:
    body = msgspec.msgpack.encode([codec.encode(e) for e in envelopes])
    return httpx.post(f"{url}/api/v1/events", content=body, headers=MSGPACK, timeout=30)


def _raw(body: dict[str, Any], **envelope: Any) -> bytes:
    """Bytes of an envelope with fields no Python client would build."""
    fields = {"event_id": ids.new_id(), "key": body.get("iteration_id", "k"), "client_time": 1}
    return msgspec.msgpack.encode({**fields, **envelope, "body": body})


def _error(r: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    error: dict[str, Any] = r.json()["error"]
    assert error["code"] == code and set(error) == {"code", "message", "details"}
    return error


def _start(url: str) -> dict[str, str]:
    """A project, experiment, iteration (param lr=0.1) and an artifact, over HTTP."""
    pid = ids.project_id("poison")
    eid = ids.experiment_id(pid, "e")
    it = ids.new_id()
    r = _post(
        url,
        wrap(ProjectCreated(project_id=pid, name="poison")),
        wrap(ExperimentCreated(experiment_id=eid, project_id=pid, name="e")),
        wrap(IterationStarted(iteration_id=it, experiment_id=eid, project_id=pid)),
        wrap(ParamsLogged(iteration_id=it, params={"lr": "0.1"})),
    )
    assert r.status_code == 200, r.text
    up = httpx.post(
        f"{url}/api/v1/artifacts",
        params={"experiment_id": eid, "iteration_id": it, "name": "w.txt"},
        content=b"weights",
        headers={"Content-Type": "text/plain"},
    )
    assert up.status_code == 200, up.text
    artifact = up.json()["artifact_id"]
    return {"project": pid, "experiment": eid, "iteration": it, "artifact": artifact}


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    data = tmp_path / "data"
    with embedded_server(data) as server, start_in_thread(server.app()) as running:
        yield Served(running.url, data, _start(running.url))


def _metrics(url: str, it: str, *points: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{url}/api/v1/iterations/{it}/metrics", json={"metrics": list(points)})


def _events(url: str, *raw: bytes) -> httpx.Response:
    body = msgspec.msgpack.encode(list(raw))
    return httpx.post(f"{url}/api/v1/events", content=body, headers=MSGPACK)


def _nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


def test_poison_is_refused_at_the_door(served: Served) -> None:
    url, it, artifact = served.url, served.ids["iteration"], served.ids["artifact"]
    bad = "INVALID_ARGUMENT"
    for step in (2**63, 2**63 - 1, MAX_STEP + 1, -2):
        error = _error(_metrics(url, it, {"key": "s", "value": 1, "step": step}), 400, bad)
        assert "step" in error["message"]
    _error(_metrics(url, it, {"key": "s", "value": 1, "timestamp": 2**62}), 400, bad)
    _error(_metrics(url, ids.new_id(), {"key": "s", "value": 1}), 404, "NOT_FOUND")
    deep = b'{"metrics": ' + b"[" * 50_000 + b"]" * 50_000 + b"}"
    json_type = {"Content-Type": "application/json"}
    metrics_url = f"{url}/api/v1/iterations/{it}/metrics"
    _error(httpx.post(metrics_url, content=deep, headers=json_type), 400, bad)
    deep_msgpack = b"\x91" * 100_000 + b"\x01"
    _error(httpx.post(f"{url}/api/v1/events", content=deep_msgpack, headers=MSGPACK), 400, bad)
    meta_body = {"type": "metadata_set", "entity": "iteration", "entity_id": it}
    nested = _raw({**meta_body, "metadata": {"a": _nested(40)}}, key=it)
    assert "deeper" in _error(_events(url, nested), 400, bad)["message"]
    late = _raw({"type": "iteration_heartbeat", "iteration_id": it}, client_time=2**62)
    assert "client_time" in _error(_events(url, late), 400, bad)["details"]["path"]
    line = LogLinesLogged(iteration_id=it, times=[2**62], levels=["INFO"], messages=["x"])
    _error(_post(url, wrap(line)), 400, bad)
    # a kind an event cannot target (a model version has no name of its own), the
    # blank name a rename cannot carry
    misnamed = EntityRenamed(entity=EntityKind.MODEL_VERSION, entity_id=artifact, name="x")
    assert (
        "cannot target a model_version" in _error(_post(url, wrap(misnamed)), 400, bad)["message"]
    )
    blank = EntityRenamed(entity=EntityKind.ARTIFACT, entity_id=artifact, name=" ")
    _error(_post(url, wrap(blank)), 400, bad)
    change = wrap(ParamsLogged(iteration_id=it, params={"lr": "0.2"}))
    changed = _error(_post(url, change), 409, "CONFLICT")
    assert changed["details"] == {"key": "lr", "stored": "0.1", "refused": "0.2"}
    assert all(part in changed["message"] for part in ("'lr'", "0.1", "0.2"))
    same = _post(url, wrap(ParamsLogged(iteration_id=it, params={"lr": "0.1"})))
    assert same.status_code == 200, same.text  # the same value again is fine
    orphan = MetricsLogged.from_points(ids.new_id(), ["loss"], [1.0], [0], [1])
    _error(_post(url, wrap(orphan)), 404, "NOT_FOUND")
    ready = httpx.get(f"{url}/readyz")
    assert ready.status_code == 200, ready.text


def _write_straight_into_the_log(data: Path, it: str, artifact: str) -> None:
    """Poison appended as a client with direct log access (a Kafka producer) could."""
    log = SqliteEventLog(str(data / "log.db"))
    payloads = [
        _raw({"type": "iteration_heartbeat", "iteration_id": it}, client_time=2**62),
        _raw(
            {
                "type": "log_lines_logged",
                "iteration_id": it,
                "times": [2**62],
                "levels": ["I"],
                "messages": ["x"],
            },
            key=it,
        ),
        codec.encode(
            wrap(EntityRenamed(entity=EntityKind.MODEL_VERSION, entity_id=artifact, name="x"))
        ),
        codec.encode(
            wrap(MetricsLogged.from_points(it, ["s", "s"], [1.0, 2.0], [MAX_STEP, -1], [1, 2]))
        ),
        codec.encode(wrap(MetricsLogged.from_points(ids.new_id(), ["s"], [1.0], [0], [1]))),
        codec.encode(wrap(TagsSet(entity=EntityKind.ITERATION, entity_id=it, tags={"../x": "v"}))),
        b"\x81\xa4nope\x01",
    ]
    try:
        log.append([LogRecord(ids.new_id(), it, p) for p in payloads])
    finally:
        log.close()


def _after(url: str, it: str) -> None:
    """The server still folds: a good event after the poison is visible."""
    good = MetricsLogged.from_points(it, ["after"], [1.0], [-1], [1])
    r = _post(url, wrap(good))
    assert r.status_code == 200, r.text
    table = httpx.get(
        f"{url}/api/v1/iterations/{it}/metrics", params={"min_offset": r.json()["last_offset"]}
    )
    assert table.status_code == 200, table.text
    assert "after" in {row["key"] for row in table.json()["items"]}


def test_poison_in_the_log_is_parked_or_refused_and_never_stops_anything(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with embedded_server(data) as server, start_in_thread(server.app()) as running:
        made = _start(running.url)
        _write_straight_into_the_log(data, made["iteration"], made["artifact"])
        server.wake.set()
        _after(running.url, made["iteration"])
        ready = httpx.get(f"{running.url}/readyz")
        assert ready.status_code == 200, ready.text
        sql = httpx.get(
            f"{running.url}/api/v1/sql",
            params={"q": 'SELECT kind, detail FROM conflicts ORDER BY "offset"'},
        ).json()["items"]
        kinds = [c["kind"] for c in sql]
        assert kinds.count("invalid_event") == 2 and "step_overflow" in kinds
        assert "missing_parent" in kinds
        parked = httpx.get(
            f"{running.url}/api/v1/sql", params={"q": "SELECT event_type, error FROM parked_events"}
        ).json()["items"]
        assert len(parked) == 3  # two out-of-range times, one undecodable record
    # a restart over the same folder works, and so does a replay from offset 0
    with embedded_server(data) as server, start_in_thread(server.app()) as running:
        _after(running.url, made["iteration"])
    log = SqliteEventLog(str(data / "log.db"))
    try:
        replay(log, tmp_path / "rebuilt")
    finally:
        log.close()
    rebuilt_folder = tmp_path / "rebuilt"
    with EmbeddedStore(data) as live, EmbeddedStore(rebuilt_folder, create_log=False) as rebuilt:
        live.catch_up()
        assert snapshot(live.store.reader()) == snapshot(rebuilt.store.reader())
