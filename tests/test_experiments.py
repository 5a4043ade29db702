"""Experiments in seed 004's form against a real daemon: CRUD, filters, sort, paging edges, runs joining."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from tests.payloads import contract_payload

ENSEMBLE = {"type": "ensemble", "models": ["gpt-4", "claude-3"], "voting_strategy": "majority", "dataset": "mmlu"}

# Each test writes experiments and runs of its own: one daemon for the module, but for the tests that list them all.
pytestmark = pytest.mark.shared_daemon


async def create(http: httpx.AsyncClient, name: str, **fields: Any) -> dict[str, Any]:
    response = await http.post("/api/v1/experiments", json={"experiment": {"name": name, **fields}})
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


def error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()["error"]
    assert body["code"] == code and set(body) == {"code", "message", "details"}
    return body


async def test_seed_example_create_get_patch_delete(http: httpx.AsyncClient) -> None:
    created = await create(
        http, "New Ensemble Test", description="Testing majority voting", config=ENSEMBLE, tags=["ensemble"]
    )
    assert created["id"].startswith("exp_") and created["status"] == "pending"
    assert created["config"] == ENSEMBLE and created["tags"] == ["ensemble"]
    assert created["started_at"] is None and created["completed_at"] is None
    got = (await http.get(f"/api/v1/experiments/{created['id']}")).json()
    assert got["data"]["runs"] == [] and got["data"]["results_summary"]["total_runs"] == 0
    patch = {"experiment": {"name": "Updated Name", "description": "Updated description", "config": {"k": [1, 2]}}}
    response = await http.patch(f"/api/v1/experiments/{created['id']}", json=patch)
    assert response.status_code == 200
    updated = response.json()["data"]
    assert (updated["name"], updated["description"], updated["config"]) == (
        "Updated Name",
        "Updated description",
        {"k": [1, 2]},
    )
    assert updated["tags"] == ["ensemble"] and updated["updated_at"] >= created["updated_at"]
    assert (await http.delete(f"/api/v1/experiments/{created['id']}")).status_code == 204
    error(await http.get(f"/api/v1/experiments/{created['id']}"), 404, "not_found")
    error(await http.delete(f"/api/v1/experiments/{created['id']}"), 404, "not_found")
    error(await http.patch(f"/api/v1/experiments/{created['id']}", json=patch), 404, "not_found")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"experiment": {}}, "experiment.name"),
        ({"experiment": {"name": ""}}, "experiment.name"),
        ({"name": "unwrapped"}, "experiment"),
        ({"experiment": {"name": "x", "config": [1]}}, "experiment.config"),
        ({"experiment": {"name": "x", "color": "red"}}, "experiment.color"),
        ({"experiment": {"name": " \t "}}, "experiment.name"),
        ({"experiment": {"name": "a\u0000b"}}, "experiment.name"),
        ({"experiment": {"name": "x", "tags": [f"t{i}" for i in range(65)]}}, "experiment.tags"),
    ],
)
async def test_invalid_bodies_are_422_naming_the_field(http: httpx.AsyncClient, body: Any, field: str) -> None:
    details = error(await http.post("/api/v1/experiments", json=body), 422, "validation_error")["details"]
    assert field in [d["field"] for d in details]


async def test_patch_refuses_null_name_and_unknown_ids(http: httpx.AsyncClient) -> None:
    created = await create(http, "n")
    body = error(
        await http.patch(f"/api/v1/experiments/{created['id']}", json={"experiment": {"name": None}}),
        422,
        "validation_error",
    )
    assert "experiment.name" in body["message"]
    for name in ("   ", "nul\u0000"):
        body = error(
            await http.patch(f"/api/v1/experiments/{created['id']}", json={"experiment": {"name": name}}),
            422,
            "validation_error",
        )
        assert body["details"] == [{"field": "experiment.name", "message": body["details"][0]["message"]}]
        clone = await http.post(f"/api/v1/experiments/{created['id']}/clone", json={"name": name})
        assert error(clone, 422, "validation_error")["details"][0]["field"] == "name"
    assert (await http.get(f"/api/v1/experiments/{created['id']}")).json()["data"]["name"] == "n"
    error(await http.get("/api/v1/experiments/exp_0000"), 404, "not_found")
    error(
        await http.post("/api/v1/experiments", content=b"{", headers={"content-type": "application/json"}),
        400,
        "bad_request",
    )


@pytest.mark.own_daemon  # lists every experiment the daemon holds
async def test_filters_and_sort(http: httpx.AsyncClient) -> None:
    names = ["alpha run", "Beta run", "gamma"]
    made = [await create(http, name) for name in names]
    listing = (await http.get("/api/v1/experiments")).json()
    assert [e["name"] for e in listing["data"]] == names[::-1]  # -created_at by default
    assert listing["meta"]["total"] == 3 and listing["meta"]["page"] == 1 and listing["meta"]["per_page"] == 25
    partial = (await http.get("/api/v1/experiments", params={"filter[name]": "RUN"})).json()
    assert {e["name"] for e in partial["data"]} == {"alpha run", "Beta run"}
    by_name = (await http.get("/api/v1/experiments", params={"sort": "name"})).json()
    assert [e["name"] for e in by_name["data"]] == ["Beta run", "alpha run", "gamma"]  # SQLite's binary order
    after = made[0]["created_at"]
    newer = (await http.get("/api/v1/experiments", params={"filter[created_after]": after})).json()
    assert [e["name"] for e in newer["data"]] == ["gamma", "Beta run"]
    older = (await http.get("/api/v1/experiments", params={"filter[created_before]": made[2]["created_at"]})).json()
    assert [e["name"] for e in older["data"]] == ["Beta run", "alpha run"]
    pending = (await http.get("/api/v1/experiments", params={"filter[status]": "pending", "sort": "-status"})).json()
    assert pending["meta"]["total"] == 3
    running = (await http.get("/api/v1/experiments", params={"filter[status]": "running"})).json()
    assert running["data"] == [] and running["meta"]["total"] == 0
    for params, field in [
        ({"filter[status]": "done"}, "filter[status]"),
        ({"filter[created_after]": "yesterday"}, "filter[created_after]"),
        ({"sort": "-color"}, "sort"),
        ({"per_page": 101}, "per_page"),
        ({"per_page": 0}, "per_page"),
        ({"page": 0}, "page"),
        ({"cursor": "not-a-cursor"}, "cursor"),
    ]:
        details = error(await http.get("/api/v1/experiments", params=params), 422, "validation_error")["details"]
        assert details[0]["field"] == field, params


@pytest.mark.own_daemon  # lists every experiment the daemon holds
async def test_page_and_cursor_paging_edges(http: httpx.AsyncClient) -> None:
    ids = [(await create(http, f"e{i}"))["id"] for i in range(5)]
    newest_first = ids[::-1]
    last = (await http.get("/api/v1/experiments", params={"page": 3, "per_page": 2})).json()
    assert [e["id"] for e in last["data"]] == newest_first[4:]
    assert last["meta"]["has_more"] is False and last["meta"]["next_cursor"] is None and last["meta"]["total"] == 5
    beyond = (await http.get("/api/v1/experiments", params={"page": 9, "per_page": 2})).json()
    assert beyond["data"] == [] and beyond["meta"]["has_more"] is False
    full = (await http.get("/api/v1/experiments", params={"per_page": 100})).json()
    assert len(full["data"]) == 5 and full["meta"]["has_more"] is False

    first = (await http.get("/api/v1/experiments", params={"per_page": 2})).json()
    assert first["meta"]["has_more"] is True and first["meta"]["next_cursor"]
    # A row inserted between pages does not shift the pages that follow (the cursor is a position, not an offset).
    await create(http, "late")
    seen = [e["id"] for e in first["data"]]
    cursor = first["meta"]["next_cursor"]
    while cursor:
        page = (await http.get("/api/v1/experiments", params={"per_page": 2, "cursor": cursor})).json()
        seen += [e["id"] for e in page["data"]]
        cursor = page["meta"]["next_cursor"]
        assert page["meta"]["has_more"] is bool(cursor)
    assert seen == newest_first
    # A cursor belongs to its sort order.
    details = error(
        await http.get("/api/v1/experiments", params={"sort": "name", "cursor": first["meta"]["next_cursor"]}),
        422,
        "validation_error",
    )["details"]
    assert details[0]["field"] == "cursor"


@pytest.mark.own_daemon  # lists every experiment the daemon holds
async def test_cursor_paging_is_stable_under_concurrent_inserts(http: httpx.AsyncClient) -> None:
    for i in range(6):
        await create(http, f"old{i}")
    first = (await http.get("/api/v1/experiments", params={"per_page": 2})).json()
    seen = [e["name"] for e in first["data"]]
    cursor = first["meta"]["next_cursor"]
    # Newer rows land before the cursor in -created_at order: with offsets they would push rows already seen
    # into the next pages (duplicates); with the cursor every old row is seen exactly once.
    inserting = asyncio.gather(*(create(http, f"new{i}") for i in range(6)))
    while cursor:
        page = (await http.get("/api/v1/experiments", params={"per_page": 2, "cursor": cursor})).json()
        seen += [e["name"] for e in page["data"]]
        cursor = page["meta"]["next_cursor"]
    await inserting
    assert seen == [f"old{i}" for i in range(5, -1, -1)]


async def layerwise(http: httpx.AsyncClient, run_id: str, **metadata: Any) -> None:
    payload = contract_payload(run_id, step=1)
    payload["metadata"].update(metadata)
    assert (await http.post("/api/v1/metrics/layerwise", json=payload)).status_code == 202


@pytest.mark.own_daemon  # lists every experiment the daemon holds
async def test_runs_join_by_metadata_scalar_body_and_attach(http: httpx.AsyncClient) -> None:
    experiment = await create(http, "joined", config={"metric": "val_accuracy"})
    exp_id = experiment["id"]
    await layerwise(http, "lw-a", experiment_id=exp_id, group="lr=0.1", seed=1)
    scalars = {"points": [{"step": 1, "values": {"val_accuracy": 0.8}}], "experiment_id": exp_id, "group": "lr=0.01"}
    assert (await http.post("/api/v1/runs/sc-b/scalars", json=scalars)).status_code == 202
    await http.post("/api/v1/runs/loose-c/scalars", json=[{"step": 1, "values": {"val_accuracy": 0.9}}])
    await layerwise(http, "loose-d")

    response = await http.post(
        f"/api/v1/experiments/{exp_id}/runs", json={"run_ids": ["loose-c", "loose-d"], "group": "extra"}
    )
    assert response.status_code == 200
    assert [r["id"] for r in response.json()["data"]] == ["loose-c", "loose-d"]
    assert all(r["group"] == "extra" and r["experiment_id"] == exp_id for r in response.json()["data"])

    runs = (await http.get(f"/api/v1/experiments/{exp_id}/runs")).json()
    assert [(r["id"], r["group"], r["status"]) for r in runs["data"]] == [
        ("lw-a", "lr=0.1", "running"),
        ("sc-b", "lr=0.01", "running"),
        ("loose-c", "extra", "running"),
        ("loose-d", "extra", "running"),
    ]
    assert runs["data"][0]["metadata"]["seed"] == 1 and runs["data"][1]["metrics"] == {"val_accuracy": 0.8}
    assert runs["meta"]["total"] == 4
    grouped = (
        await http.get(f"/api/v1/experiments/{exp_id}/runs", params={"filter[group]": "extra", "per_page": 1})
    ).json()
    assert [r["id"] for r in grouped["data"]] == ["loose-c"] and grouped["meta"]["has_more"] is True
    rest = (
        await http.get(
            f"/api/v1/experiments/{exp_id}/runs",
            params={"filter[group]": "extra", "cursor": grouped["meta"]["next_cursor"]},
        )
    ).json()
    assert [r["id"] for r in rest["data"]] == ["loose-d"] and rest["meta"]["has_more"] is False
    done = (await http.get(f"/api/v1/experiments/{exp_id}/runs", params={"filter[status]": "completed"})).json()
    assert done["data"] == []

    detail = (await http.get(f"/api/v1/experiments/{exp_id}")).json()["data"]
    assert detail["status"] == "running" and detail["started_at"] is not None and detail["total_runs"] == 4
    summary = detail["results_summary"]
    assert summary["total_runs"] == 4 and summary["runs_by_status"] == {"running": 4}
    assert summary["metric"] == "val_accuracy" and summary["best_val_accuracy"] == 0.9
    assert summary["best_run"]["value"] == 0.9
    listed = (await http.get("/api/v1/experiments", params={"filter[status]": "running"})).json()
    assert [e["id"] for e in listed["data"]] == [exp_id]

    # Deleting the experiment keeps its runs, detached.
    assert (await http.delete(f"/api/v1/experiments/{exp_id}")).status_code == 204
    run = (await http.get("/api/v1/runs/loose-c", params={"steps": "none"})).json()
    assert run["experiment_id"] is None


async def test_attach_errors(http: httpx.AsyncClient) -> None:
    exp_id = (await create(http, "a"))["id"]
    await http.post("/api/v1/runs/real/scalars", json=[{"step": 1, "values": {"x": 1.0}}])
    body = error(
        await http.post(f"/api/v1/experiments/{exp_id}/runs", json={"run_ids": ["real", "ghost"]}), 404, "not_found"
    )
    assert "ghost" in body["message"] and body["details"] == {"run_ids": ["ghost"]}
    # All or nothing: the known run was not attached either.
    assert (await http.get(f"/api/v1/experiments/{exp_id}/runs")).json()["data"] == []
    error(await http.post("/api/v1/experiments/exp_none/runs", json={"run_ids": ["real"]}), 404, "not_found")
    error(await http.get("/api/v1/experiments/exp_none/runs"), 404, "not_found")
    error(await http.post(f"/api/v1/experiments/{exp_id}/runs", json={"run_ids": []}), 422, "validation_error")
    error(await http.get(f"/api/v1/experiments/{exp_id}/runs", params={"per_page": 500}), 422, "validation_error")


async def test_configs_that_could_not_be_read_back_are_refused(http: httpx.AsyncClient) -> None:
    """pydantic accepts any integer and 1e999; orjson cannot write them back, so one such row would break
    every later listing. They are 422s naming the field instead."""
    for raw, where in ((b"123456789012345678901234567890", "config.a"), (b"1e999", "config.a")):
        body = b'{"experiment": {"name": "x", "config": {"a": ' + raw + b"}}}"
        response = await http.post("/api/v1/experiments", content=body, headers={"content-type": "application/json"})
        assert response.status_code == 422, response.text
        assert where in response.json()["error"]["message"]
        model = b'{"model": {"name": "x", "config": {"k": [1, ' + raw + b"]}}}"
        response = await http.post("/api/v1/models", content=model, headers={"content-type": "application/json"})
        assert response.status_code == 422 and "config.k[1]" in response.json()["error"]["message"]
    assert (await http.get("/api/v1/experiments")).status_code == 200
    assert (await http.get("/api/v1/models")).status_code == 200


async def test_actions_whose_fields_are_all_optional_take_a_bare_post(http: httpx.AsyncClient) -> None:
    exp_id = (await http.post("/api/v1/experiments", json={"experiment": {"name": "bare"}})).json()["data"]["id"]
    clone = await http.post(f"/api/v1/experiments/{exp_id}/clone")
    assert clone.status_code == 201 and clone.json()["data"]["name"] == "bare (copy)"
    assert (await http.post(f"/api/v1/experiments/{exp_id}/export")).status_code == 200
    assert (await http.post("/api/v1/telemetry/export")).status_code == 200
    # Bodies are still checked when there is one.
    assert (await http.post(f"/api/v1/experiments/{exp_id}/clone", json={"nom": "x"})).status_code == 422


async def test_an_unknown_field_is_named_with_the_fields_it_could_be(http: httpx.AsyncClient) -> None:
    # Seed 004's Create Experiment body with one key misspelt.
    body = {
        "experiment": {
            "name": "New Ensemble Test",
            "description": "Testing majority voting",
            "config": {"type": "ensemble", "models": ["gpt-4", "claude-3"], "voting_strategy": "majority",
                       "dataset": "mmlu", "sample_size": 1000},
            "tag": ["ensemble", "comparison"],
        }
    }  # fmt: skip
    details = error(await http.post("/api/v1/experiments", json=body), 422, "validation_error")["details"]
    assert details == [
        {"field": "experiment.tag", "message": "unknown field 'tag' (did you mean 'tags'?); one of name, description, "
         "config, tags"}
    ]  # fmt: skip
    # A sweep's base hyperparameters: the same, under the config's path.
    sweep = {"type": "sweep", "architecture": {"input_size": 784, "layers": [{"type": "linear", "in": 784, "out": 10}]},
             "hyperparams": {"epoch": 1}, "variations": {"seed": [1, 2]}}  # fmt: skip
    details = error(
        await http.post("/api/v1/experiments", json={"experiment": {"name": "s", "config": sweep}}),
        422,
        "validation_error",
    )["details"]
    assert details[0]["field"] == "experiment.config.hyperparams.epoch"
    assert details[0]["message"].startswith("unknown field 'epoch' (did you mean 'epochs'?); one of epochs, batch_size")
