"""The SQL sandbox, attacked: as a restricted user over HTTP and the SDK, as the folder's
owner through the CLI, and in Kafka mode; plus its time, row, memory and per-user limits.

rita may read project A and owns C; olive's project B must never show, nor any password
or token hash, nor a file, nor an internal table. Every statement of the battery either
fails with a clear 4xx or answers rows of rita's projects only.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

import deardiary as dd
from deardiary.projections.queries.sql import ADMIN_ONLY, RELATIONS
from deardiary.schemas.errors import DearDiaryError
from deardiary.services import cli
from deardiary.services.http import start_in_thread
from deardiary.services.server import EmbeddedServer
from deardiary.services.settings import settings_from
from tests.faults.auth_world import (
    ADMIN_PW,
    OLIVE_PW,
    RITA_PW,
    AuthWorld,
    Headers,
    auth_world,
    leaks,
    login,
    serving_users,
)

INTERNAL = (
    "users",
    "access_tokens",
    "permissions",
    "applied_events",
    "projection_offsets",
    "metric_points_hot",
    "metric_points_hot_data",
    "metric_series_hot",
    "metric_segments",
)
# Each a way to name relation {t} that a name-list checker could be fooled by.
SHAPES = (
    "SELECT * FROM {t}",
    "WITH x AS (WITH {t} AS (SELECT 1) SELECT 1) SELECT * FROM {t}",
    "WITH {t} AS (SELECT 1 AS a) SELECT * FROM (SELECT * FROM {t}) s, main.{t}",
    "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 3)"
    " SELECT * FROM r, {t}",
    "WITH u AS (SELECT 1 AS a UNION ALL SELECT count(*) FROM {t}) SELECT * FROM u",
    "SELECT * FROM projects p, LATERAL (SELECT * FROM {t}) x",
    "SELECT * FROM projects WHERE EXISTS (SELECT 1 FROM {t})",
    "SELECT (SELECT count(*) FROM {t}) AS n",
    "SELECT * FROM main.{t}",
    'SELECT * FROM "state".main.{t}',
    "SELECT * FROM state.{t}",
    "SELECT * FROM memory.main.{t}",
    "SELECT * FROM temp.main.{t}",
    "SELECT * FROM query_table('{t}')",
    "SELECT * FROM query('SELECT * FROM {t}')",
    "DESCRIBE {t}",
    "SUMMARIZE {t}",
    "SHOW {t}",
)
STATEMENTS = (
    "SET threads = 8",
    "SET enable_external_access = true",
    "RESET lock_configuration",
    "SET lock_configuration = false",
    "SET VARIABLE x = 1",
    "PRAGMA database_list",
    "PRAGMA show_tables",
    "CALL duckdb_tables()",
    "INSTALL httpfs",
    "LOAD httpfs",
    "CREATE TABLE t AS SELECT 1",
    "CREATE TEMP VIEW users AS SELECT 1",
    "INSERT INTO projects SELECT * FROM projects",
    "DELETE FROM metrics",
    "EXPLAIN SELECT 1",
    "SELECT 1; SELECT 2",
    "SELECT 1; SET threads = 8",
)


@dataclass
class Battery:
    world: AuthWorld
    files: dict[str, Path]
    secrets: list[str]
    rita_iterations: set[str]
    counts: dict[str, int]


def _sql(url: str, headers: Headers, query: str, post: bool = False) -> httpx.Response:
    if post:
        return httpx.post(f"{url}/api/v1/sql", json={"query": query}, headers=headers, timeout=60)
    return httpx.get(f"{url}/api/v1/sql", params={"q": query}, headers=headers, timeout=60)


def _log(url: str, user: str, password: str, project: str, points: int, spool: Path) -> str:
    c = dd.connect(url, username=user, password=password, spool_dir=spool)
    try:
        with c.start_iteration(project=project, experiment="more", capture_env=False) as it:
            for step in range(points):
                it.log_metric("acc", float(step))
        c.flush(timeout=30)
        return it.id
    finally:
        c.close()


@pytest.fixture(scope="module")
def battery(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Battery]:
    tmp = tmp_path_factory.mktemp("sandbox")
    with auth_world(tmp) as world:
        store = world.server.embedded.store
        with world.server.projector.paused():
            store.compact()  # the world's first points are in a Parquet segment now
        assert store.segment_paths()
        more = {
            "a": _log(world.url, "olive", OLIVE_PW, world.a.project, 5, tmp / "s1"),
            "b": _log(world.url, "olive", OLIVE_PW, world.b.project, 7, tmp / "s2"),
            "c": _log(world.url, "rita", RITA_PW, world.c.project, 3, tmp / "s3"),
        }
        everything = _sql(world.url, world.admin, "SELECT count(*) AS n FROM metrics")
        assert everything.json()["items"] == [{"n": 18}], everything.text  # (read-your-writes)
        hot = store.reader().sql("SELECT count(*) FROM metric_points_hot_data").fetchall()
        assert hot == [(15,)]  # ... and these are hot
        marker = "csv-secret-4f1d0a"
        csv = tmp / "secret.csv"
        csv.write_text(f"a,b\n{marker},2\n")
        jsonl = tmp / "secret.json"
        jsonl.write_text(json.dumps({"a": marker}) + "\n")
        files = {
            "csv": csv,
            "json": jsonl,
            "segment": store.segment_paths()[0],
            "state": store.directory / "state.duckdb",
            "data": world.data,
            "out": tmp / "copied.csv",
        }
        rita_its = {world.a.ids["iteration_id"], world.c.ids["iteration_id"], more["a"], more["c"]}
        yield Battery(
            world=world,
            files=files,
            secrets=[*world.b.secrets, more["b"], *world.credential_hashes, marker],
            rita_iterations=rita_its,
            counts={"rita": 1 + 5 + 1 + 3, "all": 1 + 5 + 1 + 7 + 1 + 3},
        )


def _file_queries(files: dict[str, Path]) -> list[str]:
    csv, js, seg, state = (str(files[k]) for k in ("csv", "json", "segment", "state"))
    folder = str(files["data"])
    return [
        f"SELECT * FROM '{csv}'",
        f'SELECT * FROM "{csv}"',
        f"SELECT * FROM read_csv('{csv}')",
        f"SELECT * FROM read_csv_auto('{csv}')",
        f"WITH x AS (SELECT * FROM read_csv('{csv}')) SELECT * FROM projects, x",
        f"SELECT * FROM projects WHERE name IN (SELECT a FROM '{csv}')",
        f"SELECT * FROM read_json('{js}')",
        f"SELECT * FROM read_json_auto('{js}')",
        f"SELECT * FROM read_text('{csv}')",
        f"SELECT * FROM read_blob('{state}')",
        f"SELECT * FROM '{seg}'",
        f'SELECT * FROM "{seg}"',
        f"SELECT * FROM read_parquet('{seg}')",
        f"SELECT * FROM read_parquet('{folder}/projections/segments/*.parquet')",
        f"SELECT * FROM parquet_metadata('{seg}')",
        f"SELECT * FROM parquet_schema('{seg}')",
        f"SELECT * FROM sniff_csv('{csv}')",
        f"SELECT * FROM glob('{folder}/*')",
        f"SELECT * FROM '{state}'",
        f"ATTACH '{state}' AS s",
        "ATTACH ':memory:' AS m",
        f"COPY (SELECT * FROM projects) TO '{files['out']}'",
        f"EXPORT DATABASE '{files['data'].parent / 'exported'}'",
    ]


def _check(
    b: Battery,
    query: str,
    r: httpx.Response,
    extra_secrets: tuple[str, ...] = (),
    paths: bool = True,
) -> dict[str, Any]:
    """A clear 4xx, or 200 with nothing of anyone else's (nor, with `paths`, the data
    folder's path); returns the body."""
    assert r.status_code == 200 or 400 <= r.status_code < 500, (query, r.status_code, r.text)
    body: dict[str, Any] = r.json()
    if r.status_code != 200:
        assert body["error"]["code"] in ("INVALID_ARGUMENT", "PERMISSION_DENIED"), (query, body)
        assert body["error"]["message"], query
    assert not leaks(r, [*b.secrets, *extra_secrets], sent=query), (query, r.text[:500])
    if paths and str(b.files["data"]) not in query:
        assert str(b.files["data"]) not in r.text, (query, r.text[:500])
    return body


