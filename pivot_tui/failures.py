"""One way for a failed background call to become a visible message, on the app and on every screen."""

from __future__ import annotations

from textual.dom import DOMNode
from textual.worker import Worker, WorkerState

from shared.client import PivotAPIError


def report_failure(node: DOMNode, event: Worker.StateChanged) -> None:
    error = event.worker.error
    if event.state is WorkerState.ERROR and error is not None:
        text = error.message if isinstance(error, PivotAPIError) else str(error)
        node.app.notify(f"{event.worker.group or 'task'} failed: {text}", severity="error", timeout=6)


class ReportsFailures:
    """For screens: a worker's state change goes to the node that started it and does not bubble to the app,
    so without this an error raised in a screen's worker (`exit_on_error=False`) vanishes."""

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        assert isinstance(self, DOMNode)
        report_failure(self, event)
