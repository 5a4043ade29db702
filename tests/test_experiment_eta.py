"""The ETA's pace: time the experiment's runs trained, not time since start (pauses, queue waits)."""

from __future__ import annotations

from dataclasses import fields

from pivotd.experiments.lifecycle import eta_seconds
from pivotd.store.experiments import ExperimentRow, RunProgress


def row(status: str) -> ExperimentRow:
    """Only `status` matters to the ETA."""
    return ExperimentRow(**{**{field.name: None for field in fields(ExperimentRow)}, "status": status})


def test_active_time_is_the_union_of_the_runs_spans() -> None:
    spans = ((100.0, 110.0), (105.0, 120.0), (500.0, None), (130.0, 140.0))  # overlap, a gap, one running
    assert RunProgress(4, 3, None, None, spans).active_seconds(now=505.0) == 20 + 10 + 5
    assert RunProgress(0, 0, None, None).active_seconds(now=505.0) == 0.0


def test_a_long_pause_does_not_inflate_the_eta() -> None:
    # Started at t=0, trained 10 s, paused for an hour, resumed: a quarter of the epochs took 10 s of training.
    progress = RunProgress(4, 1, 40, 10, ((0.0, 10.0), (3610.0, None)))
    assert eta_seconds(row("running"), progress, now=3610.0) == 30.0
    assert eta_seconds(row("paused"), progress, now=3610.0) is None
    assert eta_seconds(row("completed"), progress, now=3610.0) == 0.0
    assert eta_seconds(row("pending"), RunProgress(4, 0, 40, 0), now=5.0) is None