def test_internal_tables_cannot_be_named_in_any_scope(battery: Battery) -> None:
    url, rita = battery.world.url, battery.world.rita
    for table in INTERNAL:
        # every shape for two tables, the CTE shapes for the rest (each request costs time)
        shapes = SHAPES if table in ("users", "metric_points_hot") else SHAPES[:4]
        for shape in shapes:
            query = shape.format(t=table)
            r = _sql(url, rita, query, post=shape is SHAPES[1])
            body = _check(battery, query, r)
            assert r.status_code == 400, (query, r.status_code, body)
    # the same shapes over the published relations answer only rita's rows
    for shape in SHAPES[:9]:
        r = _sql(url, rita, shape.format(t="iterations"))
        _check(battery, shape, r)


def test_the_issue_reproduction_reads_no_password_hash(battery: Battery) -> None:
    query = (
        "WITH x AS (WITH users AS (SELECT 1) SELECT 1) SELECT username, password_hash FROM users"
    )
    for headers in (battery.world.rita, battery.world.admin):
        r = _sql(battery.world.url, headers, query)
        assert r.status_code == 400 and "users" in r.json()["error"]["message"], r.text
        _check(battery, query, r)


def test_files_cannot_be_read_or_written(battery: Battery) -> None:
    url = battery.world.url
    for headers in (battery.world.rita, battery.world.admin):
        for query in _file_queries(battery.files):
            r = _sql(url, headers, query)
            body = _check(battery, query, r)
            assert r.status_code == 403, (query, r.status_code, body)
    assert not battery.files["out"].exists()
    assert not (battery.files["data"].parent / "exported").exists()


