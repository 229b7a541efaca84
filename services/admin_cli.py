"""`deardiary users|grant|revoke|tokens`: administration straight on a data folder's log.

These append events to the embedded log (safe while a server runs on the same
folder: the log is multi-process); `users list` asks that server when one runs. Ids
of users and projects are derived from their names, so no lookup is needed to write.
Passwords are read from standard input, never from arguments; there is no default
password.
"""

from __future__ import annotations

import argparse
import getpass
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from deardiary.schemas import codec, ids
from deardiary.schemas.envelope import wrap
from deardiary.schemas.errors import InvalidArgument, NotFound
from deardiary.schemas.events import (
    AccessTokenCreated,
    AccessTokenRevoked,
    Event,
    PermissionGranted,
    PermissionRevoked,
    UserAdminSet,
    UserPasswordChanged,
)
from deardiary.services.log import EventLog, LogRecord

if TYPE_CHECKING:
    import pyarrow as pa

    from deardiary.reads import HttpReader

# The commands' own modules (pyarrow, the readers, auth, the embedded server) are imported
# by the commands that need them: `deardiary worker` and `serve` parse the same command line
# and must not pay for them at start.


def _append(args: argparse.Namespace, *events: Event) -> None:
    """Append to the data folder's log, or with --broker to the Kafka log (where the
    workers fold users, grants and tokens like every other event)."""
    log: EventLog
    if args.broker:
        from deardiary.services.log.kafka import KafkaEventLog

        log = KafkaEventLog.from_url(args.broker)
    else:
        from deardiary.services.embedded import DataPaths
        from deardiary.services.log.sqlite import SqliteEventLog

        log = SqliteEventLog(str(DataPaths(args.data).log))
    try:
        envs = [wrap(e, actor="cli") for e in events]
        log.append([LogRecord(e.event_id, e.key, codec.encode(e)) for e in envs])
    finally:
        log.close()


def _password() -> str:
    if sys.stdin.isatty():
        first = getpass.getpass("password: ")
        if getpass.getpass("again: ") != first:
            raise InvalidArgument("the passwords differ")
        return first
    return sys.stdin.readline().rstrip("\n")


def _users_create(args: argparse.Namespace) -> int:
    from deardiary.services.auth.routes import new_user_event

    _append(args, new_user_event(args.name, _password(), args.admin))
    print(f"user {args.name} created{' (admin)' if args.admin else ''}")
    return 0


def _users_passwd(args: argparse.Namespace) -> int:
    from deardiary.services.auth.secrets import hash_password

    _append(
        args,
        UserPasswordChanged(
            user_id=ids.user_id(args.name), password_hash=hash_password(_password())
        ),
    )
    print(f"password of {args.name} changed")
    return 0


def _users_admin(args: argparse.Namespace) -> int:
    _append(args, UserAdminSet(user_id=ids.user_id(args.name), is_admin=not args.revoke))
    return 0


_USERS = "SELECT username, is_admin, created_at FROM users ORDER BY username"


def _users_remote(reader: HttpReader, at: dict[int, int]) -> pa.Table:
    """The users as the server that owns the folder knows them, once it has applied the
    log up to `at` (the user just created with `users create` included)."""
    import pyarrow as pa

    min_offset = at.get(0, -1)
    deadline = time.monotonic() + 30
    while True:
        ready = reader.http.get("/readyz").json()
        if int(ready["applied"].get("0", 0)) > min_offset or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    try:
        found = reader.request("GET", "/api/v1/users")
    except NotFound as exc:
        raise InvalidArgument(
            "the server that owns this folder runs without --auth and has no user routes;"
            " stop it to list users from the folder"
        ) from exc
    users = found["items"]
    return pa.table(
        {
            "username": [u["username"] for u in users],
            "is_admin": [u["is_admin"] for u in users],
            "created_at": [u["created_at"] for u in users],
        }
    )


