"""Provides ExperimentsScreen (the daemon's experiments and sweeps) and ExperimentDetailScreen (one
experiment's groups and runs, with start, pause, resume and cancel).

Requests stay bounded: the list is the first page of 100, each with its `GET` detail (progress, best value)
re-read only while it can still change; both screens reload when an experiment event or a member run's
update arrives, at most once a second, and every 10 s otherwise — never per frame, and never while hidden.
A reload that read the same rows writes nothing.
"""

from __future__ import annotations

import asyncio
from typing import Any

from rich.markup import escape
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.timer import Timer
from textual.widgets import DataTable, Footer, Header
from textual.widgets.data_table import ColumnKey

from pivot_tui.client import Unreachable
from pivot_tui.failures import ReportsFailures
from pivot_tui.screens.confirm import ConfirmDialog
from pivot_tui.screens.live import LiveScreen
from pivot_tui.widgets.columns import fit_columns, left_over
from pivot_tui.widgets.quiet import QuietStatic
from pivot_tui.widgets.runs_table import STATE_STYLE, age
from shared.client import PivotAPIError
from shared.models.experiments import (
    FINAL_EXPERIMENT_STATUSES,
    ExperimentAction,
    ExperimentDetail,
    ExperimentPublic,
    ExperimentRun,
    ExperimentStatus,
    GroupSummaryPublic,
)
from shared.models.runs import FINAL_STATES, RunState

STATUS_STYLE = {
    ExperimentStatus.RUNNING: "green", ExperimentStatus.PENDING: "yellow", ExperimentStatus.PAUSED: "bold magenta",
    ExperimentStatus.COMPLETED: "cyan", ExperimentStatus.FAILED: "bold red", ExperimentStatus.CANCELLED: "dim",
}  # fmt: skip
"""An experiment's status. A run is shown by its own state (`RunState`) in the runs list's colours, as on every
other screen: `succeeded`, not the experiments routes' `completed`."""
ENDED_EARLY = (RunState.FAILED, RunState.LOST, RunState.CANCELLED)
"""Final states of runs that did not finish their work."""
MIN_RELOAD_S = 1.0
"""Events reload a screen at most this often: a sweep's epochs and runs can end many times a second."""
IDLE_RELOAD_S = 10.0
"""Reload this often without events (ETA, and changes this client was not subscribed to)."""
DETAIL_FETCHES = 8
"""Concurrent `GET /experiments/{id}` while the list loads."""


def seed_of(run: ExperimentRun) -> Any:
    """A run's seed: the `seed` a script put in its metadata (what paired tests pair runs by), else a managed
    run's hyperparameter, else None."""
    for source in (run.metadata, run.hyperparameters):
        if source.get("seed") is not None:
            return source["seed"]
    return None


# Table cells are markup strings, not Text: they take DataTable's own formatting path, like RunsTable's.


def styled(word: str, style: str | None) -> str:
    return f"[{style}]{escape(word)}[/]" if style else escape(word)


def bold(value: Any) -> str:
    return f"[b]{escape(str(value))}[/b]"


def bar(fraction: float | None, width: int) -> str:
    """`█████░░░░░  50%`: a bar that reads on 16-colour terminals too, or empty when unknown."""
    if fraction is None:
        return ""
    fraction = min(1.0, max(0.0, fraction))
    filled = round(fraction * width)
    colour = "cyan" if fraction >= 1.0 else "green"
    return f"[{colour}]{'█' * filled}[/][dim]{'░' * (width - filled)}[/] {fraction * 100:3.0f}%"


def number(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, int | float) and not isinstance(value, bool) else ""


def _cut_short(experiment: ExperimentPublic) -> bool:
    return experiment.status in (ExperimentStatus.CANCELLED, ExperimentStatus.FAILED)


def _counted(experiment: ExperimentPublic) -> tuple[int, int] | None:
    """(runs done, runs): finished runs, or only succeeded ones once the experiment was cancelled or failed,
    whose other runs ended without finishing their work; None without a detail's counts."""
    if not isinstance(experiment, ExperimentDetail) or not experiment.results_summary.runs_by_state:
        return None
    by_state = experiment.results_summary.runs_by_state
    done = (RunState.SUCCEEDED,) if _cut_short(experiment) else FINAL_STATES
    return sum(by_state.get(state, 0) for state in done), experiment.total_runs


def fraction_done(experiment: ExperimentPublic) -> float | None:
    """Epochs done when the runs declare epochs (finer than whole runs), else runs finished; for an
    experiment cancelled or failed, the succeeded runs' share (its other runs ended, unfinished)."""
    if not isinstance(experiment, ExperimentDetail):
        return None
    counted = _counted(experiment)
    if _cut_short(experiment) and counted is not None:
        return counted[0] / counted[1] if counted[1] else 0.0
    return experiment.epoch_progress if experiment.epoch_progress is not None else experiment.progress


