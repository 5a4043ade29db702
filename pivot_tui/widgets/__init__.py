"""Widgets of pivot-tui, one per file."""

from pivot_tui.widgets.connection_badge import ConnectionBadge
from pivot_tui.widgets.layer_heatmap import HEATMAP_METRICS, LayerHeatmap
from pivot_tui.widgets.layer_table import LayerTable
from pivot_tui.widgets.metric_plot import MetricPlot
from pivot_tui.widgets.resource_strip import ResourceStrip
from pivot_tui.widgets.runs_table import RunsTable

__all__ = [
    "HEATMAP_METRICS",
    "ConnectionBadge",
    "LayerHeatmap",
    "LayerTable",
    "MetricPlot",
    "ResourceStrip",
    "RunsTable",
]
