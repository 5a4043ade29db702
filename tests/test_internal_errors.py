"""An unexpected failure inside a route: 500 in the family's envelope (seed 004's `internal_error`), the
cause in the daemon's log and not in the answer, and the daemon still serving afterwards.

The fault is injected by replacing one store read on the running daemon: nothing else can make a correct
route fail on purpose.
"""

from __future__ import annotations

import logging
from pathlib import Path

import httpx
import pytest

from tests.daemon import RunningDaemon, daemon_client, running_daemon
from tests.payloads import contract_payload
from tests.test_access import create_key

SECRET_DETAIL = "disk on fire at /var/lib/pivot/secret-path"


async def broken(*args: object, **kwargs: object) -> None:
    raise RuntimeError(SECRET_DETAIL)


async def test_an_unexpected_error_is_a_500_in_the_c_envelope_and_the_daemon_carries_on(
    daemon: RunningDaemon, http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    created = await http.post("/api/v1/experiments", json={"experiment": {"name": "fine"}})
    exp_id = created.json()["data"]["id"]
    monkeypatch.setattr(daemon.services.store.experiments, "get", broken)
    with caplog.at_level(logging.ERROR):
        response = await http.get(f"/api/v1/experiments/{exp_id}")
    assert response.status_code == 500
    assert response.json() == {
        "error": {"code": "internal_error", "message": "internal error; see the daemon log", "details": None}
    }
    assert SECRET_DETAIL not in response.text  # the cause stays in the log
    assert SECRET_DETAIL in caplog.text and f"/api/v1/experiments/{exp_id}" in caplog.text
    monkeypatch.undo()
    assert (await http.get(f"/api/v1/experiments/{exp_id}")).status_code == 200


async def test_seed_000_and_seed_001_routes_fail_in_their_own_envelopes(
    daemon: RunningDaemon, http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(daemon.services.store.reader, "get_run", broken)
    response = await http.get("/api/v1/runs/r1")
    assert response.status_code == 500
    assert response.json() == {"detail": {"error": "internal_error", "message": "internal error; see the daemon log"}}
    monkeypatch.setattr(daemon.services.training.reader, "run_counts", broken)
    response = await http.get("/api/models")
    assert response.status_code == 500 and response.json() == {"error": "internal error; see the daemon log"}


async def test_an_unexpected_error_is_logged_once_with_method_and_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The route's handler logged it, then the server logged the same exception again (two tracebacks each)."""
    with caplog.at_level(logging.DEBUG):  # every logger: pivotd's and uvicorn's
        async with running_daemon(tmp_path / "state") as daemon, daemon_client(daemon.url) as http:
            monkeypatch.setattr(daemon.services.store.reader, "get_run", broken)
            for _ in range(2):
                assert (await http.get("/api/v1/runs/r1")).status_code == 500
    # The daemon has stopped, so every request has finished and logged all it was going to.
    tracebacks = [record for record in caplog.records if record.exc_info and SECRET_DETAIL in str(record.exc_info[1])]
    assert len(tracebacks) == 2, [(record.name, record.getMessage()) for record in tracebacks]
    assert {record.getMessage() for record in tracebacks} == {"unhandled error on GET /api/v1/runs/r1"}
    assert caplog.text.count("Traceback") == 2


@pytest.mark.parametrize("caller", ["owner", "api key"])
async def test_the_single_step_route_fails_in_its_envelope_and_logs_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, caller: str
) -> None:
    """Answered in front of the application for the owner, inside the access middleware for a key: the same 500."""
    with caplog.at_level(logging.DEBUG):
        async with running_daemon(tmp_path / "state") as daemon, daemon_client(daemon.url) as http:
            headers = {}
            if caller == "api key":
                headers = {"authorization": f"Bearer {await create_key(http, 'trainer', 'write')}"}
            monkeypatch.setattr(daemon.services.ingest, "layerwise", broken)
            response = await http.post("/api/v1/metrics/layerwise", json=contract_payload(), headers=headers)
            assert response.status_code == 500
            assert response.json() == {
                "detail": {"error": "internal_error", "message": "internal error; see the daemon log"}
            }
            monkeypatch.undo()
            assert (await http.post("/api/v1/metrics/layerwise", json=contract_payload(), headers=headers)).is_success
    tracebacks = [record for record in caplog.records if record.exc_info and SECRET_DETAIL in str(record.exc_info[1])]
    assert [record.getMessage() for record in tracebacks] == ["unhandled error on POST /api/v1/metrics/layerwise"]
