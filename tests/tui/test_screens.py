"""Screens with a fake daemon: what stays on the stack comes back whole, and failures are shown."""

from __future__ import annotations

import errno
import socket
from collections.abc import Mapping
from typing import Any

from textual.widgets import Input
from textual.widgets._footer import FooterKey

from pivot_tui.app import PivotApp, make_app
from pivot_tui.client import Connection, DaemonClient, Event, why_offline
from pivot_tui.config import TuiSettings
from pivot_tui.screens import ExperimentDetailScreen, LaunchDialog, RunDetailScreen
from shared.client import AsyncPivotClient, PivotAPIError
from shared.models.alerts import NotificationRead
from shared.models.experiments import ExperimentDetail, ExperimentExport, ExperimentPublic
from shared.models.registry import TrainQueued
from shared.models.runs import RunSummary
from tests.tui.fake import FakeDaemonClient, summary
from tests.tui.helpers import notes, rows, until


def app(client: FakeDaemonClient | None = None) -> PivotApp:
    return make_app(TuiSettings("http://gpu-box:8000", None, "textual-dark"), client or FakeDaemonClient())


def following(pilot: Any, run_id: str) -> bool:
    followed = pilot.app.model.followed
    return followed is not None and followed.run_id == run_id and len(followed.steps) == 151


async def test_a_run_detail_left_on_the_stack_follows_its_run_again_when_it_comes_back() -> None:
    async with app().run_test(size=(120, 40)) as pilot:
        await pilot.press("4")
        await until(pilot, lambda: rows(pilot, "#experiments") == 4)
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(pilot.app.screen, ExperimentDetailScreen)
                    and rows(pilot, "#experiment-runs") == 6)  # fmt: skip
        await pilot.press("enter")
        await until(pilot, lambda: following(pilot, "exp_lr_r1"))
        first = pilot.app.screen
        assert isinstance(first, RunDetailScreen)

        await pilot.press("1")
        await until(pilot, lambda: rows(pilot, "#runs") == 4)
        await pilot.press("enter")  # another run, in the runs mode: the app follows that one instead
        await until(pilot, lambda: isinstance(pilot.app.screen, RunDetailScreen) and pilot.app.screen is not first)
        other = pilot.app.screen.run_id
        await until(pilot, lambda: following(pilot, other))
        await pilot.press("escape")
        await until(pilot, lambda: pilot.app.model.followed is None)

        await pilot.press("4")
        await until(pilot, lambda: pilot.app.screen is first)
        await until(pilot, lambda: following(pilot, "exp_lr_r1"))
        await until(pilot, lambda: "no layer-wise steps yet" not in str(first.query_one("#heatmap").render()))


def title(pilot: Any) -> str:
    found = pilot.app.screen.query("#run-title")
    return str(found.first().render()) if found else ""


async def test_a_managed_runs_epochs_show_in_its_title_and_follow_run_progress() -> None:
    async with app().run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: rows(pilot, "#runs") == 4)
        pilot.app.open_run("mnist_cnn_lr0.1")
        await until(pilot, lambda: following(pilot, "mnist_cnn_lr0.1") and "epoch 2/3" in title(pilot))
        progress = {"type": "run_progress", "topic": "run:mnist_cnn_lr0.1", "run_id": "mnist_cnn_lr0.1", "epoch": 3}
        pilot.app._on_event(pilot.app._link(), Event("run_progress", progress))
        await until(pilot, lambda: "epoch 3/3" in title(pilot))


async def test_a_run_without_steps_says_so_instead_of_step_none() -> None:
    async with app().run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: rows(pilot, "#runs") == 4)
        pilot.app.model.runs["just_launched"] = RunSummary.model_validate(summary("queued", None, None, "managed"))
        pilot.app.open_run("just_launched")
        await until(pilot, lambda: "just_launched" in title(pilot))
        assert "no steps yet" in title(pilot)
        assert "None" not in title(pilot)


