"""Jobs in the TUI: the runs table's kind, the queue screen, the launch form's command, a job's live log."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
from textual.widgets import Input, Select

from pivot_tui.app import PivotApp, make_app
from pivot_tui.client import Connection
from pivot_tui.config import TuiSettings
from pivot_tui.screens import ConfirmDialog, LaunchDialog, QueueScreen, RunDetailScreen
from pivot_tui.widgets import RunsTable
from pivot_tui.widgets.run_log import RunLog
from pivotd.monitor.nvml import Nvml
from shared.models.runs import RunSummary
from tests.daemon import running_daemon
from tests.tui.fake import JOB_RUN, JOB_SUMMARY, QUEUE, FakeDaemonClient, missing
from tests.tui.helpers import notes, rows, until

SIZES = [(80, 24), (120, 40)]


def app(client: FakeDaemonClient | None = None) -> PivotApp:
    return make_app(TuiSettings("http://gpu-box:8000", None, "textual-dark"), client or FakeDaemonClient())


def cell(pilot: Any, table: str, row: int, column: str) -> str:
    found = pilot.app.screen.query_one(table)
    return str(found.get_cell_at((row, list(found.columns).index(column))))


async def open_launch_form_for_a_command(pilot: Any) -> LaunchDialog:
    await until(pilot, lambda: rows(pilot, "#runs") == 4)
    await pilot.press("l")
    await until(pilot, lambda: isinstance(pilot.app.screen, LaunchDialog))
    dialog = pilot.app.screen
    dialog.query_one("#template", Select).value = "job"
    await until(pilot, lambda: dialog.query_one("#job-command").display)
    return dialog


async def test_a_job_reads_job_in_the_runs_table() -> None:
    async with app().run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: rows(pilot, "#runs") == 4)
        pilot.app.model.set_runs(pilot.app.model.runs | {JOB_RUN: RunSummary.model_validate(JOB_SUMMARY)})
        await until(pilot, lambda: rows(pilot, "#runs") == 5)
        table = pilot.app.screen.query_one(RunsTable)
        index = table.get_row_index(JOB_RUN)
        assert cell(pilot, "#runs", index, "kind") == "job"


@pytest.mark.parametrize("size", SIZES)
async def test_the_launch_form_submits_a_command_split_as_a_shell_would(size: tuple[int, int]) -> None:
    client = FakeDaemonClient()
    async with app(client).run_test(size=size) as pilot:
        dialog = await open_launch_form_for_a_command(pilot)
        assert not dialog.query_one("#hyperparams").display
        dialog.query_one("#job-cwd", Input).value = "project"  # relative: the daemon's rule refuses it, named here
        dialog.query_one("#job-command", Input).value = "python train.py --note 'two words'"
        dialog.query_one("#job-gpus", Input).value = "2"
        dialog.query_one("#job-command", Input).focus()
        await pilot.press("enter")
        error = dialog.query_one("#launch-error")
        await until(pilot, lambda: str(error.render()).startswith("directory:"))
        assert client.posted == []
        dialog.query_one("#job-cwd", Input).value = "/home/me/project"
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(pilot.app.screen, RunDetailScreen))
        assert client.posted == [("submit_job", {"command": ["python", "train.py", "--note", "two words"],
                                                 "cwd": "/home/me/project", "gpus": 2})]  # fmt: skip
        assert pilot.app.screen.run_id == "submitted"


@pytest.mark.parametrize("size", SIZES)
async def test_the_queue_shows_gpus_opens_runs_and_cancels_jobs_only(size: tuple[int, int]) -> None:
    client = FakeDaemonClient()
    async with app(client).run_test(size=size) as pilot:
        await until(pilot, lambda: rows(pilot, "#runs") == 4)
        await pilot.press("6")
        await until(pilot, lambda: rows(pilot, "#queue") == len(QUEUE["data"]))
        assert [cell(pilot, "#queue", row, "gpus") for row in range(3)] == ["0,1", "2", "wants 4"]
        assert "2 running, 1 queued, 3 training slots" in str(pilot.app.screen.query_one("#queue-status").render())
        await pilot.press("down", "c")  # the built-in run: cancelled from its run view, said so
        await until(pilot, lambda: "built-in training run" in notes(pilot))
        await pilot.press("down", "c")
        await until(pilot, lambda: isinstance(pilot.app.screen, ConfirmDialog))
        await pilot.press("y")
        await until(pilot, lambda: ("cancel_job", {"run_id": "r_eval_big"}) in client.posted)
        await until(pilot, lambda: isinstance(pilot.app.screen, QueueScreen))
        await pilot.press("up", "up", "enter")
        await until(pilot, lambda: isinstance(pilot.app.screen, RunDetailScreen))
        assert pilot.app.screen.run_id == "r_sweep_lr3e-4"


async def test_a_daemon_without_jobs_says_so_on_the_queue_screen() -> None:
    async with app(FakeDaemonClient(refuse={"job_queue": missing("jobs")})).run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: rows(pilot, "#runs") == 4)
        await pilot.press("6")
        status = lambda: str(pilot.app.screen.query_one("#queue-status").render())  # noqa: E731
        await until(pilot, lambda: "no job queue" in status())


async def test_a_submitted_job_streams_its_output_into_the_run_view_and_can_be_cancelled(tmp_path: Path) -> None:
    """Against a real pivotd: the form submits a real command; its stdout arrives live in the log pane; the
    queue lists it; cancelling it from the queue ends it."""
    script = "import time; print('hello from the job', flush=True); time.sleep(600)"
    async with running_daemon(tmp_path / "state", Nvml(None), cancel_grace_s=1.0) as daemon:
        tui = make_app(TuiSettings(daemon.url, None, "textual-dark"))
        async with tui.run_test(size=(120, 40)) as pilot:
            await until(pilot, lambda: tui.model.connection is Connection.ONLINE)
            await pilot.press("l")
            await until(pilot, lambda: isinstance(tui.screen, LaunchDialog))
            tui.screen.query_one("#template", Select).value = "job"
            tui.screen.query_one("#job-command", Input).value = f'{sys.executable} -c "{script}"'
            tui.screen.query_one("#job-cwd", Input).value = str(tmp_path)
            tui.screen.query_one("#job-command", Input).focus()
            await pilot.press("enter")
            await until(pilot, lambda: isinstance(tui.screen, RunDetailScreen), timeout=20)
            run_id = tui.screen.run_id
            log = tui.screen.query_one(RunLog)
            await until(pilot, lambda: "hello from the job" in str(log.render()), timeout=30)
            assert sys.executable in str(log.border_title)
            await pilot.press("6")
            await until(pilot, lambda: rows(pilot, "#queue") == 1)
            await pilot.press("c")
            await until(pilot, lambda: isinstance(tui.screen, ConfirmDialog))
            await pilot.press("y")
            await until(pilot, lambda: (run := tui.model.runs.get(run_id)) is not None and run.status == "cancelled",
                        timeout=30)  # fmt: skip
            await until(pilot, lambda: rows(pilot, "#queue") == 0, timeout=30)
