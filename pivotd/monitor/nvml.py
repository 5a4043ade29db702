"""The NVML seam: the GPUs NVML lists and their counters through `pynvml`, each read on its own.

Kept thin on purpose: it is the only code here that cannot run on a machine without an NVIDIA GPU, so it does
nothing but call NVML and shape the answers. It degrades per device and per counter, never as a whole:

- no `pynvml` module: `read()` is None (unknown), for good;
- `nvmlInit` failing (the driver not loaded yet at boot, no permission): None, and initialisation is tried
  again `retry_s` later rather than caching "no GPUs" until a restart;
- one device whose handle cannot be had (a lost GPU, a cgroup denying it): that device alone is listed with an
  `error` and tried again on the next read; the others are read as usual;
- a counter a device does not support drops only that key; a value NVML reports as not available (a process's
  `usedGpuMemory` of None) is null, never 0.

MIG instances are listed under their parent GPU (`mig`); for CUDA they, not the parent, are the usable devices.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

log = logging.getLogger(__name__)
GIB = 1024**3
RETRY_S = 30.0
MIG_ENABLED = 1  # NVML_DEVICE_MIG_ENABLE


def load_pynvml() -> ModuleType | None:
    try:
        return importlib.import_module("pynvml")
    except ImportError:
        return None


def _text(raw: Any) -> str:
    return raw.decode() if isinstance(raw, bytes) else str(raw)


@dataclass(frozen=True, slots=True)
class Device:
    """A device CUDA can be given: a whole GPU, or one MIG instance of a GPU (then `mig` is its place there)."""

    index: int
    """The GPU's NVML index (for a MIG instance: its parent's)."""
    uuid: str
    """`GPU-...` or `MIG-...`, as `CUDA_VISIBLE_DEVICES` accepts it."""
    name: str
    mig: int | None
    handle: Any


class Nvml:
    """`read()` returns one dict per GPU, `[]` when NVML answers with none, None when NVML cannot be asked.

    Thread-safe: the sampler thread and the supervisor (through `asyncio.to_thread`) share one instance.
    """

    def __init__(
        self, module: ModuleType | None, retry_s: float = RETRY_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._nvml = module
        self._retry_s = retry_s
        self._clock = clock
        self._lock = threading.Lock()
        self._count: int | None = None  # devices NVML counted; None: not initialised
        self._next_try = float("-inf")
        self._failure: str | None = None  # the last reason initialisation failed, said once until it changes
        self._handles: dict[int, Any] = {}

    @classmethod
    def system(cls) -> Nvml:
        return cls(load_pynvml())

    def _start(self) -> int | None:
        """The number of GPUs, initialising NVML if it is not yet (at most once per `retry_s`)."""
        if self._count is not None:
            return self._count
        nvml = self._nvml
        if nvml is None or self._clock() < self._next_try:
            return None
        try:
            nvml.nvmlInit()
            self._count = int(nvml.nvmlDeviceGetCount())
            if self._failure is not None:
                log.info("NVML ready: %d GPU(s)", self._count)
                self._failure = None
        except nvml.NVMLError as exc:  # no driver (LibraryNotFound), not loaded yet, no permission, ...
            # Said once, not every retry: a CPU box would log the same line twice a minute for ever.
            level = logging.INFO if str(exc) != self._failure else logging.DEBUG
            log.log(level, "NVML unavailable (%s): GPUs unknown; trying again every %.0f s", exc, self._retry_s)
            self._failure = str(exc)
            self._next_try = self._clock() + self._retry_s
            with contextlib.suppress(nvml.NVMLError):
                nvml.nvmlShutdown()
            return None
        return self._count

    def _handle(self, index: int) -> Any:
        """The device's handle, or raises NVMLError; a failure is not cached, so the next read tries again."""
        handle = self._handles.get(index)
        if handle is None:
            assert self._nvml is not None
            handle = self._handles[index] = self._nvml.nvmlDeviceGetHandleByIndex(index)
        return handle

    def read(self) -> list[dict[str, Any]] | None:
        with self._lock:
            count = self._start()
            if count is None:
                return None
            return [self._gpu(index) for index in range(count)]

    def devices(self) -> list[Device] | None:
        """What CUDA can be pinned to: each GPU, or each MIG instance of a GPU in MIG mode. None: NVML unknown."""
        with self._lock:
            count = self._start()
            if count is None:
                return None
            found: list[Device] = []
            for index in range(count):
                with contextlib.suppress(self._error()):  # a device NVML cannot reach is not offered
                    found += self._units(index)
            return found

    def compute_pids(self, device: Device) -> set[int] | None:
        """Processes computing on the device now; None when NVML cannot say."""
        with self._lock:
            assert self._nvml is not None
            try:
                return {p.pid for p in self._nvml.nvmlDeviceGetComputeRunningProcesses(device.handle)}
            except self._nvml.NVMLError as exc:
                log.debug("GPU %s: processes unknown: %s", device.uuid, exc)
                return None

    def close(self) -> None:
        with self._lock:
            if self._nvml is not None and self._count is not None:
                with contextlib.suppress(self._nvml.NVMLError):
                    self._nvml.nvmlShutdown()
            self._count = None
            self._handles.clear()

    def _error(self) -> type[Exception]:
        assert self._nvml is not None
        error: type[Exception] = self._nvml.NVMLError
        return error

    def _mig_handles(self, handle: Any) -> list[tuple[int, Any]]:
        """The MIG instances of a GPU in MIG mode; [] for a GPU without MIG (or an NVML that predates it)."""
        nvml = self._nvml
        assert nvml is not None
        try:
            current, _pending = nvml.nvmlDeviceGetMigMode(handle)
            if current != MIG_ENABLED:
                return []
            slots = int(nvml.nvmlDeviceGetMaxMigDeviceCount(handle))
        except (nvml.NVMLError, AttributeError):
            return []
        found = []
        for slot in range(slots):
            with contextlib.suppress(nvml.NVMLError):  # an empty slot is NotFound
                found.append((slot, nvml.nvmlDeviceGetMigDeviceHandleByIndex(handle, slot)))
        return found

    def _units(self, index: int) -> list[Device]:
        nvml = self._nvml
        assert nvml is not None
        handle = self._handle(index)
        migs = self._mig_handles(handle)
        if not migs:
            return [Device(index, _text(nvml.nvmlDeviceGetUUID(handle)), _text(nvml.nvmlDeviceGetName(handle)),
                           None, handle)]  # fmt: skip
        units = []
        for slot, mig in migs:
            with contextlib.suppress(nvml.NVMLError):
                units.append(Device(index, _text(nvml.nvmlDeviceGetUUID(mig)), _text(nvml.nvmlDeviceGetName(mig)),
                                    slot, mig))  # fmt: skip
        return units

    def _gpu(self, index: int) -> dict[str, Any]:
        nvml = self._nvml
        assert nvml is not None
        try:
            handle = self._handle(index)
        except nvml.NVMLError as exc:
            log.debug("GPU %d unreachable: %s", index, exc)
            return {"id": index, "error": str(exc)}
        gpu = self._counters({"id": index}, handle, index)
        migs = self._mig_handles(handle)
        if migs:
            gpu["mig"] = [self._mig(slot, mig, index) for slot, mig in migs]
        return gpu

    def _mig(self, slot: int, handle: Any, parent: int) -> dict[str, Any]:
        nvml = self._nvml
        assert nvml is not None
        mig: dict[str, Any] = {"index": slot}
        with contextlib.suppress(nvml.NVMLError):
            mig["uuid"] = _text(nvml.nvmlDeviceGetUUID(handle))
        with contextlib.suppress(nvml.NVMLError):
            mig["name"] = _text(nvml.nvmlDeviceGetName(handle))
        with contextlib.suppress(nvml.NVMLError):
            _memory(mig, nvml.nvmlDeviceGetMemoryInfo(handle))
        return mig

    def _counters(self, gpu: dict[str, Any], handle: Any, index: int) -> dict[str, Any]:
        nvml = self._nvml
        assert nvml is not None

        def read(key: str, getter: Callable[[], Any]) -> None:
            try:
                gpu[key] = getter()
            except nvml.NVMLError as exc:
                log.debug("GPU %d: %s unavailable: %s", index, key, exc)

        read("uuid", lambda: _text(nvml.nvmlDeviceGetUUID(handle)))
        read("name", lambda: _text(nvml.nvmlDeviceGetName(handle)))
        read("utilization", lambda: float(nvml.nvmlDeviceGetUtilizationRates(handle).gpu))
        with contextlib.suppress(nvml.NVMLError):
            _memory(gpu, nvml.nvmlDeviceGetMemoryInfo(handle))
        read("temperature", lambda: float(nvml.nvmlDeviceGetTemperature(handle, nvml.NVML_TEMPERATURE_GPU)))
        read("power_watts", lambda: nvml.nvmlDeviceGetPowerUsage(handle) / 1000.0)
        read(
            "processes",
            lambda: [
                # usedGpuMemory is None where NVML cannot tell (no permission, MIG, Windows WDDM): unknown, not 0.
                {"pid": p.pid, "memory_used_gb": None if p.usedGpuMemory is None else round(p.usedGpuMemory / GIB, 3)}
                for p in nvml.nvmlDeviceGetComputeRunningProcesses(handle)
            ],
        )
        return gpu


def _memory(into: dict[str, Any], memory: Any) -> None:
    if memory.total:
        into["memory_used_gb"] = round(memory.used / GIB, 3)
        into["memory_total_gb"] = round(memory.total / GIB, 3)
        into["memory_percent"] = round(100.0 * memory.used / memory.total, 1)
