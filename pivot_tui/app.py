"""Provides `make_app(settings)` and PivotApp: the terminal client for one pivotd daemon or several boxes'."""

from __future__ import annotations

import contextlib
import functools
import weakref
from typing import Any
from urllib.parse import urlsplit

from textual.app import App, ScreenStackError
from textual.binding import Binding
from textual.content import Content
from textual.screen import Screen
from textual.worker import Worker

from pivot_tui.client import Connection, DaemonClient, Event
from pivot_tui.config import TuiSettings
from pivot_tui.failures import report_failure
from pivot_tui.fleet import HostLink
from pivot_tui.model import TuiModel
from pivot_tui.screens import (
    AlertsScreen,
    ExperimentsScreen,
    FleetScreen,
    LaunchDialog,
    QueueScreen,
    ResourcesScreen,
    RunDetailScreen,
    RunsScreen,
)
from pivot_tui.screens.help import HelpDialog
from pivot_tui.screens.live import LiveScreen
from pivot_tui.stylesheet import SharedStylesheet, fits_this_textual
from shared.client import PivotAPIError
from shared.hosts import Host
from shared.models.alerts import AlertStatus

OFFLINE_NOTE = {Connection.OFFLINE: "○ offline, reconnecting", Connection.UNAUTHORIZED: "✖ token needed"}
"""The header's sub-title while the daemon cannot be used: the data on screen is the last read."""


