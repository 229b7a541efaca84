"""The registry's search grammar, compiled and run on DuckDB (no server).

MLflow's comparisons (=, !=, LIKE, ILIKE, IN, NOT IN; numbers for version_number),
tag keys quoted with backticks or double quotes (any character, '/' and '~' too),
quoted values with doubled quotes, order_by with MLflow's keys and tie-breakers, the
client's own prompt filter, page tokens -- and an INVALID_PARAMETER_VALUE for the rest.
"""

from __future__ import annotations

from collections.abc import Iterator

import duckdb
import pytest

from deardiary.services.mlflow_api.errors import MlflowError
from deardiary.services.mlflow_api.registry_search import (
    MODELS,
    VERSIONS,
    Compiled,
    compile_filter,
    compile_order,
    page_offset,
    page_token,
)

MODEL_TAGS = {
    "alpha": '{"team": "vision", "a/b~c": "odd key"}',
    "beta": '{"team": "nlp", "mlflow.prompt.is_prompt": "true"}',
    "Gamma": '{"team": "Vision", "note": "it\'s"}',
    "delta_1": "{}",
}


@pytest.fixture(scope="module")
def conn() -> Iterator[duckdb.DuckDBPyConnection]:
    db = duckdb.connect()
    db.execute(
        "CREATE TABLE models (model_id VARCHAR, name VARCHAR, tags JSON,"
        " created_at TIMESTAMP, updated_at TIMESTAMP)"
    )
    db.execute(
        "CREATE TABLE model_versions (model_version_id VARCHAR, model_id VARCHAR,"
        " version BIGINT, iteration_id VARCHAR, tags JSON, metadata JSON,"
        " created_at TIMESTAMP, updated_at TIMESTAMP)"
    )
    for i, (name, tags) in enumerate(MODEL_TAGS.items()):
        db.execute(
            "INSERT INTO models VALUES (?, ?, ?, TIMESTAMP '2026-01-01' + to_days(?),"
            " TIMESTAMP '2026-02-01' - to_days(?))",
            [f"m{i}", name, tags, i, i],
        )
        for version in (1, 2):
            db.execute(
                "INSERT INTO model_versions VALUES (?, ?, ?, ?, '{}', ?, now(), now())",
                [
                    f"m{i}v{version}",
                    f"m{i}",
                    version,
                    f"run{version}",
                    f'{{"mlflow.source": "runs:/run{version}/model"}}',
                ],
            )
    yield db
    db.close()


def _models(
    conn: duckdb.DuckDBPyConnection, text: str, order: list[str] | None = None
) -> list[str]:
    q = Compiled()
    compile_filter(text, MODELS, q)
    compile_order(order or [], MODELS, q)
    where = " AND ".join(q.where) or "TRUE"
    sql = f"SELECT m.name FROM models m WHERE {where} ORDER BY {q.order_by}"
    return [r[0] for r in conn.execute(sql, q.params).fetchall()]


def _versions(
    conn: duckdb.DuckDBPyConnection, text: str, order: list[str] | None = None
) -> list[str]:
    q = Compiled()
    compile_filter(text, VERSIONS, q)
    compile_order(order or [], VERSIONS, q)
    where = " AND ".join(q.where) or "TRUE"
    sql = (
        "SELECT m.name || '/' || v.version FROM model_versions v JOIN models m USING (model_id)"
        f" WHERE {where} ORDER BY {q.order_by}"
    )
    return [r[0] for r in conn.execute(sql, q.params).fetchall()]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", ["Gamma", "alpha", "beta", "delta_1"]),
        ("name = 'alpha'", ["alpha"]),
        ("name != 'alpha'", ["Gamma", "beta", "delta_1"]),
        ("attributes.name LIKE '%a'", ["Gamma", "alpha", "beta"]),
        ("name ILIKE 'g%'", ["Gamma"]),
        ("name LIKE 'delta_1'", ["delta_1"]),
        ("name IN ('alpha', 'beta', 'nope')", ["alpha", "beta"]),
        ("name NOT IN ('alpha')", ["Gamma", "beta", "delta_1"]),
        ("tags.team = 'vision'", ["alpha"]),
        ("tag.team ILIKE 'VISION'", ["Gamma", "alpha"]),
        ("tags.team != 'vision'", ["Gamma", "beta"]),  # no tag: no match, as in MLflow
        ("tags.`a/b~c` = 'odd key'", ["alpha"]),
        ("tags.\"note\" = 'it''s'", ["Gamma"]),
        ("name LIKE '%a%' and tags.team LIKE 'v%'", ["alpha"]),
        # the MLflow client's own filter: models without the tag are not prompts
        ("tags.`mlflow.prompt.is_prompt` != 'true'", ["Gamma", "alpha", "delta_1"]),
        ("tags.`mlflow.prompt.is_prompt` = 'false'", ["Gamma", "alpha", "delta_1"]),
    ],
)
def test_model_filters(conn: duckdb.DuckDBPyConnection, text: str, expected: list[str]) -> None:
    assert _models(conn, text) == expected


