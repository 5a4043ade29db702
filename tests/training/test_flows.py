"""Seeds 001 and 003 end to end against a real daemon, training on real digits in worker processes."""

from __future__ import annotations

import httpx
import numpy as np
import pytest

from tests.training.helpers import CNN, MLP, final_state, hyperparams, sse

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("fork_server")]  # runs forked from a ready server


def digits(count: int) -> tuple[list[list[float]], list[int]]:
    from pivotd.training.datasets import DIGITS_FILE

    with np.load(DIGITS_FILE) as archive:
        images = archive["images"][-count:].reshape(count, -1) / 255.0
        labels = archive["labels"][-count:]
    return images.tolist(), labels.tolist()


async def test_seed_001_flow_train_stream_infer(http: httpx.AsyncClient) -> None:
    response = await http.post("/api/train", json={"architecture": CNN, "hyperparams": hyperparams()})
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["events_url"] == f"/api/runs/{body['run_id']}/events"
    assert body["model_id"].startswith("m_") and body["run_id"].startswith("r_")
    state, metrics = await final_state(http, body["run_id"])
    assert state == "succeeded"
    assert [m["epoch"] for m in metrics] == [1, 2]
    assert {"train_loss", "val_loss", "train_accuracy", "val_accuracy", "learning_rate"} <= set(metrics[0])

    # A finished run replays its history, then closes.
    replay = [event async for event, _ in sse(http, body["events_url"])]
    assert replay == ["metric", "metric", "state"]

    pixels, labels = digits(8)
    answer = await http.post("/api/infer", json={"run_id": body["run_id"], "pixels": pixels[0]})
    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert result["run_id"] == body["run_id"] and len(result["probabilities"]) == 10
    assert result["label"] == int(np.argmax(result["probabilities"]))
    assert abs(sum(result["probabilities"]) - 1) < 1e-4

    # Promote the run (seed 001's save workflow 2).
    saved = await http.post(f"/api/models/{body['model_id']}/save", json={"run_id": body["run_id"]})
    assert saved.status_code == 200, saved.text
    assert saved.json()["trained"] is True and saved.json()["saved_model_exists"] is True


async def test_seed_003_flow_models_params_infer_adhoc(http: httpx.AsyncClient) -> None:
    created = await http.post("/api/models", json={"architecture": MLP, "hyperparams": hyperparams()})
    assert created.status_code == 201, created.text
    model_id = created.json()["model_id"]
    assert created.json()["created_at"].endswith("+00:00")

    started = await http.post(f"/api/models/{model_id}/train", json={})
    assert started.status_code == 202
    assert started.json()["status"] == "queued"
    run_id = started.json()["run_id"]
    state, _ = await final_state(http, run_id)
    assert state == "succeeded"

    run = (await http.get(f"/api/runs/{run_id}")).json()
    assert run["state"] == "succeeded" and run["epoch"] == 2 and run["epochs_total"] == 2
    assert set(run["metrics"]) == {"train_loss", "train_accuracy", "val_loss", "val_accuracy"}
    param_id = run["param_id"]

    params = (await http.get(f"/api/params/{param_id}")).json()
    assert params["parameters"]["dtype"] == "float32" and params["parameters"]["layout"] == "row_major"
    layers = params["parameters"]["layers"]
    assert [layer["type"] for layer in layers] == ["linear", "relu", "linear", "softmax"]
    assert np.array(layers[0]["W"]).shape == (32, 784) and len(layers[0]["b"]) == 32
    assert params["size_bytes"] > 0

    inputs, labels = digits(64)
    answer = (await http.post("/api/infer", json={"param_id": param_id, "inputs": inputs,
                                                 "return": {"logits": True}})).json()  # fmt: skip
    assert len(answer["outputs"]["labels"]) == 64 and answer["latency_ms"] >= 0
    assert set(answer["outputs"]) == {"labels", "probabilities", "logits"}
    accuracy = np.mean(np.array(answer["outputs"]["labels"]) == np.array(labels))
    assert accuracy > 0.3  # 2 epochs on 320 digits: far above chance

    adhoc = await http.post(
        "/api/infer_adhoc",
        json={"architecture": MLP, "parameters": params["parameters"], "inputs": inputs},
    )
    assert adhoc.status_code == 200, adhoc.text
    assert adhoc.json()["outputs"]["labels"] == answer["outputs"]["labels"]
    assert np.allclose(adhoc.json()["outputs"]["probabilities"], answer["outputs"]["probabilities"], atol=1e-5)

    page = (await http.get(f"/api/models/{model_id}/runs", params={"limit": 1})).json()
    assert [item["run_id"] for item in page["items"]] == [run_id] and page["next_cursor"] is None
    listed = (await http.get("/api/models")).json()
    assert listed[0]["runs_total"] == 1 and listed[0]["latest_run"]["run_id"] == run_id

    # The managed run reported through the public ingest path: scalars and layer-wise steps.
    scalars = (await http.get(f"/api/v1/runs/{run_id}/scalars")).json()["series"]
    assert {"train/loss", "train/samples_per_s", "val_accuracy"} <= set(scalars)
    detail = (await http.get(f"/api/v1/runs/{run_id}", params={"steps": "latest"})).json()
    assert detail["kind"] == "managed" and detail["step_count"] > 0 and detail["status"] == "succeeded"
    assert detail["progress"] == 1.0 and detail["hyperparameters"]["epochs"] == 2 and detail["param_id"] == param_id
    assert [c["epoch"] for c in detail["checkpoints"]] == [1, 2] and "val_loss" in detail["metrics"]


async def test_layerwise_overhead_reaches_the_monitor(http: httpx.AsyncClient) -> None:
    """`layerwise_overhead: null` posts every `layerwise_every`-th step; a budget of 0.1% (a monitored step of
    this CNN costs far more than a thousandth of its stride) posts the first step and far fewer."""
    posted = []
    for overhead in (None, 0.001):
        hp = hyperparams(epochs=1, layerwise_every=1, layerwise_overhead=overhead, checkpoint_every=0)
        run_id = (await http.post("/api/train", json={"architecture": CNN, "hyperparams": hp})).json()["run_id"]
        assert (await final_state(http, run_id))[0] == "succeeded"
        posted.append([s["step"] for s in (await http.get(f"/api/v1/runs/{run_id}")).json()["steps"]])
    every_step, budgeted = posted
    assert every_step == list(range(10))  # 320 training digits in batches of 32
    assert budgeted[0] == 0 and len(budgeted) < len(every_step)
