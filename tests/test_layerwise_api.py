"""Seed 000's REST routes against a real daemon: every documented example, and bad input on purpose."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from pivotd.store.training import CreateJob, Transition
from shared.client import AsyncPivotClient, PivotAPIError
from shared.models import Step
from tests.daemon import RunningDaemon
from tests.payloads import DELETE, contract_payload, layerwise_payload, mutated

LAYERWISE = "/api/v1/metrics/layerwise"


async def post(http: httpx.AsyncClient, payload: Any, path: str = LAYERWISE) -> httpx.Response:
    return await http.post(path, json=payload)


def problems(response: httpx.Response) -> list[dict[str, Any]]:
    """Family L's 422 as FastAPI sends it: `{"detail": [...]}`, each item `loc`, `msg`, `type` (`ctx` for
    json_invalid) and pivotd's `field`."""
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/json"
    detail = response.json()["detail"]
    assert isinstance(detail, list) and detail, detail
    for item in detail:
        assert set(item) - {"ctx"} == {"loc", "msg", "type", "field"}, item
        assert item["loc"][0] in ("body", "query", "path") and item["msg"] and item["type"], item
    return detail


def located(response: httpx.Response) -> list[tuple[list[str | int], str]]:
    return [(item["loc"], item["type"]) for item in problems(response)]


async def experiment(http: httpx.AsyncClient) -> str:
    """A new experiment's id: runs join only experiments that exist."""
    response = await http.post("/api/v1/experiments", json={"experiment": {"name": "joined"}})
    assert response.status_code == 201, response.text
    experiment_id: str = response.json()["data"]["id"]
    return experiment_id


