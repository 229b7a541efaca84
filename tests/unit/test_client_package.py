"""The SDK's package: what `import deardiary` loads, and the layering of client/.

Structure, not timing (the milliseconds are the benchmark's): `client/` imports nothing
from `services/` or `projections/` at module level (only inside functions, for a local
folder or Kafka), and a trial that imports the SDK, connects over HTTP, logs, flushes
and reads JSON loads none of the server's modules nor Arrow, NumPy, DuckDB, httpx or TLS.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import textwrap
import threading
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

import deardiary as dd
from deardiary.services.http import start_in_thread
from deardiary.services.server import EmbeddedServer

ROOT = Path(__file__).resolve().parents[2]
SERVER_SIDE = ("deardiary.services", "deardiary.projections")
HEAVY = ("pyarrow", "numpy", "duckdb", "httpx", "aiohttp", "aiokafka", "boto3", "ssl")


def _module_level_imports(tree: ast.Module) -> Iterator[tuple[int, str]]:
    """(line, module) of every import that runs when the module is imported: outside
    functions, and not under `if TYPE_CHECKING:`."""

    def walk(nodes: list[ast.stmt]) -> Iterator[tuple[int, str]]:
        for node in nodes:
            if isinstance(node, ast.Import):
                yield from ((node.lineno, a.name) for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                yield node.lineno, node.module
            elif isinstance(node, ast.If):
                test = node.test
                checking = (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
                    isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
                )
                if not checking:
                    yield from walk(node.body)
                yield from walk(node.orelse)
            elif isinstance(node, ast.Try):
                for block in (node.body, node.orelse, node.finalbody):
                    yield from walk(block)
                for handler in node.handlers:
                    yield from walk(handler.body)
            elif isinstance(node, ast.ClassDef):
                yield from walk(node.body)

    yield from walk(tree.body)


def test_client_imports_nothing_of_the_server_at_module_level() -> None:
    found = []
    for path in sorted((ROOT / "client").rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for line, module in _module_level_imports(tree):
            if module.startswith(SERVER_SIDE):
                found.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    assert not found, "client/ must not import the server's modules:\n" + "\n".join(found)


def test_the_walk_sees_module_level_imports_and_skips_lazy_ones() -> None:
    tree = ast.parse(
        textwrap.dedent(
            """
            import deardiary.services.a
            from deardiary.projections import b
            if TYPE_CHECKING:
                from deardiary.services import c
            try:
                import deardiary.services.d
            except ImportError:
                pass
            def f():
                from deardiary.services import e
            """
        )
    )
    assert [m for _, m in _module_level_imports(tree)] == [
        "deardiary.services.a",
        "deardiary.projections",
        "deardiary.services.d",
    ]


@pytest.fixture
def url(tmp_path: Path) -> Iterator[str]:
    server = EmbeddedServer(tmp_path / "data")
    server.start()
    try:
        with start_in_thread(server.app()) as running:
            yield running.url
    finally:
        server.close()


TRIAL = """
import sys
import deardiary as dd
after_import = sorted(sys.modules)
c = dd.connect(sys.argv[1], spool_dir=sys.argv[2])
after_connect = sorted(sys.modules)
with c.start_iteration(project="p", experiment="e", params={"lr": 0.1}) as it:
    for step in range(100):
        it.log_metrics({"loss": 1 / (step + 1), "acc": step / 100}, step=step)
c.flush(timeout=60)
after_write = sorted(sys.modules)
with c.start_iteration(project="p", experiment="e", name="log lines") as it:
    it.log("done", level="WARNING")
c.flush(timeout=60)
items = c.get("/api/v1/iterations")["items"]
c.close()
from deardiary.schemas import rules
import json
print(json.dumps({"import": after_import, "connect": after_connect, "write": after_write,
                  "end": sorted(sys.modules), "iterations": len(items),
                  "key_pattern": rules._key_pattern.cache_info().currsize}))
"""


MACHINERY = (
    "deardiary.machinery",
    "deardiary.buffer",
    "deardiary.shipper",
    "deardiary.spool",
    "deardiary.snapshot",
    "deardiary.iteration",
    "deardiary.schemas.wire",
)

READ_ONLY = """
import json, os, sys, threading
import deardiary as dd
c = dd.connect(sys.argv[1], spool_dir=sys.argv[2])
items = c.get("/api/v1/iterations")["items"]
seen = {"flushed": c.flush(), "undelivered": c.undelivered(), "items": len(items),
        "threads": [t.name for t in threading.enumerate()],
        "spool_made": os.path.exists(sys.argv[2]), "modules": sorted(sys.modules)}
