"""One nesting limit (MAX_DEPTH) on free-form JSON, on every ingest route: deeper is a 4xx naming the field and
nothing is stored, so no read of a run, its experiment's runs or an export can fail to encode it later."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from shared.models.storable import MAX_DEPTH
from tests.daemon import RunningDaemon, iter_routes
from tests.payloads import contract_payload
from tests.training.helpers import MLP, hyperparams

# Past the limit; past orjson's 255-level encoder and pydantic's parser; past orjson's 1024-level parser and
# Python's recursion limit; far past everything.
TOO_DEEP = [MAX_DEPTH + 1, 253, 1000, 100_000]
JSON = {"content-type": "application/json"}


def nested(levels: int) -> str:
    return "[" * levels + "]" * levels


def with_deep(document: Any, levels: int) -> bytes:
    """`document` as JSON, with its `"@deep"` string replaced by arrays nested `levels` deep."""
    return json.dumps(document).replace('"@deep"', nested(levels)).encode()


def layerwise(run_id: str, experiment_id: str | None = None) -> dict[str, Any]:
    payload = contract_payload(run_id)
    payload["metadata"]["deep"] = "@deep"
    if experiment_id is not None:
        payload["metadata"]["experiment_id"] = experiment_id
    return payload


def fields(response: httpx.Response) -> list[str]:
    assert response.status_code == 422, response.text[:300]
    body = response.json()
    found = body["detail"] if "detail" in body else body["error"]["details"]  # family L's is FastAPI's list
    return [item["field"] for item in found]


async def new_experiment(http: httpx.AsyncClient) -> str:
    response = await http.post("/api/v1/experiments", json={"experiment": {"name": "deep"}})
    experiment_id: str = response.json()["data"]["id"]
    return experiment_id


@pytest.mark.parametrize("levels", TOO_DEEP)
@pytest.mark.shared_daemon  # refused: stores nothing, so these share one daemon
async def test_layerwise_routes_refuse_deep_metadata_naming_it(http: httpx.AsyncClient, levels: int) -> None:
    experiment_id = await new_experiment(http)
    single = await http.post("/api/v1/metrics/layerwise", content=with_deep(layerwise("a", experiment_id), levels))
    assert fields(single)[0].startswith("metadata.deep[0]")
    [problem] = single.json()["detail"]  # FastAPI's shape, located as the field is named
    assert problem["loc"] == ["body", "metadata", "deep", *[0] * problem["field"].count("[0]")], problem["loc"]
    batch = with_deep([contract_payload("b"), layerwise("a", experiment_id)], levels)
    assert fields(await http.post("/api/v1/metrics/layerwise/batch", content=batch, headers=JSON))[0].startswith(
        "[1].metadata.deep[0]"
    )
    assert (await http.get("/api/v1/runs")).json() == {}  # the batch is atomic: not even run b
    assert (await http.get(f"/api/v1/experiments/{experiment_id}/runs")).json()["data"] == []
    assert (await http.post(f"/api/v1/experiments/{experiment_id}/export")).status_code == 200


@pytest.mark.shared_daemon  # refused: stores nothing, so these share one daemon
async def test_a_large_body_nested_too_deep_past_its_first_part_names_the_body(http: httpx.AsyncClient) -> None:
    """Where the walk that finds the deep place stops (it runs on the event loop), the body is named as a whole."""
    padding = [contract_payload(f"p{i}") for i in range(200)]  # about 340 KiB of ordinary steps first
    body = with_deep([*padding, layerwise("a")], 1000)
    assert len(body) > 256 * 1024
    assert fields(await http.post("/api/v1/metrics/layerwise/batch", content=body, headers=JSON)) == ["body"]
    assert (await http.get("/api/v1/runs")).json() == {}


async def test_metadata_at_the_limit_is_stored_and_every_read_of_it_works(http: httpx.AsyncClient) -> None:
    experiment_id = await new_experiment(http)
    body = with_deep([layerwise("edge", experiment_id)], MAX_DEPTH)
    assert (await http.post("/api/v1/metrics/layerwise/batch", content=body, headers=JSON)).status_code == 202
    run = await http.get("/api/v1/runs/edge")
    assert run.status_code == 200 and json.dumps(run.json()["metadata"]["deep"]) == nested(MAX_DEPTH)
    assert (await http.get(f"/api/v1/experiments/{experiment_id}/runs")).json()["data"][0]["id"] == "edge"
    assert (await http.get("/api/v1/runs")).status_code == 200
    export = await http.post(f"/api/v1/experiments/{experiment_id}/export", json={"format": "json"})
    assert export.status_code == 200, export.text[:300]


@pytest.mark.parametrize("levels", TOO_DEEP)
async def test_other_ingest_routes_refuse_deep_values_naming_them(
    daemon: RunningDaemon, http: httpx.AsyncClient, levels: int
) -> None:
    experiment_id = await new_experiment(http)
    config = {"a": "@deep"}
    cases = [
        ("POST", "/api/v1/experiments", {"experiment": {"name": "x", "config": config}}, "experiment.config.a"),
        ("PATCH", f"/api/v1/experiments/{experiment_id}", {"experiment": {"config": config}}, "experiment.config.a"),
        ("POST", "/api/v1/models", {"model": {"name": "x", "config": {"a": "@deep"}}}, "model.config.a"),
        ("POST", "/api/v1/runs/s/scalars", {"points": [{"step": 1, "values": {"a": 1}}], "tags": "@deep"}, "tags"),
        ("POST", "/api/v1/runs/s/scalars", [{"step": 1, "values": {"a": "@deep"}}], "points[0].values.a"),
    ]
    for method, path, document, field in cases:
        response = await http.request(method, path, content=with_deep(document, levels), headers=JSON)
        assert fields(response)[0].startswith(field), (path, fields(response))
    assert (await http.get("/api/v1/experiments/" + experiment_id)).json()["data"]["config"] == {}
    assert [e["name"] for e in (await http.get("/api/v1/experiments")).json()["data"]] == ["deep"]
    assert (await http.get("/api/v1/models")).json()["data"] == []
    assert (await http.get("/api/v1/runs")).json() == {}


@pytest.mark.parametrize("levels", TOO_DEEP)
@pytest.mark.shared_daemon  # refused: stores nothing, so these share one daemon
async def test_telemetry_refuses_deep_metadata(http: httpx.AsyncClient, levels: int) -> None:
    body = with_deep({"events": [{"event_name": ["a"], "metadata": {"a": "@deep"}}]}, levels)
    response = await http.post("/api/v1/telemetry/events", content=body, headers=JSON)
    if response.status_code == 202:  # parsed: the one event is refused on its own
        data = response.json()["data"]
        assert data["rejected"] == 1 and data["errors"][0]["field"] == "metadata.a"
    else:  # too deep for any parser: the whole body is refused, naming where
        assert fields(response)[0].startswith("events[0].metadata.a[0]")
    assert (await http.get("/api/v1/telemetry/events", params={"filter[event_name]": "a"})).json()["data"] == []


@pytest.mark.parametrize("levels", [MAX_DEPTH, 300])
async def test_checkpoint_metrics_nest_at_most_the_limit(
    daemon: RunningDaemon, http: httpx.AsyncClient, levels: int
) -> None:
    config = {"architecture": MLP, "hyperparams": hyperparams()}
    session_id = (await http.post("/api/v1/training/sessions", json={"config": config})).json()["session_id"]
    files = {"file": ("ckpt.pth", b"never read", "application/octet-stream")}
    metrics = json.dumps({"a": json.loads(nested(levels - 1))})
    response = await http.post("/api/v1/checkpoints", files=files, data={"session_id": session_id, "metrics": metrics})
    if levels > MAX_DEPTH:
        assert fields(response)[0].startswith("metrics.a[0]")
        assert not (daemon.settings.runs_path / session_id / "uploads").exists()
    else:  # accepted as far as the metrics go: the file itself is then refused by its first bytes
        assert response.status_code == 422 and "metrics" not in response.text
        assert "neither a zip archive nor a pickle" in response.json()["error"]["message"]


async def test_no_route_answers_a_deep_body_with_a_500(daemon: RunningDaemon, http: httpx.AsyncClient) -> None:
    experiment_id = await new_experiment(http)
    targets = set()
    for route in iter_routes(daemon.app):
        for method in set(getattr(route, "methods", None) or ()) & {"POST", "PUT", "PATCH"}:
            path = route.path.replace("{experiment_id}", experiment_id)
            targets.add((method, path.replace("{", "").replace("}", "")))
    assert len(targets) > 30
    for method, path in sorted(targets):
        for levels in (300, 1100, 100_000):
            for document in ("@deep", {"name": "@deep"}, {"config": {"a": "@deep"}}):
                body = with_deep(document, levels)
                response = await http.request(method, path, content=body, headers=JSON)
                assert response.status_code < 500, (method, path, levels, body[:12], response.text[:200])
