"""Screens of pivot-tui: one per mode (runs, resources, alerts, experiments, fleet, queue), the run detail, and
dialogs."""

from pivot_tui.screens.acknowledge import AcknowledgeDialog
from pivot_tui.screens.alerts import AlertsScreen
from pivot_tui.screens.confirm import ConfirmDialog
from pivot_tui.screens.experiments import ExperimentDetailScreen, ExperimentsScreen
from pivot_tui.screens.fleet import FleetScreen
from pivot_tui.screens.launch import LaunchDialog
from pivot_tui.screens.queue import QueueScreen
from pivot_tui.screens.resources import ResourcesScreen
from pivot_tui.screens.run_detail import RunDetailScreen
from pivot_tui.screens.runs import RunsScreen

__all__ = [
    "AcknowledgeDialog",
    "AlertsScreen",
    "ConfirmDialog",
    "ExperimentDetailScreen",
    "ExperimentsScreen",
    "FleetScreen",
    "LaunchDialog",
    "QueueScreen",
    "ResourcesScreen",
    "RunDetailScreen",
    "RunsScreen",
]
