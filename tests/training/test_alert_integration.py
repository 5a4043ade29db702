"""Training and alerting together: a finished managed run is notified; a rule's `cancel` action stops one."""

from __future__ import annotations

import httpx
import pytest

from tests.training.helpers import MLP, final_state, hyperparams

pytestmark = pytest.mark.usefixtures("fork_server")  # runs forked from a ready server (tests/conftest.py)


async def test_a_finished_run_is_notified(http: httpx.AsyncClient) -> None:
    run_id = (await http.post("/api/train", json={"architecture": MLP, "hyperparams": hyperparams(epochs=1)})).json()[
        "run_id"
    ]
    state, _ = await final_state(http, run_id)
    assert state == "succeeded"
    notifications = (await http.get("/api/v1/notifications", params={"type": "training"})).json()["notifications"]
    [notice] = [n for n in notifications if n["data"].get("run_id") == run_id]
    assert notice["data"]["outcome"] == "completed" and run_id in notice["message"]


async def test_a_rule_with_a_cancel_action_stops_the_run_it_fired_for(http: httpx.AsyncClient) -> None:
    rule = {"name": "stop everything", "metric": "train_loss", "condition": "greater_than", "threshold": 0.0,
            "severity": "high", "action": "cancel"}  # fmt: skip
    assert (await http.post("/api/v1/alerts/rules", json=rule)).status_code == 201
    body = {"architecture": MLP, "hyperparams": hyperparams(epochs=50, max_samples=2000)}
    run_id = (await http.post("/api/train", json=body)).json()["run_id"]
    state, _ = await final_state(http, run_id)  # the first loss point fires the rule, which cancels the run
    assert state == "cancelled"
    alerts = (await http.get("/api/v1/alerts")).json()["alerts"]
    fired = [a for a in alerts if a["rule_name"] == "stop everything" and a.get("run_id") == run_id]
    assert [alert["action"] for alert in fired] == [{"name": "cancel", "outcome": "done"}]
    notifications = (await http.get("/api/v1/notifications", params={"type": "training"})).json()["notifications"]
    assert any(n["data"].get("run_id") == run_id and n["data"]["outcome"] == "cancelled" for n in notifications)
