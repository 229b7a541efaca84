"""`dd.connect(...)` and the Client: fire-and-forget logging plus reads, local or remote.

`connect("path/to/folder")` writes straight into an embedded data folder (no server);
`connect("http://host:9000")` talks to `deardiary serve`. Both ship through the same
buffer, spool and background shipper; only the transport and the reader differ.
"""

from __future__ import annotations

import gc
import sys
from _thread import allocate_lock

from deardiary.schemas import ids
from deardiary.schemas.errors import InvalidArgument

from .auth import Session, SessionTransport
from .mixins import lazy_mixins
from .pool import HttpPool
from .transport import HttpReader, HttpTransport, LocalTransport

TYPE_CHECKING = False
if TYPE_CHECKING:  # `typing` costs a trial process milliseconds to import
    from collections.abc import Mapping
    from pathlib import Path
    from typing import Any

    import pyarrow as pa

    from deardiary.schemas.events import Environment

    from .buffer import EventBuffer
    from .iteration import Iteration
    from .machinery import Machinery
    from .reads import Reader
    from .registry import Registry
    from .shipper import Shipper
    from .snapshot import EnvironmentSnapshot
    from .spool import Spool
    from .transport import Acked
    from .transport_protocol import Transport


def _looks_like_host_port(target: str) -> bool:
    """ "localhost:9311", "10.0.0.5:9000", "[::1]:9000": a server address without its
    scheme (a Windows drive "C:\\x" or a plain folder name is not)."""
    host, sep, port = target.rstrip("/").rpartition(":")
    if not sep or not port.isdigit() or len(port) > 5 or not host:
        return False
    if host.startswith("[") and host.endswith("]"):
        return True
    return host[0].isalnum() and all(c.isalnum() or c in ".-" for c in host)


if TYPE_CHECKING:
    from .checkpoints import ClientCheckpointsMixin
    from .manage import CloneMixin, ManageMixin

    class _Mixins(ManageMixin, CloneMixin, ClientCheckpointsMixin):
        pass

else:  # loaded on first use (a sweep's trial uses none of them)
    _Mixins = lazy_mixins(
        ("manage", "ManageMixin"),
        ("manage", "CloneMixin"),
        ("checkpoints", "ClientCheckpointsMixin"),
    )


def _drain_media(client: Client, raise_error: bool = True) -> None:
    """Media logged so far: stored, and their events in the buffer. A process that logged
    none never loaded the media module (nor loads it here)."""
    media = sys.modules.get(f"{__package__}.media")
    if media is not None:
        media.drain(client, raise_error)


