"""The TUI's model: bounded buffers, downsampling that keeps spikes, and re-syncs that lose nothing."""

from __future__ import annotations

from typing import Any

from pivot_tui.client import Event
from pivot_tui.model import MAX_POINTS_PER_SERIES, Series, TuiModel
from shared.models.runs import RunSummary


def run(last_update: str, step: int) -> dict[str, Any]:
    """A run as a `runs` message carries it."""
    return {"created_at": "2026-01-01T00:00:00", "last_update": last_update, "step_count": step, "latest_step": step}


def snapshot(**runs: dict[str, Any]) -> dict[str, RunSummary]:
    """The same runs as the REST list answers them."""
    return {run_id: RunSummary.model_validate(run) for run_id, run in runs.items()}


def test_a_run_created_while_a_snapshot_is_in_flight_survives_it() -> None:
    model = TuiModel()
    model.begin_sync()  # REST request sent...
    model.apply(Event("run_created", {"type": "run_created", "run_id": "new", "data": run("2026-01-01T00:00:02", 1)}))
    model.apply(Event("run_deleted", {"type": "run_deleted", "run_id": "gone"}))
    # ... and its answer, read before either event happened, arrives last.
    model.finish_sync(snapshot(gone=run("2026-01-01T00:00:00", 5), old=run("2026-01-01T00:00:00", 9)))
    assert set(model.runs) == {"new", "old"}


def test_a_snapshot_newer_than_a_replayed_update_wins() -> None:
    model = TuiModel()
    model.begin_sync()
    model.apply(Event("run_updated", {"type": "run_updated", "run_id": "r", "data": run("2026-01-01T00:00:01", 1)}))
    model.finish_sync(snapshot(r=run("2026-01-01T00:00:05", 7)))
    assert model.runs["r"].latest_step == 7


def test_series_are_bounded_and_downsampling_keeps_extremes() -> None:
    series = Series()
    for step in range(MAX_POINTS_PER_SERIES + 500):
        series.add(step, 100.0 if step == 15_000 else 1.0)
    assert len(series.steps) == MAX_POINTS_PER_SERIES and series.steps[0] == 500
    steps, values = series.downsampled(80)
    assert len(steps) <= 160 and 100.0 in values and steps == sorted(steps)
