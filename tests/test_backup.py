"""`pivotd backup` while ingest runs, `pivotd restore`, and a damaged or too-new database refused at start."""

from __future__ import annotations

import asyncio
import contextlib
import io
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from pivotd.cli import EXIT_REFUSED
from pivotd.store.schema import PAGE_SIZE, SCHEMA_VERSION
from tests.daemon import daemon_client, running_daemon
from tests.training.helpers import MLP, hyperparams

pytestmark = pytest.mark.slow


async def pivotd(*args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "pivotd.cli", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode is not None
    return process.returncode, stdout.decode(), stderr.decode()


async def ingest_until(http: httpx.AsyncClient, stop: asyncio.Event, under_way: asyncio.Event) -> None:
    """Post one scalar step of run `busy` after another until `stop`; `under_way` once 20 were committed."""
    step = 0
    while not stop.is_set():
        response = await http.post("/api/v1/runs/busy/scalars", json=[{"step": step, "values": {"v": step}}])
        assert response.status_code == 202, response.text
        step += 1
        if step == 20:
            under_way.set()


async def test_backup_taken_during_ingest_is_a_consistent_data_directory(tmp_path: Path) -> None:
    source, copy = tmp_path / "state", tmp_path / "backup"
    async with running_daemon(source) as daemon, daemon_client(daemon.url, timeout=30) as http:
        assert (await http.post("/api/v1/runs/before/scalars", json=[{"step": 1, "values": {"x": 1}}])).status_code
        (source / "token").write_text("the-daemons-own-token\n")  # what a daemon without PIVOT_TOKEN makes
        hook = await http.post("/api/v1/webhooks", json={"url": "http://127.0.0.1:9/hook", "events": ["*"]})
        assert hook.status_code == 201, hook.text
        checkpoint = checkpoint_bytes()
        checkpoint_id = await upload_checkpoint(http, checkpoint)
        async with daemon_client(daemon.url) as browser:
            opened = await browser.post("/api/v1/auth/session")
        assert opened.status_code == 201, opened.text
        session_cookie = {"cookie": opened.headers["set-cookie"].split(";")[0]}
        stop, under_way = asyncio.Event(), asyncio.Event()
        writer = asyncio.create_task(ingest_until(http, stop, under_way))
        await asyncio.wait_for(under_way.wait(), 30)
        code, out, err = await pivotd("backup", "--data-dir", str(source), str(copy))
        stop.set()
        await writer
    assert code == 0, err
    assert "backed up" in out and "runs" in out

    with contextlib.closing(sqlite3.connect(copy / "pivot.db")) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert (copy / "token").read_text() == (source / "token").read_text()
    shutil.rmtree(source)  # whatever the copy serves is its own
    async with running_daemon(copy) as restored, daemon_client(restored.url) as http:
        runs = (await http.get("/api/v1/runs")).json()
        assert {"before", "busy"} <= set(runs)
        series = (await http.get("/api/v1/runs/busy/scalars", params={"names": "v", "max_points": 100000})).json()
        steps = series["series"]["v"]["steps"]
        # A snapshot at one commit: every step acknowledged before the backup began, and no gap after it.
        assert steps == list(range(len(steps))) and len(steps) >= 20
        hooks = (await http.get("/api/v1/webhooks")).json()["webhooks"]
        assert [h["url"] for h in hooks] == ["http://127.0.0.1:9/hook"]
        downloaded = await http.get(f"/api/v1/checkpoints/{checkpoint_id}/download")
        assert downloaded.status_code == 200 and downloaded.content == checkpoint
        # Browser sessions are in the database: the copy knows them (a presented cookie is judged by itself).
        assert (await http.get("/api/v1/runs", headers=session_cookie)).status_code == 200


def checkpoint_bytes() -> bytes:
    import torch

    buffer = io.BytesIO()
    torch.save({"model": {"w": torch.ones(3, 2)}, "epoch": 1}, buffer)
    return buffer.getvalue()


async def upload_checkpoint(http: httpx.AsyncClient, content: bytes) -> str:
    """An artifact under runs/: a checkpoint uploaded to a (never started) training session."""
    config = {"architecture": MLP, "hyperparams": hyperparams()}
    session_id = (await http.post("/api/v1/training/sessions", json={"config": config})).json()["session_id"]
    files = {"file": ("ckpt.pth", content, "application/octet-stream")}
    # The daemon checks the file in a fresh interpreter that imports torch: seconds on a loaded machine.
    uploaded = await http.post("/api/v1/checkpoints", files=files, data={"session_id": session_id}, timeout=60)
    assert uploaded.status_code == 201, uploaded.text
    return str(uploaded.json()["checkpoint_id"])


async def test_backup_refuses_a_directory_that_is_not_empty(tmp_path: Path) -> None:
    source, dest = tmp_path / "state", tmp_path / "dest"
    async with running_daemon(source):
        pass
    dest.mkdir()
    (dest / "keep.txt").write_text("mine")
    code, _, err = await pivotd("backup", "--data-dir", str(source), str(dest))
    assert code == 1 and "not an empty directory" in err
    assert [p.name for p in dest.iterdir()] == ["keep.txt"]


async def test_restore_waits_for_the_daemon_and_replaces_only_when_asked(tmp_path: Path) -> None:
    data_dir, backup = tmp_path / "state", tmp_path / "backup"
    async with running_daemon(data_dir) as daemon, daemon_client(daemon.url) as http:
        await http.post("/api/v1/runs/kept/scalars", json=[{"step": 1, "values": {"x": 1}}])
        checkpoint = checkpoint_bytes()
        checkpoint_id = await upload_checkpoint(http, checkpoint)
        before = set((await http.get("/api/v1/runs")).json())  # "kept" and the checkpoint's session
        assert (await pivotd("backup", "--data-dir", str(data_dir), str(backup)))[0] == 0
        await http.post("/api/v1/runs/after-backup/scalars", json=[{"step": 1, "values": {"x": 1}}])
        later = await upload_checkpoint(http, checkpoint)

        code, _, err = await pivotd("restore", str(backup), "--data-dir", str(data_dir), "--force")
        assert code == EXIT_REFUSED and "another pivotd" in err and "stop it first" in err
        assert "after-backup" in (await http.get("/api/v1/runs")).json()  # untouched

    code, _, err = await pivotd("restore", str(backup), "--data-dir", str(data_dir))
    assert code == 1 and "--force" in err
    code, out, err = await pivotd("restore", str(backup), "--data-dir", str(data_dir), "--force")
    assert code == 0, err
    assert "restored" in out
    async with running_daemon(data_dir) as daemon, daemon_client(daemon.url) as http:
        assert set((await http.get("/api/v1/runs")).json()) == before
        downloaded = await http.get(f"/api/v1/checkpoints/{checkpoint_id}/download")
        assert downloaded.status_code == 200 and downloaded.content == checkpoint
    # The artifacts are the backup's: what was written after it is gone with the database that recorded it.
    assert [p.name for p in (data_dir / "runs").rglob("*.pth")] == [f"{checkpoint_id}.pth"]
    assert later != checkpoint_id


async def test_restore_refuses_a_damaged_backup_and_keeps_the_database(tmp_path: Path) -> None:
    data_dir, backup = tmp_path / "state", tmp_path / "backup.db"
    async with running_daemon(data_dir) as daemon, daemon_client(daemon.url) as http:
        await http.post("/api/v1/runs/mine/scalars", json=[{"step": 1, "values": {"x": 1}}])
    backup.write_bytes(b"SQLite format 3\x00" + b"\xff" * 8192)
    before = (data_dir / "pivot.db").read_bytes()
    code, _, err = await pivotd("restore", str(backup), "--data-dir", str(data_dir), "--force")
    assert code == 1 and "copying the database failed" in err
    assert (data_dir / "pivot.db").read_bytes() == before
    assert sorted(p.name for p in data_dir.iterdir() if p.name.startswith(".")) == []


def damage(db_path: Path) -> None:
    """Overwrite pages in the middle of the file, as a failing disk or a stray write would: from a page's start, so
    its header goes too (the middle of a page can be free space, or a blob's bytes, which no check can tell)."""
    size = db_path.stat().st_size
    with db_path.open("r+b") as handle:
        handle.seek(size // 2 // PAGE_SIZE * PAGE_SIZE)
        handle.write(b"\x5a" * 8192)


async def filled_database(data_dir: Path) -> Path:
    async with running_daemon(data_dir) as daemon, daemon_client(daemon.url) as http:
        for run in range(40):
            points = [{"step": s, "values": {"loss": s / 7, "acc": s / 9}} for s in range(50)]
            await http.post(f"/api/v1/runs/run{run}/scalars", json=points)
    return data_dir / "pivot.db"  # the daemon stopped cleanly: everything is in the main file


@pytest.mark.parametrize("kind", ["damaged pages", "not a database", "newer schema"])
async def test_a_database_that_must_not_be_opened_is_refused_whole(tmp_path: Path, kind: str) -> None:
    data_dir = tmp_path / "state"
    db_path = await filled_database(data_dir)
    if kind == "damaged pages":
        damage(db_path)
    elif kind == "not a database":
        db_path.write_bytes(b"this is not a database, whatever its name says" * 100)
    else:
        conn = sqlite3.connect(db_path)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
        conn.close()
    before = db_path.read_bytes()

    result = subprocess.run(
        [sys.executable, "-m", "pivotd.cli", "--port", "0", "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == EXIT_REFUSED, result.stderr
    expected = "newer pivotd" if kind == "newer schema" else "is damaged"
    assert expected in result.stderr and "pivotd restore" in result.stderr
    assert db_path.read_bytes() == before  # not opened for writing, not migrated, not "repaired"
    assert not (data_dir / "pivot.db-wal").exists()


async def test_a_backup_of_the_damaged_database_is_refused_too(tmp_path: Path) -> None:
    data_dir = tmp_path / "state"
    damage(await filled_database(data_dir))
    code, _, err = await pivotd("backup", "--data-dir", str(data_dir), str(tmp_path / "copy"))
    assert code == 1 and "is damaged" in err
    assert not (tmp_path / "copy").exists()  # no half-made backup left to be mistaken for a good one
