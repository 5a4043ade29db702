"""Snapshots of every screen at 120x40 and 80x24, from a fake client with fixed data."""

from __future__ import annotations

from typing import Any

import pytest

from pivot_tui.app import PivotApp, make_app
from pivot_tui.config import TuiSettings
from pivot_tui.screens import ConfirmDialog
from pivot_tui.screens.help import HelpDialog
from pivot_tui.screens.launch import LaunchDialog
from shared.models import RunSummary
from tests.tui.fake import EXPERIMENTS, JOB_LOG, JOB_RUN, JOB_SUMMARY, QUEUE, RUNS, FakeDaemonClient
from tests.tui.helpers import rows, until

SIZES = [(120, 40), (80, 24)]
RESOURCES = {
    "timestamp": "2024-02-10T12:34:56.789+00:00", "time": 1707568496.789,
    "cpu": {"percent": 37.5, "count": 4, "per_cpu": [12.0, 55.0, 80.0, 3.0]},
    "memory": {"percent": 61.2, "used_gb": 39.2, "total_gb": 64.0},
    "disk": {"percent": 92.4, "used_gb": 924.0, "total_gb": 1000.0, "path": "/"},
    "gpu": [
        {"id": 0, "name": "NVIDIA H100 80GB HBM3", "utilization": 97.0, "memory_used_gb": 64.0,
         "memory_total_gb": 80.0, "memory_percent": 80.0, "temperature": 86.0, "power_watts": 612.0},
        {"id": 1, "name": "NVIDIA H100 80GB HBM3", "utilization": 12.0, "memory_used_gb": 2.0,
         "memory_total_gb": 80.0, "memory_percent": 2.5, "temperature": 41.0, "power_watts": 95.0},
    ],
}  # fmt: skip
ALERTS = [
    {"alert_id": "alert_1", "severity": "critical", "status": "active", "message": "gpu_temperature on gpu:0 is 86",
     "subject": "gpu:0", "value": 86.0, "triggered_at": "2024-02-10T12:35:00.000+00:00"},
    {"alert_id": "alert_2", "severity": "high", "status": "acknowledged",
     "message": "gradient_l2_norm on exploding_rnn:classifier/fc2 is 412.5", "subject": "exploding_rnn:classifier/fc2",
     "value": 412.5, "triggered_at": "2024-02-10T12:30:00.000+00:00"},
]  # fmt: skip


def app(**fake: Any) -> PivotApp:
    return make_app(TuiSettings("http://gpu-box:8000", None, "textual-dark"), FakeDaemonClient(**fake))


async def runs_loaded(pilot: Any) -> None:
    await until(pilot, lambda: rows(pilot, "#runs") == len(RUNS))


def drawn(pilot: Any, part: str) -> bool:
    """The current screen has drawn the newest version of `part` of the model."""
    return getattr(pilot.app.screen, "_seen", None) == pilot.app.model.versions[part]


async def run_followed(pilot: Any) -> None:
    await runs_loaded(pilot)
    await pilot.press("enter")
    await until(pilot, lambda: pilot.app.model.followed and len(pilot.app.model.followed.steps) == 151)
    await until(pilot, lambda: drawn(pilot, "run"))


@pytest.mark.parametrize("size", SIZES)
def test_runs_screen(snap_compare: Any, size: tuple[int, int]) -> None:
    """All runs with state colours, latest loss, resource strip with GPU gauges and temperature."""
    assert snap_compare(app(resources=RESOURCES), terminal_size=size, run_before=runs_loaded)


@pytest.mark.parametrize("size", SIZES)
def test_run_detail_live(snap_compare: Any, size: tuple[int, int]) -> None:
    """Loss curves (train and val), the gradient-norm heatmap with an exploding last layer, the layer table."""

    assert snap_compare(app(), terminal_size=size, run_before=run_followed)


def test_run_detail_time_travel(snap_compare: Any) -> None:
    """Paused five steps back: the title says which step, the plots and heatmap mark it."""

    async def travel(pilot: Any) -> None:
        await run_followed(pilot)
        await pilot.press(*["left"] * 5)
        await until(pilot, lambda: drawn(pilot, "run"))

    assert snap_compare(app(), terminal_size=(120, 40), run_before=travel)


@pytest.mark.parametrize("size", SIZES)
def test_resources_screen(snap_compare: Any, size: tuple[int, int]) -> None:
    """Two GPUs (one hot and busy), CPU per core, memory and a nearly full disk."""

    async def go(pilot: Any) -> None:
        await pilot.press("2")
        await until(pilot, lambda: pilot.app.model.resources is not None and drawn(pilot, "resources"))

    assert snap_compare(app(resources=RESOURCES), terminal_size=size, run_before=go)


@pytest.mark.parametrize("size", SIZES)
def test_alerts_screen(snap_compare: Any, size: tuple[int, int]) -> None:
    """Alerts with severity colours and the rules below them."""

    async def go(pilot: Any) -> None:
        await pilot.press("3")
        await until(pilot, lambda: (rows(pilot, "#alerts"), rows(pilot, "#notifications"), rows(pilot, "#rules"))
                    == (len(ALERTS), 2, 1))  # fmt: skip

    assert snap_compare(app(alerts=ALERTS), terminal_size=size, run_before=go)


