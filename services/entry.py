"""The `deardiary` command's entry point, importable from a client-only install.

`deardiary --version` answers at once; every other command loads the CLI, and when an
optional part is not installed (`pip install deardiary` is the SDK alone) says which
extra to install, in one line instead of a traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from deardiary.version import __version__

_EXTRAS = {"aiokafka": "kafka", "faust": "kafka", "mode": "kafka", "boto3": "s3"}


def missing_extra(exc: ModuleNotFoundError) -> str:
    """What to install when a module of an optional part is missing."""
    name = (exc.name or "").split(".")[0]
    extra = _EXTRAS.get(name, "server")
    return (
        f"this needs the {extra} extra ({name or exc} is not installed):"
        f" pip install 'deardiary[{extra}]'"
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] in (["--version"], ["-V"]):
        print(f"deardiary {__version__}")
        return 0
    try:
        from deardiary.services.cli import main as run

        return run(args)
    except ModuleNotFoundError as exc:
        print(f"error: {missing_extra(exc)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
