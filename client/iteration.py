"""An iteration (run, trial) handle: log into it, and end it when the block ends.

Used as a context manager: a normal exit marks it SUCCEEDED, an exception FAILED
with the error text (and the exception propagates), KeyboardInterrupt KILLED.
"""

from __future__ import annotations

from deardiary.schemas import events
from deardiary.schemas.iteration_status import IterationStatus

from .mixins import lazy_mixins

TYPE_CHECKING = False
if TYPE_CHECKING:  # `typing` costs a trial process milliseconds to import
    from collections.abc import Mapping
    from pathlib import Path
    from types import TracebackType
    from typing import Any

    from .capture import OutputCapture
    from .client import Client
    from .handler import DiaryHandler
    from .lines import LogLines


if TYPE_CHECKING:
    from .checkpoints import CheckpointMixin
    from .media import MediaMixin
    from .system_metrics import SystemMetricsMixin

    class _Mixins(MediaMixin, CheckpointMixin, SystemMetricsMixin):
        pass

else:
    _Mixins = lazy_mixins(
        ("media", "MediaMixin"),
        ("checkpoints", "CheckpointMixin"),
        ("system_metrics", "SystemMetricsMixin"),
    )


class Iteration(_Mixins):
    def __init__(
        self,
        client: Client,
        iteration_id: str,
        experiment_id: str,
        project_id: str,
        capture_output: bool = False,
    ) -> None:
        self.client = client
        self.id = iteration_id
        self.experiment_id = experiment_id
        self.project_id = project_id
        self.ended = False
        self._capture: OutputCapture | None = None
        if capture_output:
            from .capture import OutputCapture

            self._capture = OutputCapture(client.buffer, iteration_id)
        self._lines: LogLines | None = None
        # The instance's own log_metric (the method below says what it does): bound to
        # this iteration's id in the buffer, one Python call a point instead of three.
        self.log_metric = client.buffer.metric_logger(iteration_id)  # type: ignore[method-assign]
        self.log_metrics = client.buffer.metrics_logger(iteration_id)  # type: ignore[method-assign]

    # -- logging: every call only appends to the client's buffer ----------------
    def log_metric(self, key: str, value: float, step: int | None = None, group: str = "") -> None:
        """Append one point (~1 µs, never waits on the network); `step=None` is the key's
        next step. A bad key or value is dropped and raised by the next flush. (Each
        instance calls its buffer's `metric_logger`, set in __init__, which does this.)"""
        self.client.buffer.log_metric(self.id, key, value, step, group)

    def log_metrics(
        self, metrics: Mapping[str, float], step: int | None = None, group: str = ""
    ) -> None:
        """Several keys at one step (and time), in one call: a training loop's usual call.
        (Each instance calls its buffer's `metrics_logger`, set in __init__.)"""
        self.client.buffer.log_metrics(self.id, metrics, step, group)

    def log(
        self,
        text: str,
        level: int | str = "INFO",
        *,
        source: str = "log",
        at: float | None = None,
    ) -> None:
        """A log line of this iteration at `level` (a name like ``"WARNING"`` or a
        `logging` level number); `at` is its time in seconds since the epoch (now when
        not given). Batched with the iteration's other lines, never sent on its own."""
        from .lines import LogLines, level_name  # on first use: a sweep trial rarely logs text

        lines = self._lines
        if lines is None:
            lines = self._lines = LogLines(self.client.buffer, self.id)
        time_us = None if at is None else int(at * 1_000_000)
        lines.add(source, level_name(level), str(text), time_us)

    def log_handler(self, level: int | str = 0) -> DiaryHandler:
        """A `logging.Handler` sending records to this iteration (add it to a logger)."""
        from .handler import DiaryHandler

        return DiaryHandler(self, level)

    def log_params(self, params: Mapping[str, Any], section: str = "") -> None:
        """Write-once per (section, key): logging a different value for a key later is a
        recorded conflict; the same key in another section is another param. Nested dicts
        become dotted keys ("optimizer.lr") and the whole config is kept; each value's
        type (int, float, bool, ...) is kept beside its text."""
        if params:
            from .config import flatten

            values, types, config = flatten(params)
            body = {  # a dict: see `EventBuffer.emit_body` (every field of ParamsLogged)
                "type": "params_logged",
                "iteration_id": self.id,
                "params": values,
                "section": section,
                "types": types,
                "config": config,
            }
            self.client.buffer.emit_body(body, self.id)

    def log_param(self, key: str, value: Any) -> None:
        self.log_params({key: value})

    def set_tags(self, tags: Mapping[str, str]) -> None:
        self.client.buffer.emit(
            events.TagsSet(entity=events.EntityKind.ITERATION, entity_id=self.id, tags=dict(tags))
        )

    def set_notes(self, notes: str) -> None:
        self.client.buffer.emit(
            events.NotesSet(entity=events.EntityKind.ITERATION, entity_id=self.id, notes=notes)
        )

    def set_metadata(self, metadata: Mapping[str, Any]) -> None:
        self.client.buffer.emit(
            events.MetadataSet(
                entity=events.EntityKind.ITERATION, entity_id=self.id, metadata=dict(metadata)
            )
        )

    def log_artifact(self, path: str | Path, name: str | None = None, description: str = "") -> str:
        """Upload a file as an artifact of this iteration; returns the artifact id."""
        from pathlib import Path

        file = Path(path)
        result = self.client.registry.log_artifact(
            self.experiment_id, self.id, file, name or file.name, description
        )
        return str(result["artifact_id"])

    def register_model(
        self, model: str, artifact_id: str | None = None, description: str = ""
    ) -> str:
        """Register a new version of `model` in this iteration's project, with lineage to it."""
        project = self.client.project_names[self.project_id]
        return self.client.registry.register_version(
            project, model, iteration_id=self.id, artifact_id=artifact_id, description=description
        )

    # -- lifecycle ----------------------------------------------------------------
    def end(self, status: IterationStatus = IterationStatus.SUCCEEDED, error: str = "") -> None:
        if self.ended:
            return
        self.ended = True
        if self._capture is not None:
            self._capture.__exit__(None, None, None)
        if self._lines is not None:
            self._lines.close()  # lines logged so far come before the end
        self.client.snapshot.before_end(self.id)  # a short script's snapshot, too
        self.client.shipper.stop_heartbeat(self.id)
        body = {  # a dict: see `EventBuffer.emit_body` (every field of IterationEnded)
            "type": "iteration_ended",
            "iteration_id": self.id,
            "status": status,
            "error_message": error,
        }
        self.client.buffer.emit_body(body, self.id)

    def __enter__(self) -> Iteration:
        if self._capture is not None:
            self._capture.__enter__()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None:
            self.end(IterationStatus.SUCCEEDED)
        elif isinstance(exc, KeyboardInterrupt):
            self.end(IterationStatus.KILLED, "KeyboardInterrupt")
        else:
            import traceback

            trace = "".join(traceback.format_exception(exc_type, exc, tb))
            text = f"{type(exc).__name__}: {exc}\n\n{trace[-16_000:]}"
            self.end(IterationStatus.FAILED, text)
        # No flush here: the shipper sends in the background, and errors are the next
        # explicit flush()'s to raise — never swallowed, never thrown into the training code.
