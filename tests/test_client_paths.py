"""`shared.client` puts ids into paths as one quoted segment each, against a real daemon."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from shared.client import PivotAPIError, PivotClient
from tests.daemon import RunningDaemon
from tests.payloads import contract_payload


async def test_an_id_cannot_name_another_route(daemon: RunningDaemon, http: httpx.AsyncClient) -> None:
    """Unquoted, `x/../<run>` would be normalised to `/api/v1/runs/<run>` and delete that run."""
    assert (await http.post("/api/v1/metrics/layerwise", json=contract_payload())).status_code == 202
    run_id = contract_payload()["metadata"]["run_id"]
    client = PivotClient(daemon.url)
    try:
        for sneaky in (f"x/../{run_id}", f"{run_id}?steps=none", f"{run_id}#x"):
            with pytest.raises(PivotAPIError) as refused:
                await asyncio.to_thread(client.delete_run, sneaky)
            assert refused.value.status in (404, 422), sneaky  # no such run, or not a run id at all
        assert (await http.get(f"/api/v1/runs/{run_id}")).status_code == 200  # still there
        with pytest.raises(PivotAPIError) as refused:
            await asyncio.to_thread(client.experiment, "../../runs")
        assert refused.value.status == 404
    finally:
        client.close()
