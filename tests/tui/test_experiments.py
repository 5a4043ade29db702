"""The experiments screens with a fake daemon: actions reach the client, refusals become notifications."""

from __future__ import annotations

from typing import Any

import orjson

from pivot_tui.app import PivotApp, make_app
from pivot_tui.client import DaemonClient, Event
from pivot_tui.config import TuiSettings
from pivot_tui.model import TuiModel
from pivot_tui.screens import ConfirmDialog, ExperimentDetailScreen, RunDetailScreen
from pivot_tui.screens.experiments import bar, finished_runs, fraction_done
from shared.client import PivotAPIError
from tests.tui.fake import FakeDaemonClient, experiment, summary
from tests.tui.helpers import notes, until


def app(client: FakeDaemonClient) -> PivotApp:
    return make_app(TuiSettings("http://gpu-box:8000", None, "textual-dark"), client)


async def open_detail(pilot: Any) -> None:
    await pilot.press("4")
    await until(pilot, lambda: pilot.app.screen.query("#experiments") and pilot.app.screen.query_one(
        "#experiments").row_count == 4)  # fmt: skip
    await pilot.press("enter")
    await until(pilot, lambda: isinstance(pilot.app.screen, ExperimentDetailScreen)
                and pilot.app.screen.query_one("#experiment-runs").row_count == 6)  # fmt: skip


async def test_pause_reaches_the_daemon_and_a_refused_start_is_a_notification() -> None:
    refusal = PivotAPIError(409, "conflict", "experiment exp_lr is running: start is allowed from pending only")
    client = FakeDaemonClient(refuse_actions={("exp_lr", "start"): refusal})
    async with app(client).run_test(size=(120, 40)) as pilot:
        await open_detail(pilot)
        assert client.watched_experiments[-1] == "exp_lr"
        await pilot.press("p")
        await until(pilot, lambda: "pause: lr sweep (mnist cnn) is paused" in notes(pilot))
        await pilot.press("s")
        await until(pilot, lambda: "start is allowed from pending only" in notes(pilot))
        assert client.actions == [("exp_lr", "pause"), ("exp_lr", "start")]
        assert isinstance(pilot.app.screen, ExperimentDetailScreen)  # still there: no crash
        await pilot.press("escape")
        await until(pilot, lambda: client.watched_experiments[-1] is None)


async def test_cancel_asks_first() -> None:
    client = FakeDaemonClient()
    async with app(client).run_test(size=(120, 40)) as pilot:
        await open_detail(pilot)
        await pilot.press("c")
        await until(pilot, lambda: isinstance(pilot.app.screen, ConfirmDialog))
        await pilot.press("escape")  # keep it running
        await until(pilot, lambda: isinstance(pilot.app.screen, ExperimentDetailScreen))
        await pilot.press("c")
        await until(pilot, lambda: isinstance(pilot.app.screen, ConfirmDialog))
        assert pilot.app.focused.id == "no"  # the safe answer first; the arrows move between the two
        await pilot.press("left")
        assert pilot.app.focused.id == "yes"
        await pilot.press("right", "left", "enter")
        await until(pilot, lambda: "cancel: lr sweep (mnist cnn) is cancelled" in notes(pilot))
        assert client.actions == [("exp_lr", "cancel")]  # once, after the yes


async def test_enter_on_a_run_opens_the_run_detail() -> None:
    async with app(FakeDaemonClient()).run_test(size=(120, 40)) as pilot:
        await open_detail(pilot)
        await pilot.press("down", "enter")
        await until(pilot, lambda: isinstance(pilot.app.screen, RunDetailScreen))
        assert pilot.app.screen.run_id == "exp_lr_r2"
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(pilot.app.screen, ExperimentDetailScreen))


def test_experiment_events_and_member_runs_bump_the_experiments_version() -> None:
    model = TuiModel()
    model.follow("exp_lr_r1")
    before = model.versions["experiments"]
    completed = {"type": "experiment_run_completed", "topic": "experiment:exp_lr", "run_id": "exp_lr_r1"}
    model.apply(Event("experiment_run_completed", completed))
    assert model.versions["experiments"] == before + 1
    assert model.versions["run"] == 1  # not taken for the followed run's own message
    member = summary("running", 10, 1.0) | {"experiment_id": "exp_lr"}
    model.apply(Event("run_updated", {"type": "run_updated", "topic": "runs", "run_id": "m", "data": member}))
    assert model.versions["experiments"] == before + 2
    loner = summary("running", 10, 1.0)
    model.apply(Event("run_updated", {"type": "run_updated", "topic": "runs", "run_id": "x", "data": loner}))
    assert model.versions["experiments"] == before + 2


async def test_the_client_follows_one_experiment_topic_beside_the_open_run() -> None:
    sent: list[dict[str, Any]] = []

    class Socket:
        async def send(self, raw: str) -> None:
            sent.append(orjson.loads(raw))

    client = DaemonClient("http://127.0.0.1:1", None)
    client._ws = Socket()  # type: ignore[assignment]
    await client.watch_run("r1")
    await client.watch_experiment("exp_a")
    await client.watch_experiment("exp_b")
    assert sent[-2:] == [{"action": "unsubscribe", "topics": ["experiment:exp_a"]},
                         {"action": "subscribe", "topics": ["experiment:exp_b"]}]  # fmt: skip
    sent.clear()
    await client._subscribe_base()  # after a reconnect: both followed topics again
    assert sent[-1]["topics"][-2:] == ["experiment:exp_b", "run:r1"]
    await client.watch_experiment(None)
    assert sent[-1] == {"action": "unsubscribe", "topics": ["experiment:exp_b"]}
    await client.aclose()


def test_a_cancelled_experiments_bar_counts_only_its_succeeded_runs() -> None:
    cancelled = experiment("exp_c", "cut short", "cancelled", "val_loss", 6, {"succeeded": 2, "cancelled": 4})
    assert cancelled.progress == 1.0  # the daemon counts runs ended by the cancellation as finished
    assert fraction_done(cancelled) == 2 / 6
    assert finished_runs(cancelled) == "2/6"
    assert "33%" in bar(fraction_done(cancelled), 10)
    title = str(ExperimentDetailScreen._title(cancelled, "val_loss", narrow=False))
    assert "runs 2/6 (4 cancelled)" in title
    running = experiment("exp_r", "going", "running", "val_loss", 6, {"succeeded": 3, "failed": 1, "running": 2})
    assert (fraction_done(running), finished_runs(running)) == (4 / 6, "4/6")
    # A lost run is shown as lost, as in the runs list, not as the experiments routes' `failed`.
    failed = experiment("exp_f", "lost one", "failed", "val_loss", 3, {"succeeded": 1, "failed": 1, "lost": 1})
    assert "runs 1/3 (1 failed, 1 lost)" in str(ExperimentDetailScreen._title(failed, "val_loss", narrow=False))
