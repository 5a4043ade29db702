"""GPU assignment on a machine without one: NVML is a stand-in `pynvml` module (the only thing mocked); the daemon,
its store and its worker processes are real. With a GPU "present", a CPU-only torch must fail the run, not train."""

from __future__ import annotations

from pathlib import Path

import pytest

from pivotd.jobs.gpus import GpuAllocator
from pivotd.monitor.nvml import Nvml
from tests.daemon import daemon_client, running_daemon
from tests.test_monitor import fake_pynvml
from tests.training.helpers import DAEMON_SETTINGS, MLP, final_state, hyperparams

pytestmark = pytest.mark.usefixtures("fork_server")  # runs forked from a ready server (tests/conftest.py)


def test_allocator_hands_each_gpu_to_one_run() -> None:
    gpus = GpuAllocator(Nvml(fake_pynvml(devices=2, pids=())), own_pids=set)
    first, second = gpus.acquire(1), gpus.acquire(1)
    assert first is not None and second is not None and first[0].uuid != second[0].uuid
    assert gpus.acquire(1) is None and gpus.refusal(None) is None  # pivotd's own runs hold them: wait
    gpus.release(first)
    assert gpus.acquire(1, index=0) == first


def test_allocator_refuses_gpus_busy_with_processes_pivotd_did_not_start() -> None:
    nvml = Nvml(fake_pynvml(devices=2, pids=(4242,)))
    assert GpuAllocator(nvml, own_pids=set).acquire(1) is None
    refusal = GpuAllocator(nvml, own_pids=set).refusal(1)
    assert refusal is not None and not refusal.absent and "pids 4242" in refusal.reason
    assert GpuAllocator(nvml, own_pids=lambda: {4242}).acquire(1) is not None  # a worker of its own is not foreign
    absent = GpuAllocator(nvml, own_pids=set).refusal(7)
    assert absent is not None and absent.absent and "there is no GPU 7" in absent.reason


def test_allocator_keeps_to_the_daemons_own_cuda_visible_devices() -> None:
    nvml = Nvml(fake_pynvml(devices=3, pids=()))
    assert [g.index for g in GpuAllocator(nvml, set, allowed="2,GPU-00000000-test").inventory()] == [0, 2]
    assert GpuAllocator(nvml, set, allowed="").inventory() == []


async def test_a_run_pinned_to_a_gpu_fails_when_cuda_is_unusable(tmp_path: Path) -> None:
    """The supervisor believes in a GPU; torch here cannot use it, so the run fails and says why."""
    async with (
        running_daemon(tmp_path / "state", Nvml(fake_pynvml(devices=2, pids=())), **DAEMON_SETTINGS) as daemon,
        daemon_client(daemon.url, timeout=60) as http,
    ):
        assert daemon.services.supervisor.slots == 2  # one per GPU
        run_id = (
            await http.post("/api/train", json={"architecture": MLP, "hyperparams": hyperparams(device="auto")})
        ).json()
        state, metrics = await final_state(http, run_id["run_id"])
        assert state.startswith("failed: RuntimeError: device 'cuda' asked for, but "), state
        assert "CPU-only build" in state or "cannot be initialised (CUDA_VISIBLE_DEVICES=GPU-0000000" in state
        assert metrics == []
        assigned = {"index": 0, "uuid": "GPU-00000000-test", "name": "NVIDIA Test GPU"}
        assert (await http.get(f"/api/runs/{run_id['run_id']}")).json()["gpus"] == [assigned]
        assert (await http.get(f"/api/v1/runs/{run_id['run_id']}")).json()["gpus"] == [assigned]
        logs = (await http.get(f"/api/v1/runs/{run_id['run_id']}/logs")).json()["data"]
        assert any(line["message"] == "assigned GPU 0 (NVIDIA Test GPU, GPU-00000000-test)" for line in logs)
        # The GPU went back when the run ended: the next run gets GPU 0 again, not GPU 1.
        again = (
            await http.post("/api/train", json={"architecture": MLP, "hyperparams": hyperparams(device="auto")})
        ).json()
        await final_state(http, again["run_id"])
        assert (await http.get(f"/api/runs/{again['run_id']}")).json()["gpus"] == [assigned]


async def test_requests_for_a_gpu_that_is_absent_or_taken_are_refused(tmp_path: Path) -> None:
    async with (
        running_daemon(tmp_path / "state", Nvml(fake_pynvml(devices=2, pids=(4242,))), **DAEMON_SETTINGS) as daemon,
        daemon_client(daemon.url, timeout=60) as http,
    ):
        absent = await http.post("/api/train", json={"architecture": MLP, "hyperparams": hyperparams(device="cuda:5")})
        assert absent.status_code == 422
        assert "hyperparams.device" in absent.text and "there is no GPU 5: NVML lists 2" in absent.text
        busy = await http.post("/api/train", json={"architecture": MLP, "hyperparams": hyperparams(device="cuda:1")})
        assert busy.status_code == 409 and "GPU 1 is busy with processes pivotd did not start (pids 4242)" in busy.text
        # `auto` with every GPU busy trains on CPU, with every GPU hidden, and says so.
        run_id = (
            await http.post(
                "/api/train", json={"architecture": MLP, "hyperparams": hyperparams(epochs=1, device="auto")}
            )
        ).json()
        assert (await final_state(http, run_id["run_id"]))[0] == "succeeded"
        assert (await http.get(f"/api/runs/{run_id['run_id']}")).json()["gpus"] == []
        logs = (await http.get(f"/api/v1/runs/{run_id['run_id']}/logs")).json()["data"]
        assert any(line["message"] == "no free GPU: training on CPU" for line in logs)
