"""Auth in Kafka mode: `deardiary users create --broker` puts the first admin on the Kafka
log, a worker folds it, and `serve --broker --auth` answers with the same per-project
permissions as embedded mode -- checked by the same route-table walk as
tests/faults/test_restricted_user.py (every route of the served OpenAPI document, a
restricted user, another project's ids and forged bodies), over the exports view."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import httpx
import pytest

import deardiary as dd
from deardiary.schemas.codec import encode
from deardiary.schemas.envelope import LogPosition, wrap
from deardiary.schemas.events import Event
from deardiary.services.auth.routes import new_user_event
from deardiary.services.http import RunningServer, start_in_thread
from deardiary.services.kafka_mode.server import KafkaServer
from deardiary.services.log import LogRecord
from deardiary.services.log.kafka import KafkaEventLog
from deardiary.services.server import EmbeddedServer
from deardiary.services.settings import ServerSettings
from tests.faults import test_restricted_user as restricted
from tests.faults.auth_world import (
    ADMIN_PW,
    RITA_PW,
    AuthWorld,
    credential_hashes,
    login,
    people,
)
from tests.faults.served_folder import wait_until
from tests.kafka_broker import Workers, cli, fresh_topic, kafka_bootstrap_server  # noqa: F401

PARTITIONS = 2


@dataclass
class KafkaAuthWorld(AuthWorld):
    """The fault tests' world, served in Kafka mode (`server` is a KafkaServer)."""

    def end_offsets(self) -> dict[int, int]:
        return dict(cast(KafkaServer, self.server).log.end_offsets())


def _until_published(server: KafkaServer, user: str, workers: Workers) -> None:
    """Wait for a worker to publish the user (signing in to find out would count failed
    sign-ins, which the server throttles)."""
    deadline = time.monotonic() + 90
    while True:
        server.view.refresh(force=True)
        conn = server.view.reader()
        try:
            found = conn.execute("SELECT 1 FROM users WHERE username = ?", [user]).fetchall()
        finally:
            conn.close()
        if found:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{user} was not published\n{workers.tails()}")
        time.sleep(0.2)


