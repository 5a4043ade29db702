"""Provides LayerTable: the selected step's layers, with layer groups and vanishing/exploding flags."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.widgets import DataTable

from shared.models.layerwise import LiteLayer, LiteStep

# A first layer whose gradient norm falls below this, or any layer's rising above EXPLODING, is flagged;
# the same defaults as pivotd's built-in alert rules.
VANISHING = 1e-5
EXPLODING = 1e2


def flag(layer: LiteLayer) -> Text:
    norm = layer["gradient_l2_norm"]
    if norm > EXPLODING:
        return Text("EXPLODING", style="bold red")
    if 0 < norm < VANISHING or (norm == 0 and layer["layer_type"] not in ("ReLU", "Tanh", "Sigmoid", "Dropout")):
        return Text("VANISHING", style="bold yellow")
    return Text("ok", style="green")


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:.3g}"


class LayerTable(DataTable[Any]):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)

    def on_mount(self) -> None:
        # Most telling first, so a narrow terminal still shows the flag and the gradient norm.
        for label in ("Layer", "Flag", "Grad L2", "Act std", "Std ratio", "Grad max", "Spectral", "Type", "Group"):
            self.add_column(label, key=label.lower())

    _showing: object = None

    def show(self, step: LiteStep | None, groups: dict[str, list[str]] | None) -> None:
        if step is self._showing:  # steps are immutable once received: same object, same rows
            return
        self._showing = step
        self.clear()
        if step is None:
            return
        group_of = {layer: name for name, layers in (groups or {}).items() for layer in layers}
        for layer in step.layers:
            self.add_row(
                layer["layer_id"],
                flag(layer),
                _number(layer["gradient_l2_norm"]),
                _number(layer["activation_std"]),
                _number(layer["cross_layer_std_ratio"]),
                _number(layer["gradient_max_abs"]),
                _number(layer["spectral_norm"]),
                layer["layer_type"],
                group_of.get(layer["layer_id"], "Ungrouped"),
            )
