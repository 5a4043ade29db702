"""A data directory moved elsewhere (a restored backup, another machine) serves its own artifacts, not the old ones."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from tests.daemon import daemon_client, running_daemon
from tests.training.helpers import DAEMON_SETTINGS, MLP, final_state, hyperparams

pytestmark = pytest.mark.usefixtures("fork_server")  # runs forked from a ready server (tests/conftest.py)

INPUTS = [[0.5] * 784, [0.0] * 392 + [1.0] * 392]


@pytest.mark.slow
async def test_a_moved_data_directory_reads_its_artifacts_where_they_now_are(tmp_path: Path) -> None:
    old, new = tmp_path / "old", tmp_path / "new"
    hp = hyperparams(epochs=1, max_samples=200, checkpoint_every=1)
    async with (
        running_daemon(old, **DAEMON_SETTINGS) as daemon,
        daemon_client(daemon.url, timeout=30) as http,
    ):
        model_id = (await http.post("/api/models", json={"architecture": MLP, "hyperparams": hp})).json()["model_id"]
        run_id = (await http.post(f"/api/models/{model_id}/train", json={})).json()["run_id"]
        assert (await final_state(http, run_id))[0] == "succeeded"
        param_id = (await http.get(f"/api/runs/{run_id}")).json()["param_id"]
        assert (await http.post(f"/api/models/{model_id}/save", json={"run_id": run_id})).status_code == 200
        [trained] = (await http.get(f"/api/v1/runs/{run_id}/checkpoints")).json()["data"]
        checkpoint = (await http.get(f"/api/v1/checkpoints/{trained['id']}/download")).content
        files = {"file": ("mine.pth", checkpoint, "application/octet-stream")}
        upload = await http.post("/api/v1/checkpoints", files=files, data={"session_id": run_id})
        upload_id = upload.json()["checkpoint_id"]
        params = (await http.get(f"/api/params/{param_id}")).json()["parameters"]
        outputs = (await http.post("/api/infer", json={"param_id": param_id, "inputs": INPUTS})).json()["outputs"]

    # What a daemon killed mid-run leaves behind: the run still `running`, its checkpoint recorded. (test_robustness
    # gets there by SIGKILL, which takes a long run and a daemon process.)
    conn = sqlite3.connect(old / "pivot.db")
    with conn:
        conn.execute("UPDATE runs SET status = 'running' WHERE run_id = ?", (run_id,))
    conn.close()
    old.rename(new)

    async with (
        running_daemon(new, resume_interrupted=True, **DAEMON_SETTINGS) as daemon,
        daemon_client(daemon.url, timeout=30) as http,
    ):
        # The worker loads the moved checkpoint (the old one is gone: reading it would fail the run) and rewrites
        # the same weights: nothing changes under the reads below.
        assert (await final_state(http, run_id))[0] == "succeeded"
        logs = [line["message"] for line in (await http.get(f"/api/v1/runs/{run_id}/logs")).json()["data"]]
        assert f"resuming from epoch 1 ({new}/runs/{run_id}/epoch_0001.pth)" in logs

        assert (await http.get(f"/api/params/{param_id}")).json()["parameters"] == params
        answer = await http.post("/api/infer", json={"param_id": param_id, "inputs": INPUTS})
        assert answer.json()["outputs"] == outputs
        model = (await http.get(f"/api/models/{model_id}")).json()
        assert model["saved_model_path"] == f"{new}/runs/{run_id}/params.safetensors" and model["saved_model_exists"]

        paths = {trained["id"]: f"{new}/runs/{run_id}/epoch_0001.pth",
                 upload_id: f"{new}/runs/{run_id}/uploads/{upload_id}.pth"}  # fmt: skip
        listed = (await http.get("/api/v1/checkpoints", params={"session_id": run_id})).json()["checkpoints"]
        assert {c["checkpoint_id"]: c["file_path"] for c in listed} == paths
        listed = (await http.get(f"/api/v1/runs/{run_id}/checkpoints")).json()["data"]
        assert {c["id"]: c["path"] for c in listed} == paths
        for download in (
            f"/api/v1/checkpoints/{trained['id']}/download",
            f"/api/v1/runs/{run_id}/checkpoints/{trained['id']}/download",
            f"/api/v1/checkpoints/{upload_id}/download",
        ):
            assert (await http.get(download)).content == checkpoint, download
        assert (await http.delete(f"/api/v1/checkpoints/{upload_id}")).status_code == 200
        assert not Path(paths[upload_id]).exists()
    assert not old.exists()  # nothing was written to (or recreated at) the old place


async def test_a_saved_model_path_given_inside_the_data_directory_moves_with_it(tmp_path: Path) -> None:
    old, new = tmp_path / "old", tmp_path / "new"
    async with running_daemon(old) as daemon, daemon_client(daemon.url) as http:
        (old / "exported.pt").write_bytes(b"weights")
        inside = await http.post("/api/models", json={"saved_model_path": str(old / "exported.pt")})
        outside = await http.post("/api/models", json={"saved_model_path": "/opt/models/m.pt"})
        refused = await http.post("/api/models", json={"saved_model_path": 7})
        assert refused.status_code == 400 and refused.json()["error"].startswith("saved_model_path: must be a string")
        empty = await http.post("/api/models", json={"saved_model_path": ""})
        assert empty.json() == {"error": "saved_model_path must be a non-empty string or null"}
    old.rename(new)
    async with running_daemon(new) as daemon, daemon_client(daemon.url) as http:
        model = (await http.get(f"/api/models/{inside.json()['model_id']}")).json()
        assert model["saved_model_path"] == f"{new}/exported.pt" and model["saved_model_exists"]
        model = (await http.get(f"/api/models/{outside.json()['model_id']}")).json()
        assert model["saved_model_path"] == "/opt/models/m.pt" and not model["saved_model_exists"]