c.close()
print(json.dumps(seen))
"""


def test_a_client_that_only_reads_starts_no_logging_machinery(url: str, tmp_path: Path) -> None:
    """Connect, read, flush, close: no module of the logging machinery loaded, no shipper
    thread started, no spool folder made; a flush has nothing to wait for."""
    done = subprocess.run(
        [sys.executable, "-c", READ_ONLY, url, str(tmp_path / "spool")],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        check=True,
    )
    seen = json.loads(done.stdout)
    assert seen["items"] == 0 and seen["flushed"] == -1 and seen["undelivered"] == 0
    assert seen["threads"] == ["MainThread"] and not seen["spool_made"]
    assert not [m for m in seen["modules"] if m in MACHINERY]


def test_threads_writing_first_at_once_share_one_machinery(url: str, tmp_path: Path) -> None:
    client = dd.connect(url, spool_dir=tmp_path / "spool")
    start = threading.Barrier(8)
    buffers: list[object] = []

    def first_write(n: int) -> None:
        start.wait()
        buffers.append(client.buffer)
        with client.start_iteration(project="p", experiment="e", name=f"t{n}") as it:
            it.log_metric("loss", 1.0 / (n + 1), step=0)

    threads = [threading.Thread(target=first_write, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    client.flush(timeout=60)
    assert len({id(b) for b in buffers}) == 1 and buffers[0] is client.buffer
    assert len(client.get("/api/v1/iterations")["items"]) == 8
    client.close()


def test_a_trial_over_http_loads_no_server_module_nor_heavy_library(
    url: str, tmp_path: Path
) -> None:
    done = subprocess.run(
        [sys.executable, "-c", TRIAL, url, str(tmp_path / "spool")],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,  # not a git work tree: the snapshot starts no git
        check=True,
    )
    seen = json.loads(done.stdout)
    assert seen["iterations"] == 2
    assert seen["key_pattern"] == 0  # the keys' regular expression: the server's to compile
    for stage in ("import", "connect", "end"):
        loaded = [m for m in seen[stage] if m.startswith(SERVER_SIDE + HEAVY)]
        assert not loaded, f"after {stage}: {loaded}"
    # `import deardiary` leaves even the light parts to the first use
    lazy = ["socket", "logging", "hashlib", "subprocess", "importlib.metadata", "zlib"]
    lazy += ["fcntl"]  # the spool's lock: taken with its first file (it wrote none)
    lazy += ["deardiary.registry", "deardiary.lines"]  # the SDK's own, on first use
    assert not [m for m in seen["import"] if m in lazy]
    assert "fcntl" not in seen["end"]
    # the logging machinery and the event classes a trial writes load with the first write
    for stage in ("import", "connect"):
        assert not [m for m in seen[stage] if m in MACHINERY], stage
        # nor what only shipping needs: the log records' classes and `threading` (the
        # pool's, transport's and session's locks are `_thread`'s, which it re-exports)
        shipping = ["threading", "deardiary.schemas.records", "deardiary.schemas.envelope"]
        assert not [m for m in seen[stage] if m in shipping], stage
    assert not [m for m in MACHINERY if m not in seen["end"]]
    assert "deardiary.lines" in seen["end"]  # it.log(...) loaded it
    assert "deardiary.registry" not in seen["end"]  # no registry call: never loaded
    # nor the mixins' modules: media, checkpoints, management, system metrics; nor the
    # local and Kafka readers (its JSON read went through the HTTP reader, in transport.py)
    mixins = ["deardiary.media", "deardiary.checkpoints", "deardiary.manage"]
    assert not [m for m in seen["end"] if m in [*mixins, "deardiary.system_metrics"]]
    assert "deardiary.reads" not in seen["end"]
    # A trial's events (project, experiment, iteration, params, metrics, environment, end)
    # are written as dicts (schemas/wire.py): no event class, no msgspec, no `typing` ...
    assert not [m for m in seen["write"] if m.split(".")[0] in ("msgspec", "typing")]
    assert not [m for m in seen["write"] if m.startswith("deardiary.schemas.events.")]
    # ... nor do it.log(...)'s lines, nor the reads after (no union: it decodes no event)
    assert not [m for m in seen["end"] if m.startswith("deardiary.schemas.events.")]
    assert "_socket" in seen["end"]  # it did talk over the network ...
    assert "socket" not in seen["end"]  # ... on the C socket (`socket` builds enums: ~5 ms)
    # ... to 127.0.0.1 without the idna codec (getaddrinfo of a str host loads it)
    assert not [m for m in seen["end"] if m in ("encodings.idna", "stringprep", "unicodedata")]


# Standard-library modules that `import deardiary` must leave to first use: each costs
# a trial process a millisecond or more (pathlib pulls urllib.parse and ipaddress).
LAZY_STDLIB = (
    "pathlib",
    "urllib.parse",
    "ipaddress",
    "json",
    "weakref",
    "importlib.util",
    "importlib.metadata",
    "socket",
    "ssl",
    "logging",
    "hashlib",
    "zlib",
    "subprocess",
    "tempfile",
    "shutil",
    "inspect",
)


def _installed_layout(view: Path) -> Path:
    """A tree laid out as a wheel installs `deardiary` (symlinks to the source folders),
    so the import is measured without the editable install's finder, which itself loads
    pathlib and urllib.parse at start-up."""
    mapping = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-dir"
    ]
    root = view / "deardiary"
    root.mkdir(parents=True)
    for item in (ROOT / mapping["deardiary"]).iterdir():
        (root / item.name).symlink_to(item)
    for name, folder in mapping.items():
        if name != "deardiary":
            (view / name.replace(".", "/")).symlink_to(ROOT / folder)
    return view


def _msgspec_alone(folder: Path) -> Path:
    """A folder with msgspec and nothing else: what `pip install deardiary` installs
    beside the SDK (none of the dev environment's packages, typing_extensions among them)."""
    import msgspec

    folder.mkdir(parents=True)
    (folder / "msgspec").symlink_to(Path(msgspec.__file__).resolve().parent)
    return folder


def test_import_deardiary_as_installed_leaves_heavy_stdlib_to_first_use(tmp_path: Path) -> None:
    view = _installed_layout(tmp_path / "site")
    site = _msgspec_alone(tmp_path / "deps")
    probe = (
        "import sys; sys.path[:0] = sys.argv[1:3]\n"
        "import msgspec  # its own imports (typing, and inspect with typing_extensions)\n"
        "before = set(sys.modules)\n"
        "import deardiary\n"
        "print('\\n'.join(sorted(set(sys.modules) - before)))"
    )
    done = subprocess.run(
        [sys.executable, "-S", "-c", probe, str(view), str(site)],  # -S: no site, no finder
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        check=True,
    )
    loaded = done.stdout.split()
    assert "deardiary.client" in loaded
    assert not [m for m in loaded if m in LAZY_STDLIB or m.startswith(SERVER_SIDE + HEAVY)]


def test_a_trial_as_installed_loads_neither_msgspec_nor_typing_nor_json_nor_idna(
    url: str, tmp_path: Path
) -> None:
    """A whole trial (import, connect, an iteration with its environment snapshot, points,
    the exit flush) from the installed layout: the standard library it needs and no more.
    Not even msgspec, installed beside it: its events are written, and the server's
    acknowledgements read, by `schemas/wire.py` (msgspec's import with `typing`,
    `datetime`, `uuid`, `decimal` cost each trial ~20 ms of CPU)."""
    view = _installed_layout(tmp_path / "site")
    site = _msgspec_alone(tmp_path / "deps")
    probe = (
        "import sys, atexit; sys.path[:0] = sys.argv[1:3]\n"
        "atexit.register(lambda: print('\\n'.join(sorted(sys.modules))))  # runs last\n"
        "import deardiary as dd\n"
        "c = dd.connect(sys.argv[3], spool_dir=sys.argv[4])\n"
        "with c.start_iteration(project='p', experiment='e', params={'lr': 0.1}) as it:\n"
        "    for step in range(100):\n"
        "        it.log_metrics({'loss': 1 / (step + 1), 'acc': step / 100}, step=step)\n"
    )
    args = [str(view), str(site), url, str(tmp_path / "spool")]
    done = subprocess.run(
        [sys.executable, "-S", "-c", probe, *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,  # not a git work tree: the snapshot starts no git
        check=True,
    )
    loaded = done.stdout.split()
    assert "_socket" in loaded and "deardiary.environment" in loaded  # it sent, it snapshot
    heavy = ["pathlib", "urllib.parse", "ipaddress", "json", "encodings.idna", "unicodedata"]
    heavy += ["socket", "selectors"]  # http:// needs only the C socket
    heavy += ["msgspec", "typing", "re", "datetime", "decimal", "uuid", "platform"]
    assert not [m for m in loaded if m.split(".")[0] in heavy or m in heavy]


def test_the_version_is_the_distributions() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert dd.__version__ == project["version"]


def test_plain_install_needs_msgspec_only_and_extras_name_the_rest() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert [d.split(">")[0] for d in project["dependencies"]] == ["msgspec"]
    extras = project["optional-dependencies"]
    server = " ".join(extras["server"])
    assert all(name in server for name in ("duckdb", "pyarrow", "aiohttp"))
    assert any("aiokafka" in d for d in extras["kafka"])
    assert any("boto3" in d for d in extras["s3"])
    assert any(d.startswith("deardiary[") and "server" in d for d in extras["dev"])


MIXINS = {
    "Client": [
        ("manage", "ManageMixin"),
        ("manage", "CloneMixin"),
        ("checkpoints", "ClientCheckpointsMixin"),
    ],
    "Iteration": [
        ("media", "MediaMixin"),
        ("checkpoints", "CheckpointMixin"),
        ("system_metrics", "SystemMetricsMixin"),
    ],
}
LOADED = {  # what the first lookup loads: the mixins' modules and theirs (checkpoints':)
    "Client": ["checkpoints", "manage", "media"],
    "Iteration": ["checkpoints", "manage", "media", "system_metrics"],
}

LAZY_PROBE = """
import json, sys
import deardiary as dd
def mixin_modules():
    names = ("media", "checkpoints", "manage", "system_metrics")
    return sorted(n for n in names if "deardiary." + n in sys.modules)
seen = {"import": mixin_modules()}
getattr(dd, sys.argv[1]).__dict__  # the class itself: nothing loaded
seen["dict"] = mixin_modules()
try:
    getattr(dd, sys.argv[1]).no_such_name
except AttributeError as exc:
    seen["missing"] = str(exc)
seen["after"] = mixin_modules()
print(json.dumps(seen))
"""


@pytest.mark.parametrize("cls", sorted(MIXINS))
def test_the_mixins_load_on_first_use_and_are_the_real_ones(cls: str) -> None:
    """Client's and Iteration's mixin methods (management, checkpoints, media, system
    metrics) are the mixins' own functions, by class and by instance, in MRO order, in
    dir(); their modules load at the first name looked up, not at import."""
    seen = json.loads(
        subprocess.run(
            [sys.executable, "-c", LAZY_PROBE, cls], capture_output=True, text=True, check=True
        ).stdout
    )
    assert seen["import"] == seen["dict"] == []
    assert seen["missing"] == f"type object {cls!r} has no attribute 'no_such_name'"
    assert seen["after"] == LOADED[cls]

    import importlib

    klass = getattr(dd, cls)
    owner: dict[str, object] = {}
    for module, name in reversed(MIXINS[cls]):  # the first mixin's names win
        mixin = getattr(importlib.import_module(f"deardiary.{module}"), name)
        owner.update({k: v for k, v in vars(mixin).items() if not k.startswith("__")})
    assert owner
    for name, value in owner.items():
        if name not in vars(klass):  # the class's own method (Iteration.set_tags) wins
            assert getattr(klass, name) is value, name
            assert name in dir(klass)


def test_an_instance_finds_a_mixin_method_first(tmp_path: Path) -> None:
    probe = """
import sys, tempfile
import deardiary as dd
c = dd.connect(sys.argv[1], spool_dir=sys.argv[2])
it = c.start_iteration(project="p", experiment="e", capture_env=False)
assert "deardiary.media" not in sys.modules
assert it.log_text.__func__.__qualname__ == "MediaMixin.log_text"
assert c.retain_checkpoints.__func__.__qualname__ == "ClientCheckpointsMixin.retain_checkpoints"
try:
    it.no_such_name
except AttributeError as exc:
    assert str(exc) == "'Iteration' object has no attribute 'no_such_name'", exc
else:
    raise AssertionError("no AttributeError")
it.end()
c.close()
"""
    subprocess.run(
        [sys.executable, "-c", probe, str(tmp_path / "data"), str(tmp_path / "spool")],
        check=True,
        timeout=120,
    )


GC_PROBE = """
import gc, json, sys, weakref
import msgspec  # its own import is not ours to count
if sys.argv[1] == "off":
    gc.disable()
class Node:
    pass
def garbage():  # a cycle, unreachable once made
    node = Node()
    node.self = node
    return weakref.ref(node)
made_before = garbage()
runs = []
gc.callbacks.append(lambda phase, info: phase == "start" and runs.append(info["generation"]))
import deardiary
seen = {"runs": runs[:], "enabled": gc.isenabled(), "frozen": gc.get_freeze_count()}
seen["before_collected"] = made_before() is None  # by the import's own collection
seen["client_frozen"] = gc.is_tracked(deardiary.Client) and not any(
    o is deardiary.Client for o in gc.get_objects()  # the permanent generation's are not listed
)
made_after = garbage()
gc.collect()
seen["after_collected"] = made_after() is None
print(json.dumps(seen))
"""


@pytest.mark.parametrize("state", ["on", "off"])
def test_the_import_freezes_what_it_made_and_leaves_the_collector_as_it_was(state: str) -> None:
    """`import deardiary` (msgspec, the schemas and the SDK: thousands of lasting objects)
    pauses the cyclic collector, which ran 7 young collections during it for nothing to
    collect, and, when the collector was on, collects what was garbage before it (one full
    collection) and freezes what is alive at its end, so later collections -- the
    interpreter's exit's among them -- skip those objects; garbage made afterwards is
    collected as before. With the collector off it collects and freezes nothing and
    leaves it off."""
    seen = json.loads(
        subprocess.run(
            [sys.executable, "-c", GC_PROBE, state], capture_output=True, text=True, check=True
        ).stdout
    )
    assert seen["enabled"] == (state == "on")
    assert seen["after_collected"]
    if state == "on":
        assert seen["runs"] == [2]
        assert seen["before_collected"]
        assert seen["client_frozen"] and seen["frozen"] > 1000
    else:
        assert seen["runs"] == []
        assert not seen["before_collected"]
        assert not seen["client_frozen"] and seen["frozen"] == 0


FIRST_WRITE_GC_PROBE = """
import gc, json, sys, weakref
import deardiary as dd
class Node:
    pass
node = Node()  # the program's own, alive at the first write ...
node.self = node
alive = weakref.ref(node)
client = dd.connect(sys.argv[1], spool_dir=sys.argv[2])
frozen = gc.get_freeze_count()
client.start_iteration(project="p", experiment="e").end()
seen = {"enabled": gc.isenabled(), "grew": gc.get_freeze_count() - frozen}
del node  # ... and cyclic garbage after it
gc.collect()
seen["collected"] = alive() is None
client.close()
print(json.dumps(seen))
"""


def test_the_first_write_freezes_nothing_of_the_program(url: str, tmp_path: Path) -> None:
    """The first write loads the logging machinery with the collector paused and turns
    it back on, but freezes nothing: an object the program held then and dropped later
    in a reference cycle is collected (a frozen one never would be)."""
    seen = json.loads(_probe(FIRST_WRITE_GC_PROBE, url, tmp_path))
    # (frozen objects freed by reference counting leave the count: it may fall)
    assert seen["enabled"] and seen["grew"] <= 0 and seen["collected"]


FINALIZER_PROBE = """
import gc, sys
import deardiary as dd
client = dd.connect(sys.argv[1], spool_dir=sys.argv[2])
class Writer:  # garbage whose finalizer writes, whenever a collection runs it
    def __del__(self):
        client.start_iteration(project="p", experiment="e", name="from a finalizer").end()
w = Writer()
w.self = w
del w
client.start_iteration(project="p", experiment="e", name="first").end()
gc.collect()  # if no collection ran it yet
client.flush(timeout=60)
print(len(client.get("/api/v1/iterations")["items"]))
client.close()
"""


def test_a_finalizer_writing_during_the_first_writes_collection_does_not_deadlock(
    url: str, tmp_path: Path
) -> None:
    """A finalizer writing to the client neither waits forever nor is lost, whenever a
    collection runs it: the first write holds the client's lock with the collector
    paused, so none runs while it is held (one that did hung on a lock its own thread
    held, on 68e7d8b)."""
    assert _probe(FINALIZER_PROBE, url, tmp_path).split() == ["2"]


def _probe(script: str, url: str, tmp_path: Path) -> str:
    """The stdout of `script` run as `python -c script URL SPOOL_DIR` in `tmp_path`."""
    return subprocess.run(
        [sys.executable, "-c", script, url, str(tmp_path / "spool")],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
        cwd=tmp_path,
    ).stdout


def test_names_moved_off_the_write_path_still_import_from_where_they_were() -> None:
    """The Protocol, the bounds and the iteration status moved to modules a trial process
    can import without `typing` or msgspec; their old homes still give them."""
    from deardiary.schemas import bounds, iteration_status, wire
    from deardiary.schemas.envelope import SCHEMA_VERSION
    from deardiary.schemas.events.iterations import IterationStatus
    from deardiary.schemas.events.metrics import AUTO_STEP
    from deardiary.schemas.limits import MAX_STEP
    from deardiary.transport import Transport
    from deardiary.transport_protocol import Transport as Protocol

    assert Transport is Protocol is dd.Transport
    assert IterationStatus is iteration_status.IterationStatus is dd.IterationStatus
    assert (AUTO_STEP, MAX_STEP, SCHEMA_VERSION) == (
        bounds.AUTO_STEP,
        bounds.MAX_STEP,
        wire.SCHEMA_VERSION,
    )