def finished_runs(experiment: ExperimentPublic) -> str:
    counted = _counted(experiment)
    return f"{counted[0]}/{counted[1]}" if counted else str(experiment.total_runs)


def ended_early(experiment: ExperimentDetail) -> str:
    """` (4 cancelled, 1 lost)`: runs that ended without finishing their work, by state, or nothing."""
    by_state = experiment.results_summary.runs_by_state
    counts = [f"{by_state[state]} {state}" for state in ENDED_EARLY if by_state.get(state)]
    return f" ({', '.join(counts)})" if counts else ""


def metric_of(experiment: ExperimentPublic) -> str:
    judged = experiment.results_summary.metric if isinstance(experiment, ExperimentDetail) else None
    return str(judged or experiment.config.get("metric") or "")


def best_value(experiment: ExperimentPublic) -> float | None:
    if not isinstance(experiment, ExperimentDetail) or experiment.results_summary.best_run is None:
        return None
    return experiment.results_summary.best_run.value


class ExperimentsLive(LiveScreen):
    """Reads the daemon again when the experiments changed (at most once per MIN_RELOAD_S), every IDLE_RELOAD_S
    while in view, on coming back into view and on `reload`; writes only the rows that changed."""

    WATCHES = frozenset({"experiments"})
    REDRAW_S = MIN_RELOAD_S

    def __init__(self) -> None:
        super().__init__()
        self._seen = -1
        self._idle: Timer | None = None
        self._rows: dict[str | None, list[tuple[str, tuple[Any, ...]]]] = {}
        """Each table's rows as last written (by the table's id)."""

    def on_mount(self) -> None:
        self._idle = self.set_interval(IDLE_RELOAD_S, self.action_reload)

    def on_screen_suspend(self) -> None:
        if self._idle is not None:
            self._idle.pause()

    def on_screen_resume(self) -> None:
        self._seen = -1  # what happened meanwhile: read again (the base class's handler redraws)
        if self._idle is not None:
            self._idle.resume()

    def redraw(self) -> None:
        # Hidden (another mode, or a run opened on top) it asks the daemon nothing; it catches up on return.
        if self.app.screen is self and self.app.model.versions["experiments"] != self._seen:
            self._seen = self.app.model.versions["experiments"]
            if self._idle is not None:
                self._idle.reset()
            self.reload()

    def reload(self) -> object:
        raise NotImplementedError

    def action_reload(self) -> None:
        self._seen = -1
        self.redraw()

    def keep_cursor(self, table: DataTable[Any], rows: list[tuple[str, tuple[Any, ...]]]) -> None:
        """Replace the rows, leaving the cursor on the same key (rows are few: up to 100); nothing when unchanged."""
        if self._rows.get(table.id) == rows:
            return
        self._rows[table.id] = rows
        selected = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value if table.row_count else None
        table.clear()
        for key, cells in rows:
            table.add_row(*cells, key=key)
        keys = [key for key, _ in rows]
        if selected in keys:
            table.move_cursor(row=keys.index(selected), animate=False)


