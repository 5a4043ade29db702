"""DaemonClient's typed methods against a real pivotd: each answer parses into its shared model."""

from __future__ import annotations

import socket

import httpx
import pytest

from pivot_tui.client import DaemonClient, Unreachable
from shared.client import PivotAPIError
from shared.models.alerts import AlertStatus
from shared.models.layerwise import lite_layer
from shared.models.runs import RunState
from tests.daemon import RunningDaemon
from tests.payloads import layerwise_payload
from tests.training.helpers import MLP, final_state, hyperparams

# The tests write under ids of their own; the alert test's rule applies to every run, so it has its own daemon.
pytestmark = pytest.mark.shared_daemon


async def test_runs_steps_scalars_resources_and_digits(daemon: RunningDaemon, http: httpx.AsyncClient) -> None:
    await http.post("/api/v1/metrics/layerwise", json=layerwise_payload("typed", 0, layers=3))
    await http.post("/api/v1/runs/typed/scalars", json=[{"step": 0, "values": {"train_loss": 2.0}}])
    client = DaemonClient(daemon.url, None)
    try:
        assert (await client.runs())["typed"].latest == {"train_loss": 2.0}
        detail = await client.get_run("typed")
        full = await client.rest.get_run("typed")
        assert detail.run_id == "typed" and detail.steps is not None and full.steps is not None
        # The daemon's lite history and a client's reduction of a full step are the same projection.
        assert detail.steps[0].layers == [lite_layer(layer) for layer in full.steps[0].layers]
        assert detail.steps[0].layers[0]["spectral_norm"] is not None
        assert (await client.scalars("typed")).series["train_loss"].values == [2.0]
        assert (await client.resources()).cpu is not None
        digits = await client.digit_samples(count=2, offset=3)
        assert [sample.index for sample in digits.samples] == [3, 4] and len(digits.samples[0].pixels) == 784
        with pytest.raises(PivotAPIError) as missing:
            await client.get_run("nobody")
        assert missing.value.status == 404
    finally:
        await client.aclose()


@pytest.mark.own_daemon
async def test_alerts_and_notifications(daemon: RunningDaemon, http: httpx.AsyncClient) -> None:
    rule = {"name": "typed loss", "metric": "train_loss", "condition": "greater_than", "threshold": 1.0,
            "severity": "high"}  # fmt: skip
    assert (await http.post("/api/v1/alerts/rules", json=rule)).status_code == 201
    await http.post("/api/v1/runs/alerting/scalars", json=[{"step": 1, "values": {"train_loss": 5.0}}])
    client = DaemonClient(daemon.url, None)
    try:
        assert "typed loss" in [rule.name for rule in await client.alert_rules()]
        [alert] = [a for a in await client.alerts(AlertStatus.ACTIVE) if a.rule_name == "typed loss"]
        acknowledged = await client.acknowledge_alert(alert.alert_id, "tester", "on it")
        assert acknowledged.status is AlertStatus.ACKNOWLEDGED and acknowledged.notes == "on it"
        notices = await client.notifications()
        assert notices
        assert (await client.mark_notification_read(notices[0].id)).read is True
    finally:
        await client.aclose()


async def test_experiments(daemon: RunningDaemon, http: httpx.AsyncClient) -> None:
    body = {"experiment": {"name": "typed study", "config": {"metric": "val_accuracy"}}}
    experiment_id = (await http.post("/api/v1/experiments", json=body)).json()["data"]["id"]
    client = DaemonClient(daemon.url, None)
    try:
        assert experiment_id in [e.id for e in await client.experiments()]
        assert (await client.experiment(experiment_id)).name == "typed study"
        assert (await client.experiment_results(experiment_id)).experiment.id == experiment_id
        with pytest.raises(PivotAPIError) as refused:  # not a sweep: nothing to start
            await client.experiment_action(experiment_id, "start")
        assert refused.value.status == 422
    finally:
        await client.aclose()


async def test_managed_training_calls(daemon: RunningDaemon, http: httpx.AsyncClient) -> None:
    client = DaemonClient(daemon.url, None)
    try:
        queued = await client.train(MLP, hyperparams(epochs=1, max_samples=256))
        assert queued.status is RunState.QUEUED
        assert (await final_state(http, queued.run_id))[0] == "succeeded"
        run = await client.managed_run(queued.run_id)
        assert run.state is RunState.SUCCEEDED and run.param_id is not None
        detail = await client.get_run(queued.run_id)
        assert detail.kind == "managed" and (detail.epoch, detail.epochs_total) == (1, 1)
        assert all(line.message for line in await client.run_logs(queued.run_id))
        params = await client.params(run.param_id)
        assert params.run_id == queued.run_id and params.parameters["layers"]
        digit = (await client.digit_samples()).samples[0]
        answer = await client.infer_pixels(queued.run_id, digit.pixels)
        assert 0 <= answer.label <= 9 and len(answer.probabilities) == 10

        long = await client.train(MLP, hyperparams(epochs=500))
        cancelled = await client.cancel(long.run_id)
        assert cancelled.run_id == long.run_id and cancelled.cancel_requested
        assert (await final_state(http, long.run_id))[0] == "cancelled"
    finally:
        await client.aclose()


async def test_a_daemon_that_does_not_answer_is_unreachable() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again: nothing listens there
    client = DaemonClient(f"http://127.0.0.1:{port}", None)
    try:
        with pytest.raises(Unreachable) as down:
            await client.runs()
        assert down.value.status == 0 and down.value.message.startswith("pivotd unreachable: ")
    finally:
        await client.aclose()
