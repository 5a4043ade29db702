"""Seed 000's REST routes against a real daemon: every documented example, and bad input on purpose."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from pivotd.store.training import CreateJob, Transition
from shared.models import LayerwisePayload, Step
from tests.daemon import RunningDaemon
from tests.payloads import DELETE, contract_payload, layerwise_payload, mutated

LAYERWISE = "/api/v1/metrics/layerwise"


async def post(http: httpx.AsyncClient, payload: Any, path: str = LAYERWISE) -> httpx.Response:
    return await http.post(path, json=payload)


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
        expected = LayerwisePayload.model_validate(sent).to_step().model_dump(mode="json")
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
            assert response.json()["detail"]["error"] == "not_found"
            assert "nope" in response.json()["detail"]["message"]

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
            "cross_layer_std_ratio", "gradient_l2_norm", "gradient_max_abs",
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
        bad = await http.get("/api/v1/runs", params={"sort": "password"})
        assert bad.status_code == 422 and "sort" in bad.json()["detail"]["message"]
        too_many = await http.get("/api/v1/runs", params={"per_page": 101})
        assert too_many.status_code == 422 and "per_page" in too_many.json()["detail"]["message"]

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
            assert response.status_code == 422, response.text
            assert response.json()["detail"]["fields"][0]["field"] == field

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
        assert response.status_code == 422
        assert response.json()["detail"]["message"].startswith("[1].metadata.run_id")
        assert (await http.get("/api/v1/runs")).json() == {}

    @pytest.mark.parametrize("body", ["[]", '{"metadata": {}}'])
    async def test_empty_or_non_array_batch(self, http: httpx.AsyncClient, body: str) -> None:
        response = await http.post(f"{LAYERWISE}/batch", content=body, headers={"content-type": "application/json"})
        assert response.status_code == 422


# (path, value, the field the error must name)
BAD_FIELDS = [
    ("metadata.run_id", "has space", "metadata.run_id"),
    ("metadata.run_id", "", "metadata.run_id"),
    ("metadata.run_id", "x" * 129, "metadata.run_id"),
    ("metadata.run_id", DELETE, "metadata.run_id"),
    ("metadata.global_step", -1, "metadata.global_step"),
    ("metadata.global_step", "ten", "metadata.global_step"),
    ("metadata.global_step", 1.5, "metadata.global_step"),
    ("metadata.batch_size", 0, "metadata.batch_size"),
    # Integers SQLite and the JSON encoder cannot hold: refused, not a 500 (or a run no read can return).
    ("metadata.global_step", 2**63, "metadata.global_step"),
    ("metadata.batch_size", 2**63, "metadata.batch_size"),
    ("layer_statistics[2].depth_index", 2**63, "layer_statistics[2].depth_index"),
    ("layer_statistics[0].intermediate_features.activation_shape", [2**63, 4], "activation_shape[0]"),
    ("metadata.seed", 2**63, "metadata.seed"),
    ("metadata.extra", {"a": [1, -(2**70)]}, "metadata.extra.a[1]"),
    ("metadata.timestamp", "yesterday", "metadata.timestamp"),
    ("metadata", DELETE, "metadata"),
    ("layer_statistics", [], "layer_statistics"),
    ("layer_statistics", DELETE, "layer_statistics"),
    ("cross_layer_analysis", DELETE, "cross_layer_analysis"),
    ("layer_statistics[1].depth_index", -2, "layer_statistics[1].depth_index"),
    ("layer_statistics[2].depth_index", 0, "layer_statistics[2].depth_index"),
    ("layer_statistics[0].intermediate_features.activation_shape", [64], "activation_shape"),
    ("layer_statistics[0].gradient_flow", DELETE, "layer_statistics[0].gradient_flow"),
    ("layer_statistics[0].gradient_flow.gradient_std", "big", "gradient_flow.gradient_std"),
    ("layer_statistics[0].parameter_statistics.weight.spectral_norm", DELETE, "weight.spectral_norm"),
    ("cross_layer_analysis.gradient_norm_ratio", [1, 2], "gradient_norm_ratio"),
]


class TestBadInput:
    @pytest.mark.parametrize(("path", "value", "field"), BAD_FIELDS)
    async def test_invalid_field_is_422_naming_it(
        self, http: httpx.AsyncClient, path: str, value: Any, field: str
    ) -> None:
        response = await post(http, mutated(path, value))
        assert response.status_code == 422, response.text
        detail = response.json()["detail"]
        assert detail["error"] == "validation_error"
        assert field in detail["message"]
        assert any(field in f["field"] for f in detail["fields"])
        assert (await http.get("/api/v1/runs")).json() == {}

    @pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e999"])
    async def test_non_finite_is_rejected_and_recorded_on_the_run(self, http: httpx.AsyncClient, literal: str) -> None:
        body = json.dumps(contract_payload("nan_run", 7)).replace(
            '"gradient_l2_norm": 0.31', f'"gradient_l2_norm": {literal}', 1
        )
        response = await http.post(LAYERWISE, content=body, headers={"content-type": "application/json"})
        assert response.status_code == 422
        assert "layer_statistics[0].gradient_flow.gradient_l2_norm" in response.json()["detail"]["message"]
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
            assert response.status_code == 422, response.text
            assert response.json()["detail"]["fields"][0]["field"].endswith("metadata.seed")
        assert (await http.get("/api/v1/runs")).json() == {}

    async def test_non_json_body_is_400(self, http: httpx.AsyncClient) -> None:
        response = await http.post(LAYERWISE, content=b"{not json", headers={"content-type": "application/json"})
        assert response.status_code == 400
        assert "not valid JSON" in response.json()["detail"]["message"]

    async def test_top_level_array_is_422(self, http: httpx.AsyncClient) -> None:
        assert (await post(http, [contract_payload()])).status_code == 422

    async def test_empty_body_is_400(self, http: httpx.AsyncClient) -> None:
        response = await http.post(LAYERWISE, headers={"content-type": "application/json"})
        assert response.status_code == 400

    async def test_wrong_content_type_is_415(self, http: httpx.AsyncClient) -> None:
        response = await http.post(LAYERWISE, data={"run_id": "x"})  # form-encoded, curl -d style
        assert response.status_code == 415
        assert "application/json" in response.json()["detail"]["message"]

    async def test_missing_content_type_is_accepted(self, http: httpx.AsyncClient) -> None:
        # Scripts doing requests.post(url, data=json.dumps(...)) send no content-type at all.
        response = await http.post(LAYERWISE, content=json.dumps(contract_payload()).encode(), headers={})
        assert response.status_code == 202

    async def test_oversized_body_is_413(self, http: httpx.AsyncClient, daemon: RunningDaemon) -> None:
        huge = layerwise_payload("big", 0, layers=3)
        huge["metadata"]["padding"] = "x" * (daemon.settings.max_body_bytes + 1)
        response = await post(http, huge)
        assert response.status_code == 413
        assert response.json()["detail"]["error"] == "payload_too_large"

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