class ExperimentsScreen(ReportsFailures, ExperimentsLive):
    """Experiments newest first with status, progress and best value; `enter` opens one."""

    BINDINGS = [Binding("enter", "open", "Open"), Binding("ctrl+r", "reload", "Reload")]

    def __init__(self) -> None:
        super().__init__()
        self._details: dict[str, ExperimentPublic] = {}
        """Each listed experiment's detail, or its list row where the detail could not be read."""

    def compose(self) -> ComposeResult:
        yield Header()
        yield QuietStatic(id="experiments-status")
        yield DataTable(id="experiments", cursor_type="row", zebra_stripes=True)
        yield Footer(compact=True, show_command_palette=False)  # room for every key at 80 columns

    def on_mount(self) -> None:
        self.title = "experiments"
        self._lay_out(self.app.size.width)
        self.query_one("#experiments", DataTable).focus()
        self.redraw()

    def on_resize(self) -> None:
        self._lay_out(self.size.width)

    @staticmethod
    def _widths(width: int) -> dict[str, int]:
        fixed = {"status": 9, "progress": 17, "runs": 5, "metric": 12, "best": 7, "created": 8}
        if width < 100:  # the name matters more than the date or a long bar
            fixed |= {"progress": 10}
            del fixed["created"]
        return {"name": left_over(width, fixed, 12, 60), **fixed}

    def _lay_out(self, width: int) -> None:
        """Columns for this width: the same ones get new widths, a different set (Created) rebuilds the rows."""
        table = self.query_one("#experiments", DataTable)
        widths = self._widths(width)
        if [key.value for key in table.columns] == list(widths):
            fit_columns(table, widths)
            return
        table.clear(columns=True)
        self._rows.pop(table.id, None)
        for key, column_width in widths.items():
            table.add_column(key.capitalize(), key=key, width=column_width)
        self._fill()

    @work(exclusive=True, group="load-experiments", exit_on_error=False)
    async def reload(self) -> None:
        status = self.query_one("#experiments-status", QuietStatic)
        try:
            rows = await self.app.client.experiments()
        except Unreachable as exc:  # the rows below are the last ones read
            status.show_text(Text(f"{exc.message}; showing the last list read", style="bold red"))
            return
        except PivotAPIError as exc:
            status.show_text(Text(f"This daemon does not serve experiments (HTTP {exc.status}).", style="dim"))
            return
        limit = asyncio.Semaphore(DETAIL_FETCHES)

        async def detail(row: ExperimentPublic) -> ExperimentPublic:
            cached = self._details.get(row.id)
            # A final experiment's figures stay put until it changes (a run attached later changes its status).
            if (
                isinstance(cached, ExperimentDetail)
                and cached.status in FINAL_EXPERIMENT_STATUSES
                and (cached.status, cached.updated_at) == (row.status, row.updated_at)
            ):
                return cached
            async with limit:
                try:
                    return await self.app.client.experiment(row.id)
                except PivotAPIError:  # deleted meanwhile: show the list row as it is
                    return row

        details = await asyncio.gather(*(detail(row) for row in rows))
        self._details = {row.id: row for row in details}
        running = sum(1 for row in details if row.status == ExperimentStatus.RUNNING)
        status.show_text(Text.assemble((f"{len(details)} experiments", "bold"), f", {running} running"))
        self._fill()

    def _fill(self) -> None:
        table = self.query_one("#experiments", DataTable)
        bar_width = table.columns[ColumnKey("progress")].width - 5
        with_created = ColumnKey("created") in table.columns
        self.keep_cursor(table, [
            (row.id, (
                bold(row.name), styled(row.status, STATUS_STYLE.get(row.status)), bar(fraction_done(row), bar_width),
                finished_runs(row), escape(metric_of(row)), number(best_value(row)),
                *((age(row.created_at),) if with_created else ()),
            ))
            for row in self._details.values()
        ])  # fmt: skip

    @on(DataTable.RowSelected, "#experiments")
    def _chosen(self, event: DataTable.RowSelected) -> None:
        if event.row_key.value:
            self.app.push_screen(ExperimentDetailScreen(event.row_key.value))

    def action_open(self) -> None:
        table = self.query_one("#experiments", DataTable)
        if table.row_count:
            key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
            if key:
                self.app.push_screen(ExperimentDetailScreen(key))


