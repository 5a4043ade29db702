"""The resources screen with and without a GPU in the daemon's samples."""

from __future__ import annotations

from typing import Any

import pytest

from pivot_tui.app import make_app
from pivot_tui.config import TuiSettings
from pivot_tui.screens.resources import ResourcesScreen
from tests.tui.fake import FakeDaemonClient
from tests.tui.helpers import until

HOST = {
    "timestamp": "2024-02-10T12:34:56.789+00:00", "time": 1707568496.789,
    "cpu": {"percent": 20.0, "count": 2, "per_cpu": [20.0, 20.0]},
    "memory": {"percent": 40.0, "used_gb": 4.0, "total_gb": 10.0},
    "disk": {"percent": 50.0, "used_gb": 50.0, "total_gb": 100.0, "path": "/"},
}  # fmt: skip
GPU = {"id": 0, "name": "NVIDIA H100", "utilization": 97.0, "memory_percent": 80.0, "temperature": 60.0}


@pytest.mark.parametrize(("gpus", "history_shown"), [([], False), ([GPU], True)])
async def test_the_gpu_history_shows_only_with_a_gpu(gpus: list[dict[str, Any]], history_shown: bool) -> None:
    client = FakeDaemonClient(resources={**HOST, "gpu": gpus})
    app = make_app(TuiSettings("http://gpu-box:8000", None, "textual-dark"), client)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("2")
        await until(pilot, lambda: isinstance(app.screen, ResourcesScreen) and app.screen._seen >= 0)
        assert [part.display for part in app.screen.query(".gpu-history")] == [history_shown] * 2
        assert ("No NVIDIA GPU" in str(app.screen.query_one("#gpus").render())) is not history_shown
