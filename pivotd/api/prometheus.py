"""`GET /metrics`: the daemon's state in Prometheus's text format, for the Prometheus/Grafana a lab already runs.

Read at scrape time from what the daemon already holds (the latest resource sample, the store's counts, the
hub, the running totals of ingest), so scraping costs a few indexed `count(*)` queries and nothing between
scrapes. Every name starts with `pivot_`; labels come from small fixed sets (states, severities, GPU indices,
ingest categories), never run ids, so the number of series does not grow with the number of runs.

prometheus_client is imported at the first scrape (`pivotd.api.prometheus_families`), not at start-up: a tenth of a
second of every daemon's start for a route many daemons never serve.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from pivotd.api.deps import ServicesDep
from pivotd.api.responses import STRUCTURED_ERRORS, error_responses

router = APIRouter(tags=["monitoring"])
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@router.get(
    "/metrics",
    summary="The daemon's state in Prometheus's text format (resources, GPUs, runs, queue, ingest, alerts)",
    response_class=Response,
    responses={
        200: {"content": {CONTENT_TYPE: {"schema": {"type": "string"}}}, "description": "Prometheus text format 0.0.4"},
        **error_responses(STRUCTURED_ERRORS, 401, 403, 429),
    },
)
async def metrics(request: Request, services: ServicesDep) -> Response:
    from pivotd.api.prometheus_families import exposition  # noqa: PLC0415

    return Response(await exposition(services, request.app.state.refusals), media_type=CONTENT_TYPE)
