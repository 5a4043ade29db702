"""Scalar points: both body forms, last write wins, downsampling that keeps extremes, bad input."""

from __future__ import annotations

import json
import math

import httpx
import pytest

from tests.daemon import RunningDaemon

# One daemon for the module: each test writes its own run.
pytestmark = pytest.mark.shared_daemon


async def test_array_form_creates_the_run_and_reads_back(http: httpx.AsyncClient) -> None:
    points = [{"step": s, "epoch": s // 10, "values": {"train_loss": 1 / (s + 1), "lr": 0.1}} for s in range(30)]
    response = await http.post("/api/v1/runs/fresh/scalars", json=points)
    assert response.status_code == 202 and response.json() == {"status": "accepted", "run_id": "fresh", "points": 60}
    body = (await http.get("/api/v1/runs/fresh/scalars", params={"names": "train_loss"})).json()
    assert list(body["series"]) == ["train_loss"] and not body["downsampled"]
    assert body["series"]["train_loss"]["steps"] == list(range(30))
    assert body["series"]["train_loss"]["values"][3] == 0.25
    detail = (await http.get("/api/v1/runs/fresh", params={"steps": "none"})).json()
    assert detail["scalar_names"] == ["lr", "train_loss"]


async def test_object_form_carries_experiment_group_and_tags(http: httpx.AsyncClient) -> None:
    created = await http.post("/api/v1/experiments", json={"experiment": {"name": "e1"}})
    exp_id = created.json()["data"]["id"]
    body = {
        "points": [{"step": 1, "values": {"val_accuracy": 0.9}}],
        "experiment_id": exp_id,
        "group": "g",
        "tags": ["t"],
    }
    assert (await http.post("/api/v1/runs/obj/scalars", json=body)).status_code == 202
    detail = (await http.get("/api/v1/runs/obj", params={"steps": "none"})).json()
    assert (detail["experiment_id"], detail["group"], detail["tags"]) == (exp_id, "g", ["t"])


async def test_resending_a_point_replaces_it(http: httpx.AsyncClient) -> None:
    await http.post("/api/v1/runs/r/scalars", json=[{"step": 5, "values": {"loss": 1.0}}])
    await http.post("/api/v1/runs/r/scalars", json=[{"step": 5, "values": {"loss": 2.0}}])
    series = (await http.get("/api/v1/runs/r/scalars")).json()["series"]["loss"]
    assert series["steps"] == [5] and series["values"] == [2.0]


async def test_downsampling_keeps_spikes_first_and_last(http: httpx.AsyncClient) -> None:
    points = [{"step": s, "values": {"loss": 1.0 + 0.001 * math.sin(s)}} for s in range(10_000)]
    points[4321]["values"]["loss"] = 99.0  # a blow-up must survive any zoom level
    points[7777]["values"]["loss"] = -5.0
    for start in range(0, 10_000, 2500):
        await http.post("/api/v1/runs/long/scalars", json=points[start : start + 2500])
    body = (await http.get("/api/v1/runs/long/scalars", params={"max_points": 200})).json()
    series = body["series"]["loss"]
    assert body["downsampled"] and len(series["steps"]) <= 200
    assert series["steps"] == sorted(series["steps"])
    assert 4321 in series["steps"] and 99.0 in series["values"] and -5.0 in series["values"]
    assert series["steps"][0] == 0 and series["steps"][-1] == 9999
    window = (await http.get("/api/v1/runs/long/scalars", params={"from_step": 100, "to_step": 109})).json()
    assert window["series"]["loss"]["steps"] == list(range(100, 110))


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ([{"values": {"loss": 1}}], "points[0].step"),
        ([{"step": -1, "values": {"loss": 1}}], "points[0].step"),
        ([{"step": 2**63, "values": {"loss": 1}}], "points[0].step"),  # SQLite binds 64 bits at most
        ({"points": [{"step": 1, "epoch": 2**63, "values": {"loss": 1}}]}, "points[0].epoch"),
        ([{"step": 1, "values": {}}], "points[0].values"),
        ([{"step": 1, "values": {"bad name!": 1}}], "points[0].values"),
        ([{"step": 1, "values": {"loss": "low"}}], "points[0].values.loss"),
        ([{"step": 1, "timestamp": 1e20, "values": {"loss": 1}}], "points[0].timestamp"),  # no date shows it
        ({"points": []}, "points"),
        ({"pts": []}, "points"),
        ([], "points"),
    ],
)
async def test_bad_points_are_422_naming_the_field(http: httpx.AsyncClient, body: object, field: str) -> None:
    response = await http.post("/api/v1/runs/r/scalars", json=body)
    assert response.status_code == 422, response.text
    assert any(problem["field"].startswith(field) for problem in response.json()["detail"]), response.text


