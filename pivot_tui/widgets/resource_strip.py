"""Provides ResourceStrip: one line of CPU, memory and GPU gauges plus the active alert count."""

from __future__ import annotations

from rich.text import Text

from pivot_tui.widgets.quiet import QuietStatic
from shared.models.monitor import ResourceSample


def bar(percent: float | None, width: int = 8) -> Text:
    if percent is None:
        return Text("n/a".ljust(width + 5), style="dim")
    filled = round(max(0.0, min(100.0, percent)) / 100 * width)
    style = "green" if percent < 70 else "yellow" if percent < 90 else "red"
    return Text.assemble(("█" * filled, style), ("░" * (width - filled), "dim"), f" {percent:3.0f}%")


class ResourceStrip(QuietStatic):
    """One line whatever it holds (its size is the layout's): a new sample repaints it alone, and a sample that
    reads the same (gauges are whole percents) costs nothing."""

    _last: tuple[ResourceSample | None, int | None] | None = None

    def on_resize(self) -> None:
        if self._last is not None:  # the first draw may precede layout: redraw at the real width
            self.show(*self._last)

    def show(self, sample: ResourceSample | None, active_alerts: int | None) -> None:
        self._last = (sample, active_alerts)
        narrow = self.size.width < 90
        width = 3 if narrow else 8
        cpu, memory = (sample.cpu, sample.memory) if sample else (None, None)
        parts: list[Text | str] = [
            Text("CPU ", style="bold"), bar(cpu.percent if cpu else None, width), " ",
            Text("MEM ", style="bold"), bar(memory.percent if memory else None, width), " ",
        ]  # fmt: skip
        known = sample.gpu if sample else None  # None: the daemon cannot ask NVML, so it does not know
        gpus = known or []
        if not gpus:
            parts.append(Text("GPU none" if known is not None else "GPU n/a", style="dim"))
        shown = gpus[:1] if narrow else gpus[:4]
        for gpu in shown:
            parts += [Text(f"GPU{gpu.id} ", style="bold"), bar(gpu.utilization, width), " "]
            if gpu.temperature is not None:
                parts.append(Text(f"{gpu.temperature:.0f}°C ", style="red" if gpu.temperature >= 85 else ""))
        if len(gpus) > len(shown):
            parts.append(Text(f"+{len(gpus) - len(shown)} ", style="dim"))
        if active_alerts:
            parts.append(Text(f"  ▲ {active_alerts} alert{'s' if active_alerts != 1 else ''}", style="bold red"))
        self.show_text(Text.assemble(*parts), layout=False)