class TestSeedExamples:
    async def test_post_answers_202_with_run_id(self, http: httpx.AsyncClient) -> None:
        response = await post(http, contract_payload())
        assert response.status_code == 202
        assert response.json() == {"status": "accepted", "run_id": "experiment_2024_0210_v2"}

    async def test_runs_list_has_seed_shape(self, http: httpx.AsyncClient) -> None:
        await post(http, contract_payload("experiment_2024_0210_v2", 1400))
        await post(http, contract_payload("experiment_2024_0210_v2", 1500))
        await post(http, contract_payload("test_run_1707589200", 90))
        runs = (await http.get("/api/v1/runs")).json()
        assert set(runs) == {"experiment_2024_0210_v2", "test_run_1707589200"}
        run = runs["experiment_2024_0210_v2"]
        assert run["step_count"] == 2 and run["latest_step"] == 1500
        assert "T" in run["created_at"] and "T" in run["last_update"]
        assert runs["test_run_1707589200"]["latest_step"] == 90

    async def test_run_detail_returns_steps_sorted_with_normalised_ids(self, http: httpx.AsyncClient) -> None:
        for step in (1500, 1400, 1450):
            await post(http, contract_payload(step=step))
        detail = (await http.get("/api/v1/runs/experiment_2024_0210_v2")).json()
        assert {"created_at", "last_update", "steps"} <= set(detail)
        assert [s["step"] for s in detail["steps"]] == [1400, 1450, 1500]
        first = detail["steps"][0]
        assert set(first) == {"step", "timestamp", "batch_size", "layers", "cross_layer", "layer_groups"}
        assert first["timestamp"] == 1707589200.123 and first["batch_size"] == 64
        assert [layer["layer_id"] for layer in first["layers"]] == ["encoder/linear1", "encoder/relu", "head/linear"]
        assert first["layer_groups"] == {"encoder": ["encoder/linear1", "encoder/relu"], "head": ["head/linear"]}
        assert first["cross_layer"]["gradient_norm_ratio"]["head/linear_to_prev"] == 0.42
        Step.model_validate(first)

    async def test_stored_step_round_trips_every_field(self, http: httpx.AsyncClient) -> None:
        sent = contract_payload()
        await post(http, sent)
        latest = (await http.get("/api/v1/runs/experiment_2024_0210_v2/latest")).json()
        # The stored step, written out from the contract rather than by the code under test (to_step): metadata
        # moves to the top, layer_statistics become layers and cross_layer_analysis cross_layer, ids use "/".
        meta, layers = sent["metadata"], sent["layer_statistics"]
        expected = {
            "step": meta["global_step"],
            "timestamp": meta["timestamp"],
            "batch_size": meta["batch_size"],
            "layers": [{**layer, "layer_id": layer["layer_id"].replace(".", "/")} for layer in layers],
            "cross_layer": sent["cross_layer_analysis"],
            "layer_groups": {group: [i.replace(".", "/") for i in ids] for group, ids in meta["layer_groups"].items()},
        }
        assert latest == expected
        assert "bias" not in latest["layers"][1]["parameter_statistics"]

    async def test_latest_is_the_highest_step(self, http: httpx.AsyncClient) -> None:
        for step in (5, 9, 7):
            await post(http, contract_payload(step=step))
        assert (await http.get("/api/v1/runs/experiment_2024_0210_v2/latest")).json()["step"] == 9

    async def test_reposting_a_step_replaces_it(self, http: httpx.AsyncClient) -> None:
        await post(http, contract_payload(step=3))
        await post(http, mutated("metadata.batch_size", 128, contract_payload(step=3)))
        detail = (await http.get("/api/v1/runs/experiment_2024_0210_v2")).json()
        assert [(s["step"], s["batch_size"]) for s in detail["steps"]] == [(3, 128)]
        assert detail["step_count"] == 1

    async def test_unknown_run_is_404_in_seed_envelope(self, http: httpx.AsyncClient) -> None:
        for path in ("/api/v1/runs/nope", "/api/v1/runs/nope/latest"):
            response = await http.get(path)
            assert response.status_code == 404
            assert response.json() == {"detail": {"error": "not_found", "message": "Run 'nope' not found"}}

    async def test_health_counts_websocket_connections(self, http: httpx.AsyncClient) -> None:
        body = (await http.get("/health")).json()
        assert body["status"] == "healthy" and body["active_connections"] == 0

    async def test_metadata_extras_are_kept_on_the_run(self, http: httpx.AsyncClient) -> None:
        exp_id = await experiment(http)
        payload = contract_payload("tagged")
        payload["metadata"] |= {"experiment_id": exp_id, "group": "lr=0.1", "tags": ["a", "b"], "model": "mlp"}
        assert (await post(http, payload)).status_code == 202
        detail = (await http.get("/api/v1/runs/tagged", params={"steps": "none"})).json()
        assert (detail["experiment_id"], detail["group"], detail["tags"]) == (exp_id, "lr=0.1", ["a", "b"])
        assert detail["metadata"] == {"model": "mlp"}
        assert "steps" not in detail

    async def test_an_unknown_experiment_is_not_joined_but_the_step_is_stored(self, http: httpx.AsyncClient) -> None:
        exp_id = await experiment(http)
        for step, named in enumerate((exp_id, "exp_missing", "exp_missing")):
            payload = layerwise_payload("orphan", step)
            payload["metadata"] |= {"experiment_id": named, "group": "g"}
            assert (await post(http, payload)).status_code == 202
        detail = (await http.get("/api/v1/runs/orphan", params={"steps": "none"})).json()
        assert (detail["experiment_id"], detail["group"], detail["step_count"]) == (exp_id, "g", 3)
        notes = [e for e in detail["events"] if e["kind"] == "unknown_experiment"]
        assert len(notes) == 1 and "'exp_missing' not found" in notes[0]["message"], detail["events"]
        assert notes[0]["field"] == "experiment_id"
        members = (await http.get(f"/api/v1/experiments/{exp_id}/runs")).json()["data"]
        assert [run["id"] for run in members] == ["orphan"]
        # A run it creates, and the scalar route: the same rule.
        fresh = layerwise_payload("fresh", 0)
        fresh["metadata"]["experiment_id"] = "exp_missing"
        assert (await post(http, fresh)).status_code == 202
        body = {"points": [{"step": 0, "values": {"loss": 1.0}}], "experiment_id": "exp_missing"}
        assert (await http.post("/api/v1/runs/scalars/scalars", json=body)).status_code == 202
        for run_id in ("fresh", "scalars"):
            detail = (await http.get(f"/api/v1/runs/{run_id}", params={"steps": "none"})).json()
            assert detail["experiment_id"] is None and [e["kind"] for e in detail["events"]] == ["unknown_experiment"]


