"""Alert rules and alerts against a real daemon: CRUD, bad input, the ingest hooks, acknowledge,
auto-resolve, silence, actions, and notifications."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect

from tests.daemon import RunningDaemon, running_daemon
from tests.payloads import contract_payload, layerwise_payload

RULES = "/api/v1/alerts/rules"
FAST = {"sample_interval_s": 0.2, "alert_check_interval_s": 0.05}


@asynccontextmanager
async def fast_daemon(tmp_path: Path) -> AsyncIterator[tuple[RunningDaemon, httpx.AsyncClient, ClientConnection]]:
    """A daemon with fast sampling and ticks, an HTTP client, and a /ws client on alerts + notifications."""
    async with (
        running_daemon(tmp_path / "state", **FAST) as daemon,
        httpx.AsyncClient(base_url=daemon.url, timeout=10) as http,
        connect(daemon.ws_url) as ws,
    ):
        await ws.send(json.dumps({"action": "subscribe", "topics": ["alerts", "notifications"]}))
        await until(ws, "subscribed")
        yield daemon, http, ws


async def until(ws: ClientConnection, kind: str, rule_id: str | None = None, timeout: float = 5) -> dict[str, Any]:
    """The next message of `kind` (for `rule_id`, when given), skipping others."""
    async with asyncio.timeout(timeout):
        while True:
            message = json.loads(await ws.recv())
            if message["type"] == kind and (rule_id is None or message["data"].get("rule_id") == rule_id):
                return message


async def create(http: httpx.AsyncClient, **spec: Any) -> dict[str, Any]:
    response = await http.post(RULES, json={"name": "test", "severity": "high"} | spec)
    assert response.status_code == 201, response.text
    return response.json()


async def alerts_of(http: httpx.AsyncClient, rule_id: str, **params: str) -> list[dict[str, Any]]:
    alerts = (await http.get("/api/v1/alerts", params=params)).json()["alerts"]
    return [a for a in alerts if a["rule_id"] == rule_id]


async def test_rule_crud_and_builtins(daemon: RunningDaemon, http: httpx.AsyncClient) -> None:
    names = {r["name"] for r in (await http.get(RULES)).json()["rules"] if r["builtin"]}
    assert names == {
        "gpu_hot",
        "disk_full",
        "non_finite_values",
        "exploding_gradient",
        "gradient_spike",
        "vanishing_gradient",
        "run_silent",
    }
    rule = await create(
        http, metric="train_loss", condition="greater_than", threshold=5, for_seconds=2, scope={"run": "exp-*"}
    )
    assert rule["rule_id"].startswith("rule_") and rule["scope"] == {"run": "exp-*"} and not rule["builtin"]
    assert (await http.get(f"{RULES}/{rule['rule_id']}")).json() == rule
    spec = {"name": "lossy", "metric": "val_loss", "condition": "less_than", "threshold": 1}
    replaced = await http.put(f"{RULES}/{rule['rule_id']}", json=spec)
    assert replaced.status_code == 200
    assert replaced.json()["metric"] == "val_loss" and replaced.json()["for_seconds"] == 0
    patched = (await http.patch(f"{RULES}/{rule['rule_id']}", json={"enabled": False})).json()
    assert patched["enabled"] is False and patched["name"] == "lossy"
    builtin = await http.patch(f"{RULES}/rule_run_silent", json={"enabled": False})
    assert builtin.status_code == 200 and builtin.json()["builtin"] is True
    assert (await http.delete(f"{RULES}/{rule['rule_id']}")).status_code == 204
    assert (await http.get(f"{RULES}/{rule['rule_id']}")).status_code == 404
    assert (await http.delete(f"{RULES}/{rule['rule_id']}")).status_code == 404


BASE = {"name": "x", "metric": "cpu_percent", "condition": "greater_than", "threshold": 1}


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"metric": "gpu_temprature"}, "metric"),
        ({"condition": "above"}, "condition"),
        ({"for_seconds": -5}, "for_seconds"),
        ({"threshold": None}, "threshold"),
        ({"condition": "outside_range", "range": [3, 1]}, "range"),
        ({"scope": {"gpu": -1}}, "scope.gpu"),
        ({"name": None}, "name"),
        ({"metric": "train_loss", "action": "reboot"}, "action"),
    ],
)
@pytest.mark.shared_daemon  # refused requests: one daemon for these cases
async def test_bad_rules_are_422_naming_the_field(
    daemon: RunningDaemon, http: httpx.AsyncClient, changes: dict[str, Any], field: str
) -> None:
    body = {k: v for k, v in (BASE | changes).items() if v is not None}
    response = await http.post(RULES, json=body)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert field in [d["field"] for d in error["details"]], error


@pytest.mark.shared_daemon  # refused requests: one daemon for these cases
async def test_bad_rule_requests(daemon: RunningDaemon, http: httpx.AsyncClient) -> None:
    assert (await http.post(RULES, content=b"{nope", headers={"content-type": "application/json"})).status_code == 400
    assert (await http.post(RULES, content=b"a=b", headers={"content-type": "text/plain"})).status_code == 415
    assert (await http.patch(f"{RULES}/rule_builtin_nope", json={"enabled": False})).status_code == 404
    assert (await http.put(f"{RULES}/rule_nope", json={"name": "x"})).status_code == 404
    assert (await http.patch(f"{RULES}/rule_disk_full", json=[1])).status_code == 422
    bad = await http.patch(f"{RULES}/rule_disk_full", json={"threshold": "high"})
    assert bad.status_code == 422 and bad.json()["error"]["details"][0]["field"] == "threshold"
    assert (await http.get("/api/v1/alerts", params={"status": "open"})).status_code == 422
    assert (await http.get("/api/v1/alerts", params={"severity": "urgent"})).status_code == 422
    assert (await http.get("/api/v1/alerts/alert_nope")).status_code == 404
    assert (await http.post("/api/v1/alerts/alert_nope/acknowledge", json={})).status_code == 404
    ack = await http.post("/api/v1/alerts/alert_nope/acknowledge", json={"acknowledged_by": 5})
    assert ack.status_code == 422


def exploding(run_id: str, step: int, blow_up: bool) -> dict[str, Any]:
    payload = layerwise_payload(run_id, step)
    if blow_up:
        payload["layer_statistics"][1]["gradient_flow"]["gradient_l2_norm"] = 5000.0
    return payload


async def test_gradient_exploding_at_step_n_raises_exactly_one_alert_at_step_n(tmp_path: Path) -> None:
    async with fast_daemon(tmp_path) as (_, http, ws):
        rule = await create(http, metric="gradient_l2_norm", condition="greater_than", threshold=100)
        for step in range(20):
            response = await http.post("/api/v1/metrics/layerwise", json=exploding("boom", step, step >= 12))
            assert response.status_code == 202
        message = await until(ws, "alert_triggered", rule["rule_id"])
        [alert] = await alerts_of(http, rule["rule_id"])
        assert alert == message["data"]
        assert alert["step"] == 12 and alert["run_id"] == "boom" and alert["layer_id"] == "encoder/linear1"
        assert alert["value"] == 5000.0 and alert["status"] == "active" and alert["severity"] == "high"
        # The built-in growth rule sees the same jump, also once, also at step 12.
        [spike] = await alerts_of(http, "rule_gradient_spike")
        assert spike["step"] == 12


async def test_silent_run_raises_no_data_for_then_resolves(tmp_path: Path) -> None:
    async with fast_daemon(tmp_path) as (_, http, ws):
        rule = await create(http, metric="any_value", condition="no_data_for", threshold=0.3, scope={"run": "quiet"})
        await http.post("/api/v1/metrics/layerwise", json=layerwise_payload("quiet", 0))
        await http.post("/api/v1/metrics/layerwise", json=layerwise_payload("chatty", 0))
        fired = (await until(ws, "alert_triggered", rule["rule_id"]))["data"]
        assert fired["run_id"] == "quiet" and fired["condition"] == "no_data_for" and fired["value"] >= 0.3
        await http.post("/api/v1/runs/quiet/scalars", json=[{"step": 1, "values": {"train_loss": 1.0}}])
        resolved = (await until(ws, "alert_resolved", rule["rule_id"]))["data"]
        assert resolved["alert_id"] == fired["alert_id"] and resolved["status"] == "resolved"
        assert [a["run_id"] for a in await alerts_of(http, rule["rule_id"])] == ["quiet"]


async def test_acknowledge_then_auto_resolve(tmp_path: Path) -> None:
    async with fast_daemon(tmp_path) as (_, http, ws):
        rule = await create(http, metric="cpu_percent", condition="greater_than", threshold=-1, severity="low")
        fired = (await until(ws, "alert_triggered", rule["rule_id"]))["data"]
        assert fired["subject"] == "system" and fired["rule_name"] == "test"
        url = f"/api/v1/alerts/{fired['alert_id']}/acknowledge"
        acked = await http.post(url, json={"acknowledged_by": "ops@example.com", "notes": "looking"})
        assert acked.status_code == 200
        body = acked.json()
        assert body["status"] == "acknowledged" and body["acknowledged_by"] == "ops@example.com"
        assert body["notes"] == "looking" and "T" in body["acknowledged_at"]
        assert (await http.post(url, json={})).status_code == 409
        assert [a["alert_id"] for a in await alerts_of(http, rule["rule_id"], status="acknowledged")] == [
            fired["alert_id"]
        ]
        # Samples keep coming and the condition holds: still one alert.
        await ws.send(json.dumps({"action": "subscribe", "topics": ["resources"]}))
        for _ in range(3):
            await until(ws, "resources")
        assert len(await alerts_of(http, rule["rule_id"])) == 1
        await http.patch(f"{RULES}/{rule['rule_id']}", json={"threshold": 1000})
        resolved = (await until(ws, "alert_resolved", rule["rule_id"]))["data"]
        assert resolved["alert_id"] == fired["alert_id"] and resolved["acknowledged_by"] == "ops@example.com"
        assert (await http.post(url)).status_code == 409
        assert [a["status"] for a in await alerts_of(http, rule["rule_id"], status="resolved")] == ["resolved"]


async def test_rejected_non_finite_payload_fires_the_builtin_rule(tmp_path: Path) -> None:
    async with fast_daemon(tmp_path) as (_, http, ws):
        payload = layerwise_payload("nan-run", 3)
        payload["layer_statistics"][1]["gradient_flow"]["gradient_l2_norm"] = float("nan")
        bad = json.dumps(payload)  # the stdlib writes NaN, as a careless script would
        response = await http.post(
            "/api/v1/metrics/layerwise", content=bad.encode(), headers={"content-type": "application/json"}
        )
        assert response.status_code == 422
        fired = (await until(ws, "alert_triggered", "rule_non_finite"))["data"]
        assert fired["run_id"] == "nan-run" and fired["step"] == 3 and fired["severity"] == "critical"
        assert fired["value"] is None
        assert fired["context"]["field"] == "layer_statistics[1].gradient_flow.gradient_l2_norm"
        note = await http.get("/api/v1/notifications", params={"type": "alert", "priority": "high"})
        assert any(n["data"]["alert_id"] == fired["alert_id"] for n in note.json()["notifications"])
        await http.post("/api/v1/metrics/layerwise", json=layerwise_payload("nan-run", 4))
        assert (await until(ws, "alert_resolved", "rule_non_finite"))["data"]["alert_id"] == fired["alert_id"]


async def test_scalar_rule_scope_for_seconds_and_cancel_action(tmp_path: Path) -> None:
    async with fast_daemon(tmp_path) as (daemon, http, ws):
        cancelled: list[tuple[str, str]] = []

        async def cancel(run_id: str, alert: dict[str, Any]) -> None:
            cancelled.append((run_id, alert["alert_id"]))

        daemon.services.actions.register("cancel", cancel)
        rule = await create(
            http, metric="*loss".join(("scalar:", "")), condition="greater_than", threshold=5, scope={"run": "exp-*"}
        )
        assert rule["metric"] == "scalar:*loss"
        slow = await create(http, metric="train_loss", condition="greater_than", threshold=5, for_seconds=0.2)
        acting = await create(http, metric="val_loss", condition="greater_than", threshold=5, action="cancel")
        await http.post("/api/v1/runs/other/scalars", json=[{"step": 1, "values": {"train_loss": 9.0}}])
        both = [{"step": 1, "values": {"train_loss": 9.0, "val_loss": 9.0}}]
        await http.post("/api/v1/runs/exp-1/scalars", json=both)
        hits = {(a["run_id"], a["scalar"]) for a in await alerts_of(http, rule["rule_id"])}
        assert hits == {("exp-1", "train_loss"), ("exp-1", "val_loss")}
        assert await alerts_of(http, slow["rule_id"]) == []  # must hold 0.2 s first
        # The action runs as soon as its alert fires; the slow rule fires from the tick 0.2 s later.
        updated = (await until(ws, "alert_updated", acting["rule_id"]))["data"]
        assert updated["action"] == {"name": "cancel", "outcome": "done"}
        assert cancelled == [("exp-1", updated["alert_id"])]
        held = (await until(ws, "alert_triggered", slow["rule_id"]))["data"]
        assert held["scalar"] == "train_loss" and held["run_id"] in ("other", "exp-1")


async def test_action_without_a_handler_is_recorded_unavailable(tmp_path: Path) -> None:
    async with fast_daemon(tmp_path) as (_, http, ws):
        rule = await create(http, metric="train_loss", condition="greater_than", threshold=5, action="pause")
        await http.post("/api/v1/runs/r1/scalars", json=[{"step": 1, "values": {"train_loss": 9.0}}])
        updated = (await until(ws, "alert_updated", rule["rule_id"]))["data"]
        assert updated["action"] == {"name": "pause", "outcome": "unavailable"}


async def test_deleting_a_rule_resolves_its_alerts(tmp_path: Path) -> None:
    async with fast_daemon(tmp_path) as (_, http, ws):
        rule = await create(http, metric="train_loss", condition="greater_than", threshold=5)
        await http.post("/api/v1/runs/r1/scalars", json=[{"step": 1, "values": {"train_loss": 9.0}}])
        await http.delete(f"{RULES}/{rule['rule_id']}")
        resolved = (await until(ws, "alert_resolved", rule["rule_id"]))["data"]
        assert resolved["resolution"] == "rule deleted"


async def test_notifications_list_read_clear_and_training_hook(tmp_path: Path) -> None:
    async with fast_daemon(tmp_path) as (daemon, http, ws):
        notifier = daemon.services.notifier
        await notifier.run_ended("sess_1", "succeeded", data={"final_metrics": {"val_accuracy": 0.9}})
        pushed = (await until(ws, "notification"))["data"]
        assert pushed["type"] == "training" and pushed["data"]["session_id"] == "sess_1"
        await notifier.run_ended("sess_2", "failed")
        listed = (await http.get("/api/v1/notifications")).json()["notifications"]
        assert [n["data"]["run_id"] for n in listed] == ["sess_2", "sess_1"]
        assert listed[0]["priority"] == "high" and listed[0]["read"] is False and "T" in listed[0]["created_at"]
        marked = await http.post(f"/api/v1/notifications/{pushed['id']}/read")
        assert marked.json() == {"id": pushed["id"], "read": True}
        unread = (await http.get("/api/v1/notifications", params={"unread": "true"})).json()["notifications"]
        assert [n["id"] for n in unread] == [listed[0]["id"]]
        read = (await http.get("/api/v1/notifications", params={"unread": "false"})).json()["notifications"]
        assert [n["id"] for n in read] == [pushed["id"]]
        assert (await http.get("/api/v1/notifications", params={"type": "system"})).json()["notifications"] == []
        assert (await http.post("/api/v1/notifications/notif_nope/read")).status_code == 404
        assert (await http.get("/api/v1/notifications", params={"type": "email"})).status_code == 422
        assert (await http.get("/api/v1/notifications", params={"unread": "maybe"})).status_code == 422
        assert (await http.delete("/api/v1/notifications")).json()["cleared"] == 2
        assert (await http.get("/api/v1/notifications")).json()["notifications"] == []


async def test_layer_scopes_optional_fields_and_growth(tmp_path: Path) -> None:
    """Contract payload: encoder/linear1 (bias, no std ratio), encoder/relu (no bias), head/linear."""
    async with fast_daemon(tmp_path) as (_, http, _ws):
        bias = await create(http, metric="bias_std", condition="greater_than", threshold=0.001)
        first = await create(
            http, metric="gradient_l2_norm", condition="less_than", threshold=1, scope={"layer": "@first"}
        )
        head = await create(
            http, metric="gradient_l2_norm", condition="greater_than", threshold=0.1, scope={"layer": "head/*"}
        )
        ratio = await create(http, metric="cross_layer_std_ratio", condition="greater_than", threshold=1.0)
        growth = await create(http, metric="bias_mean_abs", condition="grows_by_factor", threshold=2)
        await http.post("/api/v1/metrics/layerwise", json=contract_payload("layers", 1))
        grown = contract_payload("layers", 2)
        grown["layer_statistics"][2]["parameter_statistics"]["bias"]["mean_abs"] = 0.1
        assert (await http.post("/api/v1/metrics/layerwise", json=grown)).status_code == 202

        async def layers_of(rule: dict[str, Any]) -> set[str]:
            return {a["layer_id"] for a in await alerts_of(http, rule["rule_id"])}

        assert await layers_of(bias) == {"encoder/linear1", "head/linear"}
        assert await layers_of(first) == {"encoder/linear1"}
        assert await layers_of(head) == {"head/linear"}
        assert await layers_of(ratio) == {"head/linear"}
        assert await layers_of(growth) == {"head/linear"}
        [grew] = await alerts_of(http, growth["rule_id"])
        assert grew["step"] == 2 and grew["value"] == 0.1


async def test_an_equals_rule_fires_at_its_value_and_resolves_beside_other_rules_on_the_field(tmp_path: Path) -> None:
    async with fast_daemon(tmp_path) as (_, http, ws):
        equal = await create(http, metric="weight_std", condition="equals", threshold=0.125)
        above = await create(http, metric="weight_std", condition="greater_than", threshold=100)
        for step, value in enumerate([0.5, 0.125, 0.5]):
            payload = layerwise_payload("equal", step)
            payload["layer_statistics"][1]["parameter_statistics"]["weight"]["std"] = value
            assert (await http.post("/api/v1/metrics/layerwise", json=payload)).status_code == 202
        fired = (await until(ws, "alert_triggered", equal["rule_id"]))["data"]
        assert (fired["step"], fired["value"], fired["layer_id"]) == (1, 0.125, "encoder/linear1")
        resolved = (await until(ws, "alert_resolved", equal["rule_id"]))["data"]
        assert resolved["alert_id"] == fired["alert_id"]
        assert await alerts_of(http, above["rule_id"]) == []


async def test_deleting_a_run_resolves_its_alerts(tmp_path: Path) -> None:
    async with fast_daemon(tmp_path) as (_, http, ws):
        rule = await create(http, metric="train_loss", condition="greater_than", threshold=5)
        await http.post("/api/v1/runs/doomed/scalars", json=[{"step": 1, "values": {"train_loss": 9.0}}])
        assert (await http.delete("/api/v1/runs/doomed")).status_code == 204
        resolved = (await until(ws, "alert_resolved", rule["rule_id"]))["data"]
        assert resolved["run_id"] == "doomed" and resolved["resolution"] == "run deleted"
