"""Screens with a fake daemon: what stays on the stack comes back whole, and failures are shown."""

from __future__ import annotations

from typing import Any

from pivot_tui.app import PivotApp, make_app
from pivot_tui.config import TuiSettings
from pivot_tui.screens import ExperimentDetailScreen, RunDetailScreen
from tests.tui.fake import FakeDaemonClient
from tests.tui.helpers import until


def app(client: FakeDaemonClient | None = None) -> PivotApp:
    return make_app(TuiSettings("http://gpu-box:8000", None, "textual-dark"), client or FakeDaemonClient())


def rows(pilot: Any, table: str) -> int:
    found = pilot.app.screen.query(table)
    return found.first().row_count if found else 0


def following(pilot: Any, run_id: str) -> bool:
    followed = pilot.app.model.followed
    return followed is not None and followed.run_id == run_id and len(followed.steps) == 151


async def test_a_run_detail_left_on_the_stack_follows_its_run_again_when_it_comes_back() -> None:
    async with app().run_test(size=(120, 40)) as pilot:
        await pilot.press("4")
        await until(pilot, lambda: rows(pilot, "#experiments") == 4)
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(pilot.app.screen, ExperimentDetailScreen)
                    and rows(pilot, "#experiment-runs") == 6)  # fmt: skip
        await pilot.press("enter")
        await until(pilot, lambda: following(pilot, "exp_lr_r1"))
        first = pilot.app.screen
        assert isinstance(first, RunDetailScreen)

        await pilot.press("1")
        await until(pilot, lambda: rows(pilot, "#runs") == 4)
        await pilot.press("enter")  # another run, in the runs mode: the app follows that one instead
        await until(pilot, lambda: isinstance(pilot.app.screen, RunDetailScreen) and pilot.app.screen is not first)
        other = pilot.app.screen.run_id
        await until(pilot, lambda: following(pilot, other))
        await pilot.press("escape")
        await until(pilot, lambda: pilot.app.model.followed is None)

        await pilot.press("4")
        await until(pilot, lambda: pilot.app.screen is first)
        await until(pilot, lambda: following(pilot, "exp_lr_r1"))
        await until(pilot, lambda: "no layer-wise steps yet" not in str(first.query_one("#heatmap").render()))
