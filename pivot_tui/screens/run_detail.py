"""Provides RunDetailScreen: one run's live curves, layer-wise heatmap and table, with time travel."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.reactive import reactive
from textual.widgets import Footer, Header

from pivot_tui.failures import ReportsFailures
from pivot_tui.screens.confirm import ConfirmDialog
from pivot_tui.screens.inference import InferenceDialog
from pivot_tui.screens.live import LiveScreen, Paced
from pivot_tui.widgets import HEATMAP_METRICS, LayerHeatmap, LayerTable, MetricPlot
from pivot_tui.widgets.layer_table import LayerFlags
from pivot_tui.widgets.metric_plot import PLOT_SETS
from pivot_tui.widgets.quiet import QuietStatic
from pivot_tui.widgets.run_log import RunLog
from pivot_tui.widgets.runs_table import STATE_STYLE
from shared.client import PivotAPIError
from shared.models.layerwise import LiteStep
from shared.models.runs import LIVE_STATES, RunSummary

if TYPE_CHECKING:
    from pivot_tui.fleet import HostLink

HEAVY_REDRAW_S = 0.25
"""Plots, heatmap, layer table and log are redrawn at most this often (plotext rebuilds each figure); the title line,
with the step and loss, follows every change at the screens' rate (`LiveScreen.REDRAW_S`)."""


def _shape(matrix: Any) -> str:
    """`rows x columns` of a nested list (a layer's W), or its length for a vector."""
    if isinstance(matrix, list) and matrix and isinstance(matrix[0], list):
        return f"{len(matrix)}x{len(matrix[0])}"
    return str(len(matrix)) if isinstance(matrix, list) else "?"