async def test_non_finite_value_is_refused_and_recorded(http: httpx.AsyncClient) -> None:
    body = '[{"step": 3, "values": {"train_loss": NaN}}]'
    response = await http.post(
        "/api/v1/runs/nanrun/scalars", content=body, headers={"content-type": "application/json"}
    )
    [problem] = response.json()["detail"]
    assert response.status_code == 422 and problem["field"] == "points[0].values.train_loss"
    assert (problem["loc"], problem["type"]) == (["body", "points", 0, "values", "train_loss"], "finite_number")
    [event] = (await http.get("/api/v1/runs/nanrun")).json()["events"]
    assert event["kind"] == "rejected_non_finite" and event["field"] == "points[0].values.train_loss"


async def test_invalid_run_id_in_path(http: httpx.AsyncClient) -> None:
    response = await http.post("/api/v1/runs/bad%20id/scalars", json=[{"step": 1, "values": {"x": 1}}])
    assert response.status_code == 422 and response.json()["detail"][0]["loc"] == ["path", "run_id"]


async def test_reading_scalars_of_unknown_run_is_404(http: httpx.AsyncClient) -> None:
    assert (await http.get("/api/v1/runs/ghost/scalars")).status_code == 404


async def test_scalars_are_pushed_to_run_topic(daemon: RunningDaemon, http: httpx.AsyncClient) -> None:
    from websockets.asyncio.client import connect

    async with connect(daemon.ws_url) as ws:
        await ws.recv()
        await ws.send(json.dumps({"action": "subscribe", "topics": ["run:live"]}))
        await ws.recv()
        await http.post("/api/v1/runs/live/scalars", json=[{"step": 1, "values": {"loss": 0.5}}])
        message = json.loads(await ws.recv())
        assert message == {"type": "scalars", "topic": "run:live", "run_id": "live",
                           "points": [{"step": 1, "values": {"loss": 0.5}}]}  # fmt: skip


@pytest.mark.own_daemon  # run `r` is also written by test_resending_a_point_replaces_it
async def test_run_summaries_carry_each_series_latest_value(daemon: RunningDaemon, http: httpx.AsyncClient) -> None:
    from websockets.asyncio.client import connect

    await http.post("/api/v1/runs/r/scalars", json=[{"step": 2, "values": {"loss": 0.5}}])
    await http.post("/api/v1/runs/r/scalars", json=[{"step": 1, "values": {"loss": 9.0, "acc": 0.1}}])  # older
    assert (await http.get("/api/v1/runs")).json()["r"]["latest"] == {"loss": 0.5, "acc": 0.1}
    assert (await http.get("/api/v1/runs/r", params={"steps": "none"})).json()["latest"] == {"loss": 0.5, "acc": 0.1}
    async with connect(daemon.ws_url) as ws:
        assert json.loads(await ws.recv())["data"]["r"]["latest"]["loss"] == 0.5
        await ws.send(json.dumps({"action": "subscribe", "topics": ["runs"]}))
        await ws.recv()
        await http.post("/api/v1/runs/r/scalars", json=[{"step": 3, "values": {"loss": 0.25}}])
        update = json.loads(await ws.recv())
        assert update["type"] == "run_updated" and update["data"]["latest"] == {"loss": 0.25, "acc": 0.1}
