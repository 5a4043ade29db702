"""Provides LayerHeatmap: depth x time, one cell per layer and step, of a layer-wise signal.

Log scale (gradient norms span orders of magnitude), colours from a fixed ramp that degrades to 256 or
16 colours on terminals without truecolor; the selected step's column is marked for time travel.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

from rich.style import Style
from rich.text import Text
from textual.widgets import Static

from shared.models.layerwise import LiteStep

HEATMAP_METRICS = ("gradient_l2_norm", "activation_std", "cross_layer_std_ratio", "spectral_norm")
RAMP = ("#1a1a4e", "#23408e", "#2a7ab0", "#2fb39a", "#8bd346", "#f2d73c", "#f28e2b", "#e03b24")
SHADES = tuple(Style(color=colour) for colour in RAMP)
MARKED_SHADES = tuple(Style(color=colour, bgcolor="white") for colour in RAMP)
"""The selected step's column (time travel)."""
MISSING, MARKED_MISSING = Style(color="grey50"), Style(color="grey50", bold=True)


def _log(value: Any) -> float | None:
    if not isinstance(value, int | float) or value <= 0 or math.isinf(value) or math.isnan(value):
        return None
    return math.log10(value)


class LayerHeatmap(Static):
    _last: tuple[Sequence[LiteStep], str, int | None] | None = None

    def on_resize(self) -> None:
        if self._last is not None:  # the first draw may precede layout: redraw at the real size
            self.show(*self._last)

    def show(self, steps: Sequence[LiteStep], metric: str, selected: int | None) -> None:
        self._last = (steps, metric, selected)
        if not steps:
            self.border_title, self.border_subtitle = metric, None
            self.styles.height = 3
            self.update(Text("no layer-wise steps yet", style="dim"))
            return
        layers = [(layer["layer_id"], layer["depth_index"]) for layer in steps[-1].layers]
        # Labels as long as the longest layer id, but never more than 40% of the width.
        label = min(max(len(layer_id) for layer_id, _ in layers), max(8, int(self.size.width * 0.4)))
        window = _window(list(steps), max(8, self.content_size.width - label - 1), selected)
        # One lookup table per step (not a scan of its layers per cell), and one Style per colour: at 12 layers and
        # 100 steps shown, building the heatmap took 19 ms of the event loop, which the open run's redraws stall.
        columns = [{layer["layer_id"]: layer for layer in step.layers} for step in window]
        grid = [[_log(column[layer_id].get(metric) if layer_id in column else None) for column in columns]
                for layer_id, _ in layers]  # fmt: skip
        known = [v for row in grid for v in row if v is not None]
        lo, hi = (min(known), max(known)) if known else (0.0, 1.0)
        span = (hi - lo) or 1.0
        text = Text()
        for index, ((layer_id, _), row) in enumerate(zip(layers, grid, strict=True)):
            if index:
                text.append("\n")
            text.append(f"{layer_id[-label:]:>{label}} ", style="dim")
            cells: list[tuple[str, Style]] = []
            for column, value in enumerate(row):
                marked = selected is not None and window[column].step == selected
                if value is None:
                    cells.append(("·", MARKED_MISSING if marked else MISSING))
                    continue
                shade = min(len(RAMP) - 1, int((value - lo) / span * len(RAMP)))
                cells.append(("▌", MARKED_SHADES[shade]) if marked else ("█", SHADES[shade]))
            for (glyph, style), run in itertools.groupby(cells):  # a run of one colour is one span
                text.append(glyph * sum(1 for _ in run), style=style)
        # Metric and scale on the frame, which is always drawn: rows cut at a small height never take them.
        self.border_title = f"{metric} · steps {window[0].step}..{window[-1].step}"
        scale = Text.assemble(f"10^{lo:.1f} ", *(("█", colour) for colour in RAMP), f" 10^{hi:.1f}")
        self.border_subtitle = scale
        self.styles.height = len(layers) + 2
        self.update(text)


def _window(steps: list[LiteStep], width: int, selected: int | None) -> list[LiteStep]:
    """The newest `width` steps, or, when time travel selects an older step, the steps around it."""
    end = len(steps)
    index = next((i for i, step in enumerate(steps) if step.step == selected), None)
    if index is not None and index < end - width:
        end = max(width, index + width // 2 + 1)  # the selected step in the middle, or at the start
    return steps[max(0, end - width) : end]