def test_launch_dialog(snap_compare: Any) -> None:
    """The launch form with its architecture templates and hyperparameter defaults."""

    async def go(pilot: Any) -> None:
        await runs_loaded(pilot)
        await pilot.press("l")
        await until(pilot, lambda: isinstance(pilot.app.screen, LaunchDialog))

    assert snap_compare(app(), terminal_size=(120, 40), run_before=go)


@pytest.mark.parametrize("size", SIZES)
def test_launch_dialog_for_a_command(snap_compare: Any, size: tuple[int, int]) -> None:
    """The launch form switched to a command: command, directory, GPUs and name, no hyperparameters."""

    async def go(pilot: Any) -> None:
        await runs_loaded(pilot)
        pilot.app.launch_form = {"template": "job", "job-cwd": "/home/me/project"}
        await pilot.press("l")
        await until(pilot, lambda: isinstance(pilot.app.screen, LaunchDialog))
        await until(pilot, lambda: not pilot.app.screen.query_one("#hyperparams").display)

    assert snap_compare(app(), terminal_size=size, run_before=go)


@pytest.mark.parametrize("size", SIZES)
def test_queue_screen(snap_compare: Any, size: tuple[int, int]) -> None:
    """Two runs on their GPUs (a job on two, a built-in run on one), a job waiting for four."""

    async def go(pilot: Any) -> None:
        await runs_loaded(pilot)
        await pilot.press("6")
        await until(pilot, lambda: rows(pilot, "#queue") == len(QUEUE["data"]))

    assert snap_compare(app(), terminal_size=size, run_before=go)


@pytest.mark.parametrize("size", SIZES)
def test_a_jobs_run_view_is_its_live_log(snap_compare: Any, size: tuple[int, int]) -> None:
    """A job that reports no metrics: its command, GPUs and output fill the view, no empty plots."""

    async def go(pilot: Any) -> None:
        await runs_loaded(pilot)
        pilot.app.model.runs[JOB_RUN] = RunSummary.model_validate(JOB_SUMMARY)
        pilot.app.open_run(JOB_RUN)
        await until(pilot, lambda: pilot.app.model.followed and len(pilot.app.model.followed.logs) == len(JOB_LOG))
        await until(pilot, lambda: drawn(pilot, "run"))

    assert snap_compare(app(), terminal_size=size, run_before=go)


@pytest.mark.parametrize("size", SIZES)
def test_help_lists_the_screens_keys_then_the_keys_everywhere(snap_compare: Any, size: tuple[int, int]) -> None:
    """`?` on the run detail: its keys in two columns, then 1-4 and 6, launch and quit, all above the fold at 80x24."""

    async def go(pilot: Any) -> None:
        await run_followed(pilot)
        await pilot.press("question_mark")
        await until(pilot, lambda: isinstance(pilot.app.screen, HelpDialog))

    assert snap_compare(app(), terminal_size=size, run_before=go)


@pytest.mark.parametrize("size", SIZES)
def test_cancel_confirmation_shows_every_answer(snap_compare: Any, size: tuple[int, int]) -> None:
    """Cancelling a run asks first; the footer names enter, y, n/esc and the arrows."""

    async def go(pilot: Any) -> None:
        await run_followed(pilot)
        await pilot.press("c")
        await until(pilot, lambda: isinstance(pilot.app.screen, ConfirmDialog))

    assert snap_compare(app(), terminal_size=size, run_before=go)


def test_light_theme(snap_compare: Any) -> None:
    """The runs screen in the light theme (readable without a dark background)."""
    light = make_app(TuiSettings("http://gpu-box:8000", None, "textual-light"), FakeDaemonClient(resources=RESOURCES))
    assert snap_compare(light, terminal_size=(80, 24), run_before=runs_loaded)


@pytest.mark.parametrize("size", SIZES)
def test_experiments_screen(snap_compare: Any, size: tuple[int, int]) -> None:
    """Four experiments: running (epoch progress bar, best value), completed, paused, pending."""

    async def go(pilot: Any) -> None:
        await pilot.press("4")
        await until(pilot, lambda: rows(pilot, "#experiments") == len(EXPERIMENTS))

    assert snap_compare(app(), terminal_size=size, run_before=go)


@pytest.mark.parametrize("size", SIZES)
def test_experiment_detail(snap_compare: Any, size: tuple[int, int]) -> None:
    """A running sweep: status, progress, ETA and best run; groups with n, mean ± std and 95% CI; its runs."""

    async def go(pilot: Any) -> None:
        await pilot.press("4")
        await until(pilot, lambda: rows(pilot, "#experiments") == len(EXPERIMENTS))
        await pilot.press("enter")
        await until(pilot, lambda: rows(pilot, "#experiment-runs") == 6)

    assert snap_compare(app(), terminal_size=size, run_before=go)
