"""Parsed CSS is kept for the process by source and theme (pivot_tui.stylesheet)."""

from __future__ import annotations

from pivot_tui.app import PivotApp, make_app
from pivot_tui.config import TuiSettings
from pivot_tui.stylesheet import SharedStylesheet, fits_this_textual
from tests.tui.fake import FakeDaemonClient
from tests.tui.helpers import rows, until


def parsed(app: PivotApp) -> set[int]:
    """The app's rules, by identity: the same objects when they come from the same parse."""
    return {id(rule) for rule in app.stylesheet.rules}


async def dark_theme_rules() -> set[int]:
    """One app's rules in the dark theme, checked to come back after a switch to the light theme and back."""
    app = make_app(TuiSettings("http://gpu-box:8000", None, "textual-dark"), FakeDaemonClient())
    assert isinstance(app.stylesheet, SharedStylesheet)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: rows(pilot, "#runs") == 4)
        dark = parsed(app)
        app.theme = "textual-light"  # other variables: the same sources parsed for them
        await until(pilot, lambda: parsed(app).isdisjoint(dark))
        app.theme = "textual-dark"  # back to the dark theme's parses
        await until(pilot, lambda: parsed(app) == dark)
    return dark


async def test_a_second_app_reuses_the_first_ones_parsed_css_and_each_theme_has_its_own() -> None:
    assert await dark_theme_rules() == await dark_theme_rules()


def test_the_installed_textual_takes_the_shared_stylesheet() -> None:
    """The TUI falls back to Textual's own stylesheet on a Textual whose private parts differ; the one the project
    is tested with must not (the apps above check that they have the shared one)."""
    assert fits_this_textual()
