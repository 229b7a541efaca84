"""What one small MLflow write appends: a training script calls ``log_param``,
``set_tag`` and ``log_metric`` one request at a time, and each request's events cost the
server a fold. A run this server just created (or resumed) already beat, so its first
writes carry no heartbeat event of their own; the heartbeat still comes every
``HEARTBEAT_EVERY_S`` of logging."""

from __future__ import annotations

from pathlib import Path

from mlflow import MlflowClient

from deardiary.schemas.codec import decode
from deardiary.schemas.envelope import Envelope
from deardiary.schemas.events import (
    IterationHeartbeat,
    IterationStarted,
    MetricsLogged,
    ParamsLogged,
    TagsSet,
)
from deardiary.services.log.sqlite import SqliteEventLog
from deardiary.services.mlflow_api.context import Heartbeats


def _log_of(data: Path) -> list[Envelope]:
    log = SqliteEventLog(str(data / "log.db"))
    try:
        return [decode(payload) for _, payload in log.read({}, 10_000_000)]
    finally:
        log.close()


def _of_run(envelopes: list[Envelope], run_id: str) -> list[type]:
    return [
        type(e.body)
        for e in envelopes
        if getattr(e.body, "iteration_id", None) == run_id
        or getattr(e.body, "entity_id", None) == run_id
    ]


def test_first_writes_after_create_run_carry_no_heartbeat(
    mlflow_server: str, mlflow_data: Path
) -> None:
    client = MlflowClient(mlflow_server)
    exp = client.create_experiment("small-writes")
    run_id = client.create_run(exp).info.run_id
    client.log_param(run_id, "lr", "0.1")
    client.set_tag(run_id, "group", "g1")
    client.log_metric(run_id, "loss", 0.5, step=0)
    client.log_param(run_id, "lr", "0.1")  # the same value again: accepted, as MLflow does
    assert client.get_run(run_id).data.params == {"lr": "0.1"}
    kinds = _of_run(_log_of(mlflow_data), run_id)
    assert kinds == [IterationStarted, ParamsLogged, TagsSet, MetricsLogged, ParamsLogged]
    assert IterationHeartbeat not in kinds


def test_a_resumed_run_counts_as_beaten_and_a_deleted_one_is_refused(
    mlflow_server: str, mlflow_data: Path
) -> None:
    client = MlflowClient(mlflow_server)
    exp = client.create_experiment("small-writes-resumed")
    run_id = client.create_run(exp).info.run_id
    client.set_terminated(run_id)
    client.update_run(run_id, status="RUNNING")  # resumed: IterationStarted again
    client.log_metric(run_id, "loss", 0.25, step=1)
    assert IterationHeartbeat not in _of_run(_log_of(mlflow_data), run_id)
    client.delete_run(run_id)
    try:
        client.log_metric(run_id, "loss", 0.125, step=2)
    except Exception as exc:  # the run is not writable once deleted
        assert "deleted" in str(exc)
    else:
        raise AssertionError("a write to a deleted run was accepted")


def test_heartbeats_are_due_every_interval_after_a_start() -> None:
    beats = Heartbeats(every_s=3600.0)
    assert beats.due("r1")  # never seen: a write beats
    assert not beats.due("r1")
    beats.beat("r2")  # created or resumed here
    assert not beats.due("r2")
    quick = Heartbeats(every_s=0.0)
    quick.beat("r3")
    assert quick.due("r3")  # the interval passed: the next write beats again
    small = Heartbeats(every_s=3600.0, capacity=2)
    for run in ("a", "b", "c"):
        small.beat(run)
    assert small.due("a")  # forgotten (bounded): beats again
    assert not small.due("c")


def test_one_run_and_several_read_the_same_data(mlflow_server: str) -> None:
    """get_run reads one run's params and latest metrics by equality, search_runs several
    through a list: the same rows either way (NaN and -0.0 included)."""
    client = MlflowClient(mlflow_server)
    exp = client.create_experiment("small-writes-read")
    runs = [client.create_run(exp).info.run_id for _ in range(2)]
    for n, run_id in enumerate(runs):
        client.log_param(run_id, "lr", f"0.{n}")
        client.log_metric(run_id, "loss", -0.0, step=3)
        client.log_metric(run_id, "acc/val", float("nan"), step=1)
        client.log_metric(run_id, "acc", 0.5 + n, step=2)
    found = {r.info.run_id: r.data for r in client.search_runs([exp])}
    for run_id in runs:
        one = client.get_run(run_id).data
        assert one.params == found[run_id].params
        assert repr(sorted(one.metrics.items())) == repr(sorted(found[run_id].metrics.items()))
        assert set(one.metrics) == {"loss", "acc/val", "acc"}
