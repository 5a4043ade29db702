"""Exports: one experiment as a JSON or CSV file, and a comparison report across experiments (JSON, CSV or a
publication-ready LaTeX table). Every answer is a file download (`Content-Disposition: attachment`); the JSON
ones are `ExperimentExport` and `ComparisonReport`, the others text in their declared media types."""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Path, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from pivotd.api.body import openapi_body, read_model
from pivotd.api.deps import ServicesDep
from pivotd.api.experiments import experiment_facts, experiment_run, results_summary
from pivotd.api.responses import api_errors, download
from pivotd.api.statistics import statistical_result
from pivotd.errors import NotFound, invalid_field
from pivotd.experiments import report, sweep
from pivotd.experiments.paging import page_request
from pivotd.experiments.report import GroupSummary
from pivotd.services import Services
from pivotd.store import ExperimentRow, MemberRun
from pivotd.timefmt import iso
from shared.models.experiments import (
    EXPORT_PARTS,
    ComparisonReport,
    ExperimentExport,
    ExportPart,
    ExportResults,
    GroupSummaryPublic,
    WelchTest,
)

router = APIRouter(prefix="/api/v1", tags=["exports"])
EXPORT_TELEMETRY_EVENTS = 100_000
"""Telemetry events in one experiment export (a JSON document built in memory); more are flagged, not sent."""
ExperimentId = Annotated[str, Field(min_length=1, max_length=64)]
_TEXTS = ("text/csv", "application/x-tex")


class ExperimentExportBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    format: Literal["json", "csv"] = "json"
    include: Annotated[list[ExportPart], Field(min_length=1)] = Field(default_factory=lambda: list(EXPORT_PARTS))


class ComparisonExport(BaseModel):
    model_config = ConfigDict(extra="forbid")

    experiment_ids: Annotated[list[ExperimentId], Field(min_length=1, max_length=50)]
    format: Literal["json", "csv", "latex"] = "json"
    template: Literal["publication"] = "publication"
    metric: Annotated[str, Field(min_length=1, max_length=256)] | None = None
    """Default: each experiment's `config.metric`; for one that names none, every final metric its runs recorded."""