def test_statements_other_than_one_select_are_refused(battery: Battery) -> None:
    for query in STATEMENTS:
        r = _sql(battery.world.url, battery.world.rita, query)
        body = _check(battery, query, r)
        expected = 400 if ";" in query else 403
        assert r.status_code == expected, (query, r.status_code, body)


def test_catalog_and_settings_show_nothing_internal(battery: Battery) -> None:
    url, rita = battery.world.url, battery.world.rita
    for query in (
        "SHOW ALL TABLES",
        "SHOW TABLES",
        "SELECT * FROM duckdb_tables()",
        "SELECT * FROM duckdb_views() WHERE NOT internal",
        "SELECT * FROM duckdb_columns() WHERE NOT internal",
        "SELECT * FROM duckdb_databases()",
        "SELECT * FROM duckdb_settings()",
        "SELECT * FROM information_schema.tables",
        "SELECT current_setting('memory_limit') AS m, current_setting('temp_directory') AS t",
        "SELECT current_setting('enable_external_access') AS e",
        "SELECT current_setting('lock_configuration') AS l",
        "SELECT * FROM range(3)",
    ):
        r = _sql(url, rita, query)
        assert r.status_code == 200, (query, r.text)
        _check(battery, query, r, extra_secrets=tuple(f'"{t}"' for t in INTERNAL))
        assert "password_hash" not in r.text and "state.duckdb" not in r.text, query
    flags = _sql(url, rita, "SELECT current_setting('enable_external_access') AS e").json()
    assert flags["items"] == [{"e": False}]
    locked = _sql(url, rita, "SELECT current_setting('lock_configuration') AS l").json()
    assert locked["items"] == [{"l": True}]
    # a relation the statement names is provided, and only that one
    both = "SELECT t.name FROM (SHOW ALL TABLES) t, (SELECT count(*) FROM projects) p"
    shown = _sql(url, rita, both).json()["items"]
    assert {row["name"] for row in shown} == {"projects"}


def test_published_relations_hold_only_readable_rows(battery: Battery) -> None:
    w, url = battery.world, battery.world.url
    for relation in sorted(RELATIONS - ADMIN_ONLY):  # every tenant has rows in each
        r = _sql(url, w.rita, f"SELECT * FROM {relation}")
        assert r.status_code == 200, (relation, r.text)
        assert r.json()["items"], relation
        _check(battery, relation, r, paths=False)  # artifacts.uri names the server's folder
    for relation in sorted(ADMIN_ONLY):
        r = _sql(url, w.rita, f"SELECT count(*) AS n FROM {relation}")
        assert r.json()["items"] == [{"n": 0}], relation
    assert _sql(url, w.admin, "SELECT count(*) > 0 AS x FROM events").json()["items"] == [
        {"x": True}
    ]
    points = _sql(url, w.rita, "SELECT DISTINCT iteration_id FROM metrics").json()["items"]
    assert {p["iteration_id"] for p in points} == battery.rita_iterations
    names = _sql(url, w.rita, "SELECT name FROM projects ORDER BY name").json()["items"]
    assert [n["name"] for n in names] == sorted([w.a.project, w.c.project])


