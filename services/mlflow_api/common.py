"""What the tracking handlers share: checks with MLflow's messages, paging tokens, the
experiment lookups every route needs, and the run names MLflow's server makes up."""

from __future__ import annotations

import base64
import binascii
import random
from typing import Any

import duckdb
import msgspec
from aiohttp import web

from deardiary.schemas import ids as dd_ids
from deardiary.schemas.events import Event, ExperimentCreated, ProjectCreated
from deardiary.schemas.limits import MAX_PARAM_VALUE_CHARS, MAX_TAG_VALUE_CHARS
from deardiary.schemas.rules import key_problem
from deardiary.services.mlflow_api import ids, reads
from deardiary.services.mlflow_api.context import MlflowContext, read
from deardiary.services.mlflow_api.errors import MlflowError, not_found
from deardiary.services.mlflow_api.reads import Row
from deardiary.services.mlflow_api.render import Renderer

MAX_RESULTS_SEARCH = 50_000
"""search-runs / search-experiments / logged models: at most this many per page (MLflow's)."""


def required(value: str | None, name: str) -> str:
    if not value:
        raise MlflowError(f"Missing value for required parameter '{name}'.")
    return value


def check_key(key: str, what: str) -> None:
    problem = key_problem(key)
    if problem is not None:
        raise MlflowError(f"Invalid {what} name: {key[:300]!r} {problem}.")


def check_param(key: str, value: str) -> None:
    check_key(key, "parameter")
    if len(value) > MAX_PARAM_VALUE_CHARS:
        raise MlflowError(
            f"Param value '{value[:100]}...' had length {len(value)}, which exceeded length"
            f" limit of {MAX_PARAM_VALUE_CHARS}"
        )


def check_tag(key: str, value: str) -> None:
    check_key(key, "tag")
    if len(value) > MAX_TAG_VALUE_CHARS:
        raise MlflowError(
            f"Tag value '{value[:100]}...' had length {len(value)}, which exceeded length"
            f" limit of {MAX_TAG_VALUE_CHARS}"
        )


def max_results(value: int | None, default: int, ceiling: int = MAX_RESULTS_SEARCH) -> int:
    if value is None:
        return default
    if value < 1 or value > ceiling:
        raise MlflowError(
            f"Invalid value {value} for parameter 'max_results' supplied. It must be a"
            f" positive integer at most {ceiling}."
        )
    return value


class _Token(msgspec.Struct):
    offset: int


def page_offset(token: str) -> int:
    """Where a page token says the next page starts (0 without one)."""
    if not token:
        return 0
    try:
        offset = msgspec.json.decode(base64.urlsafe_b64decode(token.encode()), type=_Token).offset
    except (binascii.Error, ValueError, msgspec.DecodeError) as exc:
        raise MlflowError(f"Invalid page token {token[:100]!r}") from exc
    if offset < 0:
        raise MlflowError(f"Invalid page token {token[:100]!r}")
    return offset


def next_token(offset: int, returned: int, limit: int) -> str | None:
    """The token of the page after this one, None when this one was the last."""
    if returned < limit:
        return None
    return base64.urlsafe_b64encode(msgspec.json.encode(_Token(offset + returned))).decode()


def view_type(value: str | int) -> str:
    """MLflow's ViewType (name or number) as a SQL condition on a `deleted` column."""
    names = {1: "ACTIVE_ONLY", 2: "DELETED_ONLY", 3: "ALL"}
    name = names.get(value, "") if isinstance(value, int) else value.upper()
    conditions = {"ACTIVE_ONLY": "NOT {t}.deleted", "DELETED_ONLY": "{t}.deleted", "ALL": "TRUE"}
    if name not in conditions:
        raise MlflowError(f"Invalid view type {value!r}: ACTIVE_ONLY, DELETED_ONLY or ALL")
    return conditions[name]


def renderer(ctx: MlflowContext) -> Renderer:
    return Renderer(ctx.default_project)


def find_experiment(conn: duckdb.DuckDBPyConnection, mlflow_id: str, default_project: str) -> Row:
    """The experiment an MLflow id names (RESOURCE_DOES_NOT_EXIST when not readable)."""
    row = reads.experiment(conn, ids.experiment_from_mlflow(mlflow_id, default_project))
    if row is None:
        raise not_found(f"No Experiment with id={mlflow_id} exists")
    return row


def find_experiment_named(
    conn: duckdb.DuckDBPyConnection, name: str, default_project: str
) -> Row | None:
    """The experiment an MLflow name names (ids.py): ``p/e`` in project ``p`` when that
    project exists, else the name in the default project."""
    split = ids.split_name(name)
    if split is not None and reads.project_exists(conn, split[0]):
        return reads.experiment_named(conn, *split)
    return reads.experiment_named(conn, default_project, name)


