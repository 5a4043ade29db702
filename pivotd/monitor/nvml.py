"""The NVML seam: per-GPU counters through `pynvml`, each read on its own.

Kept thin on purpose: it is the only code here that cannot run on a machine without an NVIDIA GPU,
so it does nothing but call NVML and shape the answers. No library, no driver or no device means an
empty list; a counter a device does not support drops only that key (trackio's `gpu.py` does the same).
"""

from __future__ import annotations

import contextlib
import importlib
import logging
from collections.abc import Callable
from types import ModuleType
from typing import Any

log = logging.getLogger(__name__)
GIB = 1024**3


def load_pynvml() -> ModuleType | None:
    try:
        return importlib.import_module("pynvml")
    except ImportError:
        return None


class Nvml:
    """Initialised once (lazily); `read()` returns one dict per GPU, `[]` when there is none."""

    def __init__(self, module: ModuleType | None) -> None:
        self._nvml = module
        self._handles: list[Any] | None = None

    @classmethod
    def system(cls) -> Nvml:
        return cls(load_pynvml())

    def _start(self) -> list[Any]:
        if self._handles is not None:
            return self._handles
        self._handles = []
        nvml = self._nvml
        if nvml is None:
            log.info("pynvml is not installed: no GPU metrics")
            return self._handles
        try:
            nvml.nvmlInit()
            count = nvml.nvmlDeviceGetCount()
            self._handles = [nvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
        except nvml.NVMLError as exc:  # no driver (LibraryNotFound), no device, ...
            log.info("NVML unavailable (%s): no GPU metrics", exc)
            self._handles = []
        return self._handles

    def read(self) -> list[dict[str, Any]]:
        return [self._device(index, handle) for index, handle in enumerate(self._start())]

    def close(self) -> None:
        if self._nvml is not None and self._handles:
            with contextlib.suppress(self._nvml.NVMLError):
                self._nvml.nvmlShutdown()
        self._handles = None

    def _device(self, index: int, handle: Any) -> dict[str, Any]:
        nvml = self._nvml
        assert nvml is not None
        gpu: dict[str, Any] = {"id": index}

        def read(key: str, getter: Callable[[], Any]) -> None:
            try:
                gpu[key] = getter()
            except nvml.NVMLError as exc:
                log.debug("GPU %d: %s unavailable: %s", index, key, exc)

        def name() -> str:
            raw = nvml.nvmlDeviceGetName(handle)
            return raw.decode() if isinstance(raw, bytes) else str(raw)

        read("name", name)
        read("utilization", lambda: float(nvml.nvmlDeviceGetUtilizationRates(handle).gpu))
        read("memory", lambda: nvml.nvmlDeviceGetMemoryInfo(handle))
        memory = gpu.pop("memory", None)
        if memory is not None and memory.total:
            gpu["memory_used_gb"] = round(memory.used / GIB, 3)
            gpu["memory_total_gb"] = round(memory.total / GIB, 3)
            gpu["memory_percent"] = round(100.0 * memory.used / memory.total, 1)
        read("temperature", lambda: float(nvml.nvmlDeviceGetTemperature(handle, nvml.NVML_TEMPERATURE_GPU)))
        read("power_watts", lambda: nvml.nvmlDeviceGetPowerUsage(handle) / 1000.0)
        read(
            "processes",
            lambda: [
                {"pid": p.pid, "memory_used_gb": round((p.usedGpuMemory or 0) / GIB, 3)}
                for p in nvml.nvmlDeviceGetComputeRunningProcesses(handle)
            ],
        )
        return gpu
