"""Inference input validation, and checkpoint uploads that must be refused without being executed."""

from __future__ import annotations

import io
import json
import pickle
from pathlib import Path

import httpx
import pytest
import torch

from shared.models.checkpoints import CheckpointList, CheckpointUploaded
from tests.daemon import RunningDaemon, daemon_client
from tests.training.helpers import MLP, cancel, final_state, hyperparams

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("fork_server")]  # runs forked from a ready server


async def trained(http: httpx.AsyncClient, **hp: object) -> dict[str, object]:
    run_id = (await http.post("/api/train", json={"architecture": MLP, "hyperparams": hyperparams(**hp)})).json()
    assert (await final_state(http, run_id["run_id"]))[0] == "succeeded"
    return (await http.get(f"/api/runs/{run_id['run_id']}")).json()  # type: ignore[no-any-return]


async def test_infer_validation(http: httpx.AsyncClient) -> None:
    run = await trained(http, epochs=1, max_samples=200)
    param_id, run_id = run["param_id"], run["run_id"]
    good = [0.5] * 784

    async def infer(body: dict[str, object] | bytes) -> httpx.Response:
        if isinstance(body, bytes):
            return await http.post("/api/infer", content=body, headers={"content-type": "application/json"})
        return await http.post("/api/infer", json=body)

    short = await infer({"param_id": param_id, "inputs": [good, [0.1] * 10]})
    assert short.status_code == 422 and short.json() == {"error": "inputs[1]: expected 784 numbers, got 10 values"}
    nan = await infer(
        json.dumps({"param_id": param_id, "inputs": [good, good, [*good[:5], float("nan"), *good[6:]]]}).encode()
    )
    assert nan.status_code == 422 and nan.json()["error"] == "inputs[2][5]: must be a finite number"
    text = await infer({"param_id": param_id, "inputs": [[*good[:3], "x", *good[4:]]]})
    assert text.status_code == 422 and text.json()["error"] == "inputs[0][3]: must be a number"
    big = await infer({"param_id": param_id, "inputs": [good] * 513})
    assert big.status_code == 422 and "batch of 513 inputs exceeds the maximum of 512" in big.json()["error"]
    full = await infer({"param_id": param_id, "inputs": [good] * 512})
    assert full.status_code == 200 and len(full.json()["outputs"]["labels"]) == 512
    pixels = await infer({"run_id": run_id, "pixels": good[:100]})
    assert pixels.status_code == 422 and pixels.json()["error"] == "pixels: expected 784 numbers, got 100 values"
    assert (await infer({"param_id": "p_nope", "inputs": [good]})).status_code == 404
    assert (await infer({"run_id": "r_nope", "pixels": good})).status_code == 404
    assert (await infer(b"{not json")).status_code == 400

    # An unfinished run: 409.
    long = hyperparams(epochs=50, max_samples=5000, batch_size=4)
    busy = (await http.post("/api/train", json={"architecture": MLP, "hyperparams": long})).json()["run_id"]
    unfinished = await infer({"run_id": busy, "pixels": good})
    assert unfinished.status_code == 409 and "succeeded run" in unfinished.json()["error"]
    assert await cancel(http, busy) == "cancelled"

    wrong = {"layers": [{"type": "linear", "W": [[1.0]]}]}
    adhoc = await http.post("/api/infer_adhoc", json={"architecture": MLP, "inputs": [good], "parameters": wrong})
    assert adhoc.status_code == 422 and "layers.0.weight has shape [1, 1], expected [32, 784]" in adhoc.json()["error"]