def _users_list(args: argparse.Namespace) -> int:
    from deardiary.reads import LocalReader
    from deardiary.services.formats import render_table

    if args.broker:  # Kafka mode: the users the workers published under --data
        from deardiary.services.kafka_mode.exports_view import ExportsView

        view = ExportsView(Path(args.data))
        try:
            sys.stdout.write(render_table(view.reader().sql(_USERS).to_arrow_table()))
        finally:
            view.close()
        return 0
    table = LocalReader(args.data).read(
        _users_remote, lambda store: store.store.reader().sql(_USERS).to_arrow_table()
    )
    sys.stdout.write(render_table(table))
    return 0


def _grant(args: argparse.Namespace) -> int:
    flags = {f: f in args.allow for f in ("create", "read", "update", "delete")}
    _append(
        args,
        PermissionGranted(
            user_id=ids.user_id(args.user), project_id=ids.project_id(args.project), **flags
        ),
    )
    print(f"{args.user} on {args.project}: {', '.join(f for f, v in flags.items() if v) or '-'}")
    return 0


def _revoke(args: argparse.Namespace) -> int:
    _append(
        args,
        PermissionRevoked(user_id=ids.user_id(args.user), project_id=ids.project_id(args.project)),
    )
    return 0


def _tokens_create(args: argparse.Namespace) -> int:
    from deardiary.services.auth.secrets import hash_secret, new_secret

    token_id, secret = ids.new_id(), new_secret()
    expires = None if args.lifespan_s <= 0 else ids.now_us() + args.lifespan_s * 1_000_000
    _append(
        args,
        AccessTokenCreated(
            token_id=token_id,
            user_id=ids.user_id(args.user),
            token_hash=hash_secret(secret),
            description=args.description,
            expires_at=expires,
        ),
    )
    print(f"dda.{token_id}.{secret}")  # shown once
    return 0


def _tokens_revoke(args: argparse.Namespace) -> int:
    _append(args, AccessTokenRevoked(token_id=args.token_id))
    return 0


def add_admin_commands(sub: argparse._SubParsersAction, default_data: str) -> None:  # type: ignore[type-arg]
    def data(p: argparse.ArgumentParser) -> None:
        p.add_argument("--data", default=default_data, help="data folder")
        p.add_argument(
            "--broker", default=None, help="Kafka mode: append to kafka://host:port[/topic]"
        )

    users = sub.add_parser("users", help="user administration").add_subparsers(
        dest="users_command", required=True
    )
    create = users.add_parser("create", help="create a user (password from stdin)")
    data(create)
    create.add_argument("name")
    create.add_argument("--admin", action="store_true")
    create.set_defaults(func=_users_create)
    passwd = users.add_parser("passwd", help="set a password (from stdin)")
    data(passwd)
    passwd.add_argument("name")
    passwd.set_defaults(func=_users_passwd)
    admin = users.add_parser("admin", help="make a user an admin (--revoke to undo)")
    data(admin)
    admin.add_argument("name")
    admin.add_argument("--revoke", action="store_true")
    admin.set_defaults(func=_users_admin)
    listing = users.add_parser("list", help="list users")
    data(listing)
    listing.set_defaults(func=_users_list)

    grant = sub.add_parser("grant", help="grant permissions on a project")
    data(grant)
    grant.add_argument("user")
    grant.add_argument("project", help="project name")
    grant.add_argument("allow", nargs="+", choices=["create", "read", "update", "delete"])
    grant.set_defaults(func=_grant)
    revoke = sub.add_parser("revoke", help="revoke all permissions on a project")
    data(revoke)
    revoke.add_argument("user")
    revoke.add_argument("project", help="project name")
    revoke.set_defaults(func=_revoke)

    tokens = sub.add_parser("tokens", help="access tokens").add_subparsers(
        dest="tokens_command", required=True
    )
    tcreate = tokens.add_parser("create", help="create an access token (printed once)")
    data(tcreate)
    tcreate.add_argument("user")
    tcreate.add_argument("--lifespan-s", type=int, default=30 * 24 * 3600, help="0: never")
    tcreate.add_argument("--description", default="")
    tcreate.set_defaults(func=_tokens_create)
    trevoke = tokens.add_parser("revoke", help="revoke an access token")
    data(trevoke)
    trevoke.add_argument("token_id")
    trevoke.set_defaults(func=_tokens_revoke)
