"""System metrics of a run, sampled by the SDK in a background thread into group "system".

CPU (the machine's and this process's), memory (the machine's used share, this
process's resident size), disk and network I/O rates since the previous sample, and per
GPU -- through NVML, when the `nvidia-ml-py` package and a driver are present --
utilisation, memory, temperature and power. psutil (the `system` extra) does the
sampling; a sample costs well under a millisecond, so at the default 10 s interval the
thread uses far less than 1% of a core (bench: system-metrics overhead).

The thread stops when the iteration ends (it checks twice a second) and never raises
into training code: a sampling error is logged once and the thread stops.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any, Protocol

from deardiary.schemas.errors import InvalidArgument

from .notices import log

if TYPE_CHECKING:
    from .client import Client

GROUP = "system"


if TYPE_CHECKING:  # annotations only: a Protocol class costs every trial process
    # ~0.5M instructions to create
    class _Iteration(Protocol):
        client: Client
        id: str
        ended: bool


class _Gpus:
    """NVML, if it can be loaded; otherwise no GPU metrics (and no error)."""

    def __init__(self) -> None:
        self.nvml: Any = None
        self.handles: list[Any] = []
        try:
            import pynvml

            pynvml.nvmlInit()
            count = pynvml.nvmlDeviceGetCount()
            self.handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
            self.nvml = pynvml
        except Exception:  # no package, no driver, no device: nothing to sample
            self.nvml = None

    def sample(self) -> dict[str, float]:
        out: dict[str, float] = {}
        nvml = self.nvml
        if nvml is None:
            return out
        for i, handle in enumerate(self.handles):
            try:
                rates = nvml.nvmlDeviceGetUtilizationRates(handle)
                memory = nvml.nvmlDeviceGetMemoryInfo(handle)
                out[f"gpu.{i}.utilization_percent"] = float(rates.gpu)
                out[f"gpu.{i}.memory_used_mb"] = memory.used / 2**20
                out[f"gpu.{i}.memory_percent"] = 100.0 * memory.used / max(memory.total, 1)
                out[f"gpu.{i}.temperature_c"] = float(
                    nvml.nvmlDeviceGetTemperature(handle, nvml.NVML_TEMPERATURE_GPU)
                )
                out[f"gpu.{i}.power_w"] = nvml.nvmlDeviceGetPowerUsage(handle) / 1000.0
            except Exception:  # a metric this device does not report
                continue
        return out


class Sampler:
    """One sample of the machine and this process; rates are per second since the last."""

    def __init__(self) -> None:
        try:
            import psutil
        except ImportError as exc:
            raise InvalidArgument(
                "system metrics need psutil: pip install 'deardiary[system]'"
            ) from exc
        self.psutil = psutil
        self.process = psutil.Process()
        self.process.cpu_percent(None)  # the first call only starts the measurement
        psutil.cpu_percent(None)
        self.gpus = _Gpus()
        self.last = time.monotonic()
        self.disk = psutil.disk_io_counters()
        self.net = psutil.net_io_counters()

    def sample(self) -> dict[str, float]:
        psutil = self.psutil
        now = time.monotonic()
        elapsed = max(now - self.last, 1e-6)
        memory = psutil.virtual_memory()
        out = {
            "cpu.percent": float(psutil.cpu_percent(None)),
            "cpu.process_percent": float(self.process.cpu_percent(None)),
            "memory.percent": float(memory.percent),
            "memory.used_mb": (memory.total - memory.available) / 2**20,
            "memory.process_rss_mb": self.process.memory_info().rss / 2**20,
        }
        disk, net = psutil.disk_io_counters(), psutil.net_io_counters()
        if disk is not None and self.disk is not None:
            out["disk.read_mb_s"] = (disk.read_bytes - self.disk.read_bytes) / 2**20 / elapsed
            out["disk.write_mb_s"] = (disk.write_bytes - self.disk.write_bytes) / 2**20 / elapsed
        if net is not None and self.net is not None:
            out["network.sent_mb_s"] = (net.bytes_sent - self.net.bytes_sent) / 2**20 / elapsed
            out["network.recv_mb_s"] = (net.bytes_recv - self.net.bytes_recv) / 2**20 / elapsed
        self.last, self.disk, self.net = now, disk, net
        out.update(self.gpus.sample())
        return out


class SystemMonitor:
    """The background thread of one iteration."""

    def __init__(self, iteration: _Iteration, interval_s: float) -> None:
        if not interval_s > 0:
            raise InvalidArgument(f"system_metrics_interval_s must be > 0, not {interval_s}")
        self.iteration = iteration
        self.interval_s = interval_s
        self.sampler = Sampler()  # raises here, in the caller, when psutil is missing
        self.stopped = threading.Event()
        self.samples = 0
        self.thread = threading.Thread(
            target=self._run, name=f"deardiary-system-{iteration.id[:8]}", daemon=True
        )

    def start(self) -> SystemMonitor:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stopped.set()

    def _run(self) -> None:
        it = self.iteration
        due = time.monotonic() + self.interval_s
        while not self.stopped.is_set() and not it.ended:
            if self.stopped.wait(min(0.5, max(0.0, due - time.monotonic()))):
                return
            if it.ended or time.monotonic() < due:
                continue
            due += self.interval_s
            try:
                values = self.sampler.sample()
                it.client.buffer.log_metrics(it.id, values, None, GROUP)
                self.samples += 1
            except Exception:  # never into training code
                log.warning("system metrics stopped: sampling failed", exc_info=True)
                return


class SystemMetricsMixin:
    """`Iteration.start_system_metrics`."""

    def start_system_metrics(self: _Iteration, interval_s: float = 10.0) -> SystemMonitor:
        """Sample CPU, memory, disk and network I/O (and GPUs through NVML) every
        `interval_s` into the metric group "system" until the iteration ends."""
        return SystemMonitor(self, interval_s).start()