@pytest.fixture(scope="module")
def world(
    kafka_bootstrap_server: str,  # noqa: F811
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[KafkaAuthWorld]:
    tmp = tmp_path_factory.mktemp("kafka-auth")
    topic = fresh_topic()
    broker = f"kafka://{kafka_bootstrap_server}/{topic}?partitions={PARTITIONS}"
    KafkaEventLog.from_url(broker).partitions()
    data = tmp / "data"
    workers = Workers(broker, data)
    workers.start()
    created = subprocess.run(
        cli("users", "create", "--broker", broker, "root", "--admin"),
        input=ADMIN_PW + "\n",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert created.returncode == 0, created.stderr
    # The server's own reads of the broker wait 10 ms per fetch, not 50: catching up
    # (an id not shown yet, an admin route) probes the log's end twice per call.
    server = KafkaServer(
        broker + "&fetch_wait_ms=10", data, auth=True, settings=ServerSettings(max_wait_s=60)
    )
    running: RunningServer | None = None
    try:
        running = start_in_thread(server.app())
        url = running.url
        _until_published(server, "root", workers)
        admin = login(url, "root", ADMIN_PW)
        yield KafkaAuthWorld(
            url=url,
            server=cast(EmbeddedServer, server),
            data=data,
            admin=admin,
            credential_hashes=credential_hashes(server.view.reader),
            **people(url, admin, tmp),
        )
    finally:
        if running is not None:
            running.stop()
        server.close()
        workers.stop()


@pytest.mark.kafka
def test_every_documented_route_refuses_the_restricted_user(world: KafkaAuthWorld) -> None:
    restricted.test_every_documented_route_refuses_the_restricted_user(world)


@pytest.mark.kafka
def test_b_is_unchanged_and_a_still_readable(world: KafkaAuthWorld) -> None:
    restricted.test_b_is_unchanged_and_a_still_readable(world)


@pytest.mark.kafka
def test_a_new_project_belongs_to_its_creator_and_reads_wait_for_writes(
    world: KafkaAuthWorld, tmp_path: Path
) -> None:
    """rita creates a project through the gateway (its ProjectCreated appended alone and
    published before the batch is checked), then reads it back at once with the
    positions her flush acknowledged; olive, without a grant, cannot see it."""
    rita = dd.connect(world.url, username="rita", password=RITA_PW, spool_dir=tmp_path / "s")
    try:
        with rita.start_iteration(project="rita-new", experiment="e", capture_env=False) as it:
            it.log_metric("loss", 0.5)
        rita.flush(timeout=60)
        rows = rita.sql(f"SELECT count(*) AS n FROM metrics WHERE iteration_id = '{it.id}'")
        assert rows.to_pylist() == [{"n": 1}]  # no polling: the read waited for the write
    finally:
        rita.close()
    seen = httpx.get(f"{world.url}/api/v1/iterations/{it.id}", headers=world.olive)
    assert seen.status_code in (403, 404), seen.text
    sql = httpx.get(
        f"{world.url}/api/v1/sql",
        params={"q": "SELECT name FROM projects"},
        headers=world.olive,
    )
    assert sql.status_code == 200 and "rita-new" not in sql.text


ANN_PW, BOB_PW = "ann-secret-1", "bob-secret-1"


def _login(url: str, user: str, password: str) -> httpx.Response:
    return httpx.post(f"{url}/api/v1/auth/login", json={"username": user, "password": password})


def _unavailable(answer: httpx.Response, why: str) -> None:
    assert answer.status_code == 503, answer.text
    error = answer.json()["error"]
    assert error["code"] == "UNAVAILABLE" and error["details"]["retryable"], error
    assert why in error["message"] and answer.headers["Retry-After"], error


@pytest.mark.kafka
def test_credentials_the_exports_do_not_show_yet_answer_unavailable(
    kafka_bootstrap_server: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    """While the exports lag the log -- no worker has published yet, or the worker stalls
    while the log goes on -- a user or token the exports do not show answers 503
    UNAVAILABLE (retryable, Retry-After, the exports' progress), not 401: an unknown user's
    retries are not counted as guesses, a wrong password of a user already exported is.
    Once the exports have caught up, wrong credentials answer 401 again."""
    broker = f"kafka://{kafka_bootstrap_server}/{fresh_topic()}?partitions={PARTITIONS}"
    log = KafkaEventLog.from_url(broker)
    log.partitions()

    def put(*events: Event) -> list[LogPosition]:  # as another query service appends
        return log.append([LogRecord(e.event_id, e.key, encode(e)) for e in map(wrap, events)])

    put(new_user_event("root", ADMIN_PW, True), new_user_event("ann", ANN_PW, False))
    data = tmp_path / "data"
    server = KafkaServer(broker + "&fetch_wait_ms=10", data, auth=True)
    workers = Workers(broker, data)
    try:
        with start_in_thread(server.app()) as http:
            url = http.url
            _unavailable(_login(url, "ann", ANN_PW), "no worker has published")
            for _ in range(8):  # not guesses: the pair's 5 a minute stay free
                _unavailable(_login(url, "nobody", "whatever-pw-1"), "no worker has published")
            workers.start()
            _until_published(server, "ann", workers)
            assert _login(url, "ann", ANN_PW).status_code == 200

            workers.stop()  # the worker stalls; the log goes on
            (bob,) = put(new_user_event("bob", BOB_PW, False))
            lag = server.exports_lag
            assert lag is not None
            wait_until(lambda: lag.settled().get(bob.partition, 0) > bob.offset, 30, "probed")
            _unavailable(_login(url, "bob", BOB_PW), "records behind the log")
            unknown = {"Authorization": "Bearer dda.unknown-token.secret"}
            _unavailable(httpx.get(f"{url}/api/v1/auth/me", headers=unknown), "behind the log")
            for _ in range(5):  # ann is exported: a wrong password is a guess, counted
                _unavailable(_login(url, "ann", "not-her-password"), "behind the log")
            assert _login(url, "ann", "not-her-password").status_code == 429

            workers.start()
            _until_published(server, "bob", workers)
            wait_until(lambda: lag.incomplete() is None, 30, "caught up")
            assert _login(url, "bob", BOB_PW).status_code == 200
            for answer in (
                _login(url, "bob", "not-his-password"),
                _login(url, "nobody", "whatever-pw-1"),
                httpx.get(f"{url}/api/v1/auth/me", headers=unknown),
            ):
                assert answer.status_code == 401, answer.text
    finally:
        server.close()
        workers.stop()
        log.close()
