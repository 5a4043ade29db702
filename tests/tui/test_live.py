"""pivot-tui against a real pivotd on a loopback port, fed by real POSTs."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import httpx
import pytest
from textual.widgets import Button, Input

from pivot_tui.app import PivotApp, make_app
from pivot_tui.client import Connection
from pivot_tui.config import TuiSettings
from pivot_tui.screens import AcknowledgeDialog, ConfirmDialog, ExperimentDetailScreen, LaunchDialog, RunDetailScreen
from pivot_tui.screens.inference import InferenceDialog
from pivot_tui.widgets import RunsTable
from tests.daemon import RunningDaemon, daemon_client, running_daemon
from tests.payloads import layerwise_payload
from tests.tui.helpers import until

# The tests write under run and experiment ids of their own; the alert test, whose rule applies to every run, and
# the restart test keep daemons of their own.
pytestmark = pytest.mark.shared_daemon


@pytest.fixture(scope="module")
def daemon_settings() -> dict[str, Any]:
    """One training slot whatever GPUs the machine has: a second launch while one trains is refused."""
    return {"training_slots": 1}


def rows(app: object) -> list[str]:
    table = app.screen.query_one(RunsTable)  # type: ignore[attr-defined]
    return [row.value for row in table.rows]


def focused(app: PivotApp) -> str | None:
    """The id of the focused widget: the dialogs' buttons take focus once mounted, a moment after they show."""
    return None if app.focused is None else app.focused.id


def state(app: PivotApp, run_id: str) -> str | None:
    """The run's state as the TUI knows it; None before it knows the run."""
    run = app.model.runs.get(run_id)
    return None if run is None else run.status


async def test_a_new_run_appears_and_its_curve_gains_points(daemon: RunningDaemon, http: httpx.AsyncClient) -> None:
    app = make_app(TuiSettings(daemon.url, None, "textual-dark"))
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: app.model.connection is Connection.ONLINE)
        await http.post("/api/v1/metrics/layerwise", json=layerwise_payload("fresh", 0, layers=4))
        await http.post("/api/v1/runs/fresh/scalars", json=[{"step": 0, "values": {"train_loss": 2.0}}])
        await until(pilot, lambda: "fresh" in rows(app))
        await until(pilot, lambda: app.model.runs["fresh"].latest.get("train_loss") == 2.0)

        table = app.screen.query_one(RunsTable)
        table.move_cursor(row=table.get_row_index("fresh"))  # the module's daemon may hold other tests' runs
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, RunDetailScreen) and app.model.followed is not None)
        assert app.screen.run_id == "fresh"
        await until(pilot, lambda: len(app.model.followed.steps) == 1)
        for step in range(1, 6):
            await http.post("/api/v1/metrics/layerwise", json=layerwise_payload("fresh", step * 10, layers=4))
            await http.post(
                "/api/v1/runs/fresh/scalars", json=[{"step": step * 10, "values": {"train_loss": 2 - step / 10}}]
            )
        await until(pilot, lambda: len(app.model.followed.series["train_loss"].steps) == 6)
        await until(pilot, lambda: len(app.model.followed.steps) == 6)
        assert list(app.model.followed.series["train_loss"].values)[-1] == 1.5
        assert "fresh" in str(app.screen.query_one("#run-title").render())

        # Time travel: step back, the view pauses on an older step; space returns to live.
        await pilot.press("left", "left")
        await until(pilot, lambda: "PAUSED at step 30" in str(app.screen.query_one("#run-title").render()))
        assert not app.screen.live
        await pilot.press("space")
        await until(pilot, lambda: app.screen.live)


