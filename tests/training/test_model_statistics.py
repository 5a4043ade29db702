"""Real inference requests become `pivot.model.inference` telemetry, and seed 004's model statistics come from it."""

from __future__ import annotations

import httpx
import numpy as np
import pytest

from tests.training.helpers import MLP, final_state, hyperparams

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("fork_server")]  # runs forked from a ready server


async def test_inference_telemetry_and_statistics(http: httpx.AsyncClient) -> None:
    created = await http.post("/api/v1/models", json={"model": {"name": "digits", "config": {"architecture": MLP}}})
    model_id = created.json()["data"]["id"]
    run_id = (await http.post(f"/api/models/{model_id}/train", json={"hyperparams": hyperparams()})).json()["run_id"]
    # A queued or running run protects its model.
    deleting = await http.delete(f"/api/v1/models/{model_id}")  # the worker takes seconds just to import torch
    assert deleting.status_code == 409 and deleting.json()["error"]["code"] == "conflict"
    assert (await final_state(http, run_id))[0] == "succeeded"
    param_id = (await http.get(f"/api/runs/{run_id}")).json()["param_id"]
    shown = (await http.get(f"/api/v1/models/{model_id}")).json()["data"]
    assert shown["status"] == "active" and shown["last_trained_at"] is not None

    pixels = [0.0] * 784
    for batch in (1, 3, 2):
        ok = await http.post("/api/infer", json={"param_id": param_id, "inputs": [pixels] * batch})
        assert ok.status_code == 200, ok.text
    assert (await http.post("/api/infer", json={"run_id": run_id, "pixels": pixels})).status_code == 200
    assert (await http.post("/api/infer", json={"param_id": param_id, "inputs": [[1.0] * 5]})).status_code == 422
    assert (await http.post("/api/infer", json={"param_id": "p_missing", "inputs": [pixels]})).status_code == 404

    events = (
        await http.get(
            "/api/v1/telemetry/events",
            params={"filter[event_name]": "pivot.model.inference", "filter[model_id]": model_id, "per_page": 100},
        )
    ).json()["data"]
    assert len(events) == 5
    assert sorted(e["measurements"].get("batch_size") for e in events if e["metadata"]["status"] == "ok") == [
        1,
        1,
        2,
        3,
    ]
    failed = [e for e in events if e["metadata"]["status"] == "error"]
    assert [e["metadata"]["error"] for e in failed] == ["validation_error"]
    assert all(e["metadata"]["param_id"] == param_id for e in events)

    stats = (await http.get(f"/api/v1/models/{model_id}/statistics", params={"period": "1h"})).json()["data"]
    latencies = [e["measurements"]["duration_ms"] for e in events]
    assert stats["total_requests"] == 5
    assert stats["success_rate"] == pytest.approx(0.8)
    assert stats["avg_latency_ms"] == pytest.approx(float(np.mean(latencies)))
    assert stats["p99_latency_ms"] == pytest.approx(float(np.percentile(latencies, 99)))
    assert stats["total_tokens"] == 0
    assert stats["error_breakdown"] == {"validation_error": 1}
    missing = (
        await http.get("/api/v1/telemetry/events", params={"filter[event_name]": "pivot.model.inference",
                                                            "filter[metadata.param_id]": "p_missing"})
    ).json()["data"]  # fmt: skip
    assert missing[0]["metadata"]["error"] == "not_found" and missing[0]["metadata"]["model_id"] is None

    epochs = (
        await http.get("/api/v1/telemetry/events", params={"filter[event_name]": "pivot.training.epoch",
                                                           "filter[metadata.run_id]": run_id, "sort": "timestamp"})
    ).json()["data"]  # fmt: skip
    assert [e["measurements"]["epoch"] for e in epochs] == [1, 2]
    assert all(e["measurements"]["duration_ms"] > 0 for e in epochs)
    # Both epochs run the same number of steps: the step time is the epoch's time over its own steps.
    first, second = (e["measurements"] for e in epochs)
    assert second["steps"] == 2 * first["steps"]
    for m, steps in ((first, first["steps"]), (second, second["steps"] - first["steps"])):
        assert m["step_ms"] == pytest.approx(m["duration_ms"] / steps)

    assert (await http.delete(f"/api/v1/models/{model_id}")).status_code == 204
