"""A full disk while ingesting: writes get a clear 507, reads go on, and nothing committed is damaged.

The data directory lives on a small tmpfs the test mounts (root only; skipped elsewhere), filled up by a
file the test then deletes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.sdk import Run
from tests.daemon import daemon_client, running_daemon


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "small-disk"
    mount.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a size-limited tmpfs needs root")
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)], capture_output=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)


def fill(mount: Path) -> Path:
    """Take every free byte of `mount` with one file."""
    filler = mount / "filler"
    # The suppression is the outer context: a write the disk took only in part leaves the rest buffered, and
    # closing the file tries to write it once more (ENOSPC again) after the loop has already stopped.
    with contextlib.suppress(OSError), filler.open("wb") as handle:
        while True:
            handle.write(b"\0" * 65536)
            handle.flush()
    return filler


def points(step: int) -> list[dict[str, object]]:
    return [{"step": step, "values": {f"metric_{i}": float(i) for i in range(64)}}]


async def test_disk_full_refuses_writes_keeps_reads_and_loses_nothing(
    small_disk: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data_dir = small_disk / "state"
    # pivotd's own writers hit the full disk too, and the built-in disk_full rule fires on the next sample.
    settings = {"telemetry_flush_interval_s": 0.05, "sample_interval_s": 0.2}
    async with running_daemon(data_dir, **settings) as daemon, daemon_client(daemon.url) as http:
        acknowledged = []
        for step in range(20):
            response = await http.post("/api/v1/runs/r1/scalars", json=points(step))
            assert response.status_code == 202
            acknowledged.append(step)
        filler = fill(small_disk)

        refused = None
        for step in range(20, 2000):  # what SQLite had preallocated fills first, then commits fail
            response = await http.post("/api/v1/runs/r1/scalars", json=points(step))
            if response.status_code == 202:
                acknowledged.append(step)
                continue
            refused = response
            break
        assert refused is not None, "the disk never filled"
        assert refused.status_code == 507
        error = refused.json()["detail"]
        assert error["error"] == "insufficient_storage" and "disk" in error["message"]
        new_run = await http.post("/api/v1/runs/r2/scalars", json=points(0))
        assert new_run.status_code == 507  # a new run is not created half-way either

        # Reads go on, and say the filesystem is the problem.
        assert (await http.get("/api/v1/runs")).status_code == 200
        health = await http.get("/api/v1/health")
        assert health.json()["components"]["filesystem"] == "unhealthy"
        series = (await http.get("/api/v1/runs/r1/scalars", params={"names": "metric_1"})).json()["series"]
        assert series["metric_1"]["steps"] == acknowledged

        # Said once in the log, not once per refused batch of every writer.
        full = [r.getMessage() for r in caplog.records if " is full " in r.getMessage()]
        assert len(full) == 1 and str(data_dir / "pivot.db") in full[0] and "writes are refused" in full[0]
        assert not [r for r in caplog.records if r.exc_info]

        # A training script's SDK keeps what it logs while the disk is full, and delivers it once there is room.
        script = Run("from-sdk", url=daemon.url, exit_timeout_s=0)
        for step in range(5):
            script.log(step, {"loss": 1.0 / (step + 1)})
        assert not await asyncio.to_thread(script.flush, 1.0)
        assert script.stats.retries >= 1 and script.stats.last_error.startswith("507")

        filler.unlink()
        assert await asyncio.to_thread(script.flush, 30.0)
        assert (script.stats.sent_points, script.stats.dropped, script.stats.rejected) == (5, 0, 0)
        after = await http.post("/api/v1/runs/r1/scalars", json=points(5000))
        assert after.status_code == 202, after.text
        # no longer unhealthy (it may read "degraded" until the next sample sees the freed space)
        assert (await http.get("/api/v1/health")).json()["components"]["filesystem"] != "unhealthy"
        assert "r2" not in (await http.get("/api/v1/runs")).json()
        script.finish()

    with contextlib.closing(sqlite3.connect(data_dir / "pivot.db")) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    async with running_daemon(data_dir) as daemon, daemon_client(daemon.url) as http:
        series = (await http.get("/api/v1/runs/r1/scalars", params={"names": "metric_1"})).json()["series"]
        assert series["metric_1"]["steps"] == [*acknowledged, 5000]