def test_metric_count_covers_segments_and_hot_points_of_readable_projects(
    battery: Battery,
) -> None:
    w = battery.world
    q = "SELECT count(*) AS n FROM metrics"
    assert _sql(w.url, w.rita, q).json()["items"] == [{"n": battery.counts["rita"]}]
    assert _sql(w.url, w.admin, q).json()["items"] == [{"n": battery.counts["all"]}]
    columns = _sql(w.url, w.rita, "SELECT * FROM metrics LIMIT 1").json()["items"][0]
    assert list(columns) == [
        "iteration_id",
        "key",
        "step",
        "value",
        "recorded_at",
        "client_time",
        "group",
        "partition",
        "offset",
        "seq",
    ]
    by_key = _sql(
        w.url, w.rita, "SELECT key, count(*) AS n FROM metrics GROUP BY key ORDER BY key"
    ).json()["items"]
    assert by_key == [{"key": "acc", "n": 8}, {"key": "loss", "n": 2}]


def test_metrics_read_as_the_store_has_them(battery: Battery, tmp_path: Path) -> None:
    """Hot points are copied with only the columns a statement reads: whatever the shape
    of the statement, the answer is the projection store's own."""
    w = battery.world
    c = dd.connect(w.url, username="root", password=ADMIN_PW, spool_dir=tmp_path / "spool")
    reader = w.server.embedded.store.reader()
    try:
        for query in (
            "SELECT * FROM metrics ORDER BY iteration_id, key, step",
            "SELECT m FROM metrics m ORDER BY m.iteration_id, m.key, m.step",
            "SELECT to_json(m) AS j FROM metrics m ORDER BY j",
            "SELECT * EXCLUDE (recorded_at) FROM metrics ORDER BY iteration_id, key, step",
            "SELECT COLUMNS('.*_(time|at)') FROM metrics ORDER BY ALL",
            "SELECT key, count(*) AS n, min(recorded_at) AS r, max(client_time) AS c,"
            ' sum("offset") AS o, max(seq) AS s, max("partition") AS p, any_value("group") AS g'
            " FROM metrics GROUP BY key ORDER BY key",
            "SELECT iteration_id, step FROM metrics NATURAL JOIN (SELECT 'acc' AS key) k"
            " ORDER BY ALL",
            "WITH x AS (SELECT * FROM metrics) SELECT max(value) AS v, count(*) AS n FROM x",
            "SELECT (SELECT max(step) FROM metrics) AS s, (SELECT count(*) FROM metrics) AS n",
            "SELECT * FROM metrics UNION ALL BY NAME SELECT * FROM metrics ORDER BY ALL",
            "SELECT count(*) AS n FROM metrics WHERE seq >= 0 AND step < 3 AND value > -1",
        ):
            got = c.sql(query).to_pylist()
            want = reader.sql(query).to_arrow_table().to_pylist()
            assert got == want, query
    finally:
        reader.close()
        c.close()


def test_json_columns_are_decoded_by_type_not_by_name(battery: Battery) -> None:
    w = battery.world
    assert _sql(w.url, w.rita, "SELECT 'x' AS tags").json()["items"] == [{"tags": "x"}]
    assert _sql(w.url, w.rita, "SELECT 'x' AS metadata, 1 AS summary").json()["items"] == [
        {"metadata": "x", "summary": 1}
    ]
    it = w.a.ids["iteration_id"]
    rows = _sql(
        w.url,
        w.rita,
        "SELECT tags, tags AS t2, tags::VARCHAR AS raw, json_extract_string(tags, '$.secret')"
        f" AS s FROM iterations WHERE iteration_id = '{it}'",
    ).json()["items"]
    assert len(rows) == 1
    row = rows[0]
    assert isinstance(row["tags"], dict) and row["tags"] == row["t2"]
    assert isinstance(row["raw"], str) and row["s"] == row["tags"]["secret"]
    # a value JSON cannot carry is the caller's 400 (Arrow carries it)
    infinite = "SELECT 'infinity'::TIMESTAMP AS t"
    r = _sql(w.url, w.rita, infinite)
    assert r.status_code == 400 and r.json()["error"]["code"] == "INVALID_ARGUMENT", r.text
    arrow = httpx.get(
        f"{w.url}/api/v1/sql", params={"q": infinite, "format": "arrow"}, headers=w.rita
    )
    assert arrow.status_code == 200 and arrow.headers["Content-Type"].startswith(
        "application/vnd.apache.arrow.stream"
    )