class TestRunQueries:
    async def test_steps_parameter_and_bounds(self, http: httpx.AsyncClient) -> None:
        for step in range(10):
            await post(http, layerwise_payload("q", step))
        latest = (await http.get("/api/v1/runs/q", params={"steps": "latest"})).json()
        assert [s["step"] for s in latest["steps"]] == [9]
        bounded = (await http.get("/api/v1/runs/q", params={"from_step": 3, "to_step": 5})).json()
        assert [s["step"] for s in bounded["steps"]] == [3, 4, 5]

    async def test_lite_history_keeps_only_health_signals(self, http: httpx.AsyncClient) -> None:
        await post(http, contract_payload("lite"))
        layer = (await http.get("/api/v1/runs/lite", params={"lite": "true"})).json()["steps"][0]["layers"][0]
        assert set(layer) == {
            "layer_id", "layer_type", "depth_index", "activation_std",
            "cross_layer_std_ratio", "gradient_l2_norm", "gradient_max_abs", "spectral_norm",
        }  # fmt: skip

    async def test_paging_filters_and_sort(self, http: httpx.AsyncClient) -> None:
        even, odd = await experiment(http), await experiment(http)
        for index in range(5):
            payload = layerwise_payload(f"run{index}", 0)
            payload["metadata"]["experiment_id"] = even if index % 2 == 0 else odd
            await post(http, payload)
        page = await http.get("/api/v1/runs", params={"page": 2, "per_page": 2})
        assert list(page.json()) == ["run2", "run3"]
        assert page.headers["x-total-count"] == "5"
        assert 'rel="next"' in page.headers["link"] and 'rel="prev"' in page.headers["link"]
        evens = (await http.get("/api/v1/runs", params={"filter[experiment_id]": even, "sort": "-run_id"})).json()
        assert list(evens) == ["run4", "run2", "run0"]
        [bad] = problems(await http.get("/api/v1/runs", params={"sort": "password"}))
        assert bad["loc"] == ["query", "sort"] and "must be one of created_at" in bad["msg"]
        too_many = await http.get("/api/v1/runs", params={"per_page": 101})
        assert located(too_many) == [(["query", "per_page"], "less_than_equal")]

    async def test_status_filter_takes_run_states_and_family_c_words(
        self, daemon: RunningDaemon, http: httpx.AsyncClient
    ) -> None:
        await post(http, layerwise_payload("ext", 0))  # an external run is `running`
        writer = daemon.services.store.writer
        for run_id, state in (("waiting", "created"), ("done", "succeeded"), ("broke", "failed")):
            await writer.submit(CreateJob(run_id, "created", {}, 1))  # `created` runs wait for a start: no worker
            if state != "created":
                await writer.submit(Transition(run_id, state, ("created",)))
        expected = {
            "completed": ["done"], "succeeded": ["done"], "pending": ["waiting"], "created": ["waiting"],
            "running": ["ext"], "failed": ["broke"], "cancelled": [],
        }  # fmt: skip
        for status, run_ids in expected.items():
            response = await http.get("/api/v1/runs", params={"filter[status]": status})
            assert response.status_code == 200 and list(response.json()) == run_ids, status
            assert response.headers["x-total-count"] == str(len(run_ids))
        listed = (await http.get("/api/v1/runs")).json()
        assert {run_id: run["status"] for run_id, run in listed.items()} == {
            "ext": "running", "waiting": "created", "done": "succeeded", "broke": "failed"
        }  # fmt: skip
        for params, field in [
            ({"filter[status]": "bogus"}, "filter[status]"),
            ({"filter[bogus]": "1"}, "filter[bogus]"),
        ]:
            response = await http.get("/api/v1/runs", params=params)
            [problem] = problems(response)
            assert (problem["loc"], problem["field"]) == (["query", field], field)

    async def test_delete_run(self, http: httpx.AsyncClient) -> None:
        await post(http, contract_payload("doomed"))
        assert (await http.delete("/api/v1/runs/doomed")).status_code == 204
        assert (await http.get("/api/v1/runs/doomed")).status_code == 404
        assert (await http.delete("/api/v1/runs/doomed")).status_code == 404