class Client(_Mixins):
    """A connection handle: where it points, who it is, and the logging machinery, made
    when the client first writes (`client/machinery.py`; the management verbs -- set_tags,
    rename, delete, move, ... -- come from ManageMixin; checkpoints, retention and
    downloads from ClientCheckpointsMixin)."""

    def __init__(
        self,
        url: str,
        transport: Transport,
        reader: Reader,
        *,
        token: str | None = None,
        actor: str = "",
        spool_dir: str | Path | None = None,
        max_buffer_points: int = 1_000_000,
        flush_interval: float = 0.2,
        heartbeat_interval: float = 10.0,
        exit_timeout: float = 10.0,
    ) -> None:
        """`exit_timeout`: how long the end of the process (or `close()` without a
        timeout) keeps trying to deliver before leaving the rest in the spool."""
        self.url = url
        self.token = token
        self.expires_at: int | None = None
        self.user = actor
        self.reader = reader
        self.session: Session | None = None
        self._registry: Registry | None = None
        self.project_names: dict[str, str] = {}
        self._transport = transport
        self._machinery_options: dict[str, Any] = {
            "actor": actor,
            "spool_dir": spool_dir,
            "max_buffer_points": max_buffer_points,
            "flush_interval": flush_interval,
            "heartbeat_interval": heartbeat_interval,
            "exit_timeout": exit_timeout,
        }
        self._machinery: Machinery | None = None
        self._making = allocate_lock()

    def _logging(self) -> Machinery:
        """The logging machinery, made by the first write (of any thread) and kept."""
        machinery = self._machinery
        if machinery is None:
            # The collector paused meanwhile: its modules load as at `import deardiary`
            # (see there), and no collection runs finalizers -- which may write to this
            # client -- while its lock is held. Nothing is frozen: by a first write the
            # program holds its own objects (a model, a dataset, an in-process sweep's
            # first trial), and freezing them would keep any that later become cyclic
            # garbage for good (freezing the machinery saved ~0.5% of a sweep trial's
            # instructions).
            collecting = gc.isenabled()
            gc.disable()
            try:
                with self._making:
                    machinery = self._machinery
                    if machinery is None:
                        from .machinery import Machinery

                        machinery = Machinery(self.url, self._transport, **self._machinery_options)
                        self._machinery = machinery
            finally:
                if collecting:
                    gc.enable()
        return machinery

    @property
    def buffer(self) -> EventBuffer:
        return self._logging().buffer

    @property
    def shipper(self) -> Shipper:
        return self._logging().shipper

    @property
    def spool(self) -> Spool:
        return self._logging().spool

    @property
    def snapshot(self) -> EnvironmentSnapshot:
        return self._logging().snapshot

    @property
    def registry(self) -> Registry:
        """The model registry's calls (made on first use: a sweep trial never loads them)."""
        registry = self._registry
        if registry is None:
            from .registry import Registry

            registry = self._registry = Registry(self)  # stateless: a race makes two, harmless
        return registry

    # -- writing --------------------------------------------------------------------
    def start_iteration(
        self,
        project: str,
        experiment: str,
        *,
        name: str = "",
        params: Mapping[str, Any] | None = None,
        tags: Mapping[str, str] | None = None,
        parent: Iteration | str | None = None,
        external_id: str | None = None,
        notes: str = "",
        metadata: Mapping[str, Any] | None = None,
        capture_output: bool = False,
        capture_env: bool = True,
        system_metrics: bool = False,
        system_metrics_interval_s: float = 10.0,
    ) -> Iteration:
        """Start (or, with the same external_id, resume) an iteration; use it with `with`.
        `system_metrics`: sample CPU, memory, disk, network (and GPUs) every
        `system_metrics_interval_s` into the metric group "system" (needs psutil)."""
        if not project or not experiment:
            raise InvalidArgument("project and experiment names are required")
        from .iteration import Iteration

        project_id = ids.project_id(project)
        self.project_names[project_id] = project
        experiment_id = ids.experiment_id(project_id, experiment)
        iteration_id = (
            ids.iteration_id_for_external(experiment_id, external_id)
            if external_id
            else ids.new_id()
        )
        parent_id = parent.id if isinstance(parent, Iteration) else parent
        machinery = self._logging()
        # The events as dicts (`schemas/wire.py`), each with every field of its type
        # (schemas/events/projects.py, iterations.py) in the type's order.
        emit = machinery.buffer.emit_body
        emit(
            {
                "type": "project_created",
                "project_id": project_id,
                "name": project,
                "description": "",
            },
            project_id,
        )
        emit(
            {
                "type": "experiment_created",
                "experiment_id": experiment_id,
                "project_id": project_id,
                "name": experiment,
                "description": "",
            },
            experiment_id,
        )
        emit(
            {
                "type": "iteration_started",
                "iteration_id": iteration_id,
                "experiment_id": experiment_id,
                "project_id": project_id,
                "name": name,
                "parent_iteration_id": parent_id,
                "external_id": external_id,
                "notes": notes,
                "tags": dict(tags or {}),
                "metadata": dict(metadata or {}),
                "environment": None,
                "cloned_from": None,
            },
            iteration_id,
        )
        iteration = Iteration(self, iteration_id, experiment_id, project_id, capture_output)
        if params:
            iteration.log_params(params)
        machinery.shipper.start_heartbeat(iteration_id)
        if capture_env:  # taken once per process, off the training thread
            machinery.snapshot.request(iteration_id)
        if system_metrics:
            iteration.start_system_metrics(system_metrics_interval_s)
        return iteration

    def flush(self, timeout: float | None = None) -> int:
        """Block until everything logged so far is durable in the log; returns its offset
        (-1 when this client wrote nothing). With a `timeout`, raises `Unavailable` saying
        how many events wait, and where, when they are not acknowledged in time (they
        stay in the spool)."""
        _drain_media(self)
        machinery = self._machinery
        return -1 if machinery is None else machinery.shipper.flush(timeout)

    def undelivered(self) -> int:
        """How many events are logged but not acknowledged yet (buffered or spooled)."""
        machinery = self._machinery
        return 0 if machinery is None else machinery.shipper.undelivered()

    # -- reading --------------------------------------------------------------------
    def _written(self) -> Acked:
        """Flush, then where this client's writes landed: reads wait for them."""
        self.flush()
        machinery = self._machinery
        return {} if machinery is None else machinery.shipper.acked

    def sql(self, query: str) -> pa.Table:
        """Read-only SQL over the projections, after this client's writes are visible."""
        return self.reader.sql(query, self._written())

    def metric_history(
        self,
        iteration_id: str,
        key: str,
        max_points: int | None = None,
        *,
        group: str = "",
        min_step: int | None = None,
        max_step: int | None = None,
    ) -> pa.Table:
        """Columns step, value, recorded_at (the log's time) and client_time (the
        caller's); downsampled keeping bucket min/max if asked. `group`: the series of a
        metric group ("val", "system"); `min_step`/`max_step`: a step window."""
        if group or min_step is not None or max_step is not None:
            from .series import metric_window

            return metric_window(self, iteration_id, key, max_points, group, min_step, max_step)
        return self.reader.metric_history(iteration_id, key, max_points, self._written())

    def get(self, path: str, **params: Any) -> Any:
        """Any JSON route of the query service, e.g. c.get("/api/v1/iterations", filter=...)."""
        return self.reader.get_json(path, params, self._written())

    def environment_of(self, iteration_id: str) -> Environment | None:
        import msgspec

        from deardiary.schemas.events import Environment

        rows = self.sql(
            f"SELECT environment FROM iterations WHERE iteration_id = '{_quoted(iteration_id)}'"
        ).to_pylist()
        if not rows or rows[0]["environment"] is None:
            return None
        return msgspec.json.decode(rows[0]["environment"], type=Environment)

    def restore(
        self, iteration: Iteration | str, directory: str | Path | None = None
    ) -> list[Path]:
        """With a `directory`: write the iteration's recorded dependency files, freeze list
        and git diff back to disk. Without: restore a deleted entity (any id; see
        `restore_entity`) and return []."""
        if directory is None:
            self.restore_entity(iteration)
            return []
        iteration_id = iteration if isinstance(iteration, str) else iteration.id
        from pathlib import Path

        from .environment import restore_environment

        env = self.environment_of(iteration_id)
        if env is None:
            raise InvalidArgument(f"iteration {iteration_id} has no recorded environment")
        return restore_environment(env, Path(directory))

    # -- administration (server only) ---------------------------------------------
    def _admin(self, method: str, path: str, **kwargs: Any) -> Any:
        if not isinstance(self.reader, HttpReader):
            raise InvalidArgument("administration goes through a server; locally use the CLI")
        return self.reader.request(method, path, **kwargs)

    def set_token(self, token: str) -> None:
        """Use a new bearer token from now on (spooled events are sent with it)."""
        if self.session is None:
            raise InvalidArgument("tokens are for server connections")
        self.session._token = token
        self.session.identify()
        self.token = token

    def create_user(self, username: str, password: str, admin: bool = False) -> dict[str, Any]:
        body = {"username": username, "password": password, "is_admin": admin}
        result: dict[str, Any] = self._admin("POST", "/api/v1/users", json=body)
        return result

    def change_password(self, username: str, password: str) -> None:
        self._admin("PUT", f"/api/v1/users/{username}/password", json={"password": password})

    def grant(
        self,
        username: str,
        project: str,
        *,
        create: bool = False,
        read: bool = False,
        update: bool = False,
        delete: bool = False,
    ) -> None:
        body = {
            "username": username,
            "project": project,
            "create": create,
            "read": read,
            "update": update,
            "delete": delete,
        }
        self._admin("POST", "/api/v1/permissions", json=body)

    def revoke(self, username: str, project: str) -> None:
        self._admin(
            "DELETE", "/api/v1/permissions", params={"username": username, "project": project}
        )

    def create_token(self, lifespan_s: int | None = 30 * 24 * 3600, description: str = "") -> str:
        """A new access token for this user; the secret is returned once, only here."""
        body = {"lifespan_s": lifespan_s, "description": description}
        return str(self._admin("POST", "/api/v1/tokens", json=body)["token"])

    def revoke_token(self, token: str) -> None:
        """Revoke by the token itself or its id."""
        token_id = token.split(".")[1] if token.startswith("dda.") else token
        self._admin("DELETE", f"/api/v1/tokens/{token_id}")

    def close(self, timeout: float | None = None) -> None:
        """Deliver what is pending (for at most `timeout` seconds, default the client's
        `exit_timeout`), then stop; what is left waits in the spool (and is said so)."""
        _drain_media(self, raise_error=False)
        if self._machinery is not None:
            self._machinery.shipper.close(timeout)
        self.reader.close()
        if self.session is not None:
            self.session.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _quoted(text: str) -> str:
    if not all(c.isalnum() or c in "-_" for c in text):
        raise InvalidArgument(f"not an id: {text!r}")
    return text