def test_the_sdk_as_a_restricted_user(battery: Battery, tmp_path: Path) -> None:
    w = battery.world
    c = dd.connect(w.url, username="rita", password=RITA_PW, spool_dir=tmp_path / "spool")
    try:
        n = c.sql("SELECT count(*) AS n FROM metrics").to_pylist()
        assert n == [{"n": battery.counts["rita"]}]
        ids = {r["iteration_id"] for r in c.sql("SELECT iteration_id FROM metrics").to_pylist()}
        assert ids == battery.rita_iterations
        refused = [
            "WITH x AS (WITH users AS (SELECT 1) SELECT 1) SELECT * FROM users",
            "SELECT * FROM metric_points_hot",
            f"SELECT * FROM read_csv('{battery.files['csv']}')",
            f"SELECT * FROM '{battery.files['segment']}'",
            "SET threads = 8",
        ]
        for query in refused:
            with pytest.raises(dd.ClientError) as err:
                c.sql(query)
            assert err.value.code in ("INVALID_ARGUMENT", "PERMISSION_DENIED"), query
            assert not [s for s in battery.secrets if s in str(err.value)], query
    finally:
        c.close()


# -- the CLI: the folder's owner, unscoped, still in the sandbox ------------------------------


def _run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = cli.main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_the_cli_refuses_files_internal_tables_and_settings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    c = dd.connect(str(data), spool_dir=tmp_path / "spool")
    with c.start_iteration(project="p", experiment="e", capture_env=False) as it:
        for step in range(4):
            it.log_metric("loss", float(step))
    c.close()
    secret = tmp_path / "secret.csv"
    secret.write_text("a\ncli-secret-99\n")
    folder = str(data)
    code, out, _ = _run_cli(
        capsys, "sql", "--data", folder, "--format", "json", "SELECT count(*) AS n FROM metrics"
    )
    assert code == 0 and json.loads(out) == {"n": 4}, out
    for query in (
        "WITH x AS (WITH users AS (SELECT 1) SELECT 1) SELECT * FROM users",
        "SELECT * FROM metric_points_hot_data",
        "SELECT * FROM main.projection_offsets",
        f"SELECT * FROM read_csv('{secret}')",
        f"SELECT * FROM '{secret}'",
        f"SELECT * FROM read_parquet('{folder}/projections/segments/*.parquet')",
        f"ATTACH '{folder}/projections/state.duckdb' AS s",
        f"COPY (SELECT 1) TO '{tmp_path / 'out.csv'}'",
        "SET enable_external_access = true",
        "SELECT 1; SELECT 2",
    ):
        code, out, err = _run_cli(capsys, "sql", "--data", folder, query)
        assert code == 2, (query, out)
        assert "INVALID_ARGUMENT" in err or "PERMISSION_DENIED" in err, (query, err)
        assert "cli-secret-99" not in out + err
    assert not (tmp_path / "out.csv").exists()
    # and the real command, once, as a process
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "deardiary.services.cli",
            "sql",
            "--data",
            folder,
            "SHOW ALL TABLES",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "metric_points_hot" not in proc.stdout and "users" not in proc.stdout


# -- limits ------------------------------------------------------------------------------------

HEAVY = "SELECT count(*) AS n FROM range(100000000) a, range(100000) b WHERE a.range + b.range < 0"
TIMEOUT_S = 4.0


