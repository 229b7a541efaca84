"""Rich media from the SDK: images, figures, histograms, text samples and small tables.

`Iteration` takes `log_image`, `log_figure`, `log_histogram`, `log_text` and `log_table`
from `MediaMixin`. Bytes go into the content-addressed store first (the server's
POST .../blobs, or the data folder's own store), then a MediaLogged event naming them by
hash goes through the buffer like any metric; histograms travel whole in their event.
Without an explicit step, each media key counts its own steps from 0.

Nothing heavy is imported up front: numpy only for an array image or a histogram of
values, and a PIL image is saved through its own `save`.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from deardiary.schemas import events
from deardiary.schemas.errors import InvalidArgument

if TYPE_CHECKING:
    import weakref

    from .buffer import EventBuffer
    from .client import Client

INLINE_TEXT_CHARS = 64 * 1024
"""Text samples up to this long travel inline in their event; longer ones are stored."""
_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)


if TYPE_CHECKING:  # annotations only: a Protocol class costs every trial process
    # ~0.5M instructions to create
    class _Iteration(Protocol):
        client: Client
        id: str


class _Worker:
    """Encodes and uploads media off the training thread, in call order; a bounded queue
    (a slow server slows the loop down instead of filling memory). An error is kept and
    raised by the next `flush()`, never into training code."""

    QUEUE = 64

    def __init__(self) -> None:
        import queue

        self.queue: queue.Queue[Any] = queue.Queue(self.QUEUE)
        self.error: BaseException | None = None
        self.thread: threading.Thread | None = None
        self.lock = threading.Lock()

    def submit(self, job: Any) -> None:
        with self.lock:
            if self.thread is None:
                import atexit

                self.thread = threading.Thread(target=self._run, name="deardiary-media")
                self.thread.daemon = True
                self.thread.start()
                atexit.register(self.drain, False)  # before the shipper's own exit flush
        self.queue.put(job)

    def _run(self) -> None:
        while True:
            job = self.queue.get()
            try:
                job()
            except BaseException as exc:
                if self.error is None:
                    self.error = exc
            finally:
                self.queue.task_done()

    def drain(self, raise_error: bool = True) -> None:
        """Wait until every submitted item is stored and its event emitted."""
        if self.thread is None:
            return
        self.queue.join()
        error, self.error = self.error, None
        if error is not None and raise_error:
            raise error


class _State:
    """Per client: iterations already in the log (uploads need them there), the next
    automatic step of each (iteration, media key), and the background worker."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.logged: set[str] = set()
        self.steps: dict[tuple[str, str], int] = {}
        self.worker = _Worker()


# weakref is imported with the first media call (not by `import deardiary`)
_STATES: weakref.WeakKeyDictionary[Client, _State] | None = None
_STATES_LOCK = threading.Lock()


def _state(client: Client) -> _State:
    global _STATES
    with _STATES_LOCK:
        if _STATES is None:
            import weakref

            _STATES = weakref.WeakKeyDictionary()
        found = _STATES.get(client)
        if found is None:
            found = _STATES[client] = _State()
        return found


def _file_bytes(path: str | os.PathLike[str]) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def drain(client: Client, raise_error: bool = True) -> None:
    """Wait for media logged so far to be stored and their events emitted (flush calls
    this first); raises what went wrong in the background."""
    with _STATES_LOCK:
        state = _STATES.get(client) if _STATES is not None else None
    if state is not None:
        state.worker.drain(raise_error)


def background(client: Client, job: Any) -> None:
    _state(client).worker.submit(job)


def next_step(client: Client, iteration_id: str, key: str, step: int | None) -> int:
    """`step`, or the key's next automatic step (after the highest one seen)."""
    state = _state(client)
    with state.lock:
        if step is None:
            step = state.steps.get((iteration_id, key), -1) + 1
        if step < 0:
            raise InvalidArgument(f"a media step must be >= 0, not {step}")
        state.steps[(iteration_id, key)] = max(step, state.steps.get((iteration_id, key), -1))
        return step


def store_content(client: Client, iteration_id: str, data: bytes) -> tuple[str, int]:
    """Put bytes into the content-addressed store the client writes to; (sha256, size)."""
    from .reads import HttpReader

    reader = client.reader
    if isinstance(reader, HttpReader):
        state = _state(client)
        if iteration_id not in state.logged:
            # the server checks the iteration: it must be in the log first (the shipper's
            # own flush: this may run on the media worker, which flush() waits for)
            client.shipper.flush()
            with state.lock:
                state.logged.add(iteration_id)
        answer = reader.request("POST", f"/api/v1/iterations/{iteration_id}/blobs", content=data)
        return str(answer["content_hash"]), int(answer["size_bytes"])
    if "://" in client.url:
        raise InvalidArgument("media and checkpoints need a server (query_url=...) or a folder")
    import io

    from deardiary.services.artifacts.fs import FsArtifactStore  # local-folder mode only

    blob = FsArtifactStore(os.path.join(client.url, "artifacts")).put(io.BytesIO(data))
    return blob.content_hash, blob.size_bytes