class RunDetailScreen(ReportsFailures, LiveScreen):
    """Curves and layer health of one run; left/right step through history, space returns to live."""

    BINDINGS = [
        Binding("escape", "back", "Back"),
        Binding("space", "toggle_live", "Live"),
        # Priority: the focused layer table would otherwise take these for horizontal scrolling. One footer
        # entry for both arrows: at 80 columns every key of this screen must fit.
        Binding("left", "step(-1)", "Step", key_display="←→", priority=True),
        Binding("right", "step(1)", "Newer", show=False, priority=True),
        Binding("home", "jump(0)", "First", show=False, priority=True),
        Binding("end", "jump(-1)", "Latest", show=False, priority=True),
        Binding("m", "cycle_plot", "Plot"),
        Binding("h", "cycle_heatmap", "Heat"),
        Binding("c", "cancel_run", "Cancel"),
        Binding("p", "params", "Params"),
        Binding("i", "infer", "Infer"),
        # This screen's keys fill 80 columns: launching and quitting stay on their keys, out of the footer.
        Binding("l", "app.launch", "Launch", show=False),
        Binding("q", "app.quit", "Quit", show=False),
    ]

    live: reactive[bool] = reactive(True)
    """Follow the newest step; off while travelling through history."""
    heatmap_metric: reactive[str] = reactive(HEATMAP_METRICS[0])
    """Layer-wise signal shown in the heatmap."""
    WATCHES = frozenset({"runs", "run"})

    def __init__(self, run_id: str) -> None:
        super().__init__()
        self.run_id = run_id
        self.cursor: int = -1
        """Index into the followed run's steps while not live."""
        self._plot_names = list(PLOT_SETS)
        self._seen = -1
        """The followed run's version the plots, heatmap, table and log show."""
        self._cancellable = False
        self._heavy = Paced(self, self._on_heavy, HEAVY_REDRAW_S)

    def compose(self) -> ComposeResult:
        yield Header()
        yield QuietStatic(id="run-title")
        with Horizontal(id="run-body"):
            with Vertical(id="plots"):
                yield MetricPlot("loss", PLOT_SETS["loss"], id="plot-main")
                yield MetricPlot("accuracy", PLOT_SETS["accuracy"], id="plot-second")
            with Vertical(id="layers"):
                yield LayerHeatmap(id="heatmap")
                yield LayerTable(id="layer-table")
        yield RunLog(id="run-log")
        yield Footer(compact=True, show_command_palette=False)  # room for every key at 80 columns

    def on_resize(self) -> None:
        # Below 140 columns the layer panel takes more of the width, so that its table keeps Type and Group.
        self.set_class(self.size.width < 140, "narrow")

    def on_mount(self) -> None:
        self.title = f"run {self.run_id}"
        self._cancellable = self._can_cancel(self.app.model.runs.get(self.run_id))

    def model_changed(self, link: HostLink, parts: tuple[str, ...]) -> None:
        if not self.watches(link):
            return
        if "run" in parts:
            self._heavy.poke()  # the title with the rest
        elif "runs" in parts:
            self._paced.poke()  # the title line alone

    def _on_paced(self) -> None:
        if self.app.screen is self:
            self._draw_title(self._selected())

    def _on_heavy(self) -> None:
        if self.app.screen is self:
            self.redraw()

    def _again(self) -> None:
        """After a key changed what is shown (the step, a plot, live or not): the whole view, paced like changes."""
        self._seen = -1
        self._heavy.poke()

    def on_screen_resume(self) -> None:
        # The app follows one run at a time: a run opened elsewhere meanwhile (another mode, or closed
        # since) took it over, so this screen follows its own run again whenever it comes back into view.
        followed = self.app.model.followed
        if followed is None or followed.run_id != self.run_id:
            self.load()

    @work(exclusive=True, group="load-run", exit_on_error=False)
    async def load(self) -> None:
        await self.app.follow_run(self.run_id)
        self._seen = -1
        self.redraw()
        try:  # flags as the daemon's own gradient rules raise alerts; a daemon without alerts keeps the defaults
            rules = await self.app.client.alert_rules()
        except PivotAPIError:
            return
        self.query_one(LayerTable).set_flags(LayerFlags.from_rules(rules, self.run_id))

    def _selected(self) -> LiteStep | None:
        """The step the view shows: the newest while live, else the one travelled to."""
        followed = self.app.model.followed
        steps = followed.steps if followed else ()
        if self.live or not steps:
            self.cursor = len(steps) - 1
        return steps[self.cursor] if steps and 0 <= self.cursor < len(steps) else None

    def _draw_title(self, selected: LiteStep | None) -> None:
        summary = self.app.model.runs.get(self.run_id)
        if self._can_cancel(summary) != self._cancellable:  # the run changed state: Cancel comes or goes
            self._cancellable = not self._cancellable
            self.refresh_bindings()
        # One line: a new title repaints it alone, an unchanged one (another run's update) costs nothing.
        self.query_one("#run-title", QuietStatic).show_text(self._title(summary, selected), layout=False)

    def redraw(self) -> None:
        """The title, and the plots, heatmap, layer table and log when the followed run changed since they were
        drawn (or a key asked for them)."""
        model = self.app.model
        followed = model.followed
        selected = self._selected()
        self._draw_title(selected)
        if model.versions["run"] == self._seen:
            return
        self._seen = model.versions["run"]
        steps = list(followed.steps) if followed else []
        summary = model.runs.get(self.run_id)
        series = followed.series if followed else {}
        cursor_step = None if self.live or selected is None else selected.step
        self.query_one("#plot-main", MetricPlot).show(series, cursor_step)
        second = self.query_one("#plot-second", MetricPlot)
        # A run with nothing to draw there (no accuracy, no learning rate) gives the loss plot the room.
        second.display = second.show(series, cursor_step, fallback=True)
        self.query_one(LayerHeatmap).show(steps, self.heatmap_metric, None if self.live else cursor_step)
        self.query_one(LayerTable).show(selected, followed.layer_groups if followed else None)
        is_job = summary is not None and summary.kind == "job"
        if is_job != self.has_class("job"):
            self.set_class(is_job, "job")  # a command's output is what there is to watch: the log takes the room
            self.refresh_bindings()
        # A job that reports no metrics has no curves and no layers: its log is the whole view.
        layers = self.query_one("#layers")
        layers.display = bool(steps) or not is_job
        if not layers.display and self.focused is self.query_one(LayerTable):
            self.set_focus(None)  # a hidden table would take the arrows and put its keys first in the footer
        self.query_one("#run-body").display = bool(steps) or bool(series) or not is_job
        self.query_one("#run-log", RunLog).show(followed, self._log_lines(is_job))

    def _log_lines(self, is_job: bool) -> int:
        if is_job:
            return max(3, self.size.height // 2)
        return 5 if self.size.height >= 30 else 2

    def _title(self, summary: RunSummary | None, selected: LiteStep | None) -> Text:
        status = "unknown" if summary is None else summary.status
        latest = {} if summary is None else summary.latest
        loss = next((latest[k] for k in ("train_loss", "train/loss", "loss") if k in latest), None)
        # The viewed step goes in the badge, first: at 80 columns the end of the line is cut.
        if self.live or selected is None:
            mode = Text(" LIVE ", style="bold white on green")
        else:
            mode = Text(f" PAUSED at step {selected.step} ", style="bold black on yellow")
        # The state in the colour the runs list gives it: a lost or failed run must not look like a succeeded one.
        parts = [mode, Text(f" {self.run_id} ", style="bold"), Text(f"{status}  ", style=STATE_STYLE.get(status, ""))]
        latest_step = None if summary is None else summary.latest_step
        # A run just launched (queued, or before its first point) has no step yet.
        parts.append(Text("no steps yet  ", style="dim") if latest_step is None else Text(f"step {latest_step}  "))
        followed = self.app.model.followed
        if followed is not None and followed.run_id == self.run_id and followed.epochs_total:
            parts.append(Text(f"epoch {followed.epoch or 0}/{followed.epochs_total}  "))
        if loss is not None:
            parts.append(Text(f"loss {loss:.4g}  "))
        if summary is not None and summary.error:
            parts.append(Text(summary.error, style="bold red"))
        return Text.assemble(*parts)

    @staticmethod
    def _can_cancel(summary: RunSummary | None) -> bool:
        # A managed run or a job that has not ended; an external run's script is not pivotd's to stop.
        return summary is not None and summary.kind in ("managed", "job") and summary.status in LIVE_STATES

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Cancel is offered (in the footer, and on its key) only for a managed run or a job that has not ended;
        a job has no trained parameters to show or to infer with."""
        if action == "cancel_run":
            return self._cancellable
        if action in ("params", "infer"):
            return not self.has_class("job")
        return True

    def action_back(self) -> None:
        # Escape first closes what it would reach for (a notice), and only then leaves the run. Textual has no
        # public way to ask whether notifications are shown.
        if self.app._notifications:
            self.app.clear_notifications()
        else:
            self.app.pop_screen()

    def action_toggle_live(self) -> None:
        self.live = not self.live
        self._again()

    def action_step(self, delta: int) -> None:
        followed = self.app.model.followed
        if not followed or not followed.steps:
            return
        if self.live:  # leaving live: start from the newest step, whatever was last drawn
            self.cursor = len(followed.steps) - 1
        self.live = False
        self.cursor = max(0, min(len(followed.steps) - 1, self.cursor + delta))
        self._again()

    def action_jump(self, index: int) -> None:
        followed = self.app.model.followed
        if not followed or not followed.steps:
            return
        self.live = index == -1
        self.cursor = len(followed.steps) - 1 if index == -1 else index
        self._again()

    def action_cycle_plot(self) -> None:
        plot = self.query_one("#plot-second", MetricPlot)
        following = self._plot_names[(self._plot_names.index(plot.title) + 1) % len(self._plot_names)]
        if following == "loss":
            following = self._plot_names[(self._plot_names.index(following) + 1) % len(self._plot_names)]
        plot.title, plot.names = following, PLOT_SETS[following]
        self._again()

    def action_cycle_heatmap(self) -> None:
        self.heatmap_metric = HEATMAP_METRICS[(HEATMAP_METRICS.index(self.heatmap_metric) + 1) % len(HEATMAP_METRICS)]
        self._again()

    def action_cancel_run(self) -> None:
        def answered(yes: bool | None) -> None:
            if yes:
                self.cancel_run()
            else:
                self.notify(f"{self.run_id} keeps running", timeout=2)

        self.app.push_screen(
            ConfirmDialog(f"Cancel run {self.run_id}? It stops; what it logged stays.", "Cancel run"),
            answered,
        )

    @work(exclusive=True, group="cancel-run", exit_on_error=False)
    async def cancel_run(self) -> None:
        summary = self.app.model.runs.get(self.run_id)
        try:
            if summary is not None and summary.kind == "job":
                self.notify(f"cancelling {self.run_id}")  # a job's cancel answers once its process group ended
                await self.app.client.cancel_job(self.run_id)
                return
            await self.app.client.cancel(self.run_id)
        except PivotAPIError as exc:
            message = "only runs started by pivotd can be cancelled" if exc.status == 404 else exc.message
            self.notify(message, severity="error")
        else:
            self.notify(f"cancelling {self.run_id}")

    async def _param_id(self) -> str | None:
        """The trained parameters of this run, or None (with the reason shown) when it has none."""
        try:
            run = await self.app.client.managed_run(self.run_id)
        except PivotAPIError as exc:
            self.notify("only runs trained by pivotd have parameters" if exc.status == 404 else exc.message,
                        severity="warning")  # fmt: skip
            return None
        if not run.param_id:
            self.notify(f"{self.run_id} is {run.state}: parameters exist once it has succeeded", severity="warning")
        return run.param_id

    @work(exclusive=True, group="params", exit_on_error=False)
    async def action_params(self) -> None:
        param_id = await self._param_id()
        if param_id is None:
            return
        params = await self.app.client.params(param_id)
        layers = params.parameters["layers"]
        shapes = [f"{layer['type']} {_shape(layer['W'])}" for layer in layers if "W" in layer]
        self.notify(f"{param_id}: {', '.join(shapes)}; {params.size_bytes / 1024:.0f} KiB", timeout=10)

    @work(exclusive=True, group="infer", exit_on_error=False)
    async def action_infer(self) -> None:
        if await self._param_id() is None:
            return
        offset = random.randrange(5000)
        try:
            sample = (await self.app.client.digit_samples(offset=offset)).samples[0]
            answer = await self.app.client.infer_pixels(self.run_id, sample.pixels)
        except PivotAPIError as exc:
            self.notify(f"inference failed: {exc.message}", severity="error")
            return
        self.app.push_screen(InferenceDialog(self.run_id, sample, answer))

    def on_unmount(self) -> None:
        followed = self.app.model.followed
        if followed is not None and followed.run_id == self.run_id:
            self.app.unfollow_run()