@dataclass
class Limited:
    url: str
    server: EmbeddedServer
    ann: Headers
    ben: Headers


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Limited]:
    settings = settings_from(
        {
            "DEARDIARY_SQL_TIMEOUT_S": str(TIMEOUT_S),
            "DEARDIARY_SQL_PER_USER": "1",
            "DEARDIARY_SQL_THREADS": "2",
            "DEARDIARY_SQL_MAX_ROWS": "1000",
            "DEARDIARY_SQL_MEMORY_LIMIT": "64MiB",
        }
    )
    users = {"ann": "ann-secret-1", "ben": "ben-secret-1"}
    data = tmp_path_factory.mktemp("limits") / "data"
    with serving_users(data, users, settings) as (server, url):
        ann, ben = (login(url, name, users[name]) for name in ("ann", "ben"))
        yield Limited(url, server, ann, ben)


def _until(check: Callable[[], bool], timeout: float) -> float:
    """Seconds until `check()` holds; fails after `timeout`."""
    start = time.monotonic()
    while not check():
        assert time.monotonic() - start < timeout, "not reached in time"
        time.sleep(0.02)
    return time.monotonic() - start


def _in_thread(fn: Callable[[], httpx.Response]) -> tuple[threading.Thread, list[Any]]:
    out: list[Any] = []

    def run() -> None:
        try:
            out.append(fn())
        except Exception as exc:
            out.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, out


def test_timeout_and_per_user_limit(limited: Limited) -> None:
    sandbox = limited.server.sandbox
    assert sandbox.running() == 0
    started = time.monotonic()
    thread, out = _in_thread(lambda: _sql(limited.url, limited.ann, HEAVY))
    _until(lambda: sandbox.running() == 1, 10)
    # ann's second statement is refused at once; ben is not held up by ann
    again = _sql(limited.url, limited.ann, "SELECT 1 AS one")
    assert again.status_code == 429, again.text
    assert again.json()["error"]["code"] == "RESOURCE_EXHAUSTED"
    assert "sql_per_user" in again.json()["error"]["message"] and again.headers["Retry-After"]
    other = _sql(limited.url, limited.ben, "SELECT 1 AS one")
    assert other.status_code == 200 and other.json()["items"] == [{"one": 1}]
    thread.join(30)
    elapsed = time.monotonic() - started
    r = out[0]
    assert isinstance(r, httpx.Response) and r.status_code == 413, r
    error = r.json()["error"]
    assert error["code"] == "RESOURCE_EXHAUSTED", error
    assert "sql_timeout_s" in error["message"] and "DEARDIARY_SQL_TIMEOUT_S" in error["message"]
    assert TIMEOUT_S - 0.5 < elapsed < TIMEOUT_S + 5, elapsed
    _until(lambda: sandbox.running() == 0, 5)  # the slot is free again
    assert _sql(limited.url, limited.ann, "SELECT 1 AS one").status_code == 200


def test_a_client_that_goes_away_has_its_statement_interrupted(limited: Limited) -> None:
    sandbox = limited.server.sandbox
    _until(lambda: sandbox.running() == 0, 10)
    started = time.monotonic()
    with pytest.raises(httpx.ReadTimeout):
        httpx.get(
            f"{limited.url}/api/v1/sql", params={"q": HEAVY}, headers=limited.ann, timeout=0.5
        )
    _until(lambda: sandbox.running() == 0, TIMEOUT_S)
    assert time.monotonic() - started < TIMEOUT_S - 1.0  # well before its time limit
    assert _sql(limited.url, limited.ann, "SELECT 1 AS one").status_code == 200


def test_shutdown_interrupts_running_statements(limited: Limited) -> None:
    sandbox = limited.server.sandbox
    _until(lambda: sandbox.running() == 0, 10)
    thread, out = _in_thread(lambda: _sql(limited.url, limited.ben, HEAVY))
    _until(lambda: sandbox.running() == 1, 10)
    sandbox.interrupt_all()
    thread.join(3)
    assert out and isinstance(out[0], httpx.Response), out
    assert out[0].status_code == 503 and out[0].json()["error"]["code"] == "UNAVAILABLE"