async def test_paused_the_viewed_step_shows_whole_at_80_columns() -> None:
    async with app().run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: rows(pilot, "#runs") == 4)
        pilot.app.open_run("exploding_rnn")
        await until(pilot, lambda: following(pilot, "exploding_rnn"))
        await pilot.press("home")
        await until(pilot, lambda: "PAUSED at step 0 " in title(pilot)[:80])
        heatmap = pilot.app.screen.query_one("#heatmap")
        await until(pilot, lambda: "steps 0.." in str(heatmap.border_title))
        await pilot.press("end")
        await until(pilot, lambda: str(heatmap.border_title).endswith("..1500"))


def widths(pilot: Any, table: str) -> dict[str, int]:
    return {key.value: column.width for key, column in pilot.app.screen.query_one(table).columns.items()}


async def test_columns_follow_the_terminal_when_it_is_resized() -> None:
    async with app().run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: rows(pilot, "#runs") == 4)
        narrow_run = widths(pilot, "#runs")["run"]
        await pilot.resize_terminal(120, 40)
        await until(pilot, lambda: widths(pilot, "#runs")["run"] > narrow_run)

        await pilot.press("4")
        await until(pilot, lambda: rows(pilot, "#experiments") == 4)
        assert "created" in widths(pilot, "#experiments")
        wide_name = widths(pilot, "#experiments")["name"]
        await pilot.resize_terminal(80, 24)
        await until(pilot, lambda: "created" not in widths(pilot, "#experiments"))
        assert widths(pilot, "#experiments")["name"] < wide_name
        assert rows(pilot, "#experiments") == 4  # the rows are redrawn for the new columns
        assert sum(widths(pilot, "#experiments").values()) + 2 * 6 + 2 <= 80  # padding and scrollbar
        await pilot.resize_terminal(120, 40)
        await until(pilot, lambda: widths(pilot, "#experiments").get("name") == wide_name)


class GoesDown(FakeDaemonClient):
    """The fake daemon until `down`, then a real client's calls to a port nobody listens on."""

    def __init__(self, **fake: Any) -> None:
        super().__init__(**fake)
        self.down = False
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            nobody = f"http://127.0.0.1:{probe.getsockname()[1]}"
        self.rest = AsyncPivotClient(nobody, None)

    async def experiments(self) -> list[ExperimentPublic]:
        return await (DaemonClient.experiments(self) if self.down else super().experiments())

    async def experiment(self, experiment_id: str) -> ExperimentDetail:
        return await (DaemonClient.experiment(self, experiment_id) if self.down else super().experiment(experiment_id))

    async def experiment_results(self, experiment_id: str) -> ExperimentExport:
        if self.down:
            return await DaemonClient.experiment_results(self, experiment_id)
        return await super().experiment_results(experiment_id)

    async def train(self, architecture: Mapping[str, Any], hyperparams: Mapping[str, Any]) -> TrainQueued:
        if self.down:
            return await DaemonClient.train(self, architecture, hyperparams)
        return await super().train(architecture, hyperparams)

    async def mark_notification_read(self, notification_id: str) -> NotificationRead:
        if self.down:
            return await DaemonClient.mark_notification_read(self, notification_id)
        return await super().mark_notification_read(notification_id)


async def test_launch_with_the_daemon_down_says_it_is_unreachable() -> None:
    client = GoesDown()
    client.down = True
    async with app(client).run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: rows(pilot, "#runs") == 4)
        await pilot.press("l")
        await until(pilot, lambda: isinstance(pilot.app.screen, LaunchDialog))
        await pilot.click("#launch-ok")
        await until(pilot, lambda: "pivotd unreachable: " in notes(pilot))
        assert "pivotd unreachable: " in str(pilot.app.screen.query_one("#launch-error").render())


async def test_an_experiment_opened_offline_shows_why_it_is_empty() -> None:
    client = GoesDown()
    async with app(client).run_test(size=(120, 40)) as pilot:
        await pilot.press("4")
        await until(pilot, lambda: rows(pilot, "#experiments") == 4)
        client.down = True
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(pilot.app.screen, ExperimentDetailScreen))
        await until(
            pilot, lambda: "pivotd unreachable: " in str(pilot.app.screen.query_one("#experiment-title").render())
        )
        await pilot.press("escape", "ctrl+r")  # the list keeps its rows and says why they are not fresh
        await until(
            pilot, lambda: "pivotd unreachable: " in str(pilot.app.screen.query_one("#experiments-status").render())
        )
        assert rows(pilot, "#experiments") == 4


