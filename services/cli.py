"""The `deardiary` command: wiring only; every subcommand calls into a service module."""

from __future__ import annotations

import argparse
import errno
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import msgspec

from deardiary.schemas.errors import DearDiaryError
from deardiary.services.admin_cli import add_admin_commands
from deardiary.services.entry import missing_extra
from deardiary.services.serve_options import add_serve_flags, serve_options
from deardiary.version import __version__

# Each command imports what it runs (the embedded server, the query sandbox, pandas,
# aiohttp): `deardiary worker` starts with none of it.
SQL_FORMATS = ("csv", "json", "table")
"""`sql --format` choices: the keys of services/formats.py's RENDERERS (a test compares)."""

DEFAULT_DATA = "./deardiary-data"
DESCRIPTION = """\
DearDiary: experiment tracking on an event log. Start a server with `deardiary serve`
and log from Python with `dd.connect("http://127.0.0.1:9000")`, or log straight into a
folder with `dd.connect("./deardiary-data")` and query it with `deardiary sql`."""
EPILOG = """\
examples:
  deardiary serve                                  # http://127.0.0.1:9000, data in ./deardiary-data
  deardiary serve --port 9100 --data /srv/diary    # or DEARDIARY_PORT, DEARDIARY_DATA
  deardiary sql "SELECT key, min(value) FROM metrics GROUP BY key"
  deardiary status                                 # is the folder's server ready?
  deardiary <command> --help                       # the options of a command"""


def _cmd_sql(args: argparse.Namespace) -> int:
    from deardiary.reads import LocalReader
    from deardiary.services.formats import RENDERERS

    # through the server that owns the folder, if one runs; else the folder itself
    table = LocalReader(args.data).sql(args.query, {})
    sys.stdout.write(RENDERERS[args.format](table))
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    from deardiary.services.status import disk_usage, folder_status, render_disk, render_status

    found, source = folder_status(Path(args.data))
    disk = disk_usage(Path(args.data))
    if args.format == "json":
        fields = msgspec.to_builtins(found)
        print(msgspec.json.encode({**fields, "disk": disk}).decode())
    else:
        sys.stdout.write(render_status(found, source) + render_disk(disk))
    return 0 if found.ready else 1


def _cmd_replay(args: argparse.Namespace) -> int:
    from deardiary.services.embedded import DataPaths
    from deardiary.services.log import open_log
    from deardiary.services.replay import AsOf, replay

    source = args.broker or DataPaths(args.data).log_url
    if not args.broker and not DataPaths(args.data).log.exists():
        raise FileNotFoundError(f"no log at {DataPaths(args.data).log}")
    log = open_log(source)
    try:
        offsets = replay(log, Path(args.into), AsOf.parse(args.as_of))
    finally:
        log.close()
    reached = ", ".join(f"partition {p}: {o} records" for p, o in sorted(offsets.items()))
    print(f"replayed into {args.into} ({reached or 'empty log'})")
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    from deardiary.services.allocators import give_back_freed_memory

    give_back_freed_memory()  # first: Arrow chooses its pool as it loads
    from deardiary.services.http import serve
    from deardiary.services.http.runner import Listening, exit_soon
    from deardiary.services.server import check_bind, embedded_server
    from deardiary.services.settings import settings_from

    serve_options(args)  # checked (a port out of range is one line, not a traceback)
    check_bind(args.host, args.allow_remote_without_auth, args.auth)
    if args.broker:
        return _serve_kafka(args)
    settings = settings_from()
    with embedded_server(args.data, auth=args.auth, settings=settings) as server:
        server.compact_at_close = False  # SIGTERM stops within seconds

        def ready(listening: Listening) -> None:
            server.publish(listening.url)  # <data>/server.json: local readers ask this server
            where = listening.describe()
            print(f"deardiary serving {Path(args.data).resolve()} on {where}", flush=True)

        serve(
            server.app(bind_host=args.host),
            args.host,
            args.port,
            ready=ready,
            settings=settings,
            on_shutdown=[server.sandbox.interrupt_all],
        )
    return exit_soon(0)  # even if a worker thread is stuck in native code


