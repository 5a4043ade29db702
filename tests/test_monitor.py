"""Resource sampler: real psutil values, the NVML seam (a stand-in `pynvml` module, since an NVIDIA GPU cannot be
assumed), `/api/v1/monitor/resources*`, the rich health route and the `resources` topic. Tests that mean "no GPU"
hand the daemon `Nvml(None)`, so they hold on a GPU machine too."""

from __future__ import annotations

import asyncio
import json
import logging
import types
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect

from pivotd.monitor.nvml import Nvml
from pivotd.monitor.sampler import history_point, read_sample
from shared.models.monitor import ResourceAverage, ResourceSample
from tests.daemon import daemon_client, running_daemon


class NVMLError(Exception):
    pass


def fake_pynvml(
    devices: int = 1,
    init_error: bool = False,
    failing: tuple[str, ...] = (),
    lost: tuple[int, ...] = (),
    pids: tuple[int, ...] = (4242,),
    used_memory: int | None = 2 * 1024**3,
) -> types.ModuleType:
    """A stand-in for `pynvml` with the calls the seam makes; `failing` names calls that raise NVMLError, `lost` the
    devices whose handle cannot be had, `pids` the compute processes on every GPU. `module.init_error` may be
    changed after creation (a driver that comes up later)."""
    module = types.ModuleType("pynvml")
    module.NVMLError = NVMLError  # type: ignore[attr-defined]
    module.NVML_TEMPERATURE_GPU = 0  # type: ignore[attr-defined]

    def call(name: str, result: Any) -> Any:
        def method(*_: Any) -> Any:
            if name in failing:
                raise NVMLError(f"{name}: Not Supported")
            return result

        return method

    def init() -> None:
        if module.init_error:  # type: ignore[attr-defined]
            raise NVMLError("NVML Shared Library Not Found")

    def handle(index: int) -> Any:
        if index in lost:
            raise NVMLError("Insufficient Permissions")
        return index

    def uuid(handle: Any) -> str:
        if "nvmlDeviceGetUUID" in failing:
            raise NVMLError("nvmlDeviceGetUUID: Not Supported")
        return f"GPU-0000000{handle}-test"

    memory = types.SimpleNamespace(used=6 * 1024**3, total=24 * 1024**3)
    processes = [types.SimpleNamespace(pid=pid, usedGpuMemory=used_memory) for pid in pids]
    calls = {
        "nvmlDeviceGetCount": devices,
        "nvmlDeviceGetName": b"NVIDIA Test GPU",
        "nvmlDeviceGetUtilizationRates": types.SimpleNamespace(gpu=93),
        "nvmlDeviceGetMemoryInfo": memory,
        "nvmlDeviceGetTemperature": 71,
        "nvmlDeviceGetPowerUsage": 250_500,
        "nvmlDeviceGetComputeRunningProcesses": processes,
        "nvmlDeviceGetMigMode": (0, 0),
        "nvmlShutdown": None,
    }
    for name, result in calls.items():
        setattr(module, name, call(name, result))
    module.init_error = init_error  # type: ignore[attr-defined]
    module.nvmlInit = init  # type: ignore[attr-defined]
    module.nvmlDeviceGetHandleByIndex = handle  # type: ignore[attr-defined]
    module.nvmlDeviceGetUUID = uuid  # type: ignore[attr-defined]
    return module


def test_real_psutil_values_are_in_range(tmp_path: Path) -> None:
    sample = read_sample(tmp_path, Nvml(None))
    assert 0 <= sample["cpu"]["percent"] <= 100 and sample["cpu"]["count"] >= 1
    assert len(sample["cpu"]["per_cpu"]) == sample["cpu"]["count"]
    for section in ("memory", "disk"):
        assert 0 < sample[section]["percent"] <= 100
        assert 0 < sample[section]["used_gb"] <= sample[section]["total_gb"]
    assert 0 <= sample["swap"]["percent"] <= 100
    assert sample["load"]["1m"] >= 0
    assert sample["disk"]["path"] == str(tmp_path)
    assert "gpu" not in sample and "T" in sample["timestamp"]  # no NVML: unknown, so left out rather than []


def test_missing_nvml_library_means_gpus_unknown() -> None:
    assert Nvml(None).read() is None and Nvml(None).devices() is None


def test_nvml_without_driver_is_unknown_and_without_device_is_none() -> None:
    assert Nvml(fake_pynvml(init_error=True)).read() is None
    assert Nvml(fake_pynvml(devices=0)).read() == []


def test_nvml_not_ready_at_boot_is_tried_again() -> None:
    """A driver that loads after pivotd starts: "unknown" until then, never a cached "no GPUs"."""
    now = [0.0]
    module = fake_pynvml(init_error=True)
    nvml = Nvml(module, retry_s=30.0, clock=lambda: now[0])
    assert nvml.read() is None
    module.init_error = False  # type: ignore[attr-defined]
    now[0] = 10.0
    assert nvml.read() is None  # not before the retry interval: a broken NVML is not asked on every sample
    now[0] = 31.0
    [gpu] = nvml.read() or []
    assert gpu["uuid"] == "GPU-00000000-test" and gpu["utilization"] == 93.0


