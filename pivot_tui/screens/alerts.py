"""Provides AlertsScreen: alerts with severity colours, acknowledge with a note, and the alert rules."""

from __future__ import annotations

import getpass
from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Footer, Header, Static

from pivot_tui.client import Unreachable
from pivot_tui.failures import ReportsFailures
from pivot_tui.screens.acknowledge import AcknowledgeDialog
from pivot_tui.screens.live import LiveScreen
from pivot_tui.widgets.columns import fit_columns, left_over
from pivot_tui.widgets.runs_table import age
from shared.client import PivotAPIError
from shared.models.alerts import AlertSeverity, AlertStatus, NotificationPriority

SEVERITY_STYLE = {AlertSeverity.CRITICAL: "bold white on red", AlertSeverity.HIGH: "bold red",
                  AlertSeverity.MEDIUM: "yellow", AlertSeverity.LOW: "cyan"}  # fmt: skip


def _number(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, int | float) else str(value or "")


def _clipped(value: Any) -> Text:
    """A cell cut to its column's width with an ellipsis, however the column is resized."""
    return Text(str(value or ""), no_wrap=True, overflow="ellipsis")


PRIORITY_STYLE = {NotificationPriority.HIGH: "red", NotificationPriority.MEDIUM: "yellow",
                  NotificationPriority.LOW: "dim"}  # fmt: skip


class AlertsScreen(ReportsFailures, LiveScreen):
    """What fired, newest first; `a` acknowledges the highlighted alert, `m` marks notifications read."""

    BINDINGS = [
        Binding("a", "acknowledge", "Acknowledge"),
        Binding("m", "mark_read", "Mark read"),
        Binding("r", "reload", "Reload"),
    ]
    WATCHES = frozenset({"alerts"})
    REDRAW_S = 0.5
    """An alert's message and the count it changes come as two bumps: one reload."""

    def __init__(self) -> None:
        super().__init__()
        self._seen: tuple[int, int] | None = None
        """The model (box, by id) and its alerts' version last loaded."""
        self._unread: list[str] = []

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(id="alerts-status")
        yield DataTable(id="alerts", cursor_type="row", zebra_stripes=True)
        yield Static("Notifications", classes="section-title")
        yield DataTable(id="notifications", cursor_type="row", zebra_stripes=True)
        yield Static("Rules", classes="section-title")
        yield DataTable(id="rules", cursor_type="row", zebra_stripes=True)
        yield Footer(compact=True, show_command_palette=False)  # room for every key at 80 columns

    def on_mount(self) -> None:
        self.title = "alerts"
        alerts, notifications = self._widths(self.app.size.width)
        for label, width in alerts.items():
            self.query_one("#alerts", DataTable).add_column(label, key=label, width=width)
        rules = self.query_one("#rules", DataTable)
        for label in ("Rule", "Metric", "Condition", "Threshold", "Severity", "Enabled"):
            rules.add_column(label)
        for label, width in notifications.items():
            self.query_one("#notifications", DataTable).add_column(label, key=label, width=width)
        self.redraw()

    def on_resize(self) -> None:
        alerts, notifications = self._widths(self.size.width)
        fit_columns(self.query_one("#alerts", DataTable), alerts)
        fit_columns(self.query_one("#notifications", DataTable), notifications)

    @staticmethod
    def _widths(width: int) -> tuple[dict[str, int], dict[str, int]]:
        """Fixed columns, and messages sized to what is left (cut with an ellipsis), so every column shows."""
        lead, tail = {"Severity": 8, "Status": 12}, {"Value": 7, "Since": 8}
        spare = left_over(width, {**lead, "Subject": 0, **tail}, 24, 200)  # shared by Alert and Subject
        subject = min(32, spare * 2 // 5)
        alerts = {**lead, "Alert": spare - subject, "Subject": subject, **tail}
        lead, tail = {"": 1, "Priority": 8, "Type": 10}, {"When": 8}
        notifications = {**lead, "Message": left_over(width, {**lead, **tail}, 12, 200), **tail}
        return alerts, notifications

    def redraw(self) -> None:
        """Read the alerts again when they changed since the last read, or the box in view did."""
        model = self.app.model
        if (seen := (id(model), model.versions["alerts"])) != self._seen:
            self._seen = seen
            self.reload()

    def action_reload(self) -> None:
        self.reload()

    @work(exclusive=True, group="load-alerts", exit_on_error=False)
    async def reload(self) -> None:
        status = self.query_one("#alerts-status", Static)
        try:
            alerts = await self.app.client.alerts()
            rules = await self.app.client.alert_rules()
            notifications = await self.app.client.notifications(limit=50)
        except Unreachable as exc:
            status.update(Text(f"{exc.message}; showing the last alerts read", style="bold red"))
            return
        except PivotAPIError as exc:
            status.update(Text(f"This daemon does not serve alerts (HTTP {exc.status}).", style="dim"))
            return
        active = sum(1 for alert in alerts if alert.status is AlertStatus.ACTIVE)
        status.update(Text(f"{active} active, {len(alerts)} total", style="bold red" if active else "green"))
        table = self.query_one("#alerts", DataTable)
        table.clear()
        for alert in alerts:
            table.add_row(
                Text(alert.severity, style=SEVERITY_STYLE.get(alert.severity, "")),
                str(alert.status),
                _clipped(alert.message or alert.rule_name),
                _clipped(alert.subject),
                _number(alert.value),
                age(alert.triggered_at),
                key=alert.alert_id,
            )
        notification_table = self.query_one("#notifications", DataTable)
        notification_table.clear()
        for notice in notifications:
            notification_table.add_row(
                "" if notice.read else Text("●", style="bold cyan"),  # unread
                Text(notice.priority, style=PRIORITY_STYLE.get(notice.priority, "")),
                str(notice.type),
                _clipped(notice.message),
                age(notice.created_at),
                key=notice.id,
            )
        self._unread = [n.id for n in notifications if not n.read]
        rule_table = self.query_one("#rules", DataTable)
        rule_table.clear()
        for rule in rules:
            threshold = "" if rule.threshold is None else f"{rule.threshold:g}"
            rule_table.add_row(
                rule.name, rule.metric, rule.condition, threshold, str(rule.severity), "yes" if rule.enabled else "no"
            )

    def action_acknowledge(self) -> None:
        table = self.query_one("#alerts", DataTable)
        if not table.row_count:
            return
        alert_id = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        title = str(table.get_row_at(table.cursor_row)[2])

        def send(note: str | None) -> None:
            if note is not None and alert_id:
                self.acknowledge(alert_id, note)

        self.app.push_screen(AcknowledgeDialog(title), send)

    @work(exclusive=True, group="mark-read", exit_on_error=False)
    async def action_mark_read(self) -> None:
        for notification_id in self._unread:
            await self.app.client.mark_notification_read(notification_id)
        self.notify(f"{len(self._unread)} notification(s) marked read")
        self.reload()

    @work(group="acknowledge", exit_on_error=False)
    async def acknowledge(self, alert_id: str, note: str) -> None:
        try:
            await self.app.client.acknowledge_alert(alert_id, getpass.getuser(), note)
        except PivotAPIError as exc:
            self.notify(exc.message, severity="error")
            return
        self.notify("acknowledged")
        self.reload()