def _download(content: str | bytes, media_type: str, filename: str) -> Response:
    return Response(
        content.encode() if isinstance(content, str) else content,
        media_type=media_type,
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


def _json(document: dict[str, Any]) -> bytes:
    return orjson.dumps(document, option=orjson.OPT_INDENT_2)


async def _summaries(services: Services, row: ExperimentRow, metric: str, runs: list[MemberRun]) -> list[GroupSummary]:
    values = await services.store.experiments.metric_values([run.ref for run in runs], metric, "last")
    return report.summarize(row.id, row.name, metric, runs, values)


@router.post(
    "/experiments/{experiment_id}/export",
    summary="Download an experiment as JSON (one document) or CSV (one row per run)",
    openapi_extra=openapi_body(
        "ExperimentExportRequest",
        ExperimentExportBody,
        '`{"format": "json"|"csv", "include": ["config", "results", ...]}`',
        required=False,
    ),
    response_model=ExperimentExport,
    responses={200: download("JSON (ExperimentExport) or CSV", "<experiment_id>.json|csv", text=("text/csv",))}
    | api_errors(400, 404, 413, 415, 422),
)
async def export_experiment(
    experiment_id: Annotated[str, Path(min_length=1, max_length=64)], request: Request, services: ServicesDep
) -> Response:
    limit = services.settings.max_body_bytes
    body: ExperimentExportBody = await read_model(request, ExperimentExportBody, limit, optional=True)
    reader = services.store.experiments
    row = await reader.get(experiment_id)
    runs = await reader.all_runs(experiment_id)
    include = set(body.include)
    metric = sweep.judged_metric(row.config)
    summaries = await _summaries(services, row, metric, runs) if metric and "results" in include else []
    if body.format == "csv":
        return _download(_experiment_csv(row, runs, include, summaries), "text/csv", f"{experiment_id}.csv")
    export = ExperimentExport(
        experiment=experiment_facts(row),
        include=[part for part in EXPORT_PARTS if part in include],
        exported_at=iso(time.time()),
    )
    if "config" in include:
        export.config = row.config
    if "results" in include:
        stored, _, _ = await reader.results(page_request(1, 100, None, "-created_at"), experiment_id)
        export.results = ExportResults(
            results_summary=await results_summary(services, row),
            progress=round((await reader.progress(experiment_id)).fraction, 4),
            groups=[_group(summary) for summary in summaries],
            statistical_results=[statistical_result(result) for result in stored],
        )
    if "runs" in include:
        export.runs = [experiment_run(run, experiment_id) for run in runs]
    if "telemetry" in include:
        events, truncated = await services.telemetry.experiment_events(experiment_id, EXPORT_TELEMETRY_EVENTS)
        export.telemetry = events
        if truncated:  # the whole stream is POST /api/v1/telemetry/export's job: it streams
            export.telemetry_truncated = True
    return _download(_json(export.model_dump(mode="json")), "application/json", f"{experiment_id}.json")


def _group(summary: GroupSummary) -> GroupSummaryPublic:
    return GroupSummaryPublic.model_validate(summary.document())


def _experiment_csv(row: ExperimentRow, runs: list[MemberRun], include: set[str], summaries: list[GroupSummary]) -> str:
    """One row per run: id, group, status, hyperparameters.*, metrics.* always; `runs` adds the run's kind and
    times, `config` the experiment's config as config.* columns (the same on every row), `results` its group's
    n/mean/std of the metric and whether it is the best run. Telemetry has no per-run form: JSON only."""
    by_group = {summary.group: summary for summary in summaries}
    scored = [(value, run_id) for s in summaries for value, run_id in zip(s.values, s.run_ids, strict=True)]
    lower = bool(summaries) and report.lower_is_better(summaries[0].metric)
    best_run = (min(scored) if lower else max(scored))[1] if scored else None
    config = report.flatten(row.config, "config") if "config" in include else {}
    rows = []
    for run in runs:
        line: dict[str, Any] = {"id": run.run_id, "group": run.group, "status": run.status}
        line |= {"experiment_id": row.id, "experiment_name": row.name}
        if "runs" in include:
            line |= {"kind": run.kind, "created_at": iso(run.created_at)}
            line |= {"started_at": run.started_at and iso(run.started_at)}
            line |= {"finished_at": run.finished_at and iso(run.finished_at)}
        line |= report.flatten(run.hyperparameters, "hyperparameters") if run.hyperparameters else {}
        line |= report.flatten(run.latest, "metrics") if run.latest else {}
        line |= config
        summary = by_group.get(run.group or report.NO_GROUP)
        if summary is not None:
            line |= {"group_n": summary.n, "group_mean": summary.mean, "group_std": summary.std}
            line |= {"is_best_run": run.run_id == best_run}
        rows.append(line)
    return report.to_csv(rows, ["id", "group", "status", "experiment_id", "experiment_name"])


def _metrics(row: ExperimentRow, runs: list[MemberRun], asked: str | None) -> list[str]:
    """The metric asked for, else the one the experiment is judged by, else (a config that names none, such as
    an ensemble's) every scalar whose final value its counted runs recorded, as a paper's table has."""
    metric = asked or sweep.judged_metric(row.config)
    if metric is not None:
        return [metric]
    recorded = sorted({name for run in runs if report.counts(run) for name in run.latest})
    if not recorded:
        message = f"experiment {row.id}'s config names no metric and none of its finished runs recorded one; give one"
        raise invalid_field("metric", message)
    return recorded


@router.post(
    "/export/comparison",
    summary="Compare experiments' groups on a metric, or every final metric: JSON, CSV or a LaTeX table",
    openapi_extra=openapi_body(
        "ComparisonExport",
        ComparisonExport,
        '`{"experiment_ids": [...], "format": "latex", "template"?, "metric"?}`',
    ),
    response_model=ComparisonReport,
    responses={200: download("JSON (ComparisonReport), CSV or LaTeX", "comparison-<ids>.json|csv|tex", text=_TEXTS)}
    | api_errors(400, 404, 413, 415, 422),
)
async def export_comparison(request: Request, services: ServicesDep) -> Response:
    body: ComparisonExport = await read_model(request, ComparisonExport, services.settings.max_body_bytes)
    reader = services.store.experiments
    ids = list(dict.fromkeys(body.experiment_ids))
    experiments: list[ExperimentRow] = []
    missing = []
    for experiment_id in ids:
        try:
            experiments.append(await reader.get(experiment_id))
        except NotFound:
            missing.append(experiment_id)
    if missing:
        raise NotFound(f"experiment(s) not found: {', '.join(missing)}", details={"experiment_ids": missing})
    rows = []
    for row in experiments:
        runs = await reader.all_runs(row.id)
        for metric in _metrics(row, runs, body.metric):
            rows += await _summaries(services, row, metric, runs)
    tests = report.welch_tests(rows)
    stem = "comparison-" + "-".join(ids) if len(ids) <= 3 else f"comparison-{len(ids)}-experiments"
    if body.format == "latex":
        return _download(report.latex_table(rows, tests), "application/x-tex", f"{stem}.tex")
    if body.format == "csv":
        lines = [{k: v for k, v in s.document().items() if k not in ("ci95", "run_ids")} for s in rows]
        for line, summary in zip(lines, rows, strict=True):
            interval = summary.document()["ci95"]
            line |= {"ci95_low": interval and interval[0], "ci95_high": interval and interval[1]}
        leading = ["experiment_id", "experiment_name", "group", "metric", "n", "mean", "std", "ci95_low", "ci95_high"]
        return _download(report.to_csv(lines, leading), "text/csv", f"{stem}.csv")
    comparison = ComparisonReport(
        template=body.template,
        generated_at=iso(time.time()),
        metrics=report.metrics_of(rows),
        rows=[_group(summary) for summary in rows],
        welch_tests={metric: WelchTest.model_validate(test) for metric, test in tests.items()},
    )
    return _download(_json(comparison.model_dump(mode="json")), "application/json", f"{stem}.json")