def connect(
    target: str = "./deardiary-data",
    *,
    token: str | None = None,
    username: str | None = None,
    password: str | None = None,
    actor: str = "",
    spool_dir: str | Path | None = None,
    max_buffer_points: int = 1_000_000,
    timeout: float = 30.0,
    **options: Any,
) -> Client:
    """A client for a data folder path, an ``http(s)://`` server URL or, to produce
    straight to Kafka, a ``kafka://`` URL (with ``query_url=`` for reads).

    Nothing waits on the network here unless credentials are given (then the token is
    checked, or the password signed in with, at once)."""
    if target.startswith(("http://", "https://")):
        url = target.rstrip("/")
        pool = HttpPool(url, timeout=timeout)  # one pool: ingest, sign-in and reads
        session = Session(
            url, token=token, username=username, password=password, timeout=timeout, pool=pool
        )
        if password is not None:
            session.login()
        elif token is not None:
            session.identify()
        transport = SessionTransport(
            HttpTransport(url, token=session.token, timeout=timeout, pool=pool), session
        )
        client = Client(
            url,
            transport,
            HttpReader(pool, session.token),
            token=session.token(),
            actor=session.username or actor,
            spool_dir=spool_dir,
            max_buffer_points=max_buffer_points,
            **options,
        )
        client.session = session
        client.expires_at = session.expires_at
        return client
    if target.startswith("kafka://"):
        from .kafka_transport import KafkaTransport
        from .reads import NoReader

        query_url = options.pop("query_url", None)
        reader: Reader = (
            HttpReader(HttpPool(query_url, timeout=timeout), lambda: token)
            if query_url
            else NoReader(target)
        )
        return Client(
            target,
            KafkaTransport(target),
            reader,
            actor=actor,
            spool_dir=spool_dir,
            max_buffer_points=max_buffer_points,
            **options,
        )
    if "://" in target:
        raise InvalidArgument(
            f"unsupported target {target!r}: use a folder path, http(s):// or kafka://"
        )
    from pathlib import Path  # not at import: a trial over HTTP never needs pathlib

    folder = Path(target).expanduser()
    if _looks_like_host_port(target) and not folder.is_dir():
        raise InvalidArgument(
            f"{target!r} looks like a server address: connect to 'http://{target.rstrip('/')}'"
            " (a path without a scheme is a local data folder)"
        )
    folder = folder.resolve()
    from .reads import LocalReader

    return Client(
        str(folder),
        LocalTransport(folder),
        LocalReader(folder, timeout),
        actor=actor,
        spool_dir=spool_dir,
        max_buffer_points=max_buffer_points,
        **options,
    )


def restore(
    iteration: Iteration | str, directory: str | Path, client: Client | None = None
) -> list[Path]:
    """Write an iteration's recorded dependency files, freeze list and git diff back.

    `iteration` is an Iteration handle, or an id together with the `client` to ask."""
    if not isinstance(iteration, str):
        return iteration.client.restore(iteration, directory)
    if client is None:
        raise InvalidArgument("restore(iteration_id, directory) needs client=")
    return client.restore(iteration, directory)
