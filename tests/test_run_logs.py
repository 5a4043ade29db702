"""`GET /api/v1/runs/{id}/logs` without training: lines written through the store, external runs, bad `since`."""

from __future__ import annotations

import httpx
import pytest

from pivotd.store.training import AppendLogs, CreateJob, LogLine
from tests.daemon import RunningDaemon


async def test_lines_after_since_and_an_external_run_has_none(daemon: RunningDaemon, http: httpx.AsyncClient) -> None:
    writer = daemon.services.store.writer
    await writer.submit(CreateJob("managed", "created", {}, 1))  # `created`: no worker picks it up
    await writer.submit(AppendLogs("managed", [LogLine(100.0, "info", "early"), LogLine(200.0, "error", "late")]))
    after = (await http.get("/api/v1/runs/managed/logs", params={"since": "150"})).json()
    assert [line["message"] for line in after["data"]] == ["late"]

    # A run posted by a script exists, it just has no worker output: an empty list, as for its checkpoints.
    scalars = await http.post("/api/v1/runs/ext-a1/scalars", json=[{"step": 1, "values": {"loss": 1.0}}])
    assert scalars.status_code == 202, scalars.text
    external = await http.get("/api/v1/runs/ext-a1/logs")
    assert external.status_code == 200, external.text
    assert external.json() == {"data": [], "meta": {"run_id": "ext-a1", "count": 0}}
    missing = await http.get("/api/v1/runs/ghost/logs")
    assert missing.status_code == 404 and missing.json()["error"]["message"] == "run 'ghost' not found"


@pytest.mark.parametrize("since", ["nan", "NaN", "inf", "-inf", "1e400", "yesterday"])
async def test_since_that_is_no_instant_is_a_422_naming_it(
    daemon: RunningDaemon, http: httpx.AsyncClient, since: str
) -> None:
    await daemon.services.store.writer.submit(CreateJob("managed", "created", {}, 1))
    response = await http.get("/api/v1/runs/managed/logs", params={"since": since})
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "validation_error" and error["details"][0]["field"] == "since"