async def test_a_daemon_restart_is_survived(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with running_daemon(tmp_path, port=port) as first:
        app = make_app(TuiSettings(first.url, None, "textual-dark"), None)
        async with app.run_test(size=(100, 30)) as pilot:
            async with daemon_client(first.url) as http:
                await http.post("/api/v1/metrics/layerwise", json=layerwise_payload("before", 0))
            await until(pilot, lambda: "before" in rows(app))
            first.server.should_exit = True
            await until(pilot, lambda: app.model.connection is not Connection.ONLINE, timeout=20)
            async with running_daemon(tmp_path, port=port) as second:
                # Written while the TUI was away: it only learns of this run by re-syncing over REST.
                async with daemon_client(second.url) as http:
                    await http.post("/api/v1/metrics/layerwise", json=layerwise_payload("after", 0))
                await until(pilot, lambda: app.model.connection is Connection.ONLINE, timeout=20)
                await until(pilot, lambda: {"before", "after"} <= set(rows(app)))


@pytest.mark.own_daemon  # its rule fires for every run, and it counts every alert and notification
async def test_an_alert_appears_and_acknowledging_it_reaches_the_daemon(
    daemon: RunningDaemon, http: httpx.AsyncClient
) -> None:
    rule = {"name": "loss too high", "metric": "train_loss", "condition": "greater_than", "threshold": 1.0,
            "severity": "high"}  # fmt: skip
    assert (await http.post("/api/v1/alerts/rules", json=rule)).status_code == 201
    app = make_app(TuiSettings(daemon.url, None, "textual-dark"))
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: app.model.connection is Connection.ONLINE)
        await http.post("/api/v1/runs/hot/scalars", json=[{"step": 1, "values": {"train_loss": 5.0}}])
        await until(pilot, lambda: app.active_alerts == 1)  # the runs header counts it
        await pilot.press("3")
        table = "#alerts"
        await until(pilot, lambda: app.screen.query(table) and app.screen.query_one(table).row_count == 1)
        await pilot.press("a")
        await until(pilot, lambda: isinstance(app.screen, AcknowledgeDialog))
        app.screen.query_one("#note", Input).value = "looking into it"
        app.screen.query_one("#ok", Button).press()
        await until(pilot, lambda: app.active_alerts == 0, timeout=15)
        # The alert also made a notification: listed, then marked read on the daemon with `m`.
        await until(pilot, lambda: app.screen.query_one("#notifications").row_count >= 1)
        await pilot.press("m")
        await until(pilot, lambda: "marked read" in " ".join(str(n.message) for n in app._notifications))
    [alert] = (await http.get("/api/v1/alerts")).json()["alerts"]
    assert alert["status"] == "acknowledged" and alert.get("notes") == "looking into it"
    unread = (await http.get("/api/v1/notifications", params={"unread": "true"})).json()["notifications"]
    assert unread == []


async def test_launch_shows_refusals_then_launches_and_cancels_a_managed_run(
    daemon: RunningDaemon, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"input_size": 784, "layers": [{"type": "linear", "in": 784, "out": 5}, {"type": "linear", '
                   '"in": 6, "out": 10}]}')  # fmt: skip
    app = make_app(TuiSettings(daemon.url, None, "textual-dark"))
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: app.model.connection is Connection.ONLINE)
        await pilot.press("l")
        await until(pilot, lambda: isinstance(app.screen, LaunchDialog))
        app.screen.query_one("#hp-epochs", Input).value = "zero"
        app.screen.query_one("#launch-ok", Button).press()
        await until(pilot, lambda: "epochs" in str(app.screen.query_one("#launch-error").render()))
        # The most the daemon takes. With 200 epochs (1,400 steps of a small MLP) the run could end on its own under
        # load before the TUI got to the cancel, which the daemon then refused: it succeeded, never `cancelled`.
        app.screen.query_one("#hp-epochs", Input).value = "10000"
        app.screen.query_one("#hp-max_samples", Input).value = "256"  # a first loss soon
        app.screen.query_one("#model-file", Input).value = str(bad)
        app.screen.query_one("#launch-ok", Button).press()
        # Checked before sending, with the daemon's own rules: the bad layer is named.
        await until(pilot, lambda: "layers[1]" in str(app.screen.query_one("#launch-error").render()))
        app.screen.query_one("#model-file", Input).value = ""
        app.screen.query_one("#launch-ok", Button).press()
        await until(pilot, lambda: isinstance(app.screen, RunDetailScreen), timeout=20)
        run_id = app.screen.run_id
        await until(pilot, lambda: state(app, run_id) == "running", timeout=30)
        await until(pilot, lambda: app.model.followed and app.model.followed.series.get("train_loss"), timeout=30)

        # A second launch while the daemon's one training slot is taken: the daemon's refusal, under the form.
        await pilot.press("l")
        await until(pilot, lambda: isinstance(app.screen, LaunchDialog))
        app.screen.query_one("#launch-ok", Button).press()
        await until(pilot, lambda: "pivotd refused: a training run is already active" in str(
            app.screen.query_one("#launch-error").render()))  # fmt: skip
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, RunDetailScreen))

        await pilot.press("c")  # asks first; escape keeps it training
        await until(pilot, lambda: isinstance(app.screen, ConfirmDialog))
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, RunDetailScreen))
        assert app.model.runs[run_id].status == "running"
        await pilot.press("c")
        await until(pilot, lambda: isinstance(app.screen, ConfirmDialog) and focused(app) == "no")
        await pilot.press("left")  # from the safe answer to yes
        await until(pilot, lambda: focused(app) == "yes")
        await pilot.press("enter")
        await until(pilot, lambda: state(app, run_id) == "cancelled", timeout=30)
    assert (await http.get(f"/api/runs/{run_id}")).json()["state"] == "cancelled"


