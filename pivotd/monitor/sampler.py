"""The resource sampler: a thread reads psutil and NVML every `sample_interval_s`.

Sampling runs off the event loop (NVML calls can take milliseconds; a wedged driver can take far
longer) and hands each sample to the loop with `call_soon_threadsafe`. There it goes into a ring
buffer, to the `resources` topic (only when someone listens), to every sample listener (the alert
engine), and into the running average that becomes one stored history row per `resource_history_step_s`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import orjson
import psutil

from pivotd.errors import InsufficientStorage
from pivotd.hub import Hub
from pivotd.monitor.nvml import GIB, Nvml
from pivotd.settings import Settings
from pivotd.store import Store
from pivotd.store.monitoring import PutResourceHistory
from pivotd.tasks import TaskSet
from pivotd.timefmt import iso

log = logging.getLogger(__name__)
RESOURCES_TOPIC = "resources"
Sample = dict[str, Any]
# Per-GPU counters that are averaged into the stored history (the rest is descriptive).
GPU_HISTORY_KEYS = ("utilization", "temperature", "memory_percent", "power_watts")


def _attempt(sample: Sample, key: str, read: Callable[[], Any]) -> None:
    """One counter per try: a failing counter drops only its own key."""
    try:
        sample[key] = read()
    except (OSError, RuntimeError, psutil.Error) as exc:
        log.debug("resource counter %s unavailable: %s", key, exc)


def _usage(total: int, used: int, percent: float) -> dict[str, float]:
    return {"percent": round(percent, 1), "used_gb": round(used / GIB, 3), "total_gb": round(total / GIB, 3)}


def read_sample(data_dir: Path, nvml: Nvml, now: float | None = None) -> Sample:
    """One sample in the resource monitor's shape plus swap, load and GPU power/processes. `gpu` is left out while
    NVML cannot be asked (not installed, not initialised yet): unknown, which `[]` (no GPU) would misstate."""
    now = time.time() if now is None else now
    sample: Sample = {"timestamp": iso(now), "time": now}

    def cpu() -> dict[str, Any]:
        per_cpu = psutil.cpu_percent(percpu=True)  # since the previous call: no blocking interval
        total = round(sum(per_cpu) / len(per_cpu), 1) if per_cpu else 0.0
        return {"percent": total, "count": psutil.cpu_count() or len(per_cpu), "per_cpu": per_cpu}

    def memory() -> dict[str, float]:
        vm = psutil.virtual_memory()
        return _usage(vm.total, vm.total - vm.available, vm.percent)

    def swap() -> dict[str, float]:
        sw = psutil.swap_memory()
        return _usage(sw.total, sw.used, sw.percent)

    def disk() -> dict[str, Any]:
        du = psutil.disk_usage(str(data_dir))
        return _usage(du.total, du.used, du.percent) | {"path": str(data_dir)}

    def load() -> dict[str, float]:
        one, five, fifteen = os.getloadavg()
        return {"1m": round(one, 2), "5m": round(five, 2), "15m": round(fifteen, 2)}

    _attempt(sample, "cpu", cpu)
    _attempt(sample, "memory", memory)
    _attempt(sample, "swap", swap)
    _attempt(sample, "disk", disk)
    _attempt(sample, "load", load)
    gpus = nvml.read()
    if gpus is not None:
        sample["gpu"] = gpus
    return sample


def history_point(samples: list[Sample]) -> Sample:
    """The mean of a bucket of samples: what one stored history row holds."""

    def mean(values: list[float]) -> float | None:
        return round(sum(values) / len(values), 2) if values else None

    def section(name: str, key: str) -> list[float]:
        return [s[name][key] for s in samples if name in s and key in s[name]]

    point: Sample = {
        "time": samples[-1]["time"],
        "timestamp": samples[-1]["timestamp"],
        "samples": len(samples),
        "cpu_percent": mean(section("cpu", "percent")),
        "memory_percent": mean(section("memory", "percent")),
        "swap_percent": mean(section("swap", "percent")),
        "disk_percent": mean(section("disk", "percent")),
        "load_1m": mean(section("load", "1m")),
    }
    gpus: dict[int, dict[str, list[float]]] = {}
    for sample in samples:
        for gpu in sample.get("gpu", []):
            slot = gpus.setdefault(gpu["id"], {})
            for key in GPU_HISTORY_KEYS:
                if key in gpu:
                    slot.setdefault(key, []).append(gpu[key])
    point["gpu"] = [{"id": i} | {k: mean(v) for k, v in keys.items()} for i, keys in sorted(gpus.items())]
    return point


class ResourceMonitor:
    """Owns the sampler thread, the ring buffer and the stored history."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        hub: Hub,
        listeners: Sequence[Callable[[Sample], None]],
        nvml: Nvml | None = None,
    ) -> None:
        """`listeners` hear each sample on the loop, in order, after its `resources` message."""
        self._settings = settings
        self._store = store
        self._hub = hub
        self._nvml = nvml or Nvml.system()
        self.recent: deque[Sample] = deque(maxlen=settings.resource_buffer_size)
        self._listeners = tuple(listeners)
        self._bucket: list[Sample] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._writes = TaskSet()

    @property
    def latest(self) -> Sample | None:
        return self.recent[-1] if self.recent else None

    async def sample_now(self) -> Sample:
        """A fresh sample for a request that arrives before the first tick."""
        return await asyncio.to_thread(read_sample, self._settings.data_dir, self._nvml)

    async def __aenter__(self) -> ResourceMonitor:
        self._loop = asyncio.get_running_loop()
        psutil.cpu_percent(percpu=True)  # primes the counters: the first call has nothing to compare to
        self._thread = threading.Thread(target=self._run, name="pivotd-sampler", daemon=True)
        self._thread.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 10)
        if self._bucket:
            await self._flush()
        await self._writes.wait()
        await asyncio.to_thread(self._nvml.close)

    def _run(self) -> None:
        interval = self._settings.sample_interval_s
        next_tick = time.monotonic() + interval
        while not self._stop.wait(max(0.0, next_tick - time.monotonic())):
            next_tick += interval
            try:
                sample = read_sample(self._settings.data_dir, self._nvml)
            except Exception:
                log.exception("resource sample failed")
                continue
            assert self._loop is not None
            with contextlib.suppress(RuntimeError):  # the loop closed under us during shutdown
                self._loop.call_soon_threadsafe(self._accept, sample)

    def _accept(self, sample: Sample) -> None:
        self.recent.append(sample)
        if self._hub.has_subscribers(RESOURCES_TOPIC):
            message = {"type": "resources", "topic": RESOURCES_TOPIC, "data": sample}
            self._hub.publish((RESOURCES_TOPIC,), orjson.dumps(message).decode())
        for listener in self._listeners:
            try:
                listener(sample)
            except Exception:
                log.exception("sample listener failed")
        self._bucket.append(sample)
        if sample["time"] - self._bucket[0]["time"] >= self._settings.resource_history_step_s:
            self._writes.spawn(self._flush())

    async def _flush(self) -> None:
        bucket, self._bucket = self._bucket, []
        point = history_point(bucket)
        cutoff = point["time"] - self._settings.resource_history_hours * 3600
        try:
            await self._store.writer.submit(PutResourceHistory(point["time"], orjson.dumps(point), cutoff))
        except InsufficientStorage:
            pass  # the writer reports a full disk once; this interval's history is lost, the buffer keeps it
        except Exception:
            log.exception("could not store resource history")