def _serve_kafka(args: argparse.Namespace) -> int:
    from deardiary.services.http import serve
    from deardiary.services.http.runner import exit_soon
    from deardiary.services.kafka_mode.server import KafkaServer
    from deardiary.services.settings import settings_from

    settings = settings_from()
    server = KafkaServer(
        args.broker, Path(args.data), settings=settings, auth=args.auth, exports=args.exports
    )
    try:
        serve(
            server.app(bind_host=args.host),
            args.host,
            args.port,
            ready=lambda listening: print(
                f"deardiary serving {args.broker} on {listening.describe()}", flush=True
            ),
            settings=settings,
            on_shutdown=[server.sandbox.interrupt_all],
        )
    finally:
        server.close()
    return exit_soon(0)


def _cmd_worker(args: argparse.Namespace) -> int:
    from deardiary.services.kafka_mode.worker import run_worker

    sys.argv = [sys.argv[0], "worker"]  # faust's worker reads its own argv
    run_worker(args.broker, Path(args.data), exports=args.exports)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="deardiary",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"deardiary {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="<command>")
    data = os.environ.get("DEARDIARY_DATA") or DEFAULT_DATA  # as `serve --data` reads it

    srv = sub.add_parser(
        "serve",
        help="run the server: ingest, the queryable tables and the HTTP API, in one process",
        description="Run the server on a data folder: it takes events from the SDK, keeps"
        " the queryable tables up to date and answers the HTTP API and web page. Every flag"
        " can also be set by its environment variable (in brackets).",
    )
    add_serve_flags(srv)
    srv.add_argument(
        "--exports",
        default=None,
        help="Kafka mode: read the workers' exports from s3://bucket/prefix, not --data",
    )
    srv.set_defaults(func=_cmd_serve)

    wrk = sub.add_parser(
        "worker", help="Kafka mode: fold partitions of the Kafka log into the shared --data"
    )
    wrk.add_argument("--broker", required=True, help="kafka://host:port[/topic?partitions=N]")
    wrk.add_argument("--data", default=data, help="shared data folder")
    wrk.add_argument("--exports", default=None, help="also publish exports to s3://bucket/prefix")
    wrk.set_defaults(func=_cmd_worker)

    sql = sub.add_parser(
        "sql", help="query the tables (metrics, iterations, params, ...) with read-only SQL"
    )
    sql.add_argument("query")
    sql.add_argument("--data", default=data, help="data folder (default %(default)s)")
    sql.add_argument("--format", choices=SQL_FORMATS, default="table")
    sql.set_defaults(func=_cmd_sql)

    st = sub.add_parser(
        "status",
        help="is the folder's server ready, how far behind is it, what did it refuse"
        " (exit 1: not ready)",
    )
    st.add_argument("--data", default=data, help="data folder (default %(default)s)")
    st.add_argument("--format", choices=["text", "json"], default="text")
    st.set_defaults(func=_cmd_status)

    rep = sub.add_parser(
        "replay", help="rebuild the tables from the log into a new folder (or as of a past time)"
    )
    rep.add_argument("--data", default=data, help="data folder whose log is replayed")
    rep.add_argument("--broker", default=None, help="replay from kafka://host:port instead")
    rep.add_argument("--into", required=True, help="new folder for the rebuilt projections")
    rep.add_argument("--as-of", default=None, help="an offset, or an ISO-8601 time")
    rep.set_defaults(func=_cmd_replay)
    add_admin_commands(sub, data)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # deardiary's own notices (rebuild progress, parked records) on stderr; others' warnings
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("deardiary").setLevel(logging.INFO)
    try:
        code: int = args.func(args)
    except DearDiaryError as exc:
        print(f"error: {exc.code}: {exc.message}", file=sys.stderr)
        return 2
    except FileNotFoundError as exc:
        print(f"error: NOT_FOUND: {exc}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as exc:  # a client-only install asked for a server's part
        print(f"error: {missing_extra(exc)}", file=sys.stderr)
        return 2
    except OSError as exc:
        if exc.errno not in (errno.EADDRINUSE, errno.EACCES, errno.EADDRNOTAVAIL):
            raise
        where = f"{getattr(args, 'host', '')}:{getattr(args, 'port', '')}"
        reason = {
            errno.EADDRINUSE: "the address is already in use (another server?); choose"
            " another --port, or --port 0 for any free one",
            errno.EACCES: "permission denied (ports below 1024 need privileges)",
            errno.EADDRNOTAVAIL: "no such address on this machine (check --host)",
        }[exc.errno]
        print(f"error: cannot listen on {where}: {reason}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())