async def test_an_uncaught_failure_in_a_screens_worker_is_a_notification() -> None:
    client = GoesDown(alerts=[])
    async with app(client).run_test(size=(120, 40)) as pilot:
        await pilot.press("3")
        await until(pilot, lambda: rows(pilot, "#notifications") == 2)
        client.down = True
        await pilot.press("m")  # mark read: no handler of its own for a transport failure
        await until(pilot, lambda: "mark-read failed: pivotd unreachable: " in notes(pilot))


def header(pilot: Any) -> str:
    return str(pilot.app.screen.query_one("HeaderTitle").render())


async def test_every_screen_says_when_pivotd_is_away_and_the_message_is_in_words() -> None:
    async with app().run_test(size=(120, 40)) as pilot:
        await pilot.press("4")
        await until(pilot, lambda: rows(pilot, "#experiments") == 4)
        refused = ConnectionRefusedError(errno.ECONNREFUSED, "Connect call failed ('127.0.0.1', 8765)")
        pilot.app._on_state(pilot.app._link(), Connection.OFFLINE, why_offline(refused))
        await until(pilot, lambda: "offline" in header(pilot))
        assert "Lost pivotd at http://gpu-box:8000: connection refused (is pivotd running?)" in notes(pilot)
        assert "Errno" not in notes(pilot)
        pilot.app._on_state(pilot.app._link(), Connection.CONNECTING, "ws://gpu-box:8000/ws")  # a reconnection attempt
        pilot.app._on_state(pilot.app._link(), Connection.OFFLINE, why_offline(refused))
        assert notes(pilot).count("Lost pivotd") == 1  # once per loss, not per attempt
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(pilot.app.screen, ExperimentDetailScreen) and "offline" in header(pilot))
        await pilot.press("1")
        await until(pilot, lambda: "4 runs · ○ offline" in header(pilot))
        pilot.app._on_state(pilot.app._link(), Connection.ONLINE, "ws://gpu-box:8000/ws")
        await until(pilot, lambda: "offline" not in header(pilot))


async def test_every_alerts_column_fits_at_80_and_120_columns() -> None:
    long = {"alert_id": "a1", "severity": "high", "status": "acknowledged", "value": 412.5,
            "message": "gradient_l2_norm on exploding_rnn:classifier/fc2 is 412.5 " * 3,
            "subject": "exploding_rnn:classifier/fc2", "triggered_at": "2024-02-10T12:30:00.000+00:00"}  # fmt: skip
    async with app(FakeDaemonClient(alerts=[long])).run_test(size=(80, 24)) as pilot:
        await pilot.press("3")
        await until(pilot, lambda: rows(pilot, "#alerts") == 1)
        for width in (80, 120):
            await pilot.resize_terminal(width, 30)
            for table in ("#alerts", "#notifications"):
                await until(
                    pilot, lambda t=table, w=width: sum(widths(pilot, t).values()) + 2 * len(widths(pilot, t)) <= w - 2
                )
            assert "Since" in str(pilot.app.screen.query_one("#alerts").render_line(0).text)


def footer(pilot: Any) -> set[str]:
    """The keys the footer shows within 80 columns."""
    return {key.description for key in pilot.app.screen.query(FooterKey) if key.region.right <= 80}


async def test_the_footer_shows_every_key_of_the_run_detail_and_help_at_80_columns() -> None:
    async with app().run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: rows(pilot, "#runs") == 4)
        pilot.app.open_run("mnist_cnn_lr0.1")  # a managed run training: every key applies
        # The footer shows the screen's keys a frame after its bindings settle; Help, the app's, comes last.
        await until(pilot, lambda: following(pilot, "mnist_cnn_lr0.1") and "Help" in footer(pilot))
        assert {"Step", "Back", "Live", "Plot", "Heat", "Cancel", "Params", "Infer", "Help"} <= footer(pilot)


