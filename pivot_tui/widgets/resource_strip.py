"""Provides ResourceStrip: one line of CPU, memory and GPU gauges plus the active alert count."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.widgets import Static


def bar(percent: float | None, width: int = 8) -> Text:
    if percent is None:
        return Text("n/a".ljust(width + 5), style="dim")
    filled = round(max(0.0, min(100.0, percent)) / 100 * width)
    style = "green" if percent < 70 else "yellow" if percent < 90 else "red"
    return Text.assemble(("█" * filled, style), ("░" * (width - filled), "dim"), f" {percent:3.0f}%")


def _percent(section: Any, *keys: str) -> float | None:
    if not isinstance(section, dict):
        return None
    for key in keys:
        value = section.get(key)
        if isinstance(value, int | float):
            return float(value)
    return None


class ResourceStrip(Static):
    _last: tuple[dict[str, Any] | None, int | None] | None = None

    def on_resize(self) -> None:
        if self._last is not None:  # the first draw may precede layout: redraw at the real width
            self.show(*self._last)

    def show(self, sample: dict[str, Any] | None, active_alerts: int | None) -> None:
        self._last = (sample, active_alerts)
        sample = sample or {}
        narrow = self.size.width < 90
        width = 3 if narrow else 8
        parts: list[Text | str] = [
            Text("CPU ", style="bold"), bar(_percent(sample.get("cpu"), "percent"), width), " ",
            Text("MEM ", style="bold"), bar(_percent(sample.get("memory"), "percent"), width), " ",
        ]  # fmt: skip
        gpus = sample.get("gpu") or []
        if not gpus:
            parts.append(Text("GPU none", style="dim"))
        shown = gpus[:1] if narrow else gpus[:4]
        for gpu in shown:
            parts += [Text(f"GPU{gpu.get('id', '?')} ", style="bold"), bar(_percent(gpu, "utilization"), width), " "]
            temperature = gpu.get("temperature")
            if isinstance(temperature, int | float):
                parts.append(Text(f"{temperature:.0f}°C ", style="red" if temperature >= 85 else ""))
        if len(gpus) > len(shown):
            parts.append(Text(f"+{len(gpus) - len(shown)} ", style="dim"))
        if active_alerts:
            parts.append(Text(f"  ▲ {active_alerts} alert{'s' if active_alerts != 1 else ''}", style="bold red"))
        self.update(Text.assemble(*parts))
