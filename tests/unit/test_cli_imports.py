"""`deardiary worker` starts without the modules of the other commands.

A worker start took about 10 s on a busy machine, a good part of it importing the admin
commands, the auth routes, the embedded server's SQL sandbox and pandas, none of which
a worker runs. The command line now imports each command's modules when it runs."""

from __future__ import annotations

import subprocess
import sys

from deardiary.services import cli, formats

# What only other commands use: the worker must not load them to parse its command line
# and import its own module.
NOT_FOR_THE_WORKER = (
    "pandas",
    "deardiary.services.auth.routes",
    "deardiary.services.embedded",
    "deardiary.services.query.sandbox",
    "deardiary.services.status",
    "deardiary.services.http",
)


def test_the_worker_command_imports_only_what_it_runs() -> None:
    code = (
        "import sys\n"
        "from deardiary.services.cli import build_parser\n"
        "args = build_parser().parse_args(['worker', '--broker', 'kafka://127.0.0.1:1/t'])\n"
        "assert args.func.__name__ == '_cmd_worker'\n"
        "import deardiary.services.kafka_mode.worker\n"
        f"print(sorted(m for m in {NOT_FOR_THE_WORKER!r} if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_sql_formats_are_the_renderers() -> None:
    assert sorted(cli.SQL_FORMATS) == sorted(formats.RENDERERS)