class TestBatchRoute:
    async def test_batch_commits_all_steps(self, http: httpx.AsyncClient) -> None:
        batch = [layerwise_payload("a", step) for step in range(5)] + [layerwise_payload("b", 0)]
        response = await http.post(f"{LAYERWISE}/batch", json=batch)
        assert response.status_code == 202
        assert response.json() == {"status": "accepted", "accepted": 6, "run_ids": ["a", "b"]}
        runs = (await http.get("/api/v1/runs")).json()
        assert runs["a"]["step_count"] == 5 and runs["b"]["step_count"] == 1

    async def test_one_bad_item_rejects_the_batch_naming_it(self, http: httpx.AsyncClient) -> None:
        batch = [layerwise_payload("a", 0), mutated("metadata.run_id", "bad id!", layerwise_payload("a", 1))]
        response = await http.post(f"{LAYERWISE}/batch", json=batch)
        [problem] = problems(response)
        assert (problem["loc"], problem["field"]) == (["body", 1, "metadata", "run_id"], "[1].metadata.run_id")
        assert problem["type"] == "string_pattern_mismatch"
        assert (await http.get("/api/v1/runs")).json() == {}

    @pytest.mark.parametrize(("body", "kind"), [("[]", "too_short"), ('{"metadata": {}}', "list_type")])
    async def test_empty_or_non_array_batch(self, http: httpx.AsyncClient, body: str, kind: str) -> None:
        response = await http.post(f"{LAYERWISE}/batch", content=body, headers={"content-type": "application/json"})
        assert located(response) == [(["body"], kind)]


LAYER = ["body", "layer_statistics"]
FEATURES = [*LAYER, 0, "intermediate_features"]
GRADIENTS = [*LAYER, 0, "gradient_flow"]
WEIGHT = [*LAYER, 0, "parameter_statistics", "weight"]
BIAS = [*LAYER, 0, "parameter_statistics", "bias"]
GE = "greater_than_equal"
# (path to break, value, where FastAPI's `loc` must point, pydantic's error type)
BAD_FIELDS = [
    ("metadata.run_id", "has space", ["body", "metadata", "run_id"], "string_pattern_mismatch"),
    ("metadata.run_id", "", ["body", "metadata", "run_id"], "string_too_short"),
    ("metadata.run_id", "x" * 129, ["body", "metadata", "run_id"], "string_too_long"),
    ("metadata.run_id", DELETE, ["body", "metadata", "run_id"], "missing"),
    ("metadata.run_id", 123456, ["body", "metadata", "run_id"], "string_type"),
    ("metadata.global_step", -1, ["body", "metadata", "global_step"], GE),
    ("metadata.global_step", "ten", ["body", "metadata", "global_step"], "int_parsing"),
    ("metadata.global_step", 1.5, ["body", "metadata", "global_step"], "int_from_float"),
    ("metadata.batch_size", 0, ["body", "metadata", "batch_size"], GE),
    # Integers SQLite and the JSON encoder cannot hold: refused, not a 500 (or a run no read can return).
    ("metadata.global_step", 2**63, ["body", "metadata", "global_step"], "less_than_equal"),
    ("metadata.batch_size", 2**63, ["body", "metadata", "batch_size"], "less_than_equal"),
    ("layer_statistics[2].depth_index", 2**63, [*LAYER, 2, "depth_index"], "less_than_equal"),
    (
        "layer_statistics[0].intermediate_features.activation_shape",
        [2**63, 4],
        [*FEATURES, "activation_shape", 0],
        "less_than_equal",
    ),
    ("metadata.seed", 2**63, ["body", "metadata", "seed"], "value_error"),
    ("metadata.extra", {"a": [1, -(2**70)]}, ["body", "metadata", "extra", "a", 1], "value_error"),
    ("metadata.timestamp", "yesterday", ["body", "metadata", "timestamp"], "float_parsing"),
    # Seed 000's reference server refuses a timestamp of 0 or less, and negative deviations and norms.
    ("metadata.timestamp", -1707589200.123, ["body", "metadata", "timestamp"], "greater_than"),
    ("metadata.timestamp", 0, ["body", "metadata", "timestamp"], "greater_than"),
    ("layer_statistics[0].intermediate_features.activation_std", -0.82, [*FEATURES, "activation_std"], GE),
    (
        "layer_statistics[1].intermediate_features.cross_layer_std_ratio",
        -0.71,
        [*LAYER, 1, "intermediate_features", "cross_layer_std_ratio"],
        GE,
    ),
    ("layer_statistics[0].gradient_flow.gradient_l2_norm", -0.31, [*GRADIENTS, "gradient_l2_norm"], GE),
    ("layer_statistics[0].gradient_flow.gradient_std", -0.002, [*GRADIENTS, "gradient_std"], GE),
    ("layer_statistics[0].gradient_flow.gradient_max_abs", -0.04, [*GRADIENTS, "gradient_max_abs"], GE),
    ("layer_statistics[0].parameter_statistics.weight.std", -0.05, [*WEIGHT, "std"], GE),
    ("layer_statistics[0].parameter_statistics.weight.spectral_norm", -1.9, [*WEIGHT, "spectral_norm"], GE),
    ("layer_statistics[0].parameter_statistics.weight.frobenius_norm", -5.2, [*WEIGHT, "frobenius_norm"], GE),
    ("layer_statistics[0].parameter_statistics.bias.std", -0.01, [*BIAS, "std"], GE),
    ("layer_statistics[0].parameter_statistics.bias.mean_abs", -0.004, [*BIAS, "mean_abs"], GE),
    ("metadata", DELETE, ["body", "metadata"], "missing"),
    ("layer_statistics", [], LAYER, "too_short"),
    ("layer_statistics", DELETE, LAYER, "missing"),
    ("layer_statistics", {"0": {}}, LAYER, "list_type"),
    ("cross_layer_analysis", DELETE, ["body", "cross_layer_analysis"], "missing"),
    ("layer_statistics[1].depth_index", -2, [*LAYER, 1, "depth_index"], GE),
    ("layer_statistics[2].depth_index", 0, [*LAYER, 2, "depth_index"], "value_error"),
    ("layer_statistics[0].intermediate_features.activation_shape", [64], [*FEATURES, "activation_shape"], "too_short"),
    ("layer_statistics[0].gradient_flow", DELETE, GRADIENTS, "missing"),
    ("layer_statistics[0].gradient_flow.gradient_std", "big", [*GRADIENTS, "gradient_std"], "float_parsing"),
    ("layer_statistics[0].parameter_statistics.weight.spectral_norm", DELETE, [*WEIGHT, "spectral_norm"], "missing"),
    (
        "cross_layer_analysis.gradient_norm_ratio",
        [1, 2],
        ["body", "cross_layer_analysis", "gradient_norm_ratio"],
        "dict_type",
    ),
]


