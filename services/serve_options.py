"""The flags of `deardiary serve`, declared once: name, type, default, variable, help.

Each field of `ServeOptions` is a flag (``data`` -> ``--data``) and an environment
variable (``DEARDIARY_DATA``), like the server settings of `services/settings.py`. The
command line's flags, their ``--help`` and the README's table are generated from this
declaration (tests/unit/test_cli.py keeps the README equal to it; print it with
``python -m deardiary.services.serve_options``). A flag given on the command line wins
over its variable, which wins over the default.
"""

from __future__ import annotations

import argparse
import os
import typing
from collections.abc import Mapping
from typing import Annotated, Any

import msgspec
from msgspec import Meta

from deardiary.schemas.errors import InvalidArgument
from deardiary.services.settings import env_name


class ServeOptions(msgspec.Struct, frozen=True, kw_only=True):
    """Where `deardiary serve` keeps its data, where it listens, and who may use it."""

    data: Annotated[
        str, Meta(description="the data folder: the log, projections and artifacts")
    ] = "./deardiary-data"
    host: Annotated[
        str,
        Meta(
            description="the address to listen on (0.0.0.0: every interface; beyond loopback "
            "it needs --auth or --allow-remote-without-auth)"
        ),
    ] = "127.0.0.1"
    port: Annotated[
        int, Meta(ge=0, le=65535, description="the port to listen on (0: any free port)")
    ] = 9000
    auth: Annotated[bool, Meta(description="require sign-in, with per-project permissions")] = False
    broker: Annotated[
        str,
        Meta(description="Kafka mode: the log is this kafka://host:port[/topic], not the folder's"),
    ] = ""
    allow_remote_without_auth: Annotated[
        bool,
        Meta(description="serve beyond loopback without sign-in (a trusted network only)"),
    ] = False


def _flag(field: str) -> str:
    return "--" + field.replace("_", "-")


def _base(annotation: Any) -> Any:
    """``str`` of ``Annotated[str, Meta(...)]``."""
    return typing.get_args(annotation)[0] if typing.get_origin(annotation) else annotation


def _help_texts() -> dict[str, str]:
    schema = msgspec.json.schema(ServeOptions)
    props = schema["$defs"]["ServeOptions"]["properties"]
    return {name: str(p.get("description", "")) for name, p in props.items()}


def _from_environment(environ: Mapping[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for field in msgspec.structs.fields(ServeOptions):
        raw = environ.get(env_name(field.name))
        if raw is not None and raw != "":
            values[field.name] = raw
    try:  # checked now, so a bad variable is named before anything starts
        return msgspec.structs.asdict(msgspec.convert(values, ServeOptions, strict=False))
    except msgspec.ValidationError as exc:
        raise InvalidArgument(f"invalid environment variable: {exc}") from exc


def add_serve_flags(
    parser: argparse.ArgumentParser, environ: Mapping[str, str] | None = None
) -> None:
    """One flag per field; defaults from the ``DEARDIARY_*`` variables when set."""
    defaults = _from_environment(os.environ if environ is None else environ)
    helps = _help_texts()
    for field in msgspec.structs.fields(ServeOptions):
        default = defaults[field.name]
        text = f"{helps[field.name]} [{env_name(field.name)}]"
        kind = _base(field.type)
        if kind is bool:  # --auth / --no-auth
            parser.add_argument(
                _flag(field.name), action=argparse.BooleanOptionalAction, default=default, help=text
            )
        else:
            shown = f"; default {default}" if default != "" else ""
            parser.add_argument(
                _flag(field.name),
                type=kind,
                default=default,
                metavar=field.name.upper(),
                help=f"{text[:-1]}{shown}]",
            )


def serve_options(args: argparse.Namespace) -> ServeOptions:
    """The parsed flags as a checked `ServeOptions`."""
    values = {f.name: getattr(args, f.name) for f in msgspec.structs.fields(ServeOptions)}
    try:
        return msgspec.convert(values, ServeOptions)
    except msgspec.ValidationError as exc:
        raise InvalidArgument(f"invalid flag: {exc}") from exc


def markdown_table() -> str:
    """The README's table of `deardiary serve`'s flags."""
    helps = _help_texts()
    lines = ["| flag | variable | default | what |", "| --- | --- | --- | --- |"]
    for field in msgspec.structs.fields(ServeOptions):
        if _base(field.type) is bool:
            default = "on" if field.default else "off"
        else:
            default = f"`{field.default}`" if field.default else ""
        lines.append(
            f"| `{_flag(field.name)}` | `{env_name(field.name)}` | {default} |"
            f" {helps[field.name]} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(markdown_table(), end="")
