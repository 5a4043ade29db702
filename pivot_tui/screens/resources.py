"""Provides ResourcesScreen: per-GPU gauges with sparklines of recent history, CPU per core, memory, disk."""

from __future__ import annotations

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Footer, Header, Sparkline, Static

from pivot_tui.client import Unreachable
from pivot_tui.failures import ReportsFailures
from pivot_tui.screens.live import LiveScreen
from pivot_tui.widgets.quiet import QuietStatic
from pivot_tui.widgets.resource_strip import bar
from shared.client import PivotAPIError
from shared.models.monitor import ResourceSample

UNAVAILABLE = "This daemon does not report resources (its resources route answered HTTP {status})."


def _gb(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.1f} GB"


def _utilisation(sample: ResourceSample) -> float:
    """The first GPU's utilisation, 0 when unknown (the history sparkline)."""
    return (sample.gpu[0].utilization or 0.0) if sample.gpu else 0.0


class ResourcesScreen(ReportsFailures, LiveScreen):
    """Hardware at a glance, refreshed from the daemon's `resources` samples."""

    WATCHES = frozenset({"resources"})
    REDRAW_S = 0.5

    def __init__(self) -> None:
        super().__init__()
        self._seen = -1
        self._seen_model: object = None
        """The model (box) and its resources' version last drawn: another box's can have the same version."""

    def compose(self) -> ComposeResult:
        yield Header()
        with VerticalScroll(id="resources"):
            yield QuietStatic(id="gpus")
            yield Static("GPU 0 utilisation, recent samples", classes="section-title gpu-history")
            yield Sparkline([], id="gpu-history", classes="gpu-history")
            yield QuietStatic(id="host")
        yield Footer(compact=True, show_command_palette=False)  # room for every key at 80 columns

    def on_mount(self) -> None:
        self.title = "resources"
        self.redraw()  # the sample the runs screen already holds, while a fresh one is fetched
        self.fetch()

    @work(exclusive=True, group="fetch-resources", exit_on_error=False)
    async def fetch(self) -> None:
        try:
            sample = await self.app.client.resources()
        except Unreachable as exc:
            self.notify(exc.message, severity="error")
            return
        except PivotAPIError as exc:
            self.query_one("#host", QuietStatic).show_text(Text(UNAVAILABLE.format(status=exc.status), style="dim"))
            return
        self.app.model.add_resource_sample(sample)

    def redraw(self) -> None:
        """From the newest sample: the texts that changed, the history while there is a GPU to show it of."""
        model = self.app.model
        if (model.versions["resources"] == self._seen and model is self._seen_model) or model.resources is None:
            return
        self._seen, self._seen_model = model.versions["resources"], model
        sample = model.resources
        lines = Text()
        if sample.gpu is None:
            lines.append("GPUs unknown: this daemon cannot read NVML (no driver or no nvidia-ml-py).\n", style="dim")
        elif not sample.gpu:
            lines.append("No NVIDIA GPU reported by this daemon.\n", style="dim")
        for gpu in sample.gpu or ():
            lines.append(f"GPU {gpu.id}  {gpu.name or ''}\n", style="bold")
            lines.append("  util  ").append(bar(gpu.utilization, 20)).append("\n")
            lines.append("  mem   ").append(bar(gpu.memory_percent, 20)).append(
                f"  {_gb(gpu.memory_used_gb)} / {_gb(gpu.memory_total_gb)}\n"
            )
            temperature, power = gpu.temperature, gpu.power_watts
            hot = temperature is not None and temperature >= 85
            lines.append("  temp  ").append(
                f"{'n/a' if temperature is None else temperature} °C", "bold red" if hot else ""
            )
            lines.append(f"   power {'n/a' if power is None else f'{power:.0f}'} W\n")
        self.query_one("#gpus", QuietStatic).show_text(lines)
        for part in self.query(".gpu-history"):  # a flat line of zeros under "no GPU" would read as an idle GPU
            part.display = bool(sample.gpu)
        if sample.gpu:
            self.query_one("#gpu-history", Sparkline).data = [_utilisation(s) for s in model.resource_history]
        cpu, memory, disk = sample.cpu, sample.memory, sample.disk
        host = Text("CPU   ", style="bold").append(bar(cpu.percent if cpu else None, 20)).append("\n")
        for index, percent in enumerate(cpu.per_cpu if cpu else []):
            host.append(f"  {index:>3} ").append(bar(percent, 16)).append("\n")
        host.append("MEM   ", style="bold").append(bar(memory.percent if memory else None, 20)).append("\n")
        host.append("DISK  ", style="bold").append(bar(disk.percent if disk else None, 20)).append("\n")
        self.query_one("#host", QuietStatic).show_text(host)