class ExperimentDetailScreen(ReportsFailures, ExperimentsLive):
    """One experiment live: its groups (n, mean ± std, 95% CI, best) and runs; `enter` opens a run."""

    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("enter", "open_run", "Open run"),
        Binding("s", "act('start')", "Start"),
        Binding("p", "act('pause')", "Pause"),
        Binding("r", "act('resume')", "Resume"),
        Binding("c", "cancel", "Cancel"),
    ]

    def __init__(self, experiment_id: str) -> None:
        super().__init__()
        self.experiment_id = experiment_id
        self.detail: ExperimentDetail | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        yield QuietStatic(id="experiment-title")
        yield QuietStatic("Groups", id="groups-title", classes="section-title")
        yield DataTable(id="groups", cursor_type="row", zebra_stripes=True)
        yield QuietStatic("Runs", id="runs-title", classes="section-title")
        yield DataTable(id="experiment-runs", cursor_type="row", zebra_stripes=True)
        yield Footer(compact=True, show_command_palette=False)  # room for every key at 80 columns

    def on_mount(self) -> None:
        self.title = f"experiment {self.experiment_id}"
        groups = self.query_one("#groups", DataTable)
        groups.can_focus = False  # enter belongs to the runs table
        groups.cursor_type = "none"
        runs = self.query_one("#experiment-runs", DataTable)
        for table, widths in zip((groups, runs), self._widths(self.app.size.width), strict=True):
            for label, width in widths.items():
                table.add_column(label, key=label, width=width)
        runs.focus()
        self.run_worker(self.app.client.watch_experiment(self.experiment_id), group="follow", exit_on_error=False)
        self.redraw()

    def on_resize(self) -> None:
        groups, runs = self._widths(self.size.width)
        fit_columns(self.query_one("#groups", DataTable), groups)
        fit_columns(self.query_one("#experiment-runs", DataTable), runs)

    @staticmethod
    def _widths(width: int) -> tuple[dict[str, int], dict[str, int]]:
        """Columns of the groups and of the runs table; the group and run names take what is left."""
        figures = {"n": 3, "Mean ± std": 19, "95% CI": 19, "Best": 7}
        members = {"Group": 22, "Seed": 5, "Status": 9, "Value": 8, "Prog": 4}
        return (
            {"Group": left_over(width, figures, 12, 40), **figures},
            {"Run": left_over(width, members, 12, 36), **members},
        )

    def on_unmount(self) -> None:
        # The app's worker: this screen's own workers are cancelled as it goes.
        self.app.run_worker(self.app.client.watch_experiment(None), group="follow", exit_on_error=False)

    @work(exclusive=True, group="load-experiment", exit_on_error=False)
    async def reload(self) -> None:
        try:
            detail = await self.app.client.experiment(self.experiment_id)
            results = await self.app.client.experiment_results(self.experiment_id)
        except PivotAPIError as exc:
            self.query_one("#experiment-title", QuietStatic).show_text(Text(exc.message, style="bold red"))
            return
        self.detail = detail
        self.title = f"experiment {detail.name}"
        metric = metric_of(detail)
        self.query_one("#experiment-title", QuietStatic).show_text(self._title(detail, metric, self.size.width < 100))
        self.query_one("#groups-title", QuietStatic).show_text(f"Groups by {metric}" if metric else "Groups")
        runs = self.query_one("#experiment-runs", DataTable)
        self.query_one("#runs-title", QuietStatic).show_text(f"Runs (Value: last {metric})" if metric else "Runs")
        groups = results.results.groups if results.results else []
        self.keep_cursor(self.query_one("#groups", DataTable), [(g.group, self._group_cells(g)) for g in groups])
        self.keep_cursor(runs, [(run.id, self._run_cells(run, metric)) for run in results.runs or []])

    @staticmethod
    def _title(detail: ExperimentDetail, metric: str, narrow: bool) -> Text:
        status = detail.status
        parts: list[Any] = [
            Text(f" {status.upper()} ", style=f"bold reverse {STATUS_STYLE[status]}"),
            Text(f" {detail.name} ", style="bold"),
            Text.from_markup(bar(fraction_done(detail), 10)), f"  runs {finished_runs(detail)}{ended_early(detail)}",
        ]  # fmt: skip
        eta = detail.eta_seconds
        if eta is not None and eta > 0:
            parts.append(f"  eta {int(eta // 60)}m{int(eta % 60):02d}s")
        best = detail.results_summary.best_run
        if best:
            # Below 100 columns the best run gets its own line, whole.
            line = f"best {metric} {number(best.value)} ({best.group})"
            parts.append(Text(("\n" if narrow else "  ") + line, style="cyan"))
        return Text.assemble(*parts)

    @staticmethod
    def _group_cells(group: GroupSummaryPublic) -> tuple[Any, ...]:
        spread = f"{number(group.mean)} ± {number(group.std)}" if group.std is not None else number(group.mean)
        interval = f"[{number(group.ci95[0])}, {number(group.ci95[1])}]" if group.ci95 else ""
        return bold(group.group), str(group.n), spread, escape(interval), number(group.best)

    @staticmethod
    def _run_cells(run: ExperimentRun, metric: str) -> tuple[Any, ...]:
        seed = seed_of(run)
        return (
            bold(run.id),
            escape(run.group or ""),
            "" if seed is None else escape(str(seed)),
            styled(run.state, STATE_STYLE.get(run.state)),
            number(run.metrics.get(metric)),
            "" if run.progress is None else f"{run.progress * 100:3.0f}%",
        )

    def action_open_run(self) -> None:
        table = self.query_one("#experiment-runs", DataTable)
        if table.row_count:
            key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
            if key:
                self.app.open_run(key)

    @on(DataTable.RowSelected, "#experiment-runs")
    def _run_chosen(self, event: DataTable.RowSelected) -> None:
        event.stop()
        if event.row_key.value:
            self.app.open_run(event.row_key.value)

    def action_cancel(self) -> None:
        name = self.detail.name if self.detail else self.experiment_id

        def answered(yes: bool | None) -> None:
            if yes:
                self.send_action("cancel")

        self.app.push_screen(
            ConfirmDialog(f"Cancel experiment {name}? Its queued and running runs stop.", "Cancel experiment"),
            answered,
        )

    @work(exclusive=True, group="experiment-action", exit_on_error=False)
    async def send_action(self, action: ExperimentAction) -> None:
        try:
            experiment = await self.app.client.experiment_action(self.experiment_id, action)
        except PivotAPIError as exc:  # 409: not allowed in this status (the message says which are)
            self.notify(f"{action}: {exc.message}", severity="error", timeout=6)
            return
        self.notify(f"{action}: {experiment.name} is {experiment.status}")
        self.action_reload()

    def action_act(self, action: ExperimentAction) -> None:
        self.send_action(action)