def test_nvml_failing_the_same_way_is_said_once(caplog: pytest.LogCaptureFixture) -> None:
    """A CPU box retries NVML every 30 s for ever: one line at INFO, not one per retry; and one when it is ready."""
    caplog.set_level(logging.DEBUG, logger="pivotd.monitor.nvml")
    now = [0.0]
    module = fake_pynvml(init_error=True)
    nvml = Nvml(module, retry_s=30.0, clock=lambda: now[0])
    for retry in range(3):
        now[0] = retry * 31.0
        assert nvml.read() is None
    said = [r for r in caplog.records if "NVML unavailable" in r.getMessage()]
    assert [r.levelno for r in said] == [logging.INFO, logging.DEBUG, logging.DEBUG]
    module.init_error = False  # type: ignore[attr-defined]
    now[0] = 100.0
    assert nvml.read() is not None
    assert any(r.levelno == logging.INFO and "NVML ready: 1 GPU(s)" in r.getMessage() for r in caplog.records)


def test_one_unreachable_gpu_leaves_the_others() -> None:
    gpus = Nvml(fake_pynvml(devices=3, lost=(1,))).read()
    assert gpus is not None and [g["id"] for g in gpus] == [0, 1, 2]
    assert gpus[1] == {"id": 1, "error": "Insufficient Permissions"}
    assert gpus[0]["utilization"] == gpus[2]["utilization"] == 93.0
    devices = Nvml(fake_pynvml(devices=3, lost=(1,))).devices()
    assert devices is not None and [d.index for d in devices] == [0, 2]


def test_unknown_process_memory_is_null_not_zero() -> None:
    [gpu] = Nvml(fake_pynvml(used_memory=None)).read() or []
    assert gpu["processes"] == [{"pid": 4242, "memory_used_gb": None}]
    assert (
        ResourceSample.model_validate({"timestamp": "t", "time": 0.0, "gpu": [gpu]}).gpu[0].processes[0].memory_used_gb
        is None
    )  # type: ignore[index]


def test_mig_instances_are_listed_and_are_the_devices_cuda_gets() -> None:
    module = fake_pynvml()
    module.nvmlDeviceGetMigMode = lambda handle: (1, 1)  # type: ignore[attr-defined]
    module.nvmlDeviceGetMaxMigDeviceCount = lambda handle: 3  # type: ignore[attr-defined]

    def mig(handle: Any, slot: int) -> Any:
        if slot == 2:
            raise NVMLError("Not Found")  # an empty slot
        return f"mig{slot}"

    module.nvmlDeviceGetMigDeviceHandleByIndex = mig  # type: ignore[attr-defined]
    module.nvmlDeviceGetUUID = lambda handle: f"MIG-{handle}" if str(handle).startswith("mig") else "GPU-parent"  # type: ignore[attr-defined]
    [gpu] = Nvml(module).read() or []
    assert gpu["uuid"] == "GPU-parent" and [m["uuid"] for m in gpu["mig"]] == ["MIG-mig0", "MIG-mig1"]
    assert gpu["mig"][0]["memory_total_gb"] == 24.0
    assert ResourceSample.model_validate({"timestamp": "t", "time": 0.0, "gpu": [gpu]}).gpu[0].mig is not None  # type: ignore[index]
    devices = Nvml(module).devices() or []
    assert [(d.index, d.uuid, d.mig) for d in devices] == [(0, "MIG-mig0", 0), (0, "MIG-mig1", 1)]


def test_nvml_device_counters() -> None:
    [gpu] = Nvml(fake_pynvml()).read()
    assert gpu == {
        "id": 0,
        "uuid": "GPU-00000000-test",
        "name": "NVIDIA Test GPU",
        "utilization": 93.0,
        "memory_used_gb": 6.0,
        "memory_total_gb": 24.0,
        "memory_percent": 25.0,
        "temperature": 71.0,
        "power_watts": 250.5,
        "processes": [{"pid": 4242, "memory_used_gb": 2.0}],
    }


def test_one_failing_nvml_counter_drops_only_itself() -> None:
    gpus = Nvml(fake_pynvml(devices=2, failing=("nvmlDeviceGetTemperature",))).read()
    assert gpus is not None and [g["id"] for g in gpus] == [0, 1]
    for gpu in gpus:
        assert "temperature" not in gpu
        assert gpu["utilization"] == 93.0 and gpu["memory_percent"] == 25.0 and gpu["power_watts"] == 250.5


