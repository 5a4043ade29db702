"""Provides ResourcesScreen: per-GPU gauges with sparklines of recent history, CPU per core, memory, disk."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Header, Sparkline, Static

from pivot_tui.client import Unreachable
from pivot_tui.failures import ReportsFailures
from pivot_tui.widgets.resource_strip import bar
from shared.client import PivotAPIError

if TYPE_CHECKING:
    from pivot_tui.app import PivotApp

UNAVAILABLE = "This daemon does not report resources (GET /api/v1/monitor/resources answered {status})."


def _gb(value: Any) -> str:
    return f"{value:,.1f} GB" if isinstance(value, int | float) else "n/a"


class ResourcesScreen(ReportsFailures, Screen[None]):
    """Hardware at a glance, refreshed from the daemon's `resources` samples."""

    app: PivotApp  # type: ignore[assignment]

    def __init__(self) -> None:
        super().__init__()
        self._seen = -1

    def compose(self) -> ComposeResult:
        yield Header()
        with VerticalScroll(id="resources"):
            yield Static(id="gpus")
            yield Static("GPU 0 utilisation, recent samples", classes="section-title gpu-history")
            yield Sparkline([], id="gpu-history", classes="gpu-history")
            yield Static(id="host")
        yield Footer(compact=True, show_command_palette=False)  # room for every key at 80 columns

    def on_mount(self) -> None:
        self.title = "resources"
        self.set_interval(0.5, self.redraw)
        self.redraw()  # the sample the runs screen already holds, while a fresh one is fetched
        self.fetch()

    @work(exclusive=True, group="fetch-resources", exit_on_error=False)
    async def fetch(self) -> None:
        try:
            sample = await self.app.client.get_json("/api/v1/monitor/resources")
        except Unreachable as exc:
            self.notify(exc.message, severity="error")
            return
        except PivotAPIError as exc:
            self.query_one("#host", Static).update(Text(UNAVAILABLE.format(status=exc.status), style="dim"))
            return
        self.app.model.add_resource_sample(sample)

    def redraw(self) -> None:
        model = self.app.model
        if model.versions["resources"] == self._seen or model.resources is None:
            return
        self._seen = model.versions["resources"]
        sample = model.resources
        gpus = sample.get("gpu") or []
        lines = Text()
        if not gpus:
            lines.append("No NVIDIA GPU reported by this daemon.\n", style="dim")
        for gpu in gpus:
            used, total = gpu.get("memory_used_gb"), gpu.get("memory_total_gb")
            lines.append(f"GPU {gpu.get('id', '?')}  {gpu.get('name', '')}\n", style="bold")
            lines.append("  util  ").append(bar(gpu.get("utilization"), 20)).append("\n")
            lines.append("  mem   ").append(bar(gpu.get("memory_percent"), 20)).append(
                f"  {_gb(used)} / {_gb(total)}\n"
            )
            temperature, power = gpu.get("temperature"), gpu.get("power_watts")
            hot = isinstance(temperature, int | float) and temperature >= 85
            lines.append("  temp  ").append(
                f"{temperature if temperature is not None else 'n/a'} °C", "bold red" if hot else ""
            )
            lines.append(f"   power {f'{power:.0f}' if isinstance(power, int | float) else 'n/a'} W\n")
        self.query_one("#gpus", Static).update(lines)
        history = [float((s.get("gpu") or [{}])[0].get("utilization") or 0) for s in model.resource_history]
        self.query_one("#gpu-history", Sparkline).data = history or [0.0]
        for part in self.query(".gpu-history"):  # a flat line of zeros under "no GPU" would read as an idle GPU
            part.display = bool(gpus)
        cpu, memory, disk = sample.get("cpu") or {}, sample.get("memory") or {}, sample.get("disk") or {}
        host = Text("CPU   ", style="bold").append(bar(cpu.get("percent"), 20)).append("\n")
        for index, percent in enumerate(cpu.get("per_cpu") or []):
            host.append(f"  {index:>3} ").append(bar(percent, 16)).append("\n")
        host.append("MEM   ", style="bold").append(bar(memory.get("percent"), 20)).append("\n")
        host.append("DISK  ", style="bold").append(bar(disk.get("percent"), 20)).append("\n")
        self.query_one("#host", Static).update(host)