def test_model_order_by_keys_and_tie_breakers(conn: duckdb.DuckDBPyConnection) -> None:
    assert _models(conn, "", ["name DESC"]) == ["delta_1", "beta", "alpha", "Gamma"]
    assert _models(conn, "", ["creation_timestamp DESC"]) == ["delta_1", "Gamma", "beta", "alpha"]
    assert _models(conn, "", ["last_updated_timestamp"]) == ["delta_1", "Gamma", "beta", "alpha"]
    assert _models(conn, "", ["attribute.name asc"]) == ["Gamma", "alpha", "beta", "delta_1"]


def test_version_filters_and_order(conn: duckdb.DuckDBPyConnection) -> None:
    assert _versions(conn, "name = 'alpha'") == ["alpha/2", "alpha/1"]
    assert _versions(conn, "name = 'alpha' AND version_number = 1") == ["alpha/1"]
    assert _versions(conn, "name='beta' AND version_number > '1'") == ["beta/2"]
    assert _versions(conn, "run_id IN ('run2') AND name LIKE 'a%'") == ["alpha/2"]
    assert _versions(conn, "source_path = 'runs:/run1/model' AND name = 'beta'") == ["beta/1"]
    assert _versions(conn, "name = 'alpha'", ["version_number ASC"]) == ["alpha/1", "alpha/2"]


@pytest.mark.parametrize(
    "text",
    [
        "name",
        "name =",
        "name = alpha",  # an unquoted value
        "size = 'x'",  # no such attribute
        "metrics.x = 'y'",  # no such entity
        "name ~ 'x'",
        "name = 'a' OR name = 'b'",
        "name = 'a' AND",
        "tags.team IN ('a')",
        "tags.team > 'a'",
        "name IN 'a'",
        "name IN ()",
        "version_number = 1",  # a versions-only attribute
        "'unterminated",
    ],
)
def test_bad_model_filters_are_invalid_parameter_values(text: str) -> None:
    with pytest.raises(MlflowError) as refused:
        compile_filter(text, MODELS, Compiled())
    assert refused.value.error_code == "INVALID_PARAMETER_VALUE"


@pytest.mark.parametrize(
    "text", ["version_number = 'x'", "version_number LIKE '1'", "run_id > 'a'"]
)
def test_bad_version_filters(text: str) -> None:
    with pytest.raises(MlflowError):
        compile_filter(text, VERSIONS, Compiled())


@pytest.mark.parametrize("clause", ["size", "name SIDEWAYS", "tags.x ASC", "name ASC DESC"])
def test_bad_order_by(clause: str) -> None:
    with pytest.raises(MlflowError):
        compile_order([clause], MODELS, Compiled())


def test_page_tokens_round_trip_and_refuse_garbage() -> None:
    assert page_offset("") == 0
    assert page_offset(page_token(300)) == 300
    for bad in ("not-base64!", "bm90IGpzb24=", page_token(-1), "eyJvZmZzZXQiOiAiMyJ9"):
        with pytest.raises(MlflowError):
            page_offset(bad)