def test_a_gpu_sample_is_what_the_resource_models_declare(tmp_path: Path) -> None:
    """The routes check each sample against `ResourceSample` (and history against `ResourceAverage`): what NVML's
    seam reads on a GPU box must pass, counter for counter, or `/api/v1/monitor/resources` would be a 500 there."""
    sample = read_sample(tmp_path, Nvml(fake_pynvml(devices=2, failing=("nvmlDeviceGetPowerUsage",))))
    assert len(sample["gpu"]) == 2
    checked = ResourceSample.model_validate(sample)
    assert checked.model_dump(mode="json", by_alias=True, exclude_unset=True) == json.loads(json.dumps(sample))
    assert checked.gpu is not None and checked.gpu[0].processes is not None
    assert checked.gpu[0].processes[0].pid == 4242
    point = ResourceAverage.model_validate(history_point([sample, sample]))
    assert point.gpu[1].utilization == 93.0 and point.gpu[1].power_watts is None


def _has_gpu() -> bool:
    return bool(Nvml.system().devices())


@pytest.mark.gpu
@pytest.mark.skipif(not _has_gpu(), reason="no NVIDIA GPU reachable through NVML on this machine")
def test_real_nvml_on_a_gpu_machine() -> None:
    """Runs only where a GPU exists: the real NVML path, printed so the run records what it returned."""
    gpus = Nvml.system().read() or []
    print(json.dumps(gpus, indent=2))
    for gpu in gpus:
        assert gpu["name"] and 0 <= gpu["utilization"] <= 100 and 0 <= gpu["memory_percent"] <= 100
        assert gpu["memory_total_gb"] > 0 and 0 < gpu["temperature"] < 130
        assert gpu["uuid"].startswith("GPU-")
        assert all(isinstance(p["pid"], int) for p in gpu.get("processes", []))


def test_history_point_averages_a_bucket() -> None:
    samples = [
        {
            "time": float(t),
            "timestamp": str(t),
            "cpu": {"percent": 10.0 * t},
            "gpu": [{"id": 0, "temperature": 60.0 + t}],
        }
        for t in (1, 2, 3)
    ]
    point = history_point(samples)
    assert point["cpu_percent"] == 20.0 and point["samples"] == 3 and point["time"] == 3.0
    assert point["memory_percent"] is None
    assert point["gpu"] == [{"id": 0, "temperature": 62.0}]


async def test_resources_routes_topic_and_stored_history(tmp_path: Path) -> None:
    settings = {"sample_interval_s": 0.2, "resource_history_step_s": 1.0}
    async with (
        running_daemon(tmp_path / "state", Nvml(None), **settings) as daemon,
        daemon_client(daemon.url) as http,
        connect(daemon.ws_url) as ws,
    ):
        await ws.send(json.dumps({"action": "subscribe", "topics": ["resources"]}))
        async with asyncio.timeout(5):
            while (message := json.loads(await ws.recv()))["type"] != "resources":
                pass
        assert message["topic"] == "resources" and "gpu" not in message["data"]
        resources = (await http.get("/api/v1/monitor/resources")).json()
        assert set(resources) >= {"timestamp", "cpu", "memory", "disk", "swap", "load"}
        assert set(resources["cpu"]) == {"percent", "count", "per_cpu"}
        assert set(resources["memory"]) == {"percent", "used_gb", "total_gb"}
        recent = (await http.get("/api/v1/monitor/resources/history", params={"resolution": "recent"})).json()
        assert recent["resolution"] == "recent" and recent["samples"]
        # The first stored point needs one bucket's worth of samples: wait for it on the resources topic.
        async with asyncio.timeout(5):
            while True:
                await ws.recv()
                stored = (await http.get("/api/v1/monitor/resources/history")).json()
                if stored["samples"]:
                    break
        point = stored["samples"][0]
        assert stored["step_seconds"] == 1.0 and point["samples"] >= 5 and 0 <= point["cpu_percent"] <= 100


@pytest.mark.parametrize(("nvml", "gpu", "count"), [(None, "unavailable", 0), (2, "healthy", 2)])
async def test_rich_health(tmp_path: Path, nvml: int | None, gpu: str, count: int) -> None:
    seam = Nvml(None if nvml is None else fake_pynvml(devices=nvml))
    async with (
        running_daemon(tmp_path / "state", seam) as daemon,
        daemon_client(daemon.url) as http,
    ):
        body = (await http.get("/api/v1/health")).json()
    assert body["status"] == "healthy" and body["uptime_seconds"] >= 0 and "T" in body["timestamp"]
    assert set(body["system"]) >= {"cpu_percent", "memory_percent", "disk_percent"}
    assert body["components"] == {"database": "healthy", "filesystem": "healthy", "gpu": gpu}
    assert body["system"]["gpu_count"] == count


@pytest.mark.parametrize(
    "query",
    ["resolution=hourly", "limit=0", "since=-1", "limit=abc", "since=inf", "since=1e400", "until=nan"],
)
async def test_history_bad_query(daemon: Any, http: httpx.AsyncClient, query: str) -> None:
    response = await http.get(f"/api/v1/monitor/resources/history?{query}")
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "validation_error" and error["details"][0]["field"] == query.split("=")[0]
