"""`/api/v1/models` (seed 004) over the same table as `/api/models`: CRUD, envelope, paging, errors."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from tests.training.helpers import CNN, MLP, hyperparams

MODELS = "/api/v1/models"
SEED_MODEL = {  # seed 004's create example
    "name": "Custom Model",
    "provider": "custom",
    "type": "llm",
    "config": {"endpoint": "https://api.example.com/v1/completions", "api_key_env": "CUSTOM_API_KEY"},
}


async def create(http: httpx.AsyncClient, model: dict[str, Any]) -> dict[str, Any]:
    response = await http.post(MODELS, json={"model": model})
    assert response.status_code == 201, response.text
    return response.json()["data"]  # type: ignore[no-any-return]


def error_field(response: httpx.Response) -> str:
    assert response.status_code == 422, response.text
    return str(response.json()["error"]["details"][0]["field"])


async def test_seed_example_round_trips(http: httpx.AsyncClient) -> None:
    model = await create(http, SEED_MODEL)
    assert model["id"].startswith("m_")
    assert {k: model[k] for k in ("name", "provider", "type", "config", "status")} == {**SEED_MODEL, "status": "active"}
    assert (await http.get(f"{MODELS}/{model['id']}")).json()["data"] == model
    # The same row is a model of the F/M routes.
    assert (await http.get(f"/api/models/{model['id']}")).json()["name"] == "Custom Model"


async def test_pivot_models_show_derived_fields(http: httpx.AsyncClient) -> None:
    mlp = await create(http, {"name": "mlp", "config": {"architecture": MLP, "hyperparams": hyperparams(), "note": 1}})
    assert (mlp["provider"], mlp["type"], mlp["status"]) == ("pivot", "mlp", "untrained")
    assert mlp["config"]["note"] == 1 and mlp["config"]["architecture"]["layers"][0]["out"] == 32
    stored = (await http.get(f"/api/models/{mlp['id']}")).json()
    assert stored["architecture"]["input_size"] == 784 and stored["hyperparams"]["epochs"] == 2
    # Created through /api, it shows up here with the derived words.
    cnn = (await http.post("/api/models", json={"name": "cnn", "architecture": CNN})).json()
    shown = (await http.get(f"{MODELS}/{cnn['model_id']}")).json()["data"]
    assert (shown["provider"], shown["type"], shown["status"]) == ("pivot", "cnn", "untrained")


async def test_update_and_delete(http: httpx.AsyncClient) -> None:
    model = await create(http, SEED_MODEL)
    path = f"{MODELS}/{model['id']}"
    patched = await http.patch(path, json={"model": {"name": "Renamed", "status": "deprecated", "config": {"a": 1}}})
    assert patched.status_code == 200, patched.text
    data = patched.json()["data"]
    assert (data["name"], data["status"], data["config"], data["provider"]) == (
        "Renamed",
        "deprecated",
        {"a": 1},
        "custom",
    )
    reset = (await http.patch(path, json={"model": {"status": None}})).json()["data"]
    assert reset["status"] == "active"
    assert (await http.delete(path)).status_code == 204
    assert (await http.get(path)).status_code == 404
    assert (await http.delete(path)).json()["error"]["code"] == "not_found"
    assert (await http.patch(path, json={"model": {"name": "x"}})).status_code == 404


@pytest.mark.shared_daemon  # refused requests: one daemon for all these cases
@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "model"),
        ({"model": {}}, "model.name"),
        ({"model": {"name": ""}}, "model.name"),
        ({"model": {"name": "x", "colour": "red"}}, "model.colour"),
        ({"model": {"name": "x", "config": []}}, "model.config"),
    ],
)
async def test_create_is_validated(http: httpx.AsyncClient, body: dict[str, Any], field: str) -> None:
    assert error_field(await http.post(MODELS, json=body)) == field


@pytest.mark.shared_daemon  # refused requests: one daemon for all these cases
async def test_invalid_architecture_is_a_422(http: httpx.AsyncClient) -> None:
    bad = {"input_size": 784, "layers": [{"type": "linear", "in": 784, "out": 7}]}
    response = await http.post(MODELS, json={"model": {"name": "x", "config": {"architecture": bad}}})
    assert response.status_code == 422 and response.json()["error"]["message"].startswith("model.config.architecture")
    assert response.json()["error"]["details"] == [
        {"field": "model.config.architecture", "message": "layers[0] (linear): the model outputs 7 values but the "
         "dataset has 10 classes"}
    ]  # fmt: skip
    # Every field the message names is a field of details, with its message, both from `model.config`.
    body = {"model": {"name": "x", "config": {"hyperparams": {"epochs": 0, "batch_size": "many"}}}}
    error = (await http.post(MODELS, json=body)).json()["error"]
    fields = [d["field"] for d in error["details"]]
    assert fields == ["model.config.hyperparams.epochs", "model.config.hyperparams.batch_size"]
    assert error["message"] == "; ".join(f"{d['field']}: {d['message']}" for d in error["details"])


async def test_hyperparams_show_without_an_architecture_and_status_is_checked(http: httpx.AsyncClient) -> None:
    model = await create(http, {"name": "hp-only", "config": {"hyperparams": {"epochs": 2}, "other": 1}})
    assert model["config"]["other"] == 1 and model["config"]["hyperparams"]["epochs"] == 2
    path = f"{MODELS}/{model['id']}"
    patched = await http.patch(path, json={"model": {"config": {"hyperparams": {"epochs": 3}}}})
    assert patched.status_code == 200, patched.text
    assert set(patched.json()["data"]["config"]) == {"hyperparams"}
    assert patched.json()["data"]["config"]["hyperparams"]["epochs"] == 3
    assert (await http.get(f"/api/models/{model['id']}")).json()["hyperparams"]["epochs"] == 3
    for status in ("bogus", "", "ACTIVE"):
        assert error_field(await http.patch(path, json={"model": {"status": status}})) == "model.status"
        assert error_field(await http.post(MODELS, json={"model": {"name": "s", "status": status}})) == "model.status"
    assert (await http.get(path)).json()["data"]["status"] == "active"
    for status in ("inactive", "untrained", "active"):
        assert (await http.patch(path, json={"model": {"status": status}})).json()["data"]["status"] == status


async def test_list_pages_and_cursor(http: httpx.AsyncClient) -> None:
    ids = [(await create(http, {"name": f"model {i}"}))["id"] for i in range(7)]
    first = (await http.get(MODELS, params={"per_page": 3})).json()
    assert [m["id"] for m in first["data"]] == ids[:3]
    assert first["meta"]["total"] == 7 and first["meta"]["has_more"]
    last = (await http.get(MODELS, params={"per_page": 3, "page": 3})).json()
    assert [m["id"] for m in last["data"]] == ids[6:] and not last["meta"]["has_more"]
    walked, cursor = [], None
    while True:
        params: dict[str, Any] = {"per_page": 2} | ({"cursor": cursor} if cursor else {})
        page = (await http.get(MODELS, params=params)).json()
        walked += [m["id"] for m in page["data"]]
        if not page["meta"]["has_more"]:
            break
        cursor = page["meta"]["next_cursor"]
    assert walked == ids
    assert error_field(await http.get(MODELS, params={"per_page": 101})) == "per_page"
    assert error_field(await http.get(MODELS, params={"cursor": "@@"})) == "cursor"


async def test_name_filter_is_partial_case_insensitive_and_pages(http: httpx.AsyncClient) -> None:
    # Seed 004's common `filter[field]`: a user lists "their resnet models" by name, as experiments do.
    names = ["ResNet small", "mlp", "resnet large", "50%_off", "other resnet"]
    ids = {name: (await create(http, {"name": name}))["id"] for name in names}
    found = (await http.get(MODELS, params={"filter[name]": "RESNET", "per_page": 2})).json()
    assert [m["id"] for m in found["data"]] == [ids["ResNet small"], ids["resnet large"]]
    assert found["meta"]["total"] == 3 and found["meta"]["has_more"]
    rest = await http.get(MODELS, params={"filter[name]": "RESNET", "cursor": found["meta"]["next_cursor"]})
    assert [m["id"] for m in rest.json()["data"]] == [ids["other resnet"]] and not rest.json()["meta"]["has_more"]
    literal = (await http.get(MODELS, params={"filter[name]": "%_"})).json()  # LIKE's wildcards match themselves
    assert [m["id"] for m in literal["data"]] == [ids["50%_off"]]
    assert (await http.get(MODELS, params={"sort": "created_at"})).json()["meta"]["total"] == 5
    assert error_field(await http.get(MODELS, params={"sort": "name", "filter[name]": "x"})) == "sort"
    assert error_field(await http.get(MODELS, params={"filter[provider]": "openai"})) == "filter[provider]"


async def test_concurrent_creates_page_and_cursor_walks_see_each_model_once(http: httpx.AsyncClient) -> None:
    # Creates in one group commit share created_at and model ids are random: the walk must break ties by a key
    # the cursor filter and the ORDER BY agree on, or a cursor walk skips some models and repeats others.
    made = await asyncio.gather(*(create(http, {"name": f"concurrent {i}"}) for i in range(30)))
    by_cursor: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"per_page": 2} | ({"cursor": cursor} if cursor else {})
        page = (await http.get(MODELS, params=params)).json()
        by_cursor += [m["id"] for m in page["data"]]
        assert page["meta"]["total"] == 30
        if not page["meta"]["has_more"]:
            break
        cursor = page["meta"]["next_cursor"]
    by_page: list[str] = []
    for number in range(1, 16):
        page = (await http.get(MODELS, params={"per_page": 2, "page": number})).json()
        by_page += [m["id"] for m in page["data"]]
        assert page["meta"]["has_more"] is (number < 15)
    assert by_cursor == by_page
    assert sorted(by_cursor) == sorted(m["id"] for m in made)
    created = {m["id"]: m["created_at"] for m in made}
    assert [created[i] for i in by_cursor] == sorted(created.values())  # oldest first


async def test_statistics_of_an_unused_model(http: httpx.AsyncClient) -> None:
    model = await create(http, SEED_MODEL)
    stats = (await http.get(f"{MODELS}/{model['id']}/statistics", params={"period": "1h"})).json()["data"]
    assert stats["total_requests"] == 0 and stats["success_rate"] is None and stats["error_breakdown"] == {}
    assert error_field(await http.get(f"{MODELS}/{model['id']}/statistics", params={"period": "2h"})) == "period"
    assert (await http.get(f"{MODELS}/m_missing/statistics")).status_code == 404
