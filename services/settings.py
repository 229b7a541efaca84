"""Every knob of a server, declared once: its name, type, default and help text.

`ServerSettings` is built once (from the command line's flags and ``DEARDIARY_*``
environment variables) and handed to the parts that need it; nothing reads the
environment at import time. A field ``sql_timeout_s`` is set by the variable
``DEARDIARY_SQL_TIMEOUT_S``; its help text is the field's ``Meta(description=...)``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Annotated, Any

import msgspec
from msgspec import Meta

from deardiary.schemas.errors import InvalidArgument

ENV_PREFIX = "DEARDIARY_"


class ServerSettings(msgspec.Struct, frozen=True, kw_only=True):
    """Limits and timeouts of `deardiary serve` (either mode)."""

    # -- user SQL ------------------------------------------------------------------
    sql_timeout_s: Annotated[
        float, Meta(gt=0, description="a user SQL statement is cancelled after this long")
    ] = 30.0
    sql_memory_limit: Annotated[
        str, Meta(description="memory for all running user SQL together (DuckDB syntax)")
    ] = "1GiB"
    sql_max_rows: Annotated[
        int, Meta(ge=1, description="a user SQL result may hold at most this many rows")
    ] = 1_000_000
    sql_threads: Annotated[
        int, Meta(ge=1, description="user SQL statements running at once (all users)")
    ] = 2
    sql_per_user: Annotated[
        int, Meta(ge=1, description="user SQL statements one user may run at once")
    ] = 1

    # -- reads -----------------------------------------------------------------------
    read_threads: Annotated[
        int, Meta(ge=1, description="threads answering read routes (apart from sign-in, ingest)")
    ] = 4
    max_wait_s: Annotated[
        float, Meta(gt=0, description="longest read-your-writes wait before 503 UNAVAILABLE")
    ] = 30.0
    read_per_caller: Annotated[
        int, Meta(ge=1, description="read routes one user (or client address) runs at once")
    ] = 2
    auth_threads: Annotated[
        int, Meta(ge=1, description="threads for sign-in and checking credentials")
    ] = 2

    # -- connections -------------------------------------------------------------------
    max_connections: Annotated[
        int, Meta(ge=1, description="open client connections; more are closed at once")
    ] = 1024
    header_timeout_s: Annotated[
        float, Meta(gt=0, description="a request's headers must arrive within this long")
    ] = 10.0
    body_timeout_s: Annotated[
        float,
        Meta(gt=0, description="a request body that stops arriving for this long is cut off"),
    ] = 30.0
    send_timeout_s: Annotated[
        float,
        Meta(gt=0, description="a client that stops reading its response this long is cut off"),
    ] = 60.0
    keepalive_timeout_s: Annotated[
        float, Meta(gt=0, description="an idle keep-alive connection is closed after this long")
    ] = 15.0
    shutdown_timeout_s: Annotated[
        float, Meta(gt=0, description="on SIGTERM, in-flight requests get this long to finish")
    ] = 5.0
    allowed_hosts: Annotated[
        str,
        Meta(
            description="without auth, Host names answered besides loopback ones "
            "(comma-separated; * for any)"
        ),
    ] = ""
    auth_key_file: Annotated[
        str,
        Meta(
            description="the key signing session tokens (default <data>/auth.key); "
            "Kafka-mode query services behind one load balancer share one"
        ),
    ] = ""

    # -- server log --------------------------------------------------------------------
    log_repeat_limit: Annotated[
        int, Meta(ge=1, description="identical log lines written per interval; more are counted")
    ] = 10
    log_repeat_interval_s: Annotated[
        float, Meta(gt=0, description="the interval of log_repeat_limit")
    ] = 60.0

    # -- projections -------------------------------------------------------------------
    hot_points_limit: Annotated[
        int, Meta(ge=1, description="metric points kept in DuckDB before compaction to Parquet")
    ] = 2_000_000
    projector_linger_ms: Annotated[
        float,
        Meta(
            ge=0,
            le=1000,
            description="while appends stream in, the projector waits this long after a step "
            "to apply more records in the next one (a step's fixed cost paid less often); "
            "a read waiting for its writes ends the wait; 0 applies at once",
        ),
    ] = 250.0
    ready_max_lag_s: Annotated[
        float,
        Meta(gt=0, description="/readyz answers 503 when the projections are further behind"),
    ] = 10.0
    as_of_cache_mb: Annotated[
        int,
        Meta(
            ge=1,
            description="time travel (?as_of=): disk for the past states rebuilt from the log; "
            "beyond it the least recently read are removed",
        ),
    ] = 2048
    as_of_cache_dir: Annotated[
        str,
        Meta(description="where past states are rebuilt (default <data>/as-of-cache)"),
    ] = ""

    # -- the MLflow-compatible API -------------------------------------------------------
    mlflow_default_project: Annotated[
        str,
        Meta(
            min_length=1,
            max_length=500,
            description="the project MLflow experiments (and the default experiment 0) live "
            "in unless created with a deardiary.project tag",
        ),
    ] = "Default"
    basic_auth_cache_s: Annotated[
        float,
        Meta(
            ge=0,
            description="with --auth, a verified HTTP Basic username and password (MLflow's "
            "MLFLOW_TRACKING_USERNAME/PASSWORD) is trusted this long without checking again",
        ),
    ] = 30.0


def env_name(field: str) -> str:
    return ENV_PREFIX + field.upper()


def settings_from(environ: Mapping[str, str] | None = None, **overrides: Any) -> ServerSettings:
    """Defaults, then ``DEARDIARY_*`` variables, then `overrides` (flags given explicitly)."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for field in msgspec.structs.fields(ServerSettings):
        raw = environ.get(env_name(field.name))
        if raw is not None:
            values[field.name] = raw
    values.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return msgspec.convert(values, ServerSettings, strict=False)
    except msgspec.ValidationError as exc:
        raise InvalidArgument(f"invalid setting: {exc}") from exc


def describe() -> list[tuple[str, str, str, str]]:
    """(field, environment variable, default, help) of every setting, for docs and --help."""
    schema = msgspec.json.schema(ServerSettings)
    props = schema["$defs"]["ServerSettings"]["properties"]
    out = []
    for field in msgspec.structs.fields(ServerSettings):
        out.append(
            (
                field.name,
                env_name(field.name),
                str(field.default),
                str(props[field.name].get("description", "")),
            )
        )
    return out


def markdown_table() -> str:
    """The README's table of server settings (tests/unit/test_settings_docs.py keeps the
    README equal to it; print it with ``python -m deardiary.services.settings``)."""
    lines = ["| variable | default | what |", "| --- | --- | --- |"]
    for _, env, default, help_text in describe():
        lines.append(f"| `{env}` | `{default}` | {help_text} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(markdown_table(), end="")