async def test_a_finished_runs_params_and_inference_on_a_real_digit(
    daemon: RunningDaemon, http: httpx.AsyncClient
) -> None:
    from tests.training.helpers import MLP, final_state, hyperparams

    hp = hyperparams(epochs=1, max_samples=256)
    run_id = (await http.post("/api/train", json={"architecture": MLP, "hyperparams": hp})).json()["run_id"]
    assert (await final_state(http, run_id))[0] == "succeeded"
    app = make_app(TuiSettings(daemon.url, None, "textual-dark"))
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: state(app, run_id) == "succeeded")
        app.open_run(run_id)
        await until(pilot, lambda: isinstance(app.screen, RunDetailScreen))
        await pilot.press("i")
        await until(pilot, lambda: isinstance(app.screen, InferenceDialog), timeout=20)
        verdict = str(app.screen.query_one("#verdict").render())
        assert "predicted" in verdict and "true label" in verdict
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, RunDetailScreen))
        await pilot.press("p")
        await until(pilot, lambda: any("784" in str(n.message) for n in app._notifications), timeout=20)


async def test_an_experiment_with_external_runs_is_listed_grouped_and_live(
    daemon: RunningDaemon, http: httpx.AsyncClient
) -> None:
    body = {"experiment": {"name": "live lr study", "config": {"metric": "val_accuracy"}}}
    experiment_id = (await http.post("/api/v1/experiments", json=body)).json()["data"]["id"]

    async def report(run_id: str, group: str, accuracy: float) -> None:
        points = {"points": [{"step": 1, "values": {"val_accuracy": accuracy}}], "experiment_id": experiment_id,
                  "group": group}  # fmt: skip
        assert (await http.post(f"/api/v1/runs/{run_id}/scalars", json=points)).status_code == 202

    await report("fast-1", "lr=0.1", 0.9)
    await report("fast-2", "lr=0.1", 0.8)
    app = make_app(TuiSettings(daemon.url, None, "textual-dark"))
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("4")
        await until(pilot, lambda: app.screen.query("#experiments") and app.screen.query_one("#experiments").row_count)
        row = app.screen.query_one("#experiments").get_row(experiment_id)
        assert "live lr study" in str(row[0]) and "0.9" in str(row[5])
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, ExperimentDetailScreen))
        await until(pilot, lambda: app.screen.query_one("#groups").row_count == 1)
        assert app.screen.query_one("#groups").get_row("lr=0.1")[1] == "2"  # n
        # A run reported while the detail is open shows up by itself (a member run's update reloads it).
        await report("slow-1", "lr=0.01", 0.5)
        await until(pilot, lambda: app.screen.query_one("#experiment-runs").row_count == 3)
        await until(pilot, lambda: app.screen.query_one("#groups").row_count == 2)
        # An experiment without a sweep config cannot start: the daemon's 422 is a notification.
        await pilot.press("s")
        await until(pilot, lambda: any(str(n.message).startswith("start: config.type") for n in app._notifications))
        assert isinstance(app.screen, ExperimentDetailScreen)
