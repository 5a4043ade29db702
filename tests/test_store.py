"""The SQLite store: migrations upgrade in place, retention follows seed 000's rule, writes group-commit."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from pivotd.store import PutSteps, Retention, Store
from pivotd.store.schema import MIGRATIONS, SCHEMA_VERSION, SchemaTooNewError, configure, migrate
from tests.daemon import daemon_client, running_daemon
from tests.payloads import layerwise_payload

LAYERWISE = "/api/v1/metrics/layerwise"
GENEROUS = Retention(max_runs=1000, max_steps_per_run=100_000, max_db_bytes=10**10)


def test_an_old_database_is_upgraded_in_place_keeping_its_data(tmp_path: Path) -> None:
    path = tmp_path / "pivot.db"
    conn = sqlite3.connect(path, isolation_level=None)
    configure(conn)
    migrate(conn, target=1)  # a database written by the first released schema
    conn.execute("INSERT INTO runs (run_id, created_at, last_update) VALUES ('old', 1, 2)")
    conn.execute("INSERT INTO steps (run, step, timestamp, batch_size, data) VALUES (1, 5, 1.0, 8, '{}')")
    conn.close()

    async def open_and_read() -> None:
        async with Store.open(path, GENEROUS) as store:
            run = await store.reader.get_run("old")
            assert run is not None and run.step_count == 1 and run.tags == [] and run.experiment_id is None
            assert await store.reader.events(run.ref) == []

    asyncio.run(open_and_read())
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == len(MIGRATIONS)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_upgrade_records_artifact_paths_relative_to_the_data_directory(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "pivot.db", isolation_level=None)
    configure(conn)
    migrate(conn, target=9)  # the last schema whose artifact paths were absolute
    old = "/srv/runs/pivot/runs"  # a data directory whose own path has a `runs` in it
    resume = {"path": f"{old}/r_1/epoch_0002.pth", "epoch": 2, "best": 0.5}
    conn.executemany(
        "INSERT INTO runs (run_id, kind, created_at, last_update, config) VALUES (?, ?, 1, 1, ?)",
        [("r_1", "managed", json.dumps({"resume_from": resume})), ("r_2", "managed", "{}"), ("ext", "external", None)],
    )  # an external run has no config at all
    conn.executemany(
        "INSERT INTO params (param_id, run_id, path, size_bytes, created_at) VALUES (?, ?, ?, 1, 1)",
        [
            ("p_1", "r_1", f"{old}/r_1/params.safetensors"),
            ("p_evicted", "r_9", f"{old}/r_9/params.safetensors"),  # params outlive their run row
            ("p_elsewhere", "r_2", "/mnt/weights/params.safetensors"),
        ],
    )
    conn.executemany(
        "INSERT INTO checkpoints (checkpoint_id, run, path, size_bytes, created_at) VALUES (?, ?, ?, 1, 1)",
        [
            ("c_trainer", 1, f"{old}/r_1/epoch_0002.pth"),
            ("c_upload", 1, f"{old}/r_1/uploads/c_upload.pth"),
            ("c_foreign", 2, f"{old}/r_1/epoch_0001.pth"),  # not under its own run's directory: not guessed at
        ],
    )
    conn.executemany(
        "INSERT INTO models (model_id, saved_model_path, saved_run_id, created_at, updated_at) VALUES (?, ?, ?, 1, 1)",
        [("m_promoted", f"{old}/r_1/params.safetensors", "r_1"), ("m_given", "/home/me/model.pt", None),
         ("m_none", None, None)],
    )  # fmt: skip
    migrate(conn)
    assert dict(conn.execute("SELECT param_id, path FROM params")) == {
        "p_1": "runs/r_1/params.safetensors",
        "p_evicted": "runs/r_9/params.safetensors",
        "p_elsewhere": "/mnt/weights/params.safetensors",
    }
    assert dict(conn.execute("SELECT checkpoint_id, path FROM checkpoints")) == {
        "c_trainer": "runs/r_1/epoch_0002.pth",
        "c_upload": "runs/r_1/uploads/c_upload.pth",
        "c_foreign": f"{old}/r_1/epoch_0001.pth",
    }
    assert dict(conn.execute("SELECT model_id, saved_model_path FROM models")) == {
        "m_promoted": "runs/r_1/params.safetensors",
        "m_given": "/home/me/model.pt",
        "m_none": None,
    }
    resumed = json.loads(conn.execute("SELECT config FROM runs WHERE run_id = 'r_1'").fetchone()[0])
    assert resumed == {"resume_from": {**resume, "path": "runs/r_1/epoch_0002.pth"}}


def test_a_newer_database_is_refused(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "pivot.db", isolation_level=None)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(SchemaTooNewError):
        migrate(conn)


async def test_retention_evicts_the_least_recently_updated_run(tmp_path: Path) -> None:
    async with running_daemon(tmp_path, max_runs=3) as daemon, daemon_client(daemon.url) as http:
        for run_id in ("r0", "r1", "r2"):
            await http.post(LAYERWISE, json=layerwise_payload(run_id, 0))
        await http.post(LAYERWISE, json=layerwise_payload("r0", 1))  # r0 is now the most recent
        await http.post(LAYERWISE, json=layerwise_payload("r3", 0))
        assert sorted((await http.get("/api/v1/runs")).json()) == ["r0", "r2", "r3"]


async def test_per_run_step_limit_drops_oldest_steps(tmp_path: Path) -> None:
    async with (
        running_daemon(tmp_path, max_steps_per_run=20, step_retention="drop_oldest") as daemon,
        daemon_client(daemon.url) as http,
    ):
        batch = [layerwise_payload("long", step) for step in range(50)]
        assert (await http.post(f"{LAYERWISE}/batch", json=batch)).status_code == 202
        await http.post(LAYERWISE, json=layerwise_payload("long", 50))
        detail = (await http.get("/api/v1/runs/long")).json()
        assert [s["step"] for s in detail["steps"]] == list(range(31, 51))
        assert detail["step_count"] == 20


async def test_per_run_step_limit_thins_older_steps_keeping_the_whole_timeline(tmp_path: Path) -> None:
    async with running_daemon(tmp_path, max_steps_per_run=40) as daemon, daemon_client(daemon.url) as http:
        nan = layerwise_payload("long", 30)
        nan["layer_statistics"][0]["gradient_flow"]["gradient_l2_norm"] = float("nan")
        for first in range(0, 200, 20):
            batch = [layerwise_payload("long", step) for step in range(first, first + 20) if step != 30]
            assert (await http.post(f"{LAYERWISE}/batch", json=batch)).status_code == 202
            if first == 20:  # step 30 is refused: a non-finite event names it
                body = json.dumps(nan).encode()  # Python writes NaN, as many clients do
                refused = await http.post(LAYERWISE, content=body, headers={"content-type": "application/json"})
                assert refused.status_code == 422
        detail = (await http.get("/api/v1/runs/long")).json()
        steps = [s["step"] for s in detail["steps"]]
    assert detail["step_count"] == len(steps) <= 40
    assert steps[0] == 0 and steps[-1] == 199  # the beginning survives, and the newest step
    assert {29, 31} <= set(steps)  # the neighbours of the refused step are kept however old
    assert steps[-10:] == list(range(190, 200))  # the recent end at full resolution
    gaps = [b - a for a, b in zip(steps, steps[1:], strict=False)]
    assert max(gaps[: len(gaps) // 3]) > max(gaps[-len(gaps) // 3 :])  # older steps are sparser


async def test_database_size_limit_evicts_old_runs_but_never_the_one_being_written(tmp_path: Path) -> None:
    limit = 1024 * 1024
    async with running_daemon(tmp_path, max_db_bytes=limit) as daemon, daemon_client(daemon.url) as http:
        for index in range(8):  # each run: 40 steps x 50 layers, about 200 KB stored
            batch = [layerwise_payload(f"big{index}", step, layers=50) for step in range(40)]
            assert (await http.post(f"{LAYERWISE}/batch", json=batch)).status_code == 202
        runs = (await http.get("/api/v1/runs")).json()
        assert "big7" in runs and "big0" not in runs
        assert 1 <= len(runs) < 8


async def test_managed_runs_in_flight_are_never_evicted(tmp_path: Path) -> None:
    async with running_daemon(tmp_path, max_runs=2) as daemon, daemon_client(daemon.url) as http:
        await http.post(LAYERWISE, json=layerwise_payload("training", 0))
        conn = sqlite3.connect(daemon.settings.db_path)  # as the trainer will mark it
        conn.execute("UPDATE runs SET kind = 'managed', status = 'running' WHERE run_id = 'training'")
        conn.commit()
        conn.close()
        for run_id in ("a", "b", "c"):
            await http.post(LAYERWISE, json=layerwise_payload(run_id, 0))
        # The run in flight stays and does not count against max_runs: the two newest others are kept.
        assert sorted((await http.get("/api/v1/runs")).json()) == ["b", "c", "training"]
        assert (await http.delete("/api/v1/runs/training")).status_code == 409


async def test_concurrent_requests_share_transactions(tmp_path: Path) -> None:
    async with Store.open(tmp_path / "pivot.db", GENEROUS) as store:
        from pivotd.ingest import step_record
        from shared.models import LayerwisePayload

        records = [step_record(LayerwisePayload.model_validate(layerwise_payload("g", s))) for s in range(200)]
        await asyncio.gather(*(store.writer.submit(PutSteps([record])) for record in records))
        assert store.writer.ops == 200
        assert store.writer.batches < 50  # many requests per commit, not one commit each
        run = await store.reader.get_run("g")
        assert run is not None and run.step_count == 200


async def test_a_failing_operation_does_not_fail_its_batch_neighbours(tmp_path: Path) -> None:
    async with Store.open(tmp_path / "pivot.db", GENEROUS) as store:
        from pivotd.errors import NotFound
        from pivotd.ingest import step_record
        from pivotd.store import DeleteRun
        from shared.models import LayerwisePayload

        good = PutSteps([step_record(LayerwisePayload.model_validate(layerwise_payload("ok", 0)))])
        results = await asyncio.gather(
            store.writer.submit(DeleteRun("missing")), store.writer.submit(good), return_exceptions=True
        )
        assert isinstance(results[0], NotFound) and results[1] == 1
        assert (await store.reader.get_run("ok")) is not None


async def test_an_idle_daemon_builds_no_run_list_messages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With no WebSocket client, nothing is subscribed to `runs`: ingest skips building its messages."""
    from websockets.asyncio.client import connect

    import pivotd.ingest

    built: list[str] = []
    original = pivotd.ingest.run_message

    def counted(kind: str, run: Any) -> str:
        built.append(kind)
        return original(kind, run)

    monkeypatch.setattr(pivotd.ingest, "run_message", counted)
    async with running_daemon(tmp_path) as daemon, daemon_client(daemon.url) as http:
        assert not daemon.services.hub.has_subscribers("runs")
        assert (await http.post(LAYERWISE, json=layerwise_payload("quiet", 0))).status_code == 202
        assert (await http.get("/api/v1/runs/quiet")).json()["step_count"] == 1  # ingested, and committed
        assert built == []
        # The same ingest with a `runs` subscriber does build them: the count above could have seen them.
        async with connect(daemon.ws_url) as ws:
            await ws.recv()
            await ws.send(json.dumps({"action": "subscribe", "topics": ["runs"]}))
            await ws.recv()
            assert (await http.post(LAYERWISE, json=layerwise_payload("heard", 0))).status_code == 202
            assert json.loads(await ws.recv())["type"] == "run_created"
        assert built == ["run_created"]
