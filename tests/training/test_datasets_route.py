"""The digits sample route serves real, correctly scaled images that a trained model recognises."""

from __future__ import annotations

import httpx
import pytest

from tests.training.helpers import MLP, final_state, hyperparams


async def test_samples_are_real_scaled_digits(http: httpx.AsyncClient) -> None:
    body = (await http.get("/api/v1/datasets/digits/samples", params={"count": 3, "offset": 10})).json()
    assert body["size"] == 5000 and [s["index"] for s in body["samples"]] == [10, 11, 12]
    for sample in body["samples"]:
        assert len(sample["pixels"]) == 784 and min(sample["pixels"]) >= 0 and max(sample["pixels"]) <= 1
        assert max(sample["pixels"]) > 0.5 and 0 <= sample["label"] <= 9


async def test_bad_paging_is_422_naming_the_field(http: httpx.AsyncClient) -> None:
    for params, field in (({"count": 0}, "count"), ({"count": 65}, "count"), ({"offset": 5000}, "offset")):
        response = await http.get("/api/v1/datasets/digits/samples", params=params)
        assert response.status_code == 422 and field in response.json()["error"]["message"]


@pytest.mark.usefixtures("fork_server")  # its run forked from a ready server (tests/conftest.py)
async def test_a_trained_model_reads_the_samples(http: httpx.AsyncClient) -> None:
    hp = hyperparams(epochs=3, max_samples=2000)
    run_id = (await http.post("/api/train", json={"architecture": MLP, "hyperparams": hp})).json()["run_id"]
    assert (await final_state(http, run_id))[0] == "succeeded"
    samples = (await http.get("/api/v1/datasets/digits/samples", params={"count": 20, "offset": 4000})).json()
    right = 0
    for sample in samples["samples"]:
        answer = (await http.post("/api/infer", json={"run_id": run_id, "pixels": sample["pixels"]})).json()
        right += answer["label"] == sample["label"]
    assert right >= 12  # far above the 2 of 20 that chance gives