# One daemon for the class: refused input stores nothing (the tests that store keep their own).
@pytest.mark.shared_daemon
class TestBadInput:
    @pytest.mark.parametrize(("path", "value", "loc", "kind"), BAD_FIELDS)
    async def test_invalid_field_is_422_locating_it(
        self, http: httpx.AsyncClient, path: str, value: Any, loc: list[str | int], kind: str
    ) -> None:
        response = await post(http, mutated(path, value))
        assert located(response) == [(loc, kind)]
        assert (await http.get("/api/v1/runs")).json() == {}

    async def test_a_missing_run_id_reads_as_fastapi_says_it(self, http: httpx.AsyncClient) -> None:
        response = await post(http, mutated("metadata.run_id", DELETE))
        missing = {"loc": ["body", "metadata", "run_id"], "msg": "Field required", "type": "missing"}
        assert response.status_code == 422 and response.json() == {"detail": [missing | {"field": "metadata.run_id"}]}

    async def test_unsorted_layers_say_which_and_why(self, http: httpx.AsyncClient) -> None:
        [problem] = problems(await post(http, mutated("layer_statistics[2].depth_index", 0)))
        assert problem["msg"] == (
            "layers must be sorted by depth_index, but layer 'head.linear' (depth_index 0) comes after "
            "'encoder.relu' (depth_index 1)"
        )
        assert problem["field"] == "layer_statistics[2].depth_index"

    async def test_an_empty_object_names_every_missing_part(self, http: httpx.AsyncClient) -> None:
        assert located(await post(http, {})) == [
            (["body", "metadata"], "missing"),
            (["body", "layer_statistics"], "missing"),
            (["body", "cross_layer_analysis"], "missing"),
        ]

    @pytest.mark.parametrize(
        ("path", "value"),
        [
            # Means and slopes may be negative; a zero deviation is a dead layer, not an error.
            ("layer_statistics[0].intermediate_features.activation_mean", -0.5),
            ("layer_statistics[0].parameter_statistics.weight.mean", -0.01),
            ("cross_layer_analysis.feature_std_gradient", -3.0),
            ("layer_statistics[0].intermediate_features.activation_std", 0.0),
            ("layer_statistics[1].intermediate_features.cross_layer_std_ratio", 0.0),
            ("layer_statistics[0].gradient_flow.gradient_std", -0.0),
        ],
    )
    @pytest.mark.own_daemon  # stores a run
    async def test_what_may_be_negative_or_zero_is_accepted(
        self, http: httpx.AsyncClient, path: str, value: float
    ) -> None:
        assert (await post(http, mutated(path, value))).status_code == 202

    @pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e999"])
    @pytest.mark.own_daemon  # counts the events recorded on run nan_run
    async def test_non_finite_is_rejected_and_recorded_on_the_run(self, http: httpx.AsyncClient, literal: str) -> None:
        body = json.dumps(contract_payload("nan_run", 7)).replace(
            '"gradient_l2_norm": 0.31', f'"gradient_l2_norm": {literal}', 1
        )
        response = await http.post(LAYERWISE, content=body, headers={"content-type": "application/json"})
        assert located(response) == [([*GRADIENTS, "gradient_l2_norm"], "finite_number")]
        detail = (await http.get("/api/v1/runs/nan_run")).json()
        assert detail["steps"] == [] and detail["step_count"] == 0
        [event] = detail["events"]
        assert event["kind"] == "rejected_non_finite" and event["step"] == 7
        assert event["field"] == "layer_statistics[0].gradient_flow.gradient_l2_norm"

    @pytest.mark.parametrize("literal", ["NaN", "-Infinity", "1e999"])
    async def test_non_finite_metadata_extra_is_422_naming_it(self, http: httpx.AsyncClient, literal: str) -> None:
        body = json.dumps(mutated("metadata.seed", "X")).replace('"seed": "X"', f'"seed": {literal}')
        for path, sent in ((LAYERWISE, body), (f"{LAYERWISE}/batch", f"[{body}]")):
            response = await http.post(path, content=sent, headers={"content-type": "application/json"})
            [problem] = problems(response)
            assert problem["loc"][-2:] == ["metadata", "seed"] and problem["field"].endswith("metadata.seed")
        assert (await http.get("/api/v1/runs")).json() == {}

    @pytest.mark.parametrize(
        ("body", "offset", "reason"),
        [(b'{"metadata": {"run_id": "test"', 30, "Expecting ',' delimiter"), (b"invalid json", 0, "Expecting value")],
    )
    async def test_malformed_json_is_a_422_as_fastapi_says_it(
        self, http: httpx.AsyncClient, body: bytes, offset: int, reason: str
    ) -> None:
        problem = {
            "loc": ["body", offset],
            "msg": "JSON decode error",
            "type": "json_invalid",
            "ctx": {"error": reason},
        }
        for path in (LAYERWISE, f"{LAYERWISE}/batch"):
            response = await http.post(path, content=body, headers={"content-type": "application/json"})
            assert response.status_code == 422 and response.json() == {"detail": [problem | {"field": "body"}]}
        # Families that answer 400 for a body that is not JSON still do.
        other = await http.post("/api/v1/experiments", content=body, headers={"content-type": "application/json"})
        assert other.status_code == 400 and other.json()["error"]["code"] == "bad_request"

    async def test_top_level_array_is_422(self, http: httpx.AsyncClient) -> None:
        assert located(await post(http, [contract_payload()])) == [(["body"], "model_type")]

    async def test_empty_body_is_a_missing_body(self, http: httpx.AsyncClient) -> None:
        missing = {"loc": ["body"], "msg": "Field required", "type": "missing", "field": "body"}
        for path in (LAYERWISE, f"{LAYERWISE}/batch"):
            response = await http.post(path, headers={"content-type": "application/json"})
            assert response.status_code == 422 and response.json() == {"detail": [missing]}

    @pytest.mark.own_daemon  # stores a run
    async def test_bad_parameters_are_located_in_the_query_or_path(self, http: httpx.AsyncClient) -> None:
        await post(http, contract_payload("q"))
        assert located(await http.get("/api/v1/runs/q", params={"from_step": -1})) == [
            (["query", "from_step"], "greater_than_equal")
        ]
        assert located(await http.get("/api/v1/runs/q", params={"steps": "some"})) == [
            (["query", "steps"], "literal_error")
        ]
        for response in (await http.get("/api/v1/runs/a%20b"), await http.get("/api/v1/runs/a%20b/latest")):
            assert located(response) == [(["path", "run_id"], "string_pattern_mismatch")]

    async def test_pivots_clients_read_the_list_as_one_message(self, daemon: RunningDaemon) -> None:
        bad = mutated("metadata.global_step", -1, mutated("layer_statistics[0].gradient_flow.gradient_std", "big"))
        async with AsyncPivotClient(daemon.url) as client:
            with pytest.raises(PivotAPIError) as refused:
                await client.post_layerwise(bad)
        assert (refused.value.status, refused.value.code) == (422, "validation_error")
        assert refused.value.message == (
            "metadata.global_step: Input should be greater than or equal to 0; "
            "layer_statistics[0].gradient_flow.gradient_std: Input should be a valid number, "
            "unable to parse string as a number"
        )

    async def test_wrong_content_type_is_415(self, http: httpx.AsyncClient) -> None:
        response = await http.post(LAYERWISE, data={"run_id": "x"})  # form-encoded, curl -d style
        assert response.status_code == 415
        assert "application/json" in response.json()["detail"]["message"]

    @pytest.mark.own_daemon  # stores a run
    async def test_missing_content_type_is_accepted(self, http: httpx.AsyncClient) -> None:
        # Scripts doing requests.post(url, data=json.dumps(...)) send no content-type at all.
        response = await http.post(LAYERWISE, content=json.dumps(contract_payload()).encode(), headers={})
        assert response.status_code == 202

    @pytest.mark.own_daemon  # stores runs
    async def test_a_charset_parameter_or_a_chunked_body_is_accepted(self, http: httpx.AsyncClient) -> None:
        # Plain JSON with a length takes the route's fast path (pivotd.api.ingest_route); the rest its FastAPI route.
        body = json.dumps(contract_payload("charset", 1)).encode()
        typed = await http.post(LAYERWISE, content=body, headers={"content-type": "application/json; charset=utf-8"})
        assert (typed.status_code, typed.json()) == (202, {"status": "accepted", "run_id": "charset"})

        async def chunks():  # no content-length
            yield body[:100]
            yield body[100:]

        chunked = await http.post(LAYERWISE, content=chunks(), headers={"content-type": "application/json"})
        assert (chunked.status_code, chunked.json()) == (202, {"status": "accepted", "run_id": "charset"})
        assert chunked.headers["content-type"] == typed.headers["content-type"] == "application/json"
        assert (await http.get("/api/v1/runs/charset/latest")).json()["step"] == 1

    async def test_oversized_body_is_413(self, http: httpx.AsyncClient, daemon: RunningDaemon) -> None:
        huge = layerwise_payload("big", 0, layers=3)
        huge["metadata"]["padding"] = "x" * (daemon.settings.max_body_bytes + 1)
        response = await post(http, huge)
        assert response.status_code == 413
        assert response.json()["detail"]["error"] == "payload_too_large"  # not a validation error: seed's envelope

    async def test_oversized_chunked_body_is_413(self, http: httpx.AsyncClient, daemon: RunningDaemon) -> None:
        chunk = b" " * 65536

        async def stream():  # no content-length: the limit must hold while reading
            for _ in range(daemon.settings.max_body_bytes // len(chunk) + 2):
                yield chunk

        response = await http.post(LAYERWISE, content=stream(), headers={"content-type": "application/json"})
        assert response.status_code == 413

    async def test_unknown_route_and_method_use_the_family_envelope(self, http: httpx.AsyncClient) -> None:
        assert (await http.get("/api/v1/runs/x/nothing")).json()["detail"]["error"] == "not_found"
        response = await http.put(LAYERWISE, json={})
        assert response.status_code == 405 and response.json()["detail"]["error"] == "method_not_allowed"

    @pytest.mark.own_daemon  # garbage on purpose: what it might store must not meet the others
    async def test_no_route_ever_answers_500_for_garbage(self, http: httpx.AsyncClient) -> None:
        garbage = [b"null", b"0", b'"text"', b"[[]]", b'{"metadata": null}', b"\xff\xfe", b"{" * 5000]
        for path in (LAYERWISE, f"{LAYERWISE}/batch", "/api/v1/runs/r/scalars"):
            for body in garbage:
                response = await http.post(path, content=body, headers={"content-type": "application/json"})
                assert 400 <= response.status_code < 500, (path, body[:20], response.text)


async def test_null_bias_is_accepted_and_omitted(http: httpx.AsyncClient) -> None:
    payload = mutated("layer_statistics[1].parameter_statistics.bias", None)
    assert (await post(http, payload)).status_code == 202
    latest = (await http.get("/api/v1/runs/experiment_2024_0210_v2/latest")).json()
    assert "bias" not in latest["layers"][1]["parameter_statistics"]
    assert latest["layers"][0]["parameter_statistics"]["bias"] == {"std": 0.01, "mean_abs": 0.004}
