"""Provides `make_app(settings)` and PivotApp: the terminal client for a pivotd daemon."""

from __future__ import annotations

import contextlib

from textual import work
from textual.app import App
from textual.binding import Binding
from textual.worker import Worker

from pivot_tui.client import Connection, DaemonClient, Event
from pivot_tui.config import TuiSettings
from pivot_tui.failures import report_failure
from pivot_tui.model import TuiModel
from pivot_tui.screens import (
    AlertsScreen,
    ExperimentsScreen,
    LaunchDialog,
    QueueScreen,
    ResourcesScreen,
    RunDetailScreen,
    RunsScreen,
)
from pivot_tui.screens.help import HelpDialog
from shared.client import PivotAPIError
from shared.models.alerts import AlertStatus

OFFLINE_NOTE = {Connection.OFFLINE: "○ offline, reconnecting", Connection.UNAUTHORIZED: "✖ token needed"}
"""The header's sub-title while the daemon cannot be used: the data on screen is the last read."""


class PivotApp(App[None]):
    """Runs, live curves, layer health, resources and alerts of one pivotd."""

    CSS_PATH = "pivot.tcss"
    TITLE = "PIVOT"
    MODES = {"runs": RunsScreen, "resources": ResourcesScreen, "alerts": AlertsScreen, "experiments": ExperimentsScreen,
             "queue": QueueScreen}  # fmt: skip
    DEFAULT_MODE = "runs"
    BINDINGS = [
        # The footer shows each screen's own keys, then these; at 80 columns there is no room for the
        # screen switches too, so `1`-`6` are listed by `?` (the help dialog) and in the docs instead.
        Binding("question_mark", "help", "Help"),
        Binding("l", "launch", "Launch"),
        Binding("q", "quit", "Quit"),
        Binding("1", "switch_mode('runs')", "Runs", show=False),
        Binding("2", "switch_mode('resources')", "Resources", show=False),
        Binding("3", "switch_mode('alerts')", "Alerts", show=False),
        Binding("4", "switch_mode('experiments')", "Experiments", show=False),
        Binding("6", "switch_mode('queue')", "Queue", show=False),
    ]

    def __init__(self, settings: TuiSettings, client: DaemonClient | None = None) -> None:
        super().__init__()
        self.settings = settings
        self.client = client or DaemonClient(settings.url, settings.token)
        self.model = TuiModel()
        self.active_alerts: int | None = None
        """Active alerts on the daemon; None until known (or when it has no alerts feature)."""
        self.launch_form: dict[str, str] = {}
        """The launch dialog's last values (widget id -> value), so the next launch starts from them."""

    def on_mount(self) -> None:
        if self.settings.theme in self.available_themes:
            self.theme = self.settings.theme
        self.stay_connected()

    async def on_unmount(self) -> None:
        await self.client.aclose()

    # -- the link to the daemon -----------------------------------------------------------------------

    @work(exclusive=True, group="daemon-link", exit_on_error=False)
    async def stay_connected(self) -> None:
        await self.client.run_forever(self._on_event, self._on_state)

    def _on_event(self, event: Event) -> None:
        if self.model.apply(event):
            self.resync()
        elif event.data.get("topic") == "alerts":
            self.count_alerts()
        elif event.type == "experiment_error":  # a run of the open experiment failed
            self.notify(str(event.data.get("message", "a run failed")), severity="error", timeout=6)

    @work(exclusive=True, group="count-alerts", exit_on_error=False)
    async def count_alerts(self) -> None:
        """The active-alert count in the runs header; stays None on a daemon without alerts."""
        try:
            active = await self.client.alerts(AlertStatus.ACTIVE)
        except PivotAPIError:
            return
        self.active_alerts = len(active)
        self.model.bump("alerts")

    def _on_state(self, state: Connection, detail: str) -> None:
        changed = state is not self.model.connection
        was_online = self.model.connection is Connection.ONLINE
        self.model.connection, self.model.connection_detail = state, detail
        # Every screen's header says so while the daemon is away (screens without a sub-title of their own
        # show the app's; the runs screen adds it to its own). Kept through each reconnection attempt.
        if state is not Connection.CONNECTING:
            self.sub_title = OFFLINE_NOTE.get(state, "")
        if changed and state is Connection.OFFLINE and was_online:
            self.notify(f"Lost pivotd at {self.settings.url}: {detail}. Reconnecting; what is shown may be stale.",
                        severity="warning", timeout=6)  # fmt: skip
        elif changed and state is Connection.UNAUTHORIZED:
            self.notify(detail, severity="error", timeout=10)

    @work(exclusive=True, group="resync", exit_on_error=False)
    async def resync(self) -> None:
        """Reload over REST what the socket may have missed (after a reconnect or a `lagged` notice)."""
        self.model.begin_sync()
        runs = await self.client.runs()
        self.model.finish_sync(runs)
        if self.model.followed is not None:
            await self._load_run(self.model.followed.run_id)
        self.model.bump("resources", "experiments")
        self.count_alerts()

    async def follow_run(self, run_id: str) -> None:
        self.model.follow(run_id)
        await self.client.watch_run(run_id)
        await self._load_run(run_id)

    def unfollow_run(self) -> None:
        self.model.follow(None)
        self.run_worker(self.client.watch_run(None), group="follow", exit_on_error=False)

    async def _load_run(self, run_id: str) -> None:
        try:
            detail = await self.client.get_run(run_id)
            scalars = await self.client.scalars(run_id, max_points=2000)
        except PivotAPIError as exc:
            self.notify(f"{run_id}: {exc.message}", severity="error")
            return
        followed = self.model.followed
        if followed is None or followed.run_id != run_id:
            return
        fresh = type(followed)(run_id)
        for step in detail.steps or []:
            fresh.add_step(step)
        for name, series in scalars.series.items():
            fresh.add_points(
                [{"step": s, "values": {name: v}} for s, v in zip(series.steps, series.values, strict=True)]
            )
        fresh.events.extend(detail.events)
        fresh.job, fresh.gpus = detail.job, detail.gpus
        if detail.kind == "managed":
            fresh.epoch, fresh.epochs_total = detail.epoch, detail.epochs_total
        if detail.kind in ("managed", "job"):  # a worker's or a command's output
            with contextlib.suppress(PivotAPIError):  # a daemon without managed-run logs
                fresh.logs.extend(await self.client.run_logs(run_id, tail=200))
        self.model.followed = fresh
        self.model.bump("run")

    # -- actions ------------------------------------------------------------------------------------

    def open_run(self, run_id: str) -> None:
        self.push_screen(RunDetailScreen(run_id))

    def action_launch(self) -> None:
        def opened(run_id: str | None) -> None:
            if run_id:
                self.notify(f"launched {run_id}")
                self.open_run(run_id)

        self.push_screen(LaunchDialog(), opened)

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpDialog):
            self.push_screen(HelpDialog(self.screen))

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        report_failure(self, event)


def make_app(settings: TuiSettings, client: DaemonClient | None = None) -> PivotApp:
    return PivotApp(settings, client)