def png_bytes(array: Any) -> tuple[bytes, int, int]:
    """A numpy array (H x W gray, H x W x 1|3|4; uint8, or floats in [0, 1]) as PNG."""
    import struct
    import zlib  # here, not at `import deardiary`: a trial that logs no image skips them

    import numpy as np

    a = np.asarray(array)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (3, 4)):
        raise InvalidArgument(f"an image array is H x W or H x W x 1|3|4, not {a.shape}")
    if a.dtype != np.uint8:
        if np.issubdtype(a.dtype, np.floating):
            a = np.nan_to_num(a) * (255.0 if float(np.nanmax(a, initial=0.0)) <= 1.0 else 1.0)
        a = np.clip(a, 0, 255).astype(np.uint8)
    height, width = a.shape[:2]
    color = 0 if a.ndim == 2 else (2 if a.shape[2] == 3 else 6)
    rows = np.ascontiguousarray(a).reshape(height, -1)
    raw = np.concatenate([np.zeros((height, 1), np.uint8), rows], axis=1).tobytes()

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, color, 0, 0, 0)
    png = (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw, 3))
        + chunk(b"IEND", b"")
    )
    return png, width, height


def _image(image: Any) -> tuple[bytes, str, int, int]:
    """(bytes, media type, width, height) of an array, a PIL image, a file or bytes."""
    import struct

    if isinstance(image, str | os.PathLike):
        image = _file_bytes(image)
    if isinstance(image, bytes | bytearray | memoryview):
        data = bytes(image)
        for magic, media_type in _MAGIC:
            if data.startswith(magic):
                width = height = 0
                if media_type == "image/png" and len(data) >= 24:
                    width, height = struct.unpack(">II", data[16:24])
                return data, media_type, width, height
        if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
            return data, "image/webp", 0, 0
        raise InvalidArgument("image bytes must be PNG, JPEG, GIF or WebP")
    if hasattr(image, "save") and hasattr(image, "size"):  # a PIL image
        import io

        out = io.BytesIO()
        image.save(out, format="PNG")
        width, height = image.size
        return out.getvalue(), "image/png", int(width), int(height)
    data, width, height = png_bytes(image)
    return data, "image/png", width, height


def _figure_json(figure: Any) -> tuple[bytes, str]:
    """A Plotly figure or Vega-Lite spec (dicts, or objects that give one) as JSON."""
    import json

    for method in ("to_plotly_json", "to_dict"):
        if hasattr(figure, method):
            figure = getattr(figure, method)()
            break
    if not isinstance(figure, Mapping):
        raise InvalidArgument("a figure is a Plotly figure or a Vega-Lite spec (a dict)")
    schema = str(figure.get("$schema", ""))
    kind = "vega-lite" if "vega" in schema or "mark" in figure else "plotly"
    data = json.dumps(figure, default=_json_default, separators=(",", ":")).encode()
    return data, kind


def _json_default(value: Any) -> Any:
    """numpy arrays and numbers inside figures and tables."""
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON")


def _buffer(it: _Iteration) -> EventBuffer:
    return it.client.buffer


def _emit_json(
    it: _Iteration,
    key: str,
    step: int | None,
    kind: events.MediaKind,
    data: bytes,
    caption: str,
    metadata: dict[str, Any],
) -> None:
    """Store a JSON document (a figure, a table) and log it as media of `it`."""
    content_hash, size = store_content(it.client, it.id, data)
    _buffer(it).emit(
        events.MediaLogged(
            iteration_id=it.id,
            key=key,
            step=next_step(it.client, it.id, key, step),
            kind=kind,
            content_hash=content_hash,
            size_bytes=size,
            media_type="application/json",
            caption=caption,
            metadata=metadata,
        )
    )


