"""Provides LayerTable: the selected step's layers, with layer groups and vanishing/exploding flags."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from rich.text import Text
from textual.widgets import DataTable

from pivot_tui.widgets.columns import fit_number
from shared.models.alerts import AlertRulePublic
from shared.models.layerwise import LiteLayer, LiteStep

FIRST_LAYER = "@first"


@dataclass(frozen=True)
class GradientRule:
    """One of the daemon's enabled gradient-norm rules: a threshold and the layers it watches."""

    threshold: float
    layers: str | None = None
    """A layer id glob, `@first`, or None for every layer."""

    def watches(self, layer: LiteLayer, index: int) -> bool:
        if self.layers == FIRST_LAYER:
            return index == 0  # the daemon's `@first`: the step's first layer
        return self.layers is None or fnmatch.fnmatchcase(layer["layer_id"], self.layers)


@dataclass(frozen=True)
class LayerFlags:
    """Flags as the daemon's alert rules would raise them, so the table and the alerts agree."""

    vanishing: tuple[GradientRule, ...] = (GradientRule(1e-7, FIRST_LAYER),)
    """Until the rules are read: pivotd's built-in `vanishing_gradient` and `exploding_gradient`."""
    exploding: tuple[GradientRule, ...] = (GradientRule(1e3),)

    @classmethod
    def from_rules(cls, rules: Iterable[AlertRulePublic], run_id: str) -> LayerFlags:
        vanishing: list[GradientRule] = []
        exploding: list[GradientRule] = []
        for rule in rules:
            if not rule.enabled or rule.metric != "gradient_l2_norm" or rule.threshold is None:
                continue
            if rule.scope.run is not None and not fnmatch.fnmatchcase(run_id, rule.scope.run):
                continue
            found = {"less_than": vanishing, "greater_than": exploding}.get(rule.condition)
            if found is not None:
                found.append(GradientRule(rule.threshold, rule.scope.layer))
        return cls(tuple(vanishing), tuple(exploding))

    def flag(self, layer: LiteLayer, index: int) -> Text:
        norm = layer["gradient_l2_norm"]
        if any(norm > rule.threshold for rule in self.exploding if rule.watches(layer, index)):
            return Text("EXPLODING", style="bold red")
        # The payload reports zero weight statistics for a parameter-free layer (an activation, dropout):
        # it has no gradient of its own, so a zero there is not a vanishing gradient.
        if has_parameters(layer) and any(
            norm < rule.threshold for rule in self.vanishing if rule.watches(layer, index)
        ):
            return Text("VANISHING", style="bold yellow")
        return Text("ok", style="green")


def has_parameters(layer: LiteLayer) -> bool:
    return bool(layer["spectral_norm"])


# Display order, most telling first; each column's width (numbers fit theirs, see `fit_number`).
COLUMNS = {"Layer": 0, "Flag": 9, "Grad L2": 7, "Act std": 7, "Std ratio": 9, "Grad max": 8, "Spectral": 8,
           "Type": 0, "Group": 0}  # fmt: skip
# Dropped in this order when the table is too narrow for every column: the layer's identity, flag and
# gradient norm always stay, and its type and group are what tell two layers apart.
DROPPED_FIRST = ("Spectral", "Grad max", "Std ratio", "Act std")
NUMBERS = {"Grad L2": "gradient_l2_norm", "Act std": "activation_std", "Std ratio": "cross_layer_std_ratio",
           "Grad max": "gradient_max_abs", "Spectral": "spectral_norm"}  # fmt: skip


class LayerTable(DataTable[Any]):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)
        self.flags = LayerFlags()
        self._columns: tuple[tuple[str, ...], dict[str, int]] = ((), {})
        self._showing: tuple[LiteStep | None, dict[str, list[str]] | None] | None = None

    def on_resize(self) -> None:
        if self._showing is not None:
            step, groups = self._showing
            self._showing = None
            self.show(step, groups)

    def set_flags(self, flags: LayerFlags) -> None:
        if flags != self.flags:
            self.flags = flags
            self.on_resize()  # the rows again, with the new flags

    def _fitting(self, rows: list[dict[str, Any]]) -> tuple[tuple[str, ...], dict[str, int]]:
        """The columns that fit the table's width and each one's width, from what the rows hold: a Flag column
        of `ok`s is narrow, and layer ids longer than their column show their end, which tells layers apart."""
        widths = dict(COLUMNS)
        for label in ("Layer", "Flag", "Type", "Group"):
            widths[label] = max([len(label), *(len(str(row[label])) for row in rows)])
        longest, widths["Layer"] = widths["Layer"], min(widths["Layer"], 12)  # cut before a column is dropped
        room = self.size.width - 1
        shown = list(COLUMNS)
        for name in DROPPED_FIRST:
            if sum(widths[column] + 2 for column in shown) <= room:
                break
            shown.remove(name)
        others = sum(widths[column] + 2 for column in shown if column != "Layer")
        widths["Layer"] = max(5, min(longest, room - others - 2))
        return tuple(shown), {label: widths[label] for label in shown}

    def show(self, step: LiteStep | None, groups: dict[str, list[str]] | None) -> None:
        if self._showing is not None and step is self._showing[0]:  # steps are immutable once received
            return
        self._showing = (step, groups)
        self.clear()
        if step is None:
            return
        group_of = {layer: name for name, layers in (groups or {}).items() for layer in layers}
        rows: list[dict[str, Any]] = []
        for index, layer in enumerate(step.layers):
            row: dict[str, Any] = {
                "Layer": layer["layer_id"],
                "Flag": self.flags.flag(layer, index),
                "Type": layer["layer_type"],
                # "Ungrouped" only beside groups: a run without any has a column of dashes, not of words.
                "Group": group_of.get(layer["layer_id"], "Ungrouped" if groups else "-"),
            }
            for label, key in NUMBERS.items():
                value = layer[key]  # type: ignore[literal-required]
                row[label] = "" if value is None else fit_number(value, COLUMNS[label])
            rows.append(row)
        columns, widths = self._fitting(rows)
        if (columns, widths) != self._columns:
            self.clear(columns=True)
            for label in columns:
                self.add_column(label, key=label.lower(), width=widths[label])
            self._columns = (columns, widths)
        for row in rows:
            row["Layer"] = _tail(row["Layer"], widths["Layer"])
            self.add_row(*(row[label] for label in columns))


def _tail(layer_id: str, width: int) -> str:
    return layer_id if len(layer_id) <= width else "…" + layer_id[-(width - 1) :]