class PivotApp(App[None]):
    """Runs, live curves, layer health, resources and alerts of one pivotd, or of several boxes at once."""

    CSS_PATH = "pivot.tcss"
    TITLE = "PIVOT"
    MODES = {"runs": RunsScreen, "resources": ResourcesScreen, "alerts": AlertsScreen, "experiments": ExperimentsScreen,
             "fleet": FleetScreen, "queue": QueueScreen}  # fmt: skip
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
        Binding("5", "switch_mode('fleet')", "Fleet", show=False),
        Binding("6", "switch_mode('queue')", "Queue", show=False),
    ]

    def __init__(self, settings: TuiSettings, client: DaemonClient | None = None) -> None:
        super().__init__()
        if fits_this_textual():
            self.stylesheet = SharedStylesheet(variables=self.get_css_variables())  # nothing is read into it yet
        self.settings = settings
        hosts = settings.hosts or (Host(urlsplit(settings.url).netloc, url=settings.url, token=settings.token),)
        self.links = {host.name: HostLink(host, client=client if index == 0 else None) for index, host in
                      enumerate(hosts)}  # fmt: skip
        """Every box watched, by name, in the order given."""
        for link in self.links.values():
            link.model.on_change.append(functools.partial(self._model_changed, link))
        self.current = hosts[0].name
        """The box the resources, alerts, experiments and launch screens speak to: the last run opened, or the box
        chosen on the fleet screen."""
        self._screen_hosts: weakref.WeakKeyDictionary[Screen[Any], str] = weakref.WeakKeyDictionary()
        """A run detail's box, so that it follows its own run again on coming back into view."""
        self.launch_form: dict[str, str] = {}
        """The launch dialog's last values (widget id -> value), so the next launch starts from them."""

    @property
    def several(self) -> bool:
        return len(self.links) > 1

    def _link(self) -> HostLink:
        try:
            name = self._screen_hosts.get(self.screen, self.current)
        except ScreenStackError:  # no screen yet (startup): the current box
            name = self.current
        return self.links[name]

    @property
    def client(self) -> DaemonClient:
        """The client of the box in view (a run detail's own box, else the current one)."""
        return self._link().client

    @property
    def model(self) -> TuiModel:
        return self._link().model

    @property
    def active_alerts(self) -> int | None:
        """Active alerts on the box in view; None until known (or when it has no alerts feature)."""
        return self._link().active_alerts

    def choose_host(self, name: str) -> None:
        self.current = name
        if self.several:
            # Screens with a title of their own (resources, alerts, ...) show the app's sub-title: the box they
            # speak to. (With one box it carries the offline note instead.)
            self.title = f"PIVOT · {name}"
            self._note_box()

    def _note_box(self) -> None:
        link = self.links[self.current]
        away = OFFLINE_NOTE.get(link.model.away) if link.model.away else None
        self.sub_title = f"box {link.name}" + (f" · {away}" if away else "")

    def format_title(self, title: str, sub_title: str) -> Content:
        """The header's `PIVOT — 4 runs`, as Textual's own but with the space before the dash in the title's style:
        an SVG screenshot (Textual's ctrl+p) writes each styled stretch as a text element of fixed length, and
        librsvg (GNOME's image viewer, rsvg-convert) drops a stretch's leading space and spreads what is left, so
        Textual's dimmed " — " showed as `PIVOT—  4 runs`."""
        if not sub_title:
            return Content(title)
        return Content.assemble(f"{title} ", (f"— {sub_title}", "dim"))

    def on_mount(self) -> None:
        if self.settings.theme in self.available_themes:
            self.theme = self.settings.theme
        self.choose_host(self.current)
        for link in self.links.values():
            self.run_worker(link.run(self._on_event, self._on_state), group=f"link-{link.name}", exit_on_error=False)

    async def on_unmount(self) -> None:
        for link in self.links.values():
            await link.aclose()

    # -- the links to the daemons ---------------------------------------------------------------------

    def _model_changed(self, link: HostLink, parts: tuple[str, ...]) -> None:
        """A box's model changed: the screen on top redraws what it shows of it (the others when they come back)."""
        try:
            screen = self.screen
        except ScreenStackError:  # no screen yet (startup)
            return
        if isinstance(screen, LiveScreen):
            screen.model_changed(link, parts)

    def _on_event(self, link: HostLink, event: Event) -> None:
        if link.model.apply(event):
            self.resync(link)
        elif event.data.get("topic") == "alerts":
            self.count_alerts(link)
        elif event.type == "experiment_error" and link.name == self.current:  # a run of the open experiment failed
            self.notify(str(event.data.get("message", "a run failed")), severity="error", timeout=6)

    def count_alerts(self, link: HostLink) -> None:
        """The active-alert count in the runs header; stays None on a daemon without alerts."""
        self.run_worker(self._count_alerts(link), group=f"count-alerts-{link.name}", exclusive=True,
                        exit_on_error=False)  # fmt: skip

    async def _count_alerts(self, link: HostLink) -> None:
        try:
            active = await link.client.alerts(AlertStatus.ACTIVE)
        except PivotAPIError:
            return
        link.active_alerts = len(active)
        link.model.bump("alerts")

    def _on_state(self, link: HostLink, state: Connection, detail: str) -> None:
        model = link.model
        changed = state is not model.connection or detail != model.connection_detail
        was_online = model.connection is Connection.ONLINE
        model.connection, model.connection_detail = state, detail
        if state is not Connection.CONNECTING:
            model.away = None if state is Connection.ONLINE else state
        # Every screen's header says so while the daemon is away (screens without a sub-title of their own
        # show the app's; the runs screen adds it to its own). Kept through each reconnection attempt. With
        # several boxes the runs and fleet screens say which are away.
        if state is not Connection.CONNECTING and not self.several:
            self.sub_title = OFFLINE_NOTE.get(state, "")
        elif state is not Connection.CONNECTING and link.name == self.current:
            self._note_box()
        where = f"{link.name} ({link.where})" if self.several else f"pivotd at {link.where}"
        if state is Connection.OFFLINE and (was_online or (detail != link.said and (self.several or link.tunnel))):
            # Once per drop, and once per reason while a box that was never reached keeps failing (no startup
            # check stands before a fleet or an ssh box).
            link.said = detail
            self.notify(f"Lost {where}: {detail}. Reconnecting; what is shown may be stale."
                        if was_online else f"Cannot reach {where}: {detail}. Retrying.",
                        severity="warning", timeout=6)  # fmt: skip
        elif changed and state is Connection.UNAUTHORIZED:
            self.notify(f"{link.name}: {detail}" if self.several else detail, severity="error", timeout=10)
        if changed:
            model.bump("connection")  # after the sub-title, which the runs screen shows beside its own

    def resync(self, link: HostLink) -> None:
        """Reload over REST what the socket may have missed (after a reconnect or a `lagged` notice)."""
        self.run_worker(self._resync(link), group=f"resync-{link.name}", exclusive=True, exit_on_error=False)

    async def _resync(self, link: HostLink) -> None:
        link.model.begin_sync()
        runs = await link.client.runs()
        link.model.finish_sync(runs)
        if link.model.followed is not None:
            await self._load_run(link, link.model.followed.run_id)
        link.model.bump("resources", "experiments")
        self.count_alerts(link)

    async def follow_run(self, run_id: str) -> None:
        """Follow one run of the box in view; the app follows one run at a time, over all boxes."""
        link = self._link()
        self.choose_host(link.name)
        for other in self.links.values():
            if other is not link and other.model.followed is not None:
                other.model.follow(None)
                await other.client.watch_run(None)
        link.model.follow(run_id)
        await link.client.watch_run(run_id)
        await self._load_run(link, run_id)

    def unfollow_run(self) -> None:
        link = self._link()
        link.model.follow(None)
        self.run_worker(link.client.watch_run(None), group="follow", exit_on_error=False)

    async def _load_run(self, link: HostLink, run_id: str) -> None:
        try:
            detail = await link.client.get_run(run_id)
            scalars = await link.client.scalars(run_id, max_points=2000)
        except PivotAPIError as exc:
            self.notify(f"{run_id}: {exc.message}", severity="error")
            return
        followed = link.model.followed
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
                fresh.logs.extend(await link.client.run_logs(run_id, tail=200))
        link.model.followed = fresh
        link.model.bump("run")

    # -- actions ------------------------------------------------------------------------------------

    def open_run(self, run_id: str, host: str | None = None) -> None:
        """Open a run of `host` (default: the current box), which becomes the current box."""
        self.choose_host(host or self.current)
        screen = RunDetailScreen(run_id)
        self._screen_hosts[screen] = self.current
        self.push_screen(screen)

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
