"""The run view and its dialogs as a user meets them, at 80x24 and 120x40 (typed fake daemon)."""

from __future__ import annotations

import pytest

from pivot_tui.app import PivotApp, make_app
from pivot_tui.config import TuiSettings
from pivot_tui.screens import ConfirmDialog, RunDetailScreen, RunsScreen
from pivot_tui.widgets import ConnectionBadge, LayerTable
from tests.tui.fake import FakeDaemonClient
from tests.tui.helpers import TRAINING, open_training_run, rows, until

SIZES = [(80, 24), (120, 40)]


def app(client: FakeDaemonClient | None = None) -> PivotApp:
    return make_app(TuiSettings("http://gpu-box:8000", None, "textual-dark"), client or FakeDaemonClient())


@pytest.mark.parametrize("size", SIZES)
async def test_escape_on_a_notice_closes_the_notice_and_stays_in_the_run(size: tuple[int, int]) -> None:
    async with app().run_test(size=size) as pilot:
        screen = await open_training_run(pilot)
        pilot.app.notify("something happened")
        await until(pilot, lambda: pilot.app._notifications)
        await pilot.press("escape")
        await until(pilot, lambda: not pilot.app._notifications)
        assert pilot.app.screen is screen
        await pilot.press("escape")  # with nothing to close, escape leaves the run
        await until(pilot, lambda: isinstance(pilot.app.screen, RunsScreen))
        assert pilot.app.screen.query_one("#filter").value == ""


@pytest.mark.parametrize("size", SIZES)
async def test_the_cancel_confirmation_answers_every_key_it_shows(size: tuple[int, int]) -> None:
    client = FakeDaemonClient()
    async with app(client).run_test(size=size) as pilot:
        await open_training_run(pilot)
        await pilot.press("c")
        await until(pilot, lambda: isinstance(pilot.app.screen, ConfirmDialog))
        await pilot.press("enter")  # on the safe answer, focused at first: kept, and it says so
        await until(pilot, lambda: isinstance(pilot.app.screen, RunDetailScreen))
        await until(pilot, lambda: any("keeps running" in str(n.message) for n in pilot.app._notifications))
        assert not [method for method, _ in client.posted if method.startswith("cancel")]
        await pilot.press("c")
        await until(pilot, lambda: isinstance(pilot.app.screen, ConfirmDialog))
        await pilot.press("y")
        await until(pilot, lambda: any(str(n.message) == f"cancelling {TRAINING}" for n in pilot.app._notifications))
        assert client.posted[-1] == ("cancel", {"run_id": TRAINING})


async def test_the_layer_table_shows_type_and_group_and_no_sideways_scrollbar_at_every_size() -> None:
    """One run view, resized to each size in turn: 80x24, 120x40, then 100 columns."""
    async with app().run_test(size=SIZES[0]) as pilot:
        screen = await open_training_run(pilot)
        table = screen.query_one(LayerTable)
        for width, height in (*SIZES, (100, 30)):
            await pilot.resize_terminal(width, height)
            await until(pilot, lambda w=width: screen.region.width == w and table.region.right <= w)
            labels = [str(column.label) for column in table.columns.values()]
            assert {"Layer", "Flag", "Grad L2", "Type", "Group"} <= set(labels)
            assert not table.show_horizontal_scrollbar
            # The fake's GELU reports zero gradient and weights: parameter-free, so not vanishing.
            flags = {table.get_row_at(i)[labels.index("Type")]: str(table.get_row_at(i)[1]) for i in range(2)}
            assert flags == {"Conv2d": "VANISHING", "GELU": "ok"}  # the first layer vanishes; the GELU has none


async def test_the_heatmap_names_its_metric_and_scale_and_a_run_without_accuracy_gives_the_loss_plot_the_room() -> None:
    """One run view, resized from 80x24 to 120x40."""
    async with app().run_test(size=SIZES[0]) as pilot:
        screen = await open_training_run(pilot)
        heatmap = screen.query_one("#heatmap")
        await pilot.press("h")
        await until(pilot, lambda: str(heatmap.border_title).startswith("activation_std"))
        for width, height in SIZES:
            await pilot.resize_terminal(width, height)
            await until(pilot, lambda w=width: screen.region.width == w)
            assert "10^" in str(heatmap.border_subtitle)
            assert heatmap.region.height >= 3 and screen.region.contains_region(heatmap.region)
            assert not screen.query_one("#plot-second").display
            assert screen.query_one("#plot-main").region.height > screen.query_one("#plots").region.height - 2


async def test_an_idle_runs_screen_does_not_rewrite_its_badge() -> None:
    """The connection badge was re-written (and the screen re-laid out) on every poll, ten times a second."""
    async with app().run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: rows(pilot, "#runs") == 4)
        screen, badge = pilot.app.screen, pilot.app.screen.query_one(ConnectionBadge)
        updates: list[object] = []
        original = badge.update
        badge.update = lambda *a, **k: (updates.append(a), original(*a, **k))[1]  # type: ignore[method-assign]
        for _ in range(5):  # polls with something else changed (a resource sample), the connection unchanged
            pilot.app.model.bump("resources")
            screen.redraw()
        assert updates == []
