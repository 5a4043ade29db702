"""Screens are redrawn when the model changes, not on poll timers: a change reaches the screen on top within a
frame, and a screen on which nothing changes runs nothing (fake daemon)."""

from __future__ import annotations

from typing import Any

from pivot_tui.app import PivotApp, make_app
from pivot_tui.client import Event
from pivot_tui.config import TuiSettings
from pivot_tui.screens import ResourcesScreen, RunsScreen
from pivot_tui.screens.run_detail import HEAVY_REDRAW_S
from pivot_tui.widgets import ResourceStrip, RunsTable
from tests.tui.fake import RUNS, FakeDaemonClient
from tests.tui.helpers import TRAINING, open_training_run, rows, until


def app() -> PivotApp:
    return make_app(TuiSettings("http://gpu-box:8000", None, "textual-dark"), FakeDaemonClient())


def stop_timers(pilot: Any) -> None:
    """Pause every timer of the screen on top and of its widgets: whatever is drawn from now on, no tick drew."""
    screen = pilot.app.screen
    for node in [screen, *screen.walk_children()]:
        for timer in list(node._timers):
            timer.pause()


def sample(memory: float) -> Event:
    """The socket's resource sample, with this memory use."""
    data = {
        "timestamp": "2024-02-10T12:34:56.789+00:00", "time": 1707568496.789,
        "cpu": {"percent": 20.0, "count": 2, "per_cpu": [20.0, 20.0]},
        "memory": {"percent": memory, "used_gb": 4.0, "total_gb": 10.0},
        "disk": {"percent": 50.0, "used_gb": 50.0, "total_gb": 100.0, "path": "/"}, "gpu": [],
    }  # fmt: skip
    return Event("resources", {"type": "resources", "topic": "resources", "data": data})


def loss_update(loss: float) -> Event:
    """The socket's `run_updated` for the training run, with a new loss."""
    data = {**RUNS[TRAINING], "latest": {"train_loss": loss}}
    return Event("run_updated", {"type": "run_updated", "topic": "runs", "run_id": TRAINING, "data": data})


async def test_a_new_loss_reaches_the_runs_table_without_a_poll_tick() -> None:
    async with app().run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: rows(pilot, "#runs") == 4)
        table = pilot.app.screen.query_one(RunsTable)
        stop_timers(pilot)
        await pilot.pause(RunsScreen.REDRAW_S)  # the last draw a period ago: the next change is drawn at once
        pilot.app.model.apply(loss_update(0.1234))
        await pilot.pause()
        assert "0.1234" in table.get_row(TRAINING)


async def test_a_resource_sample_reaches_the_gauges_without_a_poll_tick() -> None:
    async with app().run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: rows(pilot, "#runs") == 4)
        strip = pilot.app.screen.query_one(ResourceStrip)
        stop_timers(pilot)
        await pilot.pause(RunsScreen.REDRAW_S)
        pilot.app.model.apply(sample(40.0))
        await pilot.pause()
        assert "40%" in str(strip.render())  # memory, from the sample

        await pilot.press("2")
        await until(pilot, lambda: isinstance(pilot.app.screen, ResourcesScreen))
        screen = pilot.app.screen
        stop_timers(pilot)
        await pilot.pause(ResourcesScreen.REDRAW_S)
        pilot.app.model.apply(sample(77.0))
        await pilot.pause()
        assert "77%" in str(screen.query_one("#host").render())


async def test_a_new_step_reaches_the_run_view_without_a_poll_tick() -> None:
    async with app().run_test(size=(120, 40)) as pilot:
        screen = await open_training_run(pilot)
        stop_timers(pilot)
        await pilot.pause(HEAVY_REDRAW_S)  # the plots' last draw a period ago
        points = [{"step": 1510, "values": {"train_loss": 0.05}}]
        pilot.app.model.apply(Event("scalars", {"type": "scalars", "run_id": TRAINING, "points": points}))
        await pilot.pause()
        assert screen._seen == pilot.app.model.versions["run"]  # the plots drawn with the new point
        pilot.app.model.apply(loss_update(0.0567))  # the title's loss: from the run's summary
        await pilot.pause(RunsScreen.REDRAW_S)
        await pilot.pause()
        assert "loss 0.0567" in str(screen.query_one("#run-title").render())


async def test_an_idle_screen_draws_nothing() -> None:
    """Nothing changes: no redraw at all (the runs screen compared versions ten times a second)."""
    async with app().run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: rows(pilot, "#runs") == 4)
        screen = pilot.app.screen
        calls: list[None] = []
        original = screen.redraw
        screen.redraw = lambda: (calls.append(None), original())[1]  # type: ignore[method-assign]
        await pilot.pause(0.3)  # three of the old poll's periods
        assert calls == []
        pilot.app.model.apply(loss_update(0.2))
        await until(pilot, lambda: calls)
        await pilot.pause(0.3)
        assert len(calls) == 1  # one change, one draw
