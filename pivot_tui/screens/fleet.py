"""Provides FleetScreen: one row per box: reachable or not, its GPUs, CPU and memory, queued and running runs,
active alerts. A box that goes away keeps its row, marked offline, with the last figures read from it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.markup import escape
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Footer, Header

from pivot_tui.client import Connection
from pivot_tui.failures import ReportsFailures
from pivot_tui.screens.live import LiveScreen
from pivot_tui.widgets.columns import RowTable, fit_columns, left_over
from pivot_tui.widgets.quiet import QuietStatic
from shared.models.monitor import GpuSample, ResourceSample
from shared.models.runs import RunState

if TYPE_CHECKING:
    from pivot_tui.fleet import HostLink

COLUMNS = ("box", "state", "gpus", "cpu", "mem", "queued", "running", "alerts")
LABELS = {"gpus": "GPUs", "cpu": "CPU"}
WIDTHS = {"state": 12, "cpu": 4, "mem": 4, "queued": 6, "running": 7, "alerts": 6}
STATE = {
    Connection.ONLINE: "[green]● online[/]",
    Connection.CONNECTING: "[yellow]◌ connecting[/]",
    Connection.OFFLINE: "[bold red]○ offline[/]",
    Connection.UNAUTHORIZED: "[bold red]✖ token[/]",
}


def _percent(value: float | None) -> str:
    return "" if value is None else f"{value:.0f}%"


def gpu_cell(gpu: GpuSample, wide: bool) -> str:
    """`87% 12/80G 65°`: utilisation, memory used/total and temperature (red from 85 °C); narrow: utilisation and
    temperature."""
    if gpu.error:
        return "[red]error[/]"
    parts = [_percent(gpu.utilization) or "?%"]
    if wide and gpu.memory_used_gb is not None and gpu.memory_total_gb is not None:
        parts.append(f"{gpu.memory_used_gb:.0f}/{gpu.memory_total_gb:.0f}G")
    if gpu.temperature is not None:
        parts.append(f"[red]{gpu.temperature:.0f}°[/]" if gpu.temperature >= 85 else f"{gpu.temperature:.0f}°")
    return " ".join(parts)


def gpus_cell(sample: ResourceSample | None, width: int) -> str:
    if sample is None:
        return "[dim]n/a[/]"
    if sample.gpu is None:
        return "[dim]unknown[/]"  # the daemon cannot ask NVML
    if not sample.gpu:
        return "[dim]none[/]"
    wide = width >= 18 * len(sample.gpu)
    shown: list[str] = []
    used = 0
    for index, cell in enumerate(gpu_cell(gpu, wide) for gpu in sample.gpu):  # as many as fit, then how many more
        length = Text.from_markup(cell).cell_len + (3 if shown else 0)
        more = len(sample.gpu) - index - 1
        if shown and used + length + (4 if more else 0) > width:
            break
        shown.append(cell)
        used += length
    rest = len(sample.gpu) - len(shown)
    return " │ ".join(shown) + (f" [dim]+{rest}[/]" if rest else "")


class FleetScreen(ReportsFailures, LiveScreen):
    """Every box at a glance; `enter` makes the highlighted box the one the resources, alerts, experiments and
    launch screens speak to, and shows its resources."""

    # Priority: the table's own `enter` (hidden from the footer) would otherwise take the key and the footer entry.
    BINDINGS = [Binding("enter", "choose", "Use box", priority=True)]
    WATCHES = frozenset({"runs", "resources", "alerts", "connection"})
    REDRAW_S = 0.5

    def __init__(self) -> None:
        super().__init__()
        self._shown: dict[str, tuple[str, ...]] = {}

    def compose(self) -> ComposeResult:
        yield Header()
        yield RowTable(id="fleet", cursor_type="row", zebra_stripes=True)
        yield QuietStatic(id="fleet-detail")
        yield Footer(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        self.title = "fleet"
        table = self.query_one(DataTable)
        for column, width in self._widths(self.app.size.width).items():
            table.add_column(LABELS.get(column, column.capitalize()), key=column, width=width)
        table.focus()
        self.redraw()

    def watches(self, link: HostLink) -> bool:
        return True  # every box has its row

    def on_resize(self) -> None:
        fit_columns(self.query_one(DataTable), self._widths(self.size.width))
        self._shown.clear()
        self.redraw()

    def _widths(self, width: int) -> dict[str, int]:
        box = max(6, min(16, max(map(len, self.app.links))))
        gpus = left_over(width, {"box": box, **WIDTHS}, 8, 80)
        return {"box": box, "state": WIDTHS["state"], "gpus": gpus, **{k: WIDTHS[k] for k in COLUMNS[3:]}}

    def redraw(self) -> None:
        """Write the cells that changed (a box's figures, its state, which box is in use) and the line below."""
        table = self.query_one(RowTable)
        width = self._widths(self.size.width)["gpus"]
        links = self.app.links.values()
        online = sum(link.model.connection is Connection.ONLINE for link in links)
        self.sub_title = f"{online}/{len(links)} boxes online · box in use: {self.app.current}"
        for link in links:
            cells = self._cells(link, width)
            shown = self._shown.get(link.name)
            if shown is None and link.name not in {row.value for row in table.rows}:
                table.add_row(*cells, key=link.name)
            elif cells != shown:
                table.update_row(link.name, dict(zip(COLUMNS, cells, strict=True)))
            self._shown[link.name] = cells
        self._describe()

    def _cells(self, link: HostLink, gpu_width: int) -> tuple[str, ...]:
        model = link.model
        sample = model.resources
        states = [run.status for run in model.runs.values()]
        name = f"[b]{escape(link.name)}[/b]" if link.name == self.app.current else escape(link.name)
        alerts = link.active_alerts
        figures = (
            gpus_cell(sample, gpu_width),
            _percent(sample.cpu.percent) if sample and sample.cpu else "",
            _percent(sample.memory.percent) if sample and sample.memory else "",
            str(sum(state in (RunState.QUEUED, RunState.CREATED) for state in states)),
            str(states.count(RunState.RUNNING)),
            "" if alerts is None else f"[bold red]▲ {alerts}[/]" if alerts else "0",
        )
        if model.connection is not Connection.ONLINE:  # the last figures read: shown, but dimmed as stale
            figures = tuple(f"[dim]{figure}[/dim]" if figure else "" for figure in figures)
        return (name, STATE[model.connection], *figures)

    def _describe(self) -> None:
        """Under the table: where the highlighted box is and, when it is away, why."""
        name = self._highlighted()
        if name is None:
            return
        link = self.app.links[name]
        detail = link.model.connection_detail
        why = f" · {escape(detail)}" if link.model.connection is not Connection.ONLINE and detail else ""
        text = Text.from_markup(f"[b]{escape(name)}[/b] [dim]{escape(link.where)}[/]{why}")
        self.query_one("#fleet-detail", QuietStatic).show_text(text, layout=False)

    def _highlighted(self) -> str | None:
        table: DataTable[Any] = self.query_one(DataTable)
        if not table.row_count:
            return None
        return table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value

    def on_data_table_row_highlighted(self) -> None:
        self._describe()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.action_choose()

    def action_choose(self) -> None:
        name = self._highlighted()
        if name is not None:
            self.app.choose_host(name)
            self._shown.clear()
            self.app.switch_mode("resources")