class Boom:
    """A pickle whose loading would run a shell command."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, ...]:
        import os

        return (os.system, (f"touch {self.marker}",))


async def upload(http: httpx.AsyncClient, session_id: str, content: bytes, name: str = "ckpt.pth") -> httpx.Response:
    files = {"file": (name, content, "application/octet-stream")}
    data = {"session_id": session_id, "epoch": "3", "metrics": json.dumps({"val_loss": 0.5})}
    return await http.post("/api/v1/checkpoints", files=files, data=data)


async def test_checkpoint_uploads(daemon: RunningDaemon, http: httpx.AsyncClient, tmp_path: Path) -> None:
    config = {"architecture": MLP, "hyperparams": hyperparams()}
    session_id = (await http.post("/api/v1/training/sessions", json={"config": config})).json()["session_id"]

    buffer = io.BytesIO()
    torch.save({"model": {"w": torch.ones(3, 2)}, "epoch": 3}, buffer)
    accepted = await upload(http, session_id, buffer.getvalue())
    assert accepted.status_code == 201, accepted.text
    checkpoint_id = CheckpointUploaded.model_validate(accepted.json()).checkpoint_id
    listing = (await http.get("/api/v1/checkpoints", params={"session_id": session_id})).json()
    listed = CheckpointList.model_validate(listing).model_dump()["checkpoints"]
    assert listed[0]["checkpoint_id"] == checkpoint_id and listed[0]["source"] == "upload"
    assert listed[0]["epoch"] == 3 and listed[0]["metric_value"] == 0.5
    download = await http.get(f"/api/v1/checkpoints/{checkpoint_id}/download")
    assert download.content == buffer.getvalue()

    marker = tmp_path / "pwned"
    malicious = io.BytesIO()
    torch.save({"model": Boom(marker)}, malicious, _use_new_zipfile_serialization=True)
    refused = await upload(http, session_id, malicious.getvalue())
    assert refused.status_code == 422, refused.text
    assert (
        refused.json()["error"]["code"] == "validation_error" and "weights_only" in refused.json()["error"]["message"]
    )
    raw_pickle = await upload(http, session_id, pickle.dumps(Boom(marker)))
    assert raw_pickle.status_code == 422
    assert not marker.exists(), "the upload's code was executed"

    garbage = await upload(http, session_id, b"this is not a checkpoint")
    assert garbage.status_code == 422 and "neither a zip archive nor a pickle" in garbage.json()["error"]["message"]
    no_tensors = io.BytesIO()
    torch.save({"epoch": 1}, no_tensors)
    assert (await upload(http, session_id, no_tensors.getvalue())).status_code == 422
    assert (await upload(http, session_id, buffer.getvalue(), name="ckpt.txt")).status_code == 422
    assert (await upload(http, "r_nope", buffer.getvalue())).status_code == 404
    # Only the accepted upload is on disk.
    uploads = daemon.settings.runs_path / session_id / "uploads"
    assert [p.name for p in uploads.iterdir()] == [f"{checkpoint_id}.pth"]


async def test_checkpoint_epoch_beyond_64_bits_is_refused_before_the_file_is_written(
    daemon: RunningDaemon, http: httpx.AsyncClient
) -> None:
    config = {"architecture": MLP, "hyperparams": hyperparams()}
    session_id = (await http.post("/api/v1/training/sessions", json={"config": config})).json()["session_id"]
    buffer = io.BytesIO()
    torch.save({"w": torch.ones(2)}, buffer)
    files = {"file": ("ckpt.pth", buffer.getvalue(), "application/octet-stream")}
    for epoch in (str(2**63), "-1"):
        response = await http.post("/api/v1/checkpoints", files=files, data={"session_id": session_id, "epoch": epoch})
        assert response.status_code == 422, response.text
        assert response.json()["error"]["details"][0]["field"] == "epoch"
    assert not (daemon.settings.runs_path / session_id / "uploads").exists()  # nothing left behind
    largest = {"session_id": session_id, "epoch": str(2**63 - 1)}
    assert (await http.post("/api/v1/checkpoints", files=files, data=largest)).status_code == 201


async def test_checkpoint_size_cap(tmp_path: Path) -> None:
    from tests.daemon import running_daemon

    async with (
        running_daemon(tmp_path / "state", max_checkpoint_bytes=4096) as daemon,
        daemon_client(daemon.url, timeout=30) as http,
    ):
        config = {"architecture": MLP, "hyperparams": hyperparams()}
        session_id = (await http.post("/api/v1/training/sessions", json={"config": config})).json()["session_id"]
        buffer = io.BytesIO()
        torch.save({"w": torch.ones(64, 64)}, buffer)
        response = await upload(http, session_id, buffer.getvalue())
        assert response.status_code == 413 and response.json()["error"]["code"] == "payload_too_large"


async def test_seeded_cpu_runs_are_reproducible(http: httpx.AsyncClient) -> None:
    first = await trained(http, epochs=2, max_samples=300)
    second = await trained(http, epochs=2, max_samples=300)
    assert first["metrics"] == second["metrics"]
    other = await trained(http, epochs=2, max_samples=300, seed=7)
    assert other["metrics"]["train_loss"] != first["metrics"]["train_loss"]