def test_a_lost_interrupt_is_repeated(limited: Limited, monkeypatch: pytest.MonkeyPatch) -> None:
    """An interrupt landing between two of a statement's queries is lost (DuckDB clears
    it when the next one starts): the watchdog must repeat it at once, not at the
    statement's deadline."""
    from deardiary.services.query.sql_limits import Statement

    halt, lost = Statement.halt, list[DearDiaryError]()

    def lossy(self: Statement, reason: DearDiaryError) -> None:
        if not lost:  # the first interrupt only marks the statement, as a lost one would
            lost.append(reason)
            self.stopped = reason
            return
        halt(self, reason)

    sandbox = limited.server.sandbox
    _until(lambda: sandbox.running() == 0, 10)
    thread, out = _in_thread(lambda: _sql(limited.url, limited.ben, HEAVY))
    _until(lambda: sandbox.running() == 1, 10)
    time.sleep(0.2)  # running in DuckDB by now, its deadline TIMEOUT_S away
    monkeypatch.setattr(Statement, "halt", lossy)
    sandbox.interrupt_all()
    thread.join(TIMEOUT_S - 1.5)
    assert lost and out and isinstance(out[0], httpx.Response), out
    assert out[0].status_code == 503 and out[0].json()["error"]["code"] == "UNAVAILABLE"


def test_row_and_memory_limits(limited: Limited) -> None:
    ok = _sql(limited.url, limited.ann, "SELECT * FROM range(1000)")
    assert ok.status_code == 200 and len(ok.json()["items"]) == 1000
    for query, setting in (
        ("SELECT * FROM range(1001)", "sql_max_rows"),
        ("SELECT list(range) AS l FROM range(30000000)", "sql_memory_limit"),
    ):
        r = _sql(limited.url, limited.ann, query)
        assert r.status_code == 413, (query, r.text)
        error = r.json()["error"]
        assert error["code"] == "RESOURCE_EXHAUSTED" and setting in error["message"], error
        assert error["details"]["setting"] == setting
    assert limited.server.sandbox.running() == 0


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "deardiary.services.cli", *args]


# -- Kafka mode ----------------------------------------------------------------------------------


@pytest.mark.kafka
def test_kafka_mode_sandbox(tmp_path: Path) -> None:
    from deardiary.services.kafka_mode.partitions import read_manifests
    from deardiary.services.kafka_mode.server import KafkaServer
    from deardiary.services.log.kafka import KafkaEventLog
    from tests.kafka_broker import fresh_topic, kafka_bootstrap

    data = tmp_path / "data"
    with kafka_bootstrap(tmp_path) as bootstrap:
        broker = f"kafka://{bootstrap}/{fresh_topic()}?partitions=2"
        KafkaEventLog.from_url(broker).partitions()
        worker = subprocess.Popen(
            _cli("worker", "--broker", broker, "--data", str(data)),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            c = dd.connect(broker, spool_dir=tmp_path / "spool")
            with c.start_iteration(project="k", experiment="e", capture_env=False) as it:
                for step in range(50):
                    it.log_metric("loss", float(step))
            c.flush(timeout=60)
            c.close()
            server = KafkaServer(broker, data)
            running = start_in_thread(server.app())
            try:
                url = running.url

                def visible() -> bool:
                    r = _sql(url, {}, "SELECT count(*) AS n FROM metrics")
                    return r.status_code == 200 and r.json()["items"] == [{"n": 50}]

                _until(visible, 90)
                exported = [
                    data / "partitions" / f"p{m['partition']}" / f
                    for m in read_manifests(data)
                    for entry in m["chain"]
                    for f in entry["files"].values()
                ]
                hot = next(p for p in exported if p.name == "metric_points_hot.parquet")
                users = next(p for p in exported if p.name == "events.parquet")
                for query, status in (
                    ("WITH x AS (WITH users AS (SELECT 1) SELECT 1) SELECT * FROM users", 400),
                    ("SELECT * FROM metric_points_hot", 400),
                    ("SELECT * FROM main.users", 400),
                    (f"SELECT * FROM '{users}'", 403),
                    (f"SELECT * FROM read_parquet('{hot}')", 403),
                    (f"SELECT * FROM glob('{data}/*')", 403),
                    ("SET threads = 8", 403),
                    ("SHOW ALL TABLES", 200),
                ):
                    r = _sql(url, {}, query)
                    assert r.status_code == status, (query, r.text)
                    assert "password_hash" not in r.text and 'metric_points_hot"' not in r.text
                rows = _sql(url, {}, "SELECT DISTINCT iteration_id FROM metrics").json()["items"]
                assert rows == [{"iteration_id": it.id}]
            finally:
                running.stop()
                server.close()
        finally:
            worker.terminate()
            try:
                worker.wait(timeout=30)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
