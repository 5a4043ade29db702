"""Which GPU each training run gets: an allocator of NVML devices, keyed by UUID.

A worker is pinned with `CUDA_VISIBLE_DEVICES=<uuid>` (CUDA accepts `GPU-...` and `MIG-...`), so the device a run
trains on is the one its telemetry and alerts name, whatever order CUDA would enumerate them in. A GPU is free when
no pivotd run holds it and NVML shows no compute process on it that pivotd did not start. Every call reads NVML
(milliseconds; far longer on a wedged driver): callers on the event loop go through `asyncio.to_thread`.

`acquire(n)` / `release(gpus)` are the whole interface a scheduler needs; `refusal(index)` says why GPU `index`
cannot be had, for the requests that ask for one by index.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from pivotd.monitor.nvml import Device, Nvml


@dataclass(frozen=True, slots=True)
class Gpu:
    index: int
    """NVML's index of the GPU (of the parent GPU for a MIG instance): the `id` resource samples and alerts use."""
    uuid: str
    name: str

    def record(self) -> dict[str, int | str]:
        """As a run stores and shows it."""
        return {"index": self.index, "uuid": self.uuid, "name": self.name}


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a GPU cannot be had while pivotd's own runs are not what holds it."""

    absent: bool
    """No such GPU (or none at all), rather than one busy with processes pivotd did not start."""
    reason: str


class GpuAllocator:
    def __init__(self, nvml: Nvml, own_pids: Callable[[], Iterable[int]], allowed: str | None = None) -> None:
        """`own_pids` are the workers' process ids (their compute processes are not foreign). `allowed` is the
        daemon's own `CUDA_VISIBLE_DEVICES`: where set, only the GPUs it names (by index or UUID) are handed out."""
        self._nvml = nvml
        self._own_pids = own_pids
        self._allowed = None if allowed is None else {a.strip() for a in allowed.split(",") if a.strip()}
        self._held: set[str] = set()
        self._lock = threading.Lock()

    @classmethod
    def system(cls, nvml: Nvml, own_pids: Callable[[], Iterable[int]]) -> GpuAllocator:
        return cls(nvml, own_pids, os.environ.get("CUDA_VISIBLE_DEVICES"))

    def _devices(self) -> list[Device]:
        devices = self._nvml.devices() or []
        if self._allowed is None:
            return devices
        return [d for d in devices if str(d.index) in self._allowed or d.uuid in self._allowed]

    def inventory(self) -> list[Gpu]:
        """Every device runs may be pinned to, held or not."""
        return [_gpu(d) for d in self._devices()]

    def foreign_pids(self, device: Device) -> set[int]:
        """Compute processes on the device that pivotd did not start (none where NVML cannot say)."""
        return (self._nvml.compute_pids(device) or set()) - set(self._own_pids())

    def acquire(self, n: int = 1, index: int | None = None) -> list[Gpu] | None:
        """`n` free devices (of GPU `index` only, if given), now held; None when there are not that many."""
        with self._lock:
            free = [
                d
                for d in self._devices()
                if d.uuid not in self._held and (index is None or d.index == index) and not self.foreign_pids(d)
            ]
            if len(free) < n:
                return None
            taken = [_gpu(d) for d in free[:n]]
            self._held.update(g.uuid for g in taken)
            return taken

    def release(self, gpus: Iterable[Gpu]) -> None:
        with self._lock:
            self._held.difference_update(g.uuid for g in gpus)

    def could_have(self, n: int) -> bool:
        """Whether `n` devices would be free once pivotd's own runs end: devices that processes pivotd did not start
        compute on do not count (they may never be free)."""
        with self._lock:
            held = set(self._held)
        return sum(1 for d in self._devices() if d.uuid in held or not self.foreign_pids(d)) >= n

    def held(self) -> int:
        return len(self._held)

    def refusal(self, index: int | None) -> Refusal | None:
        """Why no device (of GPU `index`) can be had, where waiting for pivotd's own runs to end cannot help; None
        when one is free or one of pivotd's runs holds one."""
        devices = [d for d in self._devices() if index is None or d.index == index]
        if not devices:
            if index is None:
                return Refusal(True, "no GPU is visible to pivotd through NVML")
            count = len({gpu.index for gpu in self.inventory()})
            return Refusal(True, f"there is no GPU {index}: NVML lists {count} GPU(s) pivotd may use")
        with self._lock:
            unheld = [d for d in devices if d.uuid not in self._held]
        if len(unheld) < len(devices):
            return None  # one of pivotd's runs holds one: it frees it when it ends
        busy = {d.uuid: self.foreign_pids(d) for d in unheld}
        if all(busy.values()):
            pids = sorted({pid for found in busy.values() for pid in found})
            which = "every GPU" if index is None else f"GPU {index}"
            listed = ", ".join(map(str, pids))
            return Refusal(False, f"{which} is busy with processes pivotd did not start (pids {listed})")
        return None


def _gpu(device: Device) -> Gpu:
    return Gpu(device.index, device.uuid, device.name)