class MediaMixin:
    """Media logging of `Iteration`."""

    def log_image(
        self: _Iteration,
        key: str,
        image: Any,
        step: int | None = None,
        caption: str = "",
        index: int = 0,
    ) -> None:
        """An image at a step: a numpy array (H x W[ x C], uint8 or floats in [0, 1]), a
        PIL image, a PNG/JPEG/GIF/WebP file path or its bytes. Encoding and upload happen
        in the background (an array is copied first); `flush()` waits for them."""
        at = next_step(self.client, self.id, key, step)
        if isinstance(image, str | os.PathLike):
            image = _file_bytes(image)
        elif not isinstance(image, bytes | bytearray | memoryview) and not hasattr(image, "save"):
            import numpy as np

            image = np.array(image, copy=True)  # the caller may change it after we return
        client, iteration_id = self.client, self.id

        def job() -> None:
            data, media_type, width, height = _image(image)
            content_hash, size = store_content(client, iteration_id, data)
            client.buffer.emit(
                events.MediaLogged(
                    iteration_id=iteration_id,
                    key=key,
                    step=at,
                    index=index,
                    kind=events.MediaKind.IMAGE,
                    content_hash=content_hash,
                    size_bytes=size,
                    media_type=media_type,
                    caption=caption,
                    width=width,
                    height=height,
                )
            )

        if isinstance(image, bytes | bytearray | memoryview):
            _image(image)  # refuse what is not an image here, in the caller
        background(client, job)

    def log_figure(
        self: _Iteration, key: str, figure: Any, step: int | None = None, caption: str = ""
    ) -> None:
        """A Plotly figure (or its JSON dict) or a Vega-Lite spec (an Altair chart too)."""
        data, kind = _figure_json(figure)
        _emit_json(self, key, step, events.MediaKind.FIGURE, data, caption, {"format": kind})

    def log_text(
        self: _Iteration, key: str, text: str, step: int | None = None, caption: str = ""
    ) -> None:
        """A text sample (a generated sentence, a prediction); long ones are stored."""
        step = next_step(self.client, self.id, key, step)
        if len(text) <= INLINE_TEXT_CHARS:
            event = events.MediaLogged(
                iteration_id=self.id,
                key=key,
                step=step,
                kind=events.MediaKind.TEXT,
                media_type="text/plain",
                caption=caption,
                text=text,
            )
        else:
            content_hash, size = store_content(self.client, self.id, text.encode())
            event = events.MediaLogged(
                iteration_id=self.id,
                key=key,
                step=step,
                kind=events.MediaKind.TEXT,
                content_hash=content_hash,
                size_bytes=size,
                media_type="text/plain",
                caption=caption,
            )
        _buffer(self).emit(event)

    def log_table(
        self: _Iteration,
        key: str,
        rows: Sequence[Sequence[Any]] | Sequence[Mapping[str, Any]] | Mapping[str, Sequence[Any]],
        step: int | None = None,
        columns: Sequence[str] | None = None,
        caption: str = "",
    ) -> None:
        """A small table: rows (lists with `columns`, or dicts), or {column: values}."""
        if isinstance(rows, Mapping):
            columns = [str(c) for c in rows]
            body = [list(r) for r in zip(*(rows[c] for c in rows), strict=True)]
        elif rows and isinstance(rows[0], Mapping):
            dict_rows = [dict(r) for r in rows if isinstance(r, Mapping)]
            columns = list(dict.fromkeys(k for r in dict_rows for k in r))
            body = [[r.get(c) for c in columns] for r in dict_rows]
        else:
            body = [list(r) for r in rows if not isinstance(r, Mapping)]
            columns = list(columns or [f"c{i}" for i in range(len(body[0]) if body else 0)])
        table = {"columns": list(columns), "rows": body}
        import json

        data = json.dumps(table, default=_json_default, separators=(",", ":")).encode()
        shape = {"rows": len(body), "columns": len(columns)}
        _emit_json(self, key, step, events.MediaKind.TABLE, data, caption, shape)

    def log_histogram(
        self: _Iteration,
        key: str,
        values: Any = None,
        step: int | None = None,
        bins: int = 64,
        *,
        histogram: tuple[Sequence[float], Sequence[float]] | None = None,
    ) -> None:
        """The distribution of `values` (any array-like; NaN and infinities left out) in
        `bins` equal bins, or a ready `histogram=(edges, counts)`."""
        if histogram is not None:
            edges, counts = [float(e) for e in histogram[0]], [float(c) for c in histogram[1]]
        else:
            import numpy as np

            flat = np.asarray(values, dtype=np.float64).ravel()
            flat = flat[np.isfinite(flat)]
            if flat.size == 0:
                raise InvalidArgument(f"histogram {key!r}: no finite values")
            hist, edge_array = np.histogram(flat, bins=bins)
            edges, counts = edge_array.tolist(), hist.astype(np.float64).tolist()
        _buffer(self).emit(
            events.HistogramLogged(
                iteration_id=self.id,
                key=key,
                step=next_step(self.client, self.id, f"histogram:{key}", step),
                edges=edges,
                counts=counts,
            )
        )