async def experiment_to_write(
    ctx: MlflowContext, request: web.Request, mlflow_id: str
) -> tuple[str, str, list[Event]]:
    """(project id, experiment id, events creating them) for a write into an MLflow
    experiment: experiment "0" is created on first use; any other must exist and be
    active."""
    required(mlflow_id, "experiment_id")
    default = ctx.default_project

    def find(conn: duckdb.DuckDBPyConnection) -> tuple[Row | None, bool]:
        if mlflow_id == ids.DEFAULT_EXPERIMENT_ID:
            mine = ids.default_experiment(default)
            return reads.experiment(conn, mine), reads.project_exists(conn, default)
        return find_experiment(conn, mlflow_id, default), True

    row, project_exists = await read(ctx, request, find)
    if row is not None:
        active(row, "experiment")
        return row["project_id"], row["experiment_id"], []
    project_id = dd_ids.project_id(default)
    experiment_id = ids.default_experiment(default)
    events: list[Event] = []
    if not project_exists:
        events.append(ProjectCreated(project_id=project_id, name=default))
    events.append(
        ExperimentCreated(
            experiment_id=experiment_id, project_id=project_id, name=ids.DEFAULT_EXPERIMENT_NAME
        )
    )
    return project_id, experiment_id, events


async def experiment_of(ctx: MlflowContext, request: web.Request, mlflow_id: str) -> Row:
    required(mlflow_id, "experiment_id")
    return await read(
        ctx, request, lambda conn: find_experiment(conn, mlflow_id, ctx.default_project)
    )


def find_run(conn: duckdb.DuckDBPyConnection, run_id: str) -> Row:
    row = reads.run(conn, run_id)
    if row is None or row["metadata"].get("mlflow.kind") == "logged_model":
        raise not_found(f"Run with id={run_id} not found")
    return row


async def run_of(ctx: MlflowContext, request: web.Request, run_id: str) -> Row:
    required(run_id, "run_id")
    return await read(ctx, request, lambda conn: find_run(conn, run_id))


def active(row: Row, what: str = "run") -> None:
    if row["deleted"]:
        ident = row.get("iteration_id") or row.get("experiment_id")
        raise MlflowError(
            f"The {what} {ident} must be in the 'active' state. Current state is deleted."
        )


_ADJECTIVES = [
    "able",
    "amber",
    "bold",
    "brave",
    "bright",
    "calm",
    "clever",
    "crisp",
    "dapper",
    "eager",
    "fair",
    "fancy",
    "gentle",
    "glad",
    "grand",
    "honest",
    "jolly",
    "keen",
    "kind",
    "lively",
    "lucky",
    "merry",
    "nimble",
    "noble",
    "polite",
    "proud",
    "quick",
    "quiet",
    "rare",
    "sharp",
    "shy",
    "silent",
    "smart",
    "snappy",
    "sunny",
    "swift",
    "tidy",
    "vivid",
    "warm",
    "wise",
    "witty",
    "zesty",
]
_NOUNS = [
    "ant",
    "bass",
    "bat",
    "bear",
    "bee",
    "bird",
    "boar",
    "cat",
    "crab",
    "crane",
    "deer",
    "dog",
    "dove",
    "duck",
    "eel",
    "elk",
    "finch",
    "fish",
    "fly",
    "fox",
    "frog",
    "gnu",
    "goat",
    "hare",
    "hawk",
    "hen",
    "horse",
    "jay",
    "koi",
    "lark",
    "lion",
    "lynx",
    "mole",
    "moth",
    "mouse",
    "newt",
    "owl",
    "ox",
    "panda",
    "pig",
    "ram",
    "ray",
    "seal",
    "shark",
    "sheep",
    "slug",
    "snail",
    "squid",
    "stag",
    "swan",
    "toad",
    "trout",
    "whale",
    "wolf",
    "worm",
    "yak",
]


def random_run_name() -> str:
    """A name like MLflow's server gives a run created without one."""
    pick = random.SystemRandom()
    return f"{pick.choice(_ADJECTIVES)}-{pick.choice(_NOUNS)}-{pick.randrange(1000)}"


def ms_to_us(ms: int, what: str) -> int:
    if ms < 0 or ms > 253_402_300_799_999:
        raise MlflowError(f"Invalid {what} {ms}: milliseconds since 1970 up to the year 9999")
    return ms * 1000


def as_text(value: Any) -> str:
    return value if isinstance(value, str) else str(value)
