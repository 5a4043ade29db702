"""The experiments domain's typed contract: each status vocabulary defined once with the one mapping between them,
and the Python clients answering with the models (the OpenAPI side is in test_openapi.py)."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from shared.client import AsyncPivotClient, PivotAPIError, PivotClient
from shared.models.datasets import DigitSamples
from shared.models.experiments import (
    EXPERIMENT_RUN_STATUS,
    RUN_STATES,
    ComparisonReport,
    ExperimentDetail,
    ExperimentExport,
    ExperimentPublic,
    ExperimentRun,
    ExperimentRunStatus,
    ExperimentStatus,
    StatisticalResult,
    count_by_status,
    experiment_run_status,
)
from shared.models.runs import RunState
from tests.daemon import RunningDaemon


def test_each_run_state_has_one_experiment_word_and_filters_invert_the_mapping() -> None:
    assert set(EXPERIMENT_RUN_STATUS) == set(RunState)
    assert EXPERIMENT_RUN_STATUS[RunState.SUCCEEDED] is ExperimentRunStatus.COMPLETED
    assert RUN_STATES[ExperimentRunStatus.PENDING] == (RunState.CREATED, RunState.QUEUED)
    assert RUN_STATES[ExperimentRunStatus.FAILED] == (RunState.FAILED, RunState.LOST)
    for status, states in RUN_STATES.items():
        assert states and all(experiment_run_status(state) is status for state in states), status
    assert sorted(state for states in RUN_STATES.values() for state in states) == sorted(RunState)
    assert experiment_run_status("lost") is ExperimentRunStatus.FAILED  # the stored word works too
    counts = count_by_status({RunState.FAILED: 1, RunState.LOST: 2, RunState.SUCCEEDED: 3})
    assert counts == {ExperimentRunStatus.FAILED: 3, ExperimentRunStatus.COMPLETED: 3}
    assert {str(s) for s in ExperimentStatus} - {str(s) for s in ExperimentRunStatus} == {"paused"}


def through_the_client(url: str) -> None:
    """Every experiments call of the blocking client answers a model, each run carrying both status words."""
    with PivotClient(url) as client:
        created = client.create_experiment("typed", {"metric": "val_accuracy"}, tags=["t"])
        assert isinstance(created, ExperimentPublic) and created.status is ExperimentStatus.PENDING
        values = {"a": [0.9, 0.92, 0.91], "b": [0.8, 0.82, 0.81]}
        for group, accuracies in values.items():
            for index, accuracy in enumerate(accuracies):
                point = {"step": 1, "values": {"val_accuracy": accuracy}}
                client.post_scalars(f"{group}{index}", [point], experiment_id=created.id, group=group)
                client.finish_run(f"{group}{index}", "cancelled" if f"{group}{index}" == "b2" else "succeeded")
        detail = client.experiment(created.id)
        assert isinstance(detail, ExperimentDetail) and detail.status is ExperimentStatus.COMPLETED
        assert detail.results_summary.runs_by_state == {RunState.SUCCEEDED: 5, RunState.CANCELLED: 1}
        assert detail.results_summary.runs_by_status == {"completed": 5, "cancelled": 1}
        assert detail.results_summary.best_run is not None and detail.results_summary.best_run.run_id == "a1"
        assert {(run.id, run.status, run.state) for run in detail.runs if run.id in ("a0", "b2")} == {
            ("a0", ExperimentRunStatus.COMPLETED, RunState.SUCCEEDED),
            ("b2", ExperimentRunStatus.CANCELLED, RunState.CANCELLED),
        }
        completed = client.experiment_runs(created.id, **{"filter[status]": "completed"})
        assert len(completed) == 5 and {run.state for run in completed} == {RunState.SUCCEEDED}
        attached = client.attach_runs(created.id, ["a0"], group="a")
        assert [type(run) for run in attached] == [ExperimentRun] and attached[0].group == "a"
        assert [e.id for e in client.experiments(**{"filter[name]": "typed"})] == [created.id]

        result = client.compare(created.id, ["a", "b"], "val_accuracy")
        assert isinstance(result, StatisticalResult) and result.test == "t_test"
        assert result.excluded_runs == {"b": ["b2"]} and result.sample_sizes == [3, 2]
        assert client.statistical_results(created.id) == [result] == client.statistical_results(test_type="t_test")
        assert client.statistical_result(result.id) == result

        export = client.experiment_export(created.id)
        assert isinstance(export, ExperimentExport) and export.results is not None and export.runs is not None
        assert export.results.statistical_results == [result]
        assert {group.group: group.n for group in export.results.groups} == {"a": 3, "b": 2}
        assert {run.id: run.state for run in export.runs}["b2"] is RunState.CANCELLED
        only = client.experiment_export(created.id, ["runs"])
        assert only.config is None and only.results is None and only.runs is not None
        report = client.comparison([created.id])
        assert isinstance(report, ComparisonReport) and report.metrics == ["val_accuracy"]
        assert report.welch_tests["val_accuracy"].statistic == pytest.approx(result.statistic)

        samples = client.digit_samples(2, offset=3)
        assert isinstance(samples, DigitSamples) and [s.index for s in samples.samples] == [3, 4]
        assert len(samples.samples[0].pixels) == 784
        assert client.checkpoints() == [] and client.run_checkpoints("a0") == [] and client.run_logs("a0") == []
        clone = client.clone_experiment(created.id, "typed again")
        assert isinstance(clone, ExperimentDetail) and clone.status is ExperimentStatus.PENDING
        with pytest.raises(PivotAPIError) as refused:
            client.start_experiment(clone.id)  # not a sweep
        assert refused.value.status == 422


async def test_the_clients_answer_models(daemon: RunningDaemon) -> None:
    await asyncio.to_thread(through_the_client, daemon.url)
    async with AsyncPivotClient(daemon.url) as client:
        first = await client.experiments(limit=1)
        assert len(first) == 1 and first[0].name == "typed again"  # newest first, one request's worth
        detail = await client.experiment(first[0].id)
        assert isinstance(detail, ExperimentDetail) and detail.total_runs == 0
        results = await client.statistical_results()
        assert len(results) == 1 and isinstance(results[0], StatisticalResult)
        runs = await client.experiment_runs((await client.experiments())[-1].id)
        assert len(runs) == 6 and all(isinstance(run, ExperimentRun) for run in runs)
        export = await client.experiment_export(first[0].id, ["results"])
        assert export.results is not None and export.results.results_summary.runs_by_state == {}
        with pytest.raises(PivotAPIError) as conflict:
            await client.experiment_action(first[0].id, "pause")
        assert conflict.value.status == 409
        assert await client.run_logs("a0", level="warning") == [] and await client.run_checkpoints("a0") == []
    # What the models leave out rather than send as null, as the wire always did.
    async with httpx.AsyncClient(base_url=daemon.url) as http:
        result = (await http.get("/api/v1/statistical-results")).json()["data"][0]
        assert "pairing" not in result and "sum_of_squares" not in result and result["note"] is not None
        bare = (await http.post("/api/v1/experiments", json={"experiment": {"name": "bare"}})).json()["data"]
        summary = (await http.get(f"/api/v1/experiments/{bare['id']}")).json()["data"]["results_summary"]
        assert summary == {"total_runs": 0, "runs_by_status": {}, "runs_by_state": {}}