async def test_cancel_is_offered_only_for_a_managed_run_that_has_not_ended() -> None:
    async with app().run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: rows(pilot, "#runs") == 4)
        for run_id in ("exploding_rnn", "resnet18_ablation_no_bn", "mnist_mlp_baseline"):  # a script's run; ended
            pilot.app.open_run(run_id)
            await until(pilot, lambda r=run_id: following(pilot, r) and "Help" in footer(pilot))
            assert "Cancel" not in footer(pilot) and {"Step", "Params", "Help"} <= footer(pilot)
            await pilot.press("c")  # does nothing: no confirmation, no request
            assert isinstance(pilot.app.screen, RunDetailScreen) and notes(pilot) == ""
            await pilot.press("escape")

        pilot.app.open_run("mnist_cnn_lr0.1")
        await until(pilot, lambda: following(pilot, "mnist_cnn_lr0.1") and "Cancel" in footer(pilot))
        ended = {"type": "run_state", "topic": "runs", "run_id": "mnist_cnn_lr0.1", "state": "succeeded", "error": None}
        pilot.app._on_event(pilot.app._link(), Event("run_state", ended))
        await until(pilot, lambda: "Cancel" not in footer(pilot))  # it finished while open: the key goes


async def test_a_lost_run_has_its_own_colour_in_the_runs_list() -> None:
    async with app().run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: rows(pilot, "#runs") == 4)
        lost = {**summary("lost", 700, 0.9), "error": "no data for 15 min"}
        pilot.app._on_event(
            pilot.app._link(), Event("run_updated", {"type": "run_updated", "run_id": "killed", "data": lost})
        )
        await until(pilot, lambda: rows(pilot, "#runs") == 5)
        table = pilot.app.screen.query_one("#runs")
        assert str(table.get_cell("killed", "state")) == "[dark_orange]lost[/]"


async def test_enter_in_the_runs_filter_opens_the_highlighted_match() -> None:
    async with app().run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: rows(pilot, "#runs") == 4)
        await pilot.press("slash", *"explod", "enter")
        await until(pilot, lambda: isinstance(pilot.app.screen, RunDetailScreen))
        assert pilot.app.screen.run_id == "exploding_rnn"


async def test_the_launch_form_submits_on_enter_clears_stale_errors_and_remembers_its_values() -> None:
    refusal = PivotAPIError(409, "conflict", "a training run is already active")
    client = FakeDaemonClient(refuse={"train": refusal})
    async with app(client).run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: rows(pilot, "#runs") == 4)
        await pilot.press("l")
        await until(pilot, lambda: isinstance(pilot.app.screen, LaunchDialog))
        dialog = pilot.app.screen
        keys = [key.description for key in dialog.query(FooterKey)]
        assert keys == ["Launch", "Cancel"]  # the dialog's own keys, not the runs screen's
        assert dialog.focused is dialog.query_one("#template")
        await pilot.press("enter")  # on the first field too, enter launches (the daemon refuses this one)
        await until(pilot, lambda: "already active" in str(dialog.query_one("#launch-error").render()))
        assert [method for method, _ in client.posted] == ["train"] and not dialog.query("SelectOverlay:focus")
        dialog.query_one("#hp-epochs", Input).focus()
        await pilot.press("backspace", "x", "enter")
        error = dialog.query_one("#launch-error")
        await until(pilot, lambda: "epochs: 'x' is not a valid int" in str(error.render()))
        await pilot.press("backspace", "7")
        await until(pilot, lambda: str(error.render()) == "")
        await pilot.press("enter")  # valid now: sent, and the daemon's refusal shown
        await until(pilot, lambda: "pivotd refused: a training run is already active" in str(error.render()))
        assert client.posted[-1][1]["hyperparams"]["epochs"] == 7
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(pilot.app.screen, LaunchDialog))
        await pilot.press("l")
        await until(pilot, lambda: isinstance(pilot.app.screen, LaunchDialog))
        assert pilot.app.screen.query_one("#hp-epochs", Input).value == "7"


async def test_the_sorted_column_is_marked_in_the_header() -> None:
    async with app().run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: rows(pilot, "#runs") == 4)
        table = pilot.app.screen.query_one("#runs")

        def labels() -> list[str]:
            return [str(column.label) for column in table.columns.values()]

        assert labels() == ["Run", "Kind", "State", "Step", "Loss", "Updated"]  # creation order: no column
        await pilot.press("s")
        assert labels()[0] == "Run▲"
        await pilot.press("s", "s", "s")
        assert labels()[:4] == ["Run", "Kind", "State", "Step▼"]
